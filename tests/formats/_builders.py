"""Small, valid manifest documents for the format tests to start from and break."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cargohold.formats import MediaType


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


CONFIG = {"mediaType": MediaType.OCI_CONFIG.value, "digest": digest_of("config"), "size": 2}
LAYER = {"mediaType": MediaType.OCI_LAYER_GZIP.value, "digest": digest_of("layer"), "size": 32}


def descriptor(name: str, media_type: str = MediaType.OCI_LAYER_GZIP, **extra: Any) -> dict[str, Any]:
    return {"mediaType": str(media_type), "digest": digest_of(name), "size": len(name), **extra}


def oci_manifest(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_MANIFEST.value,
        "config": dict(CONFIG),
        "layers": [dict(LAYER)],
    }
    doc.update(fields)
    return doc


def oci_index(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MediaType.OCI_INDEX.value,
        "manifests": [
            descriptor("amd64", MediaType.OCI_MANIFEST, platform={"architecture": "amd64", "os": "linux"})
        ],
    }
    doc.update(fields)
    return doc


def schema1_payload(**fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 1,
        "name": "library/hello",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": digest_of("top")}, {"blobSum": digest_of("base")}],
        "history": [{"v1Compatibility": '{"id":"b"}'}, {"v1Compatibility": '{"id":"a"}'}],
    }
    doc.update(fields)
    return doc


def encode(doc: Any) -> bytes:
    return json.dumps(doc, indent=2).encode()
