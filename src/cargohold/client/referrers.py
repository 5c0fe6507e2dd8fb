"""The manifests that refer to a manifest (signatures, SBOMs, attestations): the OCI referrers API, or
on a registry without it (404, as Distribution 2.8 answers) the referrers tag schema of OCI 1.1: an index
tagged ``<algorithm>-<hex>`` of the subject. Cosign's own tags (``sha256-<hex>.sig``, ``.att``, ``.sbom``)
are not referrers; :func:`cosign_tags` names them.
"""

from __future__ import annotations

import json
from typing import Final

from ..digest import Digest
from ..formats import Descriptor, ManifestError
from ..reference import Reference
from .errors import ClientError, RegistryResponseError, check
from .registry import RegistryClient

OCI_INDEX: Final = "application/vnd.oci.image.index.v1+json"
#: signature artifact types: cosign's and notation's
SIGNATURE_TYPES: Final = frozenset({
    "application/vnd.dev.cosign.artifact.sig.v1+json",
    "application/vnd.cncf.notary.signature",
})
#: the suffixes of cosign's tag scheme (signature, attestation, SBOM)
COSIGN_SUFFIXES: Final = (".sig", ".att", ".sbom")
_PAGES: Final = 100


def fallback_tag(digest: Digest) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256-<hex>``."""
    return f"{digest.algorithm}-{digest.hex}"


def cosign_tags(digest: Digest, tags: set[str] | list[str]) -> list[str]:
    """Those of ``tags`` that cosign's tag scheme attaches to ``digest`` (``sha256-<hex>.sig``...)."""
    base = fallback_tag(digest)
    return sorted(t for t in tags if t in {base + s for s in COSIGN_SUFFIXES})


def _descriptors(raw: bytes, where: str) -> list[Descriptor]:
    try:
        document = json.loads(raw)
        entries = document.get("manifests") or [] if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ManifestError("manifests is not a list")
        return [Descriptor.from_json(entry, f"manifests[{i}]") for i, entry in enumerate(entries)]
    except (ValueError, ManifestError) as exc:
        raise ClientError(f"{where}: not an image index ({exc})") from None


def referrers(client: RegistryClient, repository: Reference, subject: Digest,
              artifact_type: str | None = None) -> list[Descriptor]:
    """The descriptors of the manifests in ``repository`` whose ``subject`` is ``subject`` (those of
    ``artifact_type`` only, if given), by the referrers API, else by the tag schema."""
    path: str | None = f"/v2/{repository.repository}/referrers/{subject}"
    params = {"artifactType": artifact_type} if artifact_type else None
    found: list[Descriptor] = []
    for _ in range(_PAGES):
        if path is None:
            break
        response = client.request("GET", repository.registry, path, params=params,
                                  headers={"Accept": OCI_INDEX})
        if response.status_code == 404 and not found:
            return _by_tag(client, repository, subject, artifact_type)
        check(response, 200)
        found += _descriptors(response.content, f"referrers of {subject}")
        following = response.links.get("next", {}).get("url")
        path, params = (following, None) if following else (None, params)
    return [d for d in found if artifact_type is None or d.artifact_type == artifact_type]


def _by_tag(client: RegistryClient, repository: Reference, subject: Digest,
            artifact_type: str | None) -> list[Descriptor]:
    try:
        index = client.get_manifest(repository.with_tag(fallback_tag(subject)), accept=OCI_INDEX)
    except RegistryResponseError as exc:
        if exc.status == 404:
            return []
        raise
    found = _descriptors(index.raw, f"{repository.with_tag(fallback_tag(subject))}")
    return [d for d in found if artifact_type is None or d.artifact_type == artifact_type]
