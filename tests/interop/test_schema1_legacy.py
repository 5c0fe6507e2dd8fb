"""Schema 1 for legacy clients, side by side with Distribution 2.8 signing with a configured key.

The same buildah-built images are pushed to both by skopeo; each request is sent to both. Where
both generate schema 1, the signed payloads are the same bytes (so are the digests): only the
signatures differ. Where cargohold answers otherwise, the test says so and pins both answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cargohold.formats.schema1 import verify_signatures
from tests.support.jws import b64url, jws_verify
from tests.support.servers import cargohold

from .tools import BuiltImages, Clients, distribution, requires_distribution, requires_skopeo, sha256_file

pytestmark = [requires_skopeo, requires_distribution]

SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
UNSIGNED = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
#: the requests of the parity matrix: no Accept, a wildcard, each schema 1 name alone
ACCEPTS = {"no Accept": None, "*/*": "*/*", "prettyjws": SIGNED, "v1+json": UNSIGNED}


@dataclass
class Pair:
    cargohold: str
    distribution: str
    key: ec.EllipticCurvePrivateKey
    clients: Clients


@pytest.fixture(scope="module")
def pair(images: BuiltImages, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Both registries, each holding: a Docker image, an OCI image, a Docker list and an OCI index."""
    tmp = tmp_path_factory.mktemp("schema1-parity")
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp / "schema1-key.pem"
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ))
    (tmp / "cargohold").mkdir()
    with cargohold(tmp / "cargohold") as ours, distribution(tmp / "distribution", key_file) as theirs:
        clients = Clients(tmp / "clients", [ours.host, theirs.host])
        try:
            for host in (ours.host, theirs.host):
                copy = clients.skopeo.copy
                copy(f"dir:{images.docker_dir}", f"docker://{host}/legacy/docker:v1")
                copy(f"oci:{images.oci.path}:small", f"docker://{host}/legacy/oci:v1")
                copy(f"oci:{images.oci.path}:multi", f"docker://{host}/legacy/list:v1", "--all", "--format", "v2s2")
                copy(f"oci:{images.oci.path}:multi", f"docker://{host}/legacy/index:v1", "--all")
            yield Pair(ours.url, theirs.url, key, clients)
        finally:
            clients.close()


def get(base: str, repo: str, reference: str, accept: str | None) -> httpx.Response:
    return httpx.get(f"{base}/v2/{repo}/manifests/{reference}", headers={"Accept": accept} if accept else {})


def error(response: httpx.Response) -> tuple[int, str, str]:
    (first,) = response.json()["errors"]
    return response.status_code, first["code"], first["message"]


@pytest.mark.parametrize("repo", ["legacy/docker", "legacy/list"])
@pytest.mark.parametrize("case", ACCEPTS)
def test_docker_images_and_lists_get_the_same_schema1_as_from_distribution(pair: Pair, repo: str, case: str) -> None:
    ours, theirs = get(pair.cargohold, repo, "v1", ACCEPTS[case]), get(pair.distribution, repo, "v1", ACCEPTS[case])
    assert theirs.status_code == ours.status_code == 200, (theirs.text, ours.text)
    assert theirs.headers["content-type"] == ours.headers["content-type"] == SIGNED
    # the same payload byte for byte, so the same digest; each signed with its own key
    our_payload, our_key = jws_verify(ours.content)
    their_payload, their_key = jws_verify(theirs.content)
    assert our_payload == their_payload
    assert verify_signatures(ours.content) == verify_signatures(theirs.content) == our_payload
    assert ours.headers["docker-content-digest"] == theirs.headers["docker-content-digest"]
    public = pair.key.public_key().public_numbers()
    assert int.from_bytes(b64url(their_key["x"]), "big") == public.x  # Distribution signed with the key given
    assert our_key != their_key
    assert json.loads(our_payload)["architecture"] == "amd64"


