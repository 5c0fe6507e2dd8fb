"""Referrers against real registries: through the referrers API on cargohold, through the tag schema's
index (``sha256-<hex>``) on Distribution 2.8, which the client keeps on push and delete; copy and sync
bringing referrers of referrers along between both kinds of registry; oras-py's attached artifacts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cargohold.client import Reference, RegistryClient
from cargohold.client.artifact import ArtifactFile, PushedArtifact, push_artifact
from cargohold.client.copy import copy, copy_referrers
from cargohold.client.errors import ClientError, RegistryResponseError
from cargohold.client.ops import delete_manifest
from cargohold.client.referrers import fallback_tag, referrers
from cargohold.digest import Digest
from cargohold.formats import MediaType

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import RunningRegistry
from .test_artifacts import SBOM, SIGNATURE, oras_client, oras_oci, push_image, write


def attach(client: RegistryClient, subject: Reference, artifact_type: str, tmp_path: Path, content: bytes,
           tag: str | None = None, annotations: dict[str, str] | None = None) -> PushedArtifact:
    """An artifact of one file (``content``) referring to ``subject``."""
    file = write(tmp_path / "files" / os.urandom(4).hex() / "payload.json", content)
    target = Reference(subject.registry, subject.repository, tag, None)
    return push_artifact(client, target, [ArtifactFile(file, artifact_type)], artifact_type, subject=subject,
                         annotations=annotations)


def fallback_index(client: RegistryClient, repo: Reference, subject: Digest) -> dict[str, Any] | None:
    try:
        found = client.get_manifest(repo.with_tag(fallback_tag(subject)), accept=MediaType.OCI_INDEX)
    except RegistryResponseError as exc:
        assert exc.status == 404
        return None
    assert found.media_type == MediaType.OCI_INDEX
    document: dict[str, Any] = json.loads(found.raw)
    return document


def assert_valid_index(document: dict[str, Any] | None, expected: list[tuple[Digest, str]]) -> None:
    """The tag schema's index: schemaVersion 2, its media type, one entry per referrer (no repeats), each
    with the referrer's media type, size, artifactType."""
    assert document is not None
    assert document["schemaVersion"] == 2 and document["mediaType"] == MediaType.OCI_INDEX
    entries = document["manifests"]
    assert [(e["digest"], e["artifactType"]) for e in entries] == [(str(d), t) for d, t in expected]
    assert all(e["mediaType"] == MediaType.OCI_MANIFEST and e["size"] > 0 for e in entries)


def subject_digest(client: RegistryClient, ref: Reference) -> Digest:
    return client.head_manifest(ref).digest


