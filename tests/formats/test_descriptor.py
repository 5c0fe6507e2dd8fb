"""Descriptor and Platform: strict reading, field-naming errors, JSON round trips."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from cargohold.digest import Digest
from cargohold.formats import Descriptor, ManifestError, MediaType, Platform

from ._builders import descriptor, digest_of


def test_minimal_descriptor() -> None:
    desc = Descriptor.from_json(descriptor("layer"), "layers[0]")
    assert desc == Descriptor(MediaType.OCI_LAYER_GZIP, Digest.parse(digest_of("layer")), 5)
    assert desc.urls == ()
    assert desc.annotations is None
    assert desc.platform is None


def test_full_descriptor_round_trips() -> None:
    doc = descriptor(
        "child",
        MediaType.OCI_MANIFEST,
        urls=["https://example.com/a"],
        annotations={"org.example": "yes"},
        artifactType="application/vnd.example+json",
        platform={
            "architecture": "arm64",
            "os": "linux",
            "os.version": "6.1",
            "os.features": ["f1"],
            "variant": "v8",
        },
    )
    desc = Descriptor.from_json(doc, "manifests[0]")
    assert desc.urls == ("https://example.com/a",)
    assert desc.annotations == {"org.example": "yes"}
    assert desc.artifact_type == "application/vnd.example+json"
    assert desc.platform == Platform("arm64", "linux", "v8", "6.1", ("f1",))
    assert desc.to_json() == doc


def test_to_json_omits_empty_optional_fields() -> None:
    desc = Descriptor(MediaType.OCI_CONFIG, Digest.parse(digest_of("c")), 7, annotations={})
    assert desc.to_json() == {"mediaType": MediaType.OCI_CONFIG, "digest": digest_of("c"), "size": 7}


def test_unknown_fields_are_ignored() -> None:
    # OCI 1.1 "data" and future fields must not make a manifest unpushable
    desc = Descriptor.from_json(descriptor("x", data="eA==", future=1), "config")
    assert desc.size == 1


def test_descriptor_is_frozen() -> None:
    desc = Descriptor.from_json(descriptor("x"), "config")
    with pytest.raises(dataclasses.FrozenInstanceError):
        desc.size = 2  # type: ignore[misc]


def _with(**changes: Any) -> dict[str, Any]:
    doc = descriptor("layer")
    for key, value in changes.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("not an object", "layers[2]: must be an object, not string"),
        ([1], "layers[2]: must be an object, not array"),
        (_with(mediaType=...), "layers[2].mediaType: required field is missing"),
        (_with(mediaType=7), "layers[2].mediaType: must be a string, not number"),
        (_with(digest=...), "layers[2].digest: required field is missing"),
        (_with(digest="sha256:xyz"), "layers[2].digest: invalid sha256 digest"),
        (_with(digest="not a digest"), "layers[2].digest: invalid digest"),
        (_with(digest="md5:" + "0" * 32), "layers[2].digest: unsupported digest algorithm"),
        (_with(digest="sha256:" + "A" * 64), "layers[2].digest: invalid sha256 digest"),
        (_with(size=...), "layers[2].size: required field is missing"),
        (_with(size=-1), "layers[2].size: must not be negative, got -1"),
        (_with(size=True), "layers[2].size: must be an integer, not boolean"),
        (_with(size=1.5), "layers[2].size: must be an integer, not number"),
        (_with(size="5"), "layers[2].size: must be an integer, not string"),
        (_with(size=2**63), "layers[2].size: 9223372036854775808 exceeds"),
        (_with(urls="https://x"), "layers[2].urls: must be an array, not string"),
        (_with(urls=["ok", 3]), "layers[2].urls[1]: must be a string, not number"),
        (_with(annotations=["a"]), "layers[2].annotations: must be an object, not array"),
        (_with(annotations={"a": 1}), "layers[2].annotations['a']: must be a string, not number"),
        (_with(artifactType=False), "layers[2].artifactType: must be a string, not boolean"),
        (_with(platform="linux"), "layers[2].platform: must be an object, not string"),
        (_with(platform={"os": "linux"}), "layers[2].platform.architecture: required field is missing"),
        (
            _with(platform={"os": "linux", "architecture": "amd64", "os.features": "x"}),
            "layers[2].platform.os.features: must be an array",
        ),
    ],
)
def test_invalid_descriptors_name_the_field(doc: object, message: str) -> None:
    with pytest.raises(ManifestError) as excinfo:
        Descriptor.from_json(doc, "layers[2]")
    assert str(excinfo.value).startswith(message)


def test_null_optional_fields_read_as_absent() -> None:
    desc = Descriptor.from_json(_with(urls=None, annotations=None, artifactType=None, platform=None), "x")
    assert (desc.urls, desc.annotations, desc.artifact_type, desc.platform) == ((), None, None, None)


@pytest.mark.parametrize(
    ("platform", "text"),
    [
        (Platform("arm64", "linux", "v8"), "linux/arm64/v8"),
        (Platform("amd64", "linux"), "linux/amd64"),
        (Platform("amd64", "windows", os_version="10.0.17763.1879"), "windows/amd64"),
    ],
)
def test_platform_str(platform: Platform, text: str) -> None:
    assert str(platform) == text


def test_platform_round_trip() -> None:
    doc = {"architecture": "amd64", "os": "windows", "os.version": "10.0", "os.features": ["win32k"]}
    platform = Platform.from_json(doc, "platform")
    assert platform.os_features == ("win32k",)
    assert platform.to_json() == doc
    assert Platform("amd64", "linux").to_json() == {"architecture": "amd64", "os": "linux"}
