"""parse_manifest: media type resolution, per-type validation, and the derived views."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from cargohold.digest import Digest
from cargohold.formats import (
    Descriptor,
    Manifest,
    ManifestError,
    ManifestSignatureError,
    MediaType,
    Platform,
    parse_manifest,
)

from ._builders import CONFIG, LAYER, descriptor, digest_of, encode, oci_index, oci_manifest, schema1_payload

DATA = Path(__file__).parent / "data"


def golden(name: str) -> bytes:
    return (DATA / name).read_bytes()


# -- every media type ---------------------------------------------------------


def test_oci_manifest() -> None:
    raw = golden("oci-manifest.json")
    manifest = parse_manifest(raw, "application/vnd.oci.image.manifest.v1+json")
    assert manifest.media_type == MediaType.OCI_MANIFEST
    assert type(manifest.media_type) is str
    assert manifest.raw is raw
    assert manifest.payload == raw
    assert manifest.digest == Digest("sha256", hashlib.sha256(raw).hexdigest())
    assert manifest.schema_version == 2
    assert manifest.config is not None
    assert manifest.config.media_type == MediaType.OCI_CONFIG
    assert manifest.config.size == 1470
    assert [layer.size for layer in manifest.layers] == [3370706, 1024]
    assert manifest.layers[1].urls == ("https://example.com/layer1.tar.gz",)
    assert manifest.manifests == ()
    assert manifest.subject is None
    assert manifest.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    assert not manifest.is_index
    assert (manifest.name, manifest.tag, manifest.architecture) == (None, None, None)


def test_oci_artifact_with_subject() -> None:
    manifest = parse_manifest(golden("oci-artifact.json"), None)
    assert manifest.media_type == MediaType.OCI_MANIFEST
    assert manifest.artifact_type == "application/vnd.example.sbom.v1+json"
    assert manifest.subject == Descriptor(MediaType.OCI_MANIFEST, Digest.parse(digest_of("subject")), 528)
    assert manifest.config is not None and manifest.config.media_type == MediaType.OCI_EMPTY


def test_oci_index() -> None:
    manifest = parse_manifest(golden("oci-index.json"), "application/vnd.oci.image.index.v1+json")
    assert manifest.media_type == MediaType.OCI_INDEX
    assert manifest.is_index
    assert manifest.config is None and manifest.layers == ()
    assert [str(child.platform) for child in manifest.manifests] == ["linux/amd64", "linux/arm64/v8"]
    assert manifest.annotations == {"org.opencontainers.image.ref.name": "1.0"}


def test_docker_manifest() -> None:
    raw = golden("docker-manifest.json")
    manifest = parse_manifest(raw, "application/vnd.docker.distribution.manifest.v2+json")
    assert manifest.media_type == MediaType.DOCKER_MANIFEST
    assert manifest.config is not None and manifest.config.media_type == MediaType.DOCKER_CONFIG
    assert [layer.media_type for layer in manifest.layers] == [
        MediaType.DOCKER_LAYER,
        MediaType.DOCKER_FOREIGN_LAYER,
    ]
    assert manifest.digest == Digest.of(raw)


def test_docker_manifest_list() -> None:
    manifest = parse_manifest(golden("docker-manifest-list.json"), None)
    assert manifest.media_type == MediaType.DOCKER_MANIFEST_LIST
    assert manifest.is_index
    assert manifest.manifests[1].platform == Platform(
        "amd64", "windows", os_version="10.0.17763.1879", os_features=("win32k",)
    )


def test_unsigned_schema1_when_explicitly_labelled() -> None:
    raw = encode(schema1_payload())
    manifest = parse_manifest(raw, "application/vnd.docker.distribution.manifest.v1+json")
    assert manifest.media_type == MediaType.DOCKER_SCHEMA1
    assert manifest.schema_version == 1
    assert manifest.digest == Digest.of(raw)
    assert (manifest.name, manifest.tag, manifest.architecture) == ("library/hello", "latest", "amd64")
    assert [str(layer.digest) for layer in manifest.layers] == [digest_of("top"), digest_of("base")]
    assert {layer.size for layer in manifest.layers} == {-1}
    assert {layer.media_type for layer in manifest.layers} == {MediaType.DOCKER_LAYER}
    assert manifest.config is None


def test_bytes_are_kept_exactly() -> None:
    # odd whitespace and key order survive: nothing is re-serialized
    raw = b'  {"layers":[],   "config":' + json.dumps(CONFIG).encode() + b',"schemaVersion":2}\n\n'
    manifest = parse_manifest(raw, MediaType.OCI_MANIFEST)
    assert manifest.raw == raw
    assert manifest.digest == Digest.of(raw)
    assert manifest.layers == ()


def test_manifest_is_frozen() -> None:
    manifest = parse_manifest(encode(oci_manifest()), None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        manifest.raw = b"{}"  # type: ignore[misc]


# -- deciding the media type ---------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
        "Application/VND.oci.image.manifest.v1+JSON",
        "application/json",
    ],
)
def test_content_type_agreeing_or_silent(content_type: str | None) -> None:
    assert parse_manifest(encode(oci_manifest()), content_type).media_type == MediaType.OCI_MANIFEST


def test_media_type_field_and_content_type_must_agree() -> None:
    with pytest.raises(ManifestError, match="mediaType .*oci.image.manifest.* does not match Content-Type"):
        parse_manifest(encode(oci_manifest()), "application/vnd.oci.image.index.v1+json")


def test_content_type_decides_without_media_type_field() -> None:
    doc = oci_manifest()
    del doc["mediaType"]
    assert parse_manifest(encode(doc), MediaType.OCI_MANIFEST).media_type == MediaType.OCI_MANIFEST
    # ...and the document must then fit what the header says
    with pytest.raises(ManifestError, match="config: not allowed in an index"):
        parse_manifest(encode(doc), MediaType.OCI_INDEX)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({k: v for k, v in oci_manifest().items() if k != "mediaType"}, MediaType.OCI_MANIFEST),
        ({k: v for k, v in oci_index().items() if k != "mediaType"}, MediaType.OCI_INDEX),
    ],
)
def test_media_type_inferred_from_shape(doc: dict[str, Any], expected: str) -> None:
    # a non-manifest Content-Type is no help either, so the shape decides
    for content_type in (None, "application/octet-stream"):
        assert parse_manifest(encode(doc), content_type).media_type == expected


def test_schema_version_1_is_inferred_as_signed_schema1() -> None:
    with pytest.raises(ManifestSignatureError, match="no signatures"):
        parse_manifest(encode(schema1_payload()), None)
    with pytest.raises(ManifestSignatureError, match="no signatures"):
        parse_manifest(encode(schema1_payload()), "application/json")


@pytest.mark.parametrize(
    ("raw", "content_type", "message"),
    [
        (encode(oci_manifest(mediaType="application/vnd.oci.image.config.v1+json")), None, "unsupported"),
        (encode(oci_manifest(mediaType="text/plain")), "text/plain", "unsupported manifest media type"),
        (encode({"schemaVersion": 2}), None, "cannot tell the manifest's media type"),
        (encode({"schemaVersion": 2}), "application/vnd.example+json", "cannot tell"),
    ],
)
def test_unknown_media_types(raw: bytes, content_type: str | None, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(raw, content_type)


# -- malformed manifests -------------------------------------------------------


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


MALFORMED: list[tuple[bytes, str | None, str]] = [
    (b"", None, "manifest is not valid JSON"),
    (b"{not json", None, "manifest is not valid JSON"),
    (b'{"schemaVersion": 2,}', None, "manifest is not valid JSON"),
    (b"\xff\xfe{}", None, "manifest is not UTF-8"),
    (b"[1, 2]", None, "manifest must be a JSON object, not array"),
    (b'"text"', None, "manifest must be a JSON object, not string"),
    (b"null", None, "manifest must be a JSON object, not null"),
    (b'{"schemaVersion": NaN}', None, "NaN is not valid JSON"),
    (b'{"schemaVersion": 2, "schemaVersion": 2}', None, "duplicate key 'schemaVersion'"),
    (encode(oci_manifest(mediaType=2)), None, "mediaType: must be a string, not number"),
    (encode(oci_manifest(schemaVersion=1)), None, "schemaVersion: must be 2, got 1"),
    (encode(oci_manifest(schemaVersion=3)), None, "schemaVersion: must be 2, got 3"),
    (encode(oci_manifest(schemaVersion="2")), None, "schemaVersion: must be an integer, not string"),
    (encode(oci_manifest(schemaVersion=True)), None, "schemaVersion: must be an integer, not boolean"),
    (encode(_without(oci_manifest(), "schemaVersion")), None, "schemaVersion: required field is missing"),
    (encode(_without(oci_manifest(), "config")), None, "config: required field is missing"),
    (encode(oci_manifest(config=None)), None, "config: must be an object, not null"),
    (encode(_without(oci_manifest(), "layers")), MediaType.OCI_MANIFEST, "layers: required field is missing"),
    (encode(oci_manifest(layers={})), None, "layers: must be an array, not object"),
    (
        encode(oci_manifest(layers=[LAYER, {**LAYER, "digest": "sha256:1234"}])),
        None,
        "layers[1].digest: invalid sha256 digest 'sha256:1234'",
    ),
    (encode(oci_manifest(layers=[{**LAYER, "size": -5}])), None, "layers[0].size: must not be negative"),
    (encode(oci_manifest(layers=[{**LAYER, "size": False}])), None, "layers[0].size: must be an integer"),
    (encode(oci_manifest(config={**CONFIG, "digest": 5})), None, "config.digest: must be a string"),
    (encode(oci_manifest(subject="sha256:abc")), None, "subject: must be an object, not string"),
    (encode(oci_manifest(artifactType=1)), None, "artifactType: must be a string, not number"),
    (encode(oci_manifest(annotations={"a": None})), None, "annotations['a']: must be a string, not null"),
    (encode(oci_manifest(manifests=[])), None, "manifests: not allowed in an image manifest"),
    (encode(_without(oci_index(), "manifests")), None, "manifests: required field is missing"),
    (encode(oci_index(manifests=[descriptor("a"), "sha256:abc"])), None, "manifests[1]: must be an object"),
    (encode(oci_index(manifests=[{"digest": digest_of("a")}])), None, "manifests[0].mediaType: required"),
    (encode(oci_index(config=CONFIG)), None, "config: not allowed in an index"),
    (encode(oci_index(layers=[])), None, "layers: not allowed in an index"),
    (encode(oci_index(schemaVersion=1)), None, "schemaVersion: must be 2, got 1"),
    (
        encode(oci_index(mediaType=MediaType.DOCKER_MANIFEST_LIST, manifests=[descriptor("a")])),
        None,
        "manifests[0].platform: required field is missing",
    ),
    (
        encode(_without(oci_manifest(mediaType=MediaType.DOCKER_MANIFEST), "mediaType")),
        MediaType.DOCKER_MANIFEST,
        "mediaType: required field is missing",
    ),
    (
        encode(_without(oci_manifest(mediaType=MediaType.DOCKER_MANIFEST), "config")),
        None,
        "config: required field is missing",
    ),
    (
        encode(_without(oci_index(mediaType=MediaType.DOCKER_MANIFEST_LIST), "mediaType")),
        MediaType.DOCKER_MANIFEST_LIST,
        "mediaType: required field is missing",
    ),
]


@pytest.mark.parametrize(("raw", "content_type", "message"), MALFORMED)
def test_malformed_manifests(raw: bytes, content_type: str | None, message: str) -> None:
    with pytest.raises(ManifestError) as excinfo:
        parse_manifest(raw, content_type)
    assert message in str(excinfo.value)
    assert not isinstance(excinfo.value, ManifestSignatureError)


SCHEMA1 = MediaType.DOCKER_SCHEMA1


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (schema1_payload(schemaVersion=2), "schemaVersion: must be 1, got 2"),
        (_without(schema1_payload(), "name"), "name: required field is missing"),
        (schema1_payload(tag=None), "tag: must be a string, not null"),
        (_without(schema1_payload(), "fsLayers"), "fsLayers: required field is missing"),
        (schema1_payload(history=[]), "history has 0 entries but fsLayers has 2"),
        (schema1_payload(fsLayers=[{"blobSum": "sha256:00"}, {}]), "fsLayers[0].blobSum: invalid sha256"),
        (schema1_payload(fsLayers=[{"blobSum": digest_of("a")}, {}]), "fsLayers[1].blobSum: required"),
        (schema1_payload(history=[{"v1Compatibility": "{}"}, {}]), "history[1].v1Compatibility: required"),
        (schema1_payload(architecture=64), "architecture: must be a string, not number"),
    ],
)
def test_malformed_schema1(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message.replace("[", r"\[")):
        parse_manifest(encode(doc), SCHEMA1)


# -- references ---------------------------------------------------------------


def test_references_skip_non_distributable_layers() -> None:
    manifest = parse_manifest(golden("oci-manifest.json"), None)
    assert manifest.config is not None
    assert manifest.references == (manifest.config, manifest.layers[0])


def test_references_skip_foreign_docker_layers() -> None:
    manifest = parse_manifest(golden("docker-manifest.json"), None)
    assert [d.media_type for d in manifest.references] == [MediaType.DOCKER_CONFIG, MediaType.DOCKER_LAYER]


def test_references_of_every_non_distributable_type_are_skipped() -> None:
    kinds = [
        MediaType.OCI_LAYER_NONDISTRIBUTABLE,
        MediaType.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        MediaType.OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
        MediaType.DOCKER_FOREIGN_LAYER,
    ]
    layers = [descriptor(str(kind), kind) for kind in kinds]
    manifest = parse_manifest(encode(oci_manifest(layers=layers)), None)
    assert len(manifest.layers) == 4
    assert manifest.references == (manifest.config,)


def test_references_include_artifact_layers_but_not_subject() -> None:
    manifest = parse_manifest(golden("oci-artifact.json"), None)
    assert manifest.subject is not None
    assert manifest.subject not in manifest.references
    assert [d.media_type for d in manifest.references] == [
        MediaType.OCI_EMPTY,
        "application/vnd.example.sbom.v1+json",
    ]


def test_references_are_deduplicated_in_order() -> None:
    manifest = parse_manifest(encode(oci_manifest(layers=[LAYER, descriptor("b"), LAYER])), None)
    assert [str(d.digest) for d in manifest.references] == [CONFIG["digest"], LAYER["digest"], digest_of("b")]


def test_references_of_an_index_are_its_children() -> None:
    manifest = parse_manifest(golden("oci-index.json"), None)
    assert manifest.references == manifest.manifests


def test_references_of_schema1_are_its_fs_layers() -> None:
    layers = [{"blobSum": digest_of(n)} for n in ("empty", "top", "empty")]
    history = [{"v1Compatibility": "{}"}] * 3
    manifest = parse_manifest(encode(schema1_payload(fsLayers=layers, history=history)), SCHEMA1)
    assert manifest.references == (
        Descriptor(MediaType.DOCKER_LAYER, Digest.parse(digest_of("empty")), -1),
        Descriptor(MediaType.DOCKER_LAYER, Digest.parse(digest_of("top")), -1),
    )


# -- referrers -------------------------------------------------------------------


def test_referrer_artifact_type_prefers_artifact_type() -> None:
    manifest = parse_manifest(golden("oci-artifact.json"), None)
    assert manifest.referrer_artifact_type == "application/vnd.example.sbom.v1+json"


def test_referrer_artifact_type_falls_back_to_config_media_type() -> None:
    doc = oci_manifest(config=descriptor("sig", "application/vnd.example.signature.config+json"))
    manifest = parse_manifest(encode(doc), None)
    assert manifest.artifact_type is None
    assert manifest.referrer_artifact_type == "application/vnd.example.signature.config+json"
    docker = parse_manifest(golden("docker-manifest.json"), None)
    assert docker.referrer_artifact_type == MediaType.DOCKER_CONFIG


def test_referrer_artifact_type_of_an_index() -> None:
    assert parse_manifest(golden("oci-index.json"), None).referrer_artifact_type is None
    doc = oci_index(artifactType="application/vnd.example.bundle")
    assert parse_manifest(encode(doc), None).referrer_artifact_type == "application/vnd.example.bundle"


def test_referrer_artifact_type_of_schema1_is_none() -> None:
    assert parse_manifest(encode(schema1_payload()), SCHEMA1).referrer_artifact_type is None


def test_descriptor_of_a_manifest() -> None:
    raw = golden("oci-artifact.json")
    manifest = parse_manifest(raw, None)
    assert manifest.descriptor() == Descriptor(
        media_type=MediaType.OCI_MANIFEST,
        digest=Digest.of(raw),
        size=len(raw),
        annotations={"org.example.kind": "sbom"},
        artifact_type="application/vnd.example.sbom.v1+json",
    )
    assert "annotations" not in parse_manifest(encode(oci_manifest()), None).descriptor().to_json()


def test_manifest_can_be_built_directly() -> None:
    # the client builds views of manifests it composes; defaults must make that easy
    raw = encode(oci_index(manifests=[]))
    manifest = Manifest(MediaType.OCI_INDEX, raw, Digest.of(raw), raw, 2)
    assert manifest.references == ()
    assert manifest == parse_manifest(raw, None)


def test_nesting_is_bounded() -> None:
    """8 KB of nested arrays raised RecursionError; the bound keeps it a ManifestError."""
    deep = "[" * 2000 + "]" * 2000
    with pytest.raises(ManifestError, match="nested more than 64 levels"):
        parse_manifest(encode(oci_manifest())[:-1] + f',"extra":{deep}}}'.encode())
    nested = "[" * 63 + "]" * 63  # 64 levels with the manifest itself
    assert parse_manifest(encode(oci_manifest())[:-1] + f',"extra":{nested}}}'.encode()).layers


@pytest.mark.parametrize("key, build", [("layers", oci_manifest), ("manifests", oci_index)])
def test_descriptor_count_is_bounded(key: str, build: Any) -> None:
    doc = build()
    doc[key] = doc[key] * 10_000
    assert len(getattr(parse_manifest(encode(doc)), key)) == 10_000
    doc[key].append(doc[key][0])
    with pytest.raises(ManifestError, match=f"{key}: 10001 entries, more than the 10000 allowed"):
        parse_manifest(encode(doc))