def test_referrers_through_the_api_or_the_tag_schema(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = push_image(client, registry, tmp_path)
    digest = subject_digest(client, image)
    sbom = attach(client, image, SBOM, tmp_path, b'{"sbom": 1}')
    signature = attach(client, image, SIGNATURE, tmp_path, b'{"sig": 1}', tag="signed",
                       annotations={"org.example.signer": "ci"})
    found = referrers(client, image, digest)
    assert [d.annotations for d in found.manifests if d.digest == signature.digest] == \
        [{"org.example.signer": "ci"}]
    assert found.via == ("api" if registry.kind == "cargohold" else "tag")
    assert sorted(str(d.digest) for d in found.manifests) == sorted([str(sbom.digest), str(signature.digest)])
    assert [d.digest for d in referrers(client, image, digest, SIGNATURE).manifests] == [signature.digest]
    index = fallback_index(client, image, digest)
    if registry.kind == "cargohold":  # it answered OCI-Subject: it keeps the referrers itself
        assert index is None and sorted(client.tags(image)) == ["signed", "v1"]
    else:
        assert_valid_index(index, [(sbom.digest, SBOM), (signature.digest, SIGNATURE)])
        assert "annotations" not in index["manifests"][0]  # type: ignore[index]
        assert index["manifests"][1]["annotations"] == {"org.example.signer": "ci"}  # type: ignore[index]
        assert sorted(client.tags(image)) == sorted(["signed", "v1", fallback_tag(digest)])


def test_the_tag_schema_index_never_repeats_a_referrer(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    """The same artifact pushed twice is listed once; an index another tool wrote with a referrer twice is
    written back with it once when the next referrer is added."""
    image = push_image(client, registry, tmp_path)
    digest = subject_digest(client, image)
    first = attach(client, image, SBOM, tmp_path, b'{"same": true}')
    again = attach(client, image, SBOM, tmp_path, b'{"same": true}')
    assert again.digest == first.digest
    assert [d.digest for d in referrers(client, image, digest).manifests] == [first.digest]
    if registry.kind == "cargohold":
        assert fallback_index(client, image, digest) is None
        return
    assert_valid_index(fallback_index(client, image, digest), [(first.digest, SBOM)])
    entry = fallback_index(client, image, digest)["manifests"][0]  # type: ignore[index]
    untyped = {key: value for key, value in entry.items() if key != "artifactType"}
    written = {"schemaVersion": 2, "mediaType": MediaType.OCI_INDEX, "manifests": [untyped, entry, untyped]}
    client.put_manifest(image.with_tag(fallback_tag(digest)), json.dumps(written).encode(), MediaType.OCI_INDEX)
    assert [d.digest for d in referrers(client, image, digest).manifests] == [first.digest]
    attach(client, image, SBOM, tmp_path, b'{"same": true}')  # the same again: the entry is put right
    assert_valid_index(fallback_index(client, image, digest), [(first.digest, SBOM)])
    client.put_manifest(image.with_tag(fallback_tag(digest)), json.dumps(written).encode(), MediaType.OCI_INDEX)
    second = attach(client, image, SIGNATURE, tmp_path, b'{"sig": 2}')
    assert_valid_index(fallback_index(client, image, digest), [(first.digest, SBOM), (second.digest, SIGNATURE)])
    attach(client, image, SBOM, tmp_path, b'{"same": true}')
    assert_valid_index(fallback_index(client, image, digest), [(first.digest, SBOM), (second.digest, SIGNATURE)])


def test_deleting_referrers_cleans_the_tag_schema_index_and_then_its_tag(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = push_image(client, registry, tmp_path)
    digest = subject_digest(client, image)
    sbom = attach(client, image, SBOM, tmp_path, b'{"sbom": 3}')
    signature = attach(client, image, SIGNATURE, tmp_path, b'{"sig": 3}')
    code, _, err = run(capsys, "delete", f"{image.registry}/{image.repository}@{sbom.digest}")
    assert code == 0, err
    assert [d.digest for d in referrers(client, image, digest).manifests] == [signature.digest]
    if registry.kind == "distribution":
        assert_valid_index(fallback_index(client, image, digest), [(signature.digest, SIGNATURE)])
    delete_manifest(client, image.with_digest(signature.digest))
    assert referrers(client, image, digest).manifests == []
    assert fallback_index(client, image, digest) is None
    assert client.tags(image) == ["v1"]
    assert subject_digest(client, image) == digest  # the subject itself is untouched


def _chain(client: RegistryClient, registry: RunningRegistry, tmp_path: Path) -> tuple[Reference, Digest, Digest]:
    """An index whose amd64 image has an SBOM, and the SBOM a signature; plus cosign's tag for the index."""
    index = push_image(client, registry, tmp_path, "1.0", index=True)
    child = json.loads(client.get_manifest(index).raw)["manifests"][0]
    child_ref = index.with_digest(Digest.parse(child["digest"]))
    sbom = attach(client, child_ref, SBOM, tmp_path, b'{"sbom": "child"}')
    signature = attach(client, index.with_digest(sbom.digest), SIGNATURE, tmp_path, b'{"signs": "sbom"}')
    cosign = attach(client, index, "application/vnd.example.legacy", tmp_path, b"legacy")  # a referrer too
    client.put_manifest(index.with_tag(fallback_tag(subject_digest(client, index)) + ".sig"),
                        client.get_manifest(index.with_digest(cosign.digest)).raw, MediaType.OCI_MANIFEST)
    return index, sbom.digest, signature.digest


def _assert_chain(client: RegistryClient, ref: Reference, source: Reference, sbom: Digest, signature: Digest,
                  via: str) -> None:
    child = Digest.parse(json.loads(client.get_manifest(ref).raw)["manifests"][0]["digest"])
    found = referrers(client, ref, child)
    assert found.via == via and [d.digest for d in found.manifests] == [sbom]
    assert [d.digest for d in referrers(client, ref, sbom).manifests] == [signature]
    assert client.get_manifest(ref.with_digest(signature)).raw == \
        client.get_manifest(source.with_digest(signature)).raw
    index_digest = subject_digest(client, ref)
    assert fallback_tag(index_digest) + ".sig" in client.tags(ref)


def test_copy_referrers_from_cargohold_to_distribution_and_back(
    registry: RunningRegistry, distribution: RunningRegistry, client: RegistryClient, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A signature of an SBOM of an image of an index comes along both ways (on the registry under test
    and Distribution as the other end), and cosign's tag with it."""
    index, sbom, signature = _chain(client, registry, tmp_path)
    there = Reference.parse(distribution.ref(distribution.repo("copied"), "1.0"))
    code, out, err = run(capsys, "copy", "--referrers", "--all-platforms", "--json", str(index), str(there))
    assert code == 0, err
    assert set(json.loads(out)["referrers"]) >= {str(sbom), str(signature)}
    _assert_chain(client, there, index, sbom, signature, "tag")
    back = Reference.parse(registry.ref(registry.repo("back"), "1.0"))
    result = copy(client, there, back, all_platforms=True, referrers=True)
    assert {sbom, signature} <= set(result.referrers)
    _assert_chain(client, back, index, sbom, signature, "api" if registry.kind == "cargohold" else "tag")
    without = Reference.parse(registry.ref(registry.repo("plain"), "1.0"))
    assert copy(client, index, without, all_platforms=True).referrers == ()
    assert referrers(client, without, subject_digest(client, without)).manifests == []



def test_a_tag_of_the_schema_s_name_that_is_no_index_is_never_overwritten(
    distribution: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = push_image(client, distribution, tmp_path)
    digest = subject_digest(client, image)
    squatter = client.get_manifest(image)
    client.put_manifest(image.with_tag(fallback_tag(digest)), squatter.raw, squatter.media_type)
    with pytest.raises(ClientError, match="not the image index"):
        attach(client, image, SBOM, tmp_path, b'{"sbom": "squatted"}')
    assert client.get_manifest(image.with_tag(fallback_tag(digest))).raw == squatter.raw


def test_a_referrer_copied_on_its_own_still_gets_its_index(
    registry: RunningRegistry, distribution: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    """Every push of a manifest with a subject keeps the tag schema (a plain copy of a signature too)."""
    image = push_image(client, registry, tmp_path)
    signature = attach(client, image, SIGNATURE, tmp_path, b'{"alone": 1}')
    there = Reference.parse(distribution.ref(distribution.repo("alone"), "v1"))
    copy(client, image, there)
    by_digest = Reference(there.registry, there.repository, None, signature.digest)
    copy(client, image.with_digest(signature.digest), by_digest)
    found = referrers(client, there, subject_digest(client, there))
    assert found.via == "tag" and [d.digest for d in found.manifests] == [signature.digest]


def test_sync_brings_referrers_and_not_their_tags_as_images(
    registry: RunningRegistry, distribution: RunningRegistry, client: RegistryClient, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    index, sbom, signature = _chain(client, registry, tmp_path)
    there = Reference.parse(distribution.ref(distribution.repo("synced"), "x"))
    source = f"{index.registry}/{index.repository}"
    code, out, err = run(capsys, "sync", "--referrers", "--json", source, f"{there.registry}/{there.repository}")
    assert code == 0, err
    synced = json.loads(out)
    assert list(synced["copied"]) == ["1.0"] and {str(sbom), str(signature)} <= set(synced["referrers"]["1.0"])
    _assert_chain(client, there.with_tag("1.0"), index, sbom, signature, "tag")
    # a second run: up to date, and a referrer that came since is brought
    later = attach(client, index, SBOM, tmp_path, b'{"later": 1}')
    code, out, err = run(capsys, "sync", "--referrers", "--json", source, f"{there.registry}/{there.repository}")
    assert code == 0 and json.loads(out)["skipped"] == ["1.0"], err
    listed = referrers(client, there, subject_digest(client, there.with_tag("1.0"))).manifests
    assert later.digest in [d.digest for d in listed]


def test_copy_referrers_is_bounded_and_stops_at_cycles(
    distribution: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    """A chain longer than the depth is cut; a tag schema index that lists a manifest's own subject (no
    digest can do that, but an index can say anything) does not loop."""
    image = push_image(client, distribution, tmp_path)
    chain = [subject_digest(client, image)]
    for level in range(6):
        chain.append(attach(client, image.with_digest(chain[-1]), SBOM, tmp_path, f"level {level}".encode()).digest)
    loop = json.loads(client.get_manifest(image.with_tag(fallback_tag(chain[1]))).raw)
    loop["manifests"].append(json.loads(client.get_manifest(image.with_tag(fallback_tag(chain[0]))).raw)
                             ["manifests"][0] | {"digest": str(chain[0])})
    client.put_manifest(image.with_tag(fallback_tag(chain[1])), json.dumps(loop).encode(), MediaType.OCI_INDEX)
    there = Reference.parse(distribution.ref(distribution.repo("bounded"), "v1"))
    copy(client, image, there)
    brought = copy_referrers(client, image, there, [chain[0]])
    assert brought == chain[1:5]  # four levels, each once


@pytest.mark.parametrize("registry", ["cargohold"], indirect=True)
def test_referrers_lists_what_oras_py_attached(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    """On cargohold only: oras-py sets a subject and keeps no tag schema index, so on a registry without the
    referrers API (Distribution 2.8) no client can find what it attached."""
    image = push_image(client, registry, tmp_path)
    document = json.loads(client.get_manifest(image).raw)
    subject = oras_oci.Subject(MediaType.OCI_MANIFEST, str(subject_digest(client, image)),
                               len(client.get_manifest(image).raw))
    assert document["mediaType"] == MediaType.OCI_MANIFEST
    note = write(tmp_path / "note.txt", b"attached by oras-py\n")
    oras = oras_client.OrasClient(hostname=registry.host, insecure=True)
    response = oras.push(target=f"{image.registry}/{image.repository}:note", files=[str(note)],
                         disable_path_validation=True, subject=subject,
                         manifest_config=f"{tmp_path / 'config.json'}:application/vnd.example.note")
    assert response.status_code == 201
    found = referrers(client, image, subject_digest(client, image))
    assert found.via == "api"
    assert [d.digest for d in found.manifests] == [subject_digest(client, image.with_tag("note"))]
    assert found.manifests[0].artifact_type == "application/vnd.example.note"


def test_a_stale_tag_schema_index_does_not_stop_a_copy(
    registry: RunningRegistry, distribution: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    """An index (written by a tool that never cleans up) listing a referrer deleted since: the image and its
    live referrers are copied, the dead one is passed over."""
    image = push_image(client, distribution, tmp_path)
    digest = subject_digest(client, image)
    live = attach(client, image, SBOM, tmp_path, b'{"live": 1}')
    dead = attach(client, image, SIGNATURE, tmp_path, b'{"dead": 1}')
    client.delete_manifest(image.with_digest(dead.digest))  # the bare API call: the index is left as it was
    assert len(fallback_index(client, image, digest)["manifests"]) == 2  # type: ignore[index]
    there = Reference.parse(registry.ref(registry.repo("stale"), "v1"))
    assert copy(client, image, there, referrers=True).referrers == (live.digest,)
    assert [d.digest for d in referrers(client, there, digest).manifests] == [live.digest]
