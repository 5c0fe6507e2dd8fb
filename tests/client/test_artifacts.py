"""OCI artifacts against real registries (cargohold and Distribution 2.8): push with a subject, pull back
by title (refusing titles that leave the directory), oras-py on the other end, and the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cargohold.client import OCILayout, Reference, RegistryClient, push
from cargohold.client.artifact import TITLE, ArtifactFile, pull_artifact, push_artifact
from cargohold.client.errors import ClientError
from cargohold.digest import Digest
from cargohold.formats import MediaType
from tests.support.requirements import require_module

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import RunningRegistry
from .images import build_image, multiarch, write_layout

oras_client = require_module("oras.client", "oras")
oras_oci = require_module("oras.oci", "oras")

SBOM = "application/spdx+json"
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"


def push_image(client: RegistryClient, registry: RunningRegistry, tmp_path: Path, tag: str = "v1",
               index: bool = False) -> Reference:
    """A small image (or a two-platform index) in a fresh repository; its reference by tag."""
    image = multiarch() if index else build_image((1500,))
    layout = write_layout(tmp_path / f"image-{tag}-{index}", image, tag)
    ref = Reference.parse(registry.ref(registry.repo("art"), tag))
    push(client, OCILayout(layout.path), tag, ref, all_platforms=True)
    return ref


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_push_with_a_subject_and_pull_back_by_title(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = push_image(client, registry, tmp_path)
    sbom = write(tmp_path / "in" / "sbom.spdx.json", b'{"spdxVersion": "SPDX-2.3"}')
    notes = write(tmp_path / "in" / "notes.txt", os.urandom(300_000))
    target = Reference(image.registry, image.repository, "sbom", None)
    pushed = push_artifact(client, target, [ArtifactFile.parse(f"{sbom}:{SBOM}"), ArtifactFile.parse(str(notes))],
                           SBOM, subject=image, annotations={"org.example.tool": "test"})
    document = json.loads(client.get_manifest(target).raw)
    assert pushed.digest == Digest.of(client.get_manifest(target).raw)
    assert document["mediaType"] == MediaType.OCI_MANIFEST and document["artifactType"] == SBOM
    assert document["config"] == {"mediaType": MediaType.OCI_EMPTY, "digest": str(Digest.of(b"{}")), "size": 2}
    assert [(layer["mediaType"], layer["annotations"][TITLE]) for layer in document["layers"]] == [
        (SBOM, "sbom.spdx.json"), ("application/vnd.oci.image.layer.v1.tar", "notes.txt")]
    subject = client.head_manifest(image)
    assert document["subject"] == {"mediaType": subject.media_type, "digest": str(subject.digest),
                                   "size": subject.size}
    assert document["annotations"] == {"org.example.tool": "test"}
    pulled = pull_artifact(client, target, tmp_path / "out")
    assert sorted(t for t, _, _ in pulled.files) == ["notes.txt", "sbom.spdx.json"]
    assert (tmp_path / "out" / "notes.txt").read_bytes() == notes.read_bytes()
    assert (tmp_path / "out" / "sbom.spdx.json").read_bytes() == sbom.read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["notes.txt", "sbom.spdx.json"]  # no staging left


def test_an_artifact_without_files_or_tag_is_pushed_by_digest_with_the_empty_layer(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = push_image(client, registry, tmp_path)
    target = Reference(image.registry, image.repository, None, None)
    pushed = push_artifact(client, target, [], "application/vnd.example.reviewed", subject=image)
    assert pushed.reference.digest == pushed.digest
    document = json.loads(client.get_manifest(pushed.reference).raw)
    assert document["layers"] == [{"mediaType": MediaType.OCI_EMPTY, "digest": str(Digest.of(b"{}")), "size": 2}]
    kept = [] if registry.kind == "cargohold" else ["sha256-" + client.head_manifest(image).digest.hex]
    assert sorted(client.tags(target)) == sorted(["v1", *kept])  # Distribution: the tag schema's index


def _push_titled(client: RegistryClient, target: Reference, titles: list[str]) -> None:
    """An artifact whose layers carry ``titles`` as they are (as a hostile publisher would write them)."""
    empty = Digest.of(b"{}")
    client.upload_blob(target, empty, 2, [b"{}"])
    layers = []
    for i, title in enumerate(titles):
        data = f"content {i}\n".encode()
        client.upload_blob(target, Digest.of(data), len(data), [data])
        layers.append({"mediaType": "text/plain", "digest": str(Digest.of(data)), "size": len(data),
                       "annotations": {TITLE: title}})
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": MediaType.OCI_MANIFEST,
                                "artifactType": "text/plain",
                                "config": {"mediaType": MediaType.OCI_EMPTY, "digest": str(empty), "size": 2},
                                "layers": layers}
    client.put_manifest(target, json.dumps(document).encode(), MediaType.OCI_MANIFEST)


@pytest.mark.parametrize("title", ["../escaped.txt", "/tmp/absolute.txt", "sub/../../escaped.txt",
                                   "link/escaped.txt", "file-link", "", "sub/..", "."])
def test_pull_refuses_a_title_that_leaves_the_directory_and_writes_nothing(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, title: str
) -> None:
    target = Reference.parse(registry.ref(registry.repo("hostile"), "evil"))
    _push_titled(client, target, ["good.txt", title])
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = write(outside / "victim.txt", b"untouched\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    (out / "file-link").symlink_to(victim)
    with pytest.raises(ValueError, match="title"):
        pull_artifact(client, target, out)
    assert sorted(p.name for p in out.iterdir()) == ["file-link", "link"]
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert victim.read_bytes() == b"untouched\n"
    assert not (tmp_path / "escaped.txt").exists() and not Path("/tmp/absolute.txt").exists()
    if "link" not in title:  # refused by its text alone: a directory that is not there yet is not made
        with pytest.raises(ValueError, match="title"):
            pull_artifact(client, target, tmp_path / "new")
        assert not (tmp_path / "new").exists()


def test_pull_refuses_an_index_and_two_layers_with_one_title(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    index = push_image(client, registry, tmp_path, index=True)
    with pytest.raises(ClientError, match="is an index"):
        pull_artifact(client, index, tmp_path / "out")
    target = Reference(index.registry, index.repository, "twice", None)
    _push_titled(client, target, ["same.txt", "./same.txt"])
    with pytest.raises(ValueError, match="two layers"):
        pull_artifact(client, target, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    target = Reference(index.registry, index.repository, "nested", None)
    _push_titled(client, target, ["docs/readme.txt"])
    assert [p for _, p, _ in pull_artifact(client, target, tmp_path / "out").files] == \
        [tmp_path / "out" / "docs" / "readme.txt"]


def test_oras_py_pulls_what_artifact_push_wrote(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    image = push_image(client, registry, tmp_path)
    report = write(tmp_path / "in" / "report.json", b'{"vulnerabilities": []}')
    blob = write(tmp_path / "in" / "data.bin", os.urandom(200_000))
    target = Reference(image.registry, image.repository, "scan", None)
    push_artifact(client, target, [ArtifactFile.parse(f"{report}:application/json"), ArtifactFile.parse(str(blob))],
                  "application/vnd.example.scan", subject=image)
    oras = oras_client.OrasClient(hostname=registry.host, insecure=True)
    pulled = oras.pull(target=str(target), outdir=str(tmp_path / "oras-out"))
    assert sorted(Path(p).name for p in pulled) == ["data.bin", "report.json"]
    assert (tmp_path / "oras-out" / "data.bin").read_bytes() == blob.read_bytes()
    assert (tmp_path / "oras-out" / "report.json").read_bytes() == report.read_bytes()
    assert oras.get_manifest(str(target))["subject"]["digest"] == str(client.head_manifest(image).digest)


# the CLI


def test_cli_artifact_push_pull_and_referrers_json(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = push_image(client, registry, tmp_path)
    sbom = write(tmp_path / "in" / "sbom.json", b'{"spdxVersion": "SPDX-2.3"}')
    repo = f"{image.registry}/{image.repository}"
    code, out, err = run(capsys, "artifact", "push", repo, f"{sbom}:{SBOM}", "--artifact-type", SBOM,
                         "--subject", str(image), "--annotation", "org.example.k=v=w", "--json")
    assert code == 0, err
    pushed = json.loads(out)
    assert pushed["artifactType"] == SBOM and pushed["subject"]["digest"] == str(client.head_manifest(image).digest)
    assert pushed["reference"] == f"{repo}@{pushed['digest']}"
    document = json.loads(client.get_manifest(Reference.parse(pushed["reference"])).raw)
    assert document["annotations"] == {"org.example.k": "v=w"}
    code, out, err = run(capsys, "artifact", "push", f"{repo}:sig", "--artifact-type", SIGNATURE,
                         "--subject", f"@{pushed['digest']}", "--json")
    assert code == 0, err
    signature = json.loads(out)
    assert signature["subject"]["digest"] == pushed["digest"]

    code, out, err = run(capsys, "artifact", "pull", pushed["reference"], "-o", str(tmp_path / "out"), "--json")
    assert code == 0, err
    assert [f["title"] for f in json.loads(out)["files"]] == ["sbom.json"]
    assert (tmp_path / "out" / "sbom.json").read_bytes() == sbom.read_bytes()

    code, out, err = run(capsys, "referrers", str(image), "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed["mediaType"] == MediaType.OCI_INDEX and listed["schemaVersion"] == 2
    assert listed["via"] == ("api" if registry.kind == "cargohold" else "tag")
    assert [(d["digest"], d["artifactType"]) for d in listed["manifests"]] == [(pushed["digest"], SBOM)]
    code, out, err = run(capsys, "referrers", f"{repo}@{pushed['digest']}", "--artifact-type", SIGNATURE, "--json")
    assert code == 0, err
    assert [d["digest"] for d in json.loads(out)["manifests"]] == [signature["digest"]]
    code, out, err = run(capsys, "referrers", f"{repo}@{pushed['digest']}", "--artifact-type", SBOM, "--json")
    assert code == 0 and json.loads(out)["manifests"] == []
    code, out, err = run(capsys, "referrers", str(image))
    assert code == 0 and pushed["digest"] in out and SBOM in out and out.startswith("DIGEST")


def test_cli_errors_are_one_line(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = push_image(client, registry, tmp_path)
    index = push_image(client, registry, tmp_path, "idx", index=True)
    repo = f"{image.registry}/{image.repository}"
    present = write(tmp_path / "present.txt", b"x")
    missing_subject = f"{repo}@sha256:{'0' * 64}"
    cases = {
        "no such manifest": ["artifact", "push", repo, str(present), "--artifact-type", SBOM,
                             "--subject", missing_subject],
        "no such file": ["artifact", "push", repo, str(tmp_path / "absent.txt"), "--artifact-type", SBOM],
        "not a media type": ["artifact", "push", repo, f"{present}:not-a-type/", "--artifact-type", SBOM],
        "--artifact-type 'spdx' is not a media type": ["artifact", "push", repo, str(present),
                                                       "--artifact-type", "spdx"],
        "is not KEY=VALUE": ["artifact", "push", repo, str(present), "--artifact-type", SBOM,
                             "--annotation", "novalue"],
        "is not in": ["artifact", "push", repo, str(present), "--artifact-type", SBOM,
                      "--subject", f"{registry.host}/elsewhere/repo:v1"],
        "not to a digest": ["artifact", "push", f"{repo}@{client.head_manifest(image).digest}", str(present),
                            "--artifact-type", SBOM],
        "is an index": ["artifact", "pull", str(index), "-o", str(tmp_path / "out")],
        "between registries only": ["copy", "--referrers", str(image), f"oci:{tmp_path / 'layout'}"],
    }
    for expected, argv in cases.items():
        code, out, err = run(capsys, *argv)
        assert code == 1, (argv, out, err)
        assert err.count("\n") == 1 and err.startswith("cargohold: error: ") and expected in err, (argv, err)
        assert "Traceback" not in err and out == ""
    assert not (tmp_path / "out").exists() and not (tmp_path / "layout").exists()
    assert client.tags(image) == ["v1"]  # nothing was pushed, no tag schema index either
