"""Schema 1 payloads made from an image's config and layers, as Distribution 2.8 makes them."""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any

import pytest

from cargohold.digest import Digest
from cargohold.formats import Descriptor
from cargohold.formats.schema1_image import (
    EMPTY_LAYER,
    EMPTY_LAYER_DIGEST,
    NotAnImage,
    Schema1ConversionError,
    check_convertible,
    schema1_image,
)

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


def layer(name: str, media_type: str = DOCKER_LAYER) -> Descriptor:
    return Descriptor(media_type, Digest.of(name.encode()), 10)


def config(history: list[dict[str, Any]], layers: int, **extra: Any) -> dict[str, Any]:
    return {
        "architecture": "arm64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{i:064x}" for i in range(layers)]},
        "history": history,
        **extra,
    }


def v1_id(*parts: str) -> str:
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()


def test_the_empty_layer_is_the_gzipped_empty_tar_docker_uses() -> None:
    assert gzip.decompress(EMPTY_LAYER) == bytes(1024)
    assert str(EMPTY_LAYER_DIGEST) == "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"


def test_history_newest_first_with_ids_chained_from_the_layers() -> None:
    history = [
        {"created": "2024-01-01T00:00:00Z", "created_by": "ADD a /", "author": "me"},
        {"created": "2024-01-01T00:00:01Z", "created_by": "ENV A=1", "empty_layer": True, "comment": "env"},
        {"created": "2024-01-02T03:04:05Z", "created_by": "ADD b /"},
    ]
    raw = json.dumps(config(history, 2)).encode()
    a, b = layer("a"), layer("b")
    built = schema1_image(raw, [a, b], "library/app", "v1")
    document = json.loads(built.payload)
    assert built.payload.startswith(b'{\n   "schemaVersion": 1,\n   "name": "library/app",\n   "tag": "v1",')
    assert (document["name"], document["tag"], document["architecture"]) == ("library/app", "v1", "arm64")
    assert [f["blobSum"] for f in document["fsLayers"]] == [str(b.digest), str(EMPTY_LAYER_DIGEST), str(a.digest)]
    assert built.blobs == (b.digest, EMPTY_LAYER_DIGEST, a.digest)

    top, middle, bottom = (json.loads(h["v1Compatibility"]) for h in document["history"])
    first = v1_id(a.digest.hex, "")
    second = v1_id(EMPTY_LAYER_DIGEST.hex, first)
    assert bottom == {"id": first, "created": "2024-01-01T00:00:00Z", "container_config": {"Cmd": ["ADD a /"]},
                      "author": "me"}
    assert middle == {"id": second, "parent": first, "comment": "env", "created": "2024-01-01T00:00:01Z",
                      "container_config": {"Cmd": ["ENV A=1"]}, "throwaway": True}
    # the newest: the config without rootfs and history, its id covering the config's bytes too
    expected_top = {k: v for k, v in json.loads(raw).items() if k not in ("rootfs", "history")}
    newest = hashlib.sha256(f"{b.digest.hex} {second} ".encode() + raw).hexdigest()
    assert top == {**expected_top, "id": newest, "parent": second}
    # Go's encoding: struct fields in their order, map keys sorted, compact
    assert document["history"][1]["v1Compatibility"].startswith('{"id":"')
    assert list(top) == sorted(top)
    assert " " not in document["history"][0]["v1Compatibility"].replace("/bin/sh", "")


