"""The manifests that refer to a manifest (signatures, SBOMs, attestations): the OCI referrers API, or
on a registry without it (404, as Distribution 2.8 answers) the referrers tag schema of OCI 1.1: an index
tagged ``<algorithm>-<hex>`` of the subject. Cosign's own tags (``sha256-<hex>.sig``, ``.att``, ``.sbom``)
are not referrers; :func:`cosign_tags` names them.

Every push of a manifest goes through :func:`put_manifest`: when the manifest has a ``subject`` and the
registry's answer has no ``OCI-Subject`` header, the registry keeps no referrers of its own, and the client
keeps the tag schema's index (distribution-spec, "Pushing Manifests with Subject"): read it, add the
referrer's descriptor if absent, write it back. :func:`forget` undoes that when a referrer is deleted, and
deletes the tag once its index is empty. The index written is always valid (schemaVersion 2, its media
type, one entry per digest with the referrer's artifactType and annotations), even when the one read was
written by a tool that left duplicates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from ..digest import Digest
from ..formats import Descriptor, Manifest, ManifestError, MediaType, parse_manifest
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
#: the header by which a registry says it recorded a pushed manifest's subject itself
SUBJECT_HEADER: Final = "OCI-Subject"
_PAGES: Final = 100


def fallback_tag(digest: Digest) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256-<hex>``."""
    return f"{digest.algorithm}-{digest.hex}"


def cosign_tags(digest: Digest, tags: set[str] | list[str]) -> list[str]:
    """Those of ``tags`` that cosign's tag scheme attaches to ``digest`` (``sha256-<hex>.sig``...)."""
    base = fallback_tag(digest)
    return sorted(t for t in tags if t in {base + s for s in COSIGN_SUFFIXES})


@dataclass(frozen=True, slots=True)
class Referrers:
    """What refers to a subject, and where it was found: ``"api"`` or ``"tag"`` (the tag schema)."""

    subject: Digest
    manifests: list[Descriptor]
    via: str

    def to_json(self) -> dict[str, object]:
        """The referrers API's index form, with the subject and where the list came from."""
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "subject": str(self.subject), "via": self.via,
                "manifests": [d.to_json() for d in self.manifests]}


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
              artifact_type: str | None = None) -> Referrers:
    """The descriptors of the manifests in ``repository`` whose ``subject`` is ``subject`` (those of
    ``artifact_type`` only, if given), by the referrers API, else by the tag schema."""
    path: str | None = f"/v2/{repository.repository}/referrers/{subject}"
    params = {"artifactType": artifact_type} if artifact_type else None
    found: list[Descriptor] = []
    via = "api"
    for _ in range(_PAGES):
        if path is None:
            break
        response = client.request("GET", repository.registry, path, params=params,
                                  headers={"Accept": OCI_INDEX})
        if response.status_code == 404 and not found:
            found, via = _fallback_index(client, repository, subject) or [], "tag"
            break
        check(response, 200)
        found += _descriptors(response.content, f"referrers of {subject}")
        following = response.links.get("next", {}).get("url")
        path, params = (following, None) if following else (None, params)
    wanted = [d for d in _unique(found) if artifact_type is None or d.artifact_type == artifact_type]
    return Referrers(subject, wanted, via)


def _unique(found: list[Descriptor]) -> list[Descriptor]:
    """One descriptor per digest, the first kept: tag schema indexes written by some tools repeat them."""
    seen: set[Digest] = set()
    kept = []
    for descriptor in found:
        if descriptor.digest not in seen:
            seen.add(descriptor.digest)
            kept.append(descriptor)
    return kept