@pytest.mark.parametrize(("repo", "stored", "kind"), [
    ("legacy/oci", OCI_MANIFEST, "OCI manifest found, but accept header does not support OCI manifests"),
    ("legacy/index", OCI_INDEX, "OCI index found, but accept header does not support OCI indexes"),
])
def test_oci_images_and_indexes_where_cargohold_answers_otherwise(
    pair: Pair, repo: str, stored: str, kind: str
) -> None:
    """Distribution 2.8 answers 404 to every one of these; cargohold serves what the client takes."""
    for case, accept in ACCEPTS.items():
        theirs = get(pair.distribution, repo, "v1", accept)
        assert error(theirs) == (404, "MANIFEST_UNKNOWN", kind), case
        ours = get(pair.cargohold, repo, "v1", accept)
        assert ours.status_code == 200, (case, ours.text)
        if accept in (None, "*/*"):  # a client that takes anything gets the manifest as stored
            assert ours.headers["content-type"] == stored, case
        else:  # a client that asks for schema 1 gets it, of the (linux/amd64) image
            assert ours.headers["content-type"] == SIGNED, case
            payload, _ = jws_verify(ours.content)
            assert json.loads(payload)["architecture"] == "amd64"


def test_the_generated_digest_names_the_manifest_on_cargohold_only(pair: Pair) -> None:
    """Distribution 2.8 does not keep what it generates: by digest it is unknown there."""
    ours, theirs = (get(base, "legacy/docker", "v1", SIGNED) for base in (pair.cargohold, pair.distribution))
    digest = ours.headers["docker-content-digest"]
    assert theirs.headers["docker-content-digest"] == digest
    assert error(get(pair.distribution, "legacy/docker", digest, SIGNED))[:2] == (404, "MANIFEST_UNKNOWN")
    again = get(pair.cargohold, "legacy/docker", digest, SIGNED)
    assert again.status_code == 200 and again.content == ours.content


def test_distribution_accepts_the_signature_cargohold_made(pair: Pair) -> None:
    """Distribution 2.8 (schema 1 enabled) checks a pushed schema 1 manifest's signature with libtrust."""
    ours = get(pair.cargohold, "legacy/docker", "v1", SIGNED)
    digest = ours.headers["docker-content-digest"]
    pushed = httpx.put(f"{pair.distribution}/v2/legacy/docker/manifests/{digest}", content=ours.content,
                       headers={"Content-Type": SIGNED})
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers["docker-content-digest"] == digest
    tampered = ours.content.replace(b'"tag": "v1"', b'"tag": "v2"')
    refused = httpx.put(f"{pair.distribution}/v2/legacy/docker/manifests/v2", content=tampered,
                        headers={"Content-Type": SIGNED})
    assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "MANIFEST_UNVERIFIED"


def test_skopeo_pulls_the_schema1_copy_layer_by_layer(pair: Pair, tmp_path: Path) -> None:
    """skopeo names every manifest type in its Accept, so it never asks for schema 1 by tag.

    A legacy client's GET (only the schema 1 types accepted) gets the copy; skopeo then pulls it by
    its digest, blob by blob, and checks the digest against the payload.
    """
    first = get(pair.cargohold, "legacy/docker", "v1", f"{SIGNED}, {UNSIGNED}")
    digest = first.headers["docker-content-digest"]
    host = pair.cargohold.removeprefix("http://")
    ref = f"docker://{host}/legacy/docker@{digest}"
    skopeo = pair.clients.skopeo
    assert skopeo.inspect_raw(ref) == first.content
    assert skopeo.inspect(ref)["Digest"] == digest
    out = tmp_path / "pulled"
    skopeo.copy(ref, f"dir:{out}")
    assert (out / "manifest.json").read_bytes() == first.content
    blobs = {layer["blobSum"] for layer in json.loads(first.content)["fsLayers"]}
    assert len(blobs) >= 2
    for blob in blobs:
        assert sha256_file(out / blob.removeprefix("sha256:")) == blob