def test_values_are_written_as_go_writes_them() -> None:
    history = [
        {"created": "2024-01-01T00:00:00.123456789000+00:00", "created_by": "RUN a <b> && c"},
        {"created": "2024-01-01T02:00:00.500+02:00", "created_by": "ADD b"},
        {"empty_layer": True},
        {"created": "2024-01-01T00:00:00Z", "empty_layer": True},
    ]
    members = '"rootfs": {"diff_ids": ["x", "y"]},\n  "Label": "caf\\u00e9 <&>",  "n": 1.50'
    raw = ('{"history": ' + json.dumps(history) + ", " + members + "}").encode()
    built = schema1_image(raw, [layer("a"), layer("b")], "r", "t")
    texts = [h["v1Compatibility"] for h in json.loads(built.payload)["history"]][::-1]
    assert '"created":"2024-01-01T00:00:00.123456789Z"' in texts[0]  # nanoseconds kept, zeros dropped, UTC is Z
    assert '"Cmd":["RUN a \\u003cb\\u003e \\u0026\\u0026 c"]' in texts[0]  # HTML-safe, as Go escapes
    assert '"created":"2024-01-01T02:00:00.5+02:00"' in texts[1]
    assert '"created":"0001-01-01T00:00:00Z"' in texts[2] and texts[2].endswith('"throwaway":true}')
    assert '"Cmd":[""]' in texts[2]
    # the config's own values stay as written (escapes, number forms), compacted and HTML-safe
    assert texts[3].startswith('{"Label":"caf\\u00e9 \\u003c\\u0026\\u003e","id":"')
    assert '"n":1.50' in texts[3] and texts[3].endswith('"throwaway":true}')
    # and the payload itself is Go's MarshalIndent with three spaces, HTML-safe
    assert b"\\\\u003c" in built.payload and b"<" not in built.payload


@pytest.mark.parametrize(
    ("document", "layers", "message"),
    [
        ({"rootfs": {"diff_ids": ["x"]}}, 1, "no history"),
        ({"rootfs": {"diff_ids": ["x"]}, "history": []}, 1, "no history"),
        ({"rootfs": {"diff_ids": ["x", "y"]}, "history": [{}]}, 2, "history has 1 entries with a layer"),
        ({"rootfs": {"diff_ids": ["x"]}, "history": [{}, {}]}, 1, "history has 2 entries with a layer"),
        ({"rootfs": {"diff_ids": []}, "history": [{}]}, 1, "rootfs lists 0 layers, the manifest 1"),
        ({"rootfs": {"diff_ids": ["x"]}, "history": [{"created": "yesterday"}]}, 1, "not an RFC 3339 time"),
        ({"rootfs": {"diff_ids": ["x"]}, "history": [{"created": "2024-02-30T00:00:00Z"}]}, 1, "not a valid time"),
        ({"rootfs": {"diff_ids": ["x"]}, "history": [{"created_by": 5}]}, 1, "created_by: must be a string"),
        ({"rootfs": {"diff_ids": ["x"]}, "history": [{"empty_layer": "no"}]}, 1, "empty_layer: must be true or"),
    ],
)
def test_a_config_that_does_not_fit_is_refused_with_the_reason(
    document: dict[str, Any], layers: int, message: str
) -> None:
    with pytest.raises(Schema1ConversionError, match=message):
        schema1_image(json.dumps(document).encode(), [layer(str(i)) for i in range(layers)], "r", "t")


def test_artifacts_and_foreign_layers_have_no_schema1_form() -> None:
    image_config = Descriptor(DOCKER_CONFIG, Digest.of(b"{}"), 2)
    check_convertible(image_config, [layer("a"), layer("b", "application/vnd.oci.image.layer.v1.tar+zstd")])
    with pytest.raises(NotAnImage, match="artifact .*config is application/vnd.example"):
        check_convertible(Descriptor("application/vnd.example", Digest.of(b"{}"), 2), [layer("a")])
    with pytest.raises(NotAnImage, match="layers\\[0\\] is application/x-sbom"):
        check_convertible(image_config, [layer("a", "application/x-sbom")])
    with pytest.raises(Schema1ConversionError, match="layers\\[1\\] is a foreign layer") as refused:
        check_convertible(image_config, [layer("a"), layer("b", FOREIGN_LAYER)])
    assert not isinstance(refused.value, NotAnImage)