def _fallback_index(client: RegistryClient, repository: Reference, subject: Digest) -> list[Descriptor] | None:
    """The entries of the tag schema's index for ``subject``, or None when there is no such tag."""
    ref = repository.with_tag(fallback_tag(subject))
    try:
        index = client.get_manifest(ref)  # any type: Distribution hides a manifest of a type not accepted
    except RegistryResponseError as exc:
        if exc.status == 404:
            return None
        raise
    if index.media_type != OCI_INDEX:  # a tag of that name that is not the schema's: never overwritten
        raise ClientError(f"{ref}: a {index.media_type or 'manifest'}, not the image index the referrers tag "
                          "schema keeps under that tag")
    return _descriptors(index.raw, str(ref))


def _write_index(client: RegistryClient, repository: Reference, subject: Digest,
                 entries: list[Descriptor]) -> None:
    document = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d.to_json() for d in entries]}
    raw = json.dumps(document, indent=2).encode()
    client.put_manifest(repository.with_tag(fallback_tag(subject)), raw, OCI_INDEX)


def put_manifest(client: RegistryClient, ref: Reference, raw: bytes, media_type: str,
                 manifest: Manifest | None = None) -> Digest:
    """PUT a manifest (``manifest`` is its parsed form, if the caller has it); if it has a subject and
    the registry did not answer ``OCI-Subject``, add it to the subject's tag schema index. Returns the
    registry's digest."""
    digest, headers = client.put_manifest_answered(ref, raw, media_type)
    subject = subject_of(raw, media_type, manifest)
    if subject is not None and SUBJECT_HEADER not in headers:
        parsed = manifest or parse_manifest(raw, media_type)
        try:
            record(client, ref, subject, parsed.descriptor())
        except ClientError as exc:
            raise ClientError(f"{digest} was pushed, but its subject's referrers tag was not updated: {exc}") from None
    return digest


def subject_of(raw: bytes, media_type: str, manifest: Manifest | None = None) -> Digest | None:
    """The digest of the subject of a manifest (``manifest``: its parsed form, if at hand), if it has one."""
    if manifest is None:
        if media_type not in (MediaType.OCI_MANIFEST, MediaType.OCI_INDEX):
            return None
        try:
            manifest = parse_manifest(raw, media_type)
        except ManifestError:
            return None
    return manifest.subject.digest if manifest.subject is not None else None


def record(client: RegistryClient, repository: Reference, subject: Digest, referrer: Descriptor) -> bool:
    """Add ``referrer`` to the tag schema index of ``subject`` unless it is there as it is; True if written.

    What other tools have written wrong is put right on the way: repeated entries go, the referrer's own
    entry is replaced by its descriptor, and another entry without an artifactType is read again from its
    manifest (and dropped if that is gone)."""
    found = _fallback_index(client, repository, subject) or []
    kept = [referrer if d.digest == referrer.digest else _repaired(client, repository, d) for d in _unique(found)]
    entries = [d for d in kept if d is not None]
    if referrer not in entries:
        entries.append(referrer)
    if entries == found:
        return False
    _write_index(client, repository, subject, entries)
    return True


def _repaired(client: RegistryClient, repository: Reference, entry: Descriptor) -> Descriptor | None:
    if entry.artifact_type is not None:
        return entry
    try:
        found = client.get_manifest(repository.with_digest(entry.digest))
    except RegistryResponseError as exc:
        if exc.status == 404:
            return None
        raise
    try:
        return found.parse().descriptor()
    except ManifestError:
        return entry


def forget(client: RegistryClient, repository: Reference, subject: Digest, referrer: Digest) -> bool:
    """Remove ``referrer`` from the tag schema index of ``subject``, deleting the tag if none is left;
    True if the index changed. (A registry with the referrers API forgets on its own.)"""
    found = _fallback_index(client, repository, subject)
    if found is None or not any(d.digest == referrer for d in found):
        return False
    left = [d for d in _unique(found) if d.digest != referrer]
    if left:
        _write_index(client, repository, subject, left)
    else:
        from .ops import delete_tag  # ops imports copy, which pushes through this module

        delete_tag(client, repository.with_tag(fallback_tag(subject)))
    return True
