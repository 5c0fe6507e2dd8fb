"""Tag and delete: retag without re-uploading, delete a tag safely, delete an image with its blobs.

Deleting a *tag* is not in every registry's repertoire: Distribution 2.8
deletes manifests only by digest, which removes every tag pointing at that
manifest. :func:`delete_tag` never does that silently. When the registry
refuses ``DELETE /manifests/TAG`` it points the tag at a unique placeholder
manifest and deletes the placeholder by digest (regctl's technique), so only
that one tag disappears; if the placeholder cannot be deleted, the tag is put
back as it was and :class:`UnsupportedOperation` says why.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from ..digest import Digest
from ..formats import MediaType, is_schema1
from ..reference import Reference
from . import blob_uploads, referrers
from .copy import resign_schema1
from .errors import RegistryResponseError, UnsupportedOperation, error_for
from .image import Node, blobs_of, walk
from .registry import RegistryClient

#: the empty config blob of the placeholder manifest (OCI's empty descriptor content)
_EMPTY_CONFIG = b"{}"


def tag(client: RegistryClient, src: Reference, tags: list[str]) -> Digest:
    """Point each of ``tags`` (same repository) at ``src``'s manifest; no blob moves."""
    manifest = client.get_manifest(src)
    for name in tags:
        raw = manifest.raw
        if is_schema1(manifest.media_type):
            raw = resign_schema1(raw, src.repository, name)
        client.put_manifest(src.with_tag(name), raw, manifest.media_type)
    return manifest.digest


@dataclass(frozen=True, slots=True)
class DeleteResult:
    """What a delete removed."""

    digest: Digest
    method: str  # "tag", "placeholder" or "digest"
    tags_removed: tuple[str, ...] = ()
    blobs_deleted: tuple[Digest, ...] = ()


def _unsupported(exc: RegistryResponseError) -> bool:
    return exc.status in (400, 405) or exc.code_name in ("UNSUPPORTED", "TAG_INVALID", "DIGEST_INVALID")


def delete_tag(client: RegistryClient, ref: Reference) -> DeleteResult:
    """Remove one tag, leaving other tags of the same manifest alone (see the module docstring)."""
    if ref.tag is None:
        raise ValueError(f"{ref}: no tag to delete")
    tagged = Reference(ref.registry, ref.repository, ref.tag, None)
    original = client.get_manifest(tagged)
    response = client.request("DELETE", ref.registry, f"/v2/{ref.repository}/manifests/{ref.tag}")
    if response.status_code in (200, 202):
        return DeleteResult(original.digest, "tag", (ref.tag,))
    exc = error_for(response)
    if not _unsupported(exc):
        raise exc
    config_digest = Digest.of(_EMPTY_CONFIG)
    if client.blob_size(ref, config_digest) is None:
        blob_uploads.upload(client, ref, config_digest, len(_EMPTY_CONFIG), [_EMPTY_CONFIG])
    placeholder = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST,
            "config": {"mediaType": MediaType.OCI_EMPTY, "digest": str(config_digest), "size": 2},
            "layers": [],
            "annotations": {"org.cargohold.placeholder": str(uuid.uuid4())},
        }
    ).encode()
    digest = client.put_manifest(tagged, placeholder, MediaType.OCI_MANIFEST)
    try:
        client.delete_manifest(ref.with_digest(digest))
    except RegistryResponseError as failure:
        client.put_manifest(tagged, original.raw, original.media_type)
        raise UnsupportedOperation(
            f"{ref.registry} cannot delete tag {ref.tag!r}: it deletes manifests only by digest, and "
            f"deleting by digest failed ({failure.message}); the tag is unchanged"
        ) from None
    return DeleteResult(original.digest, "placeholder", (ref.tag,))


def delete_manifest(client: RegistryClient, ref: Reference) -> DeleteResult:
    """Delete a manifest by digest (resolving a tag first); reports every tag that went with it.

    A referrer (a manifest with a subject) also leaves its subject's tag schema index, if it is listed there.
    """
    manifest = client.get_manifest(ref)
    digest = manifest.digest
    subject = referrers.subject_of(manifest.raw, manifest.media_type)
    sharing = tuple(t.tag for t in client.tags_with_metadata(ref) if t.digest == digest)
    client.delete_manifest(ref.with_digest(digest))
    if subject is not None:
        referrers.forget(client, ref, subject, digest)
    return DeleteResult(digest, "digest", sharing)


def delete_image(client: RegistryClient, ref: Reference) -> DeleteResult:
    """Delete an image (or index) by digest, and the blobs no remaining tag of the repository uses."""
    top = client.get_manifest(ref)
    root_manifest = top.parse()
    nodes = walk(
        Node(root_manifest.descriptor(), top.raw, root_manifest),
        lambda d: client.get_manifest(ref.with_digest(d.digest)).raw,
        lambda _: True,
    )
    candidates = {d.digest for d in blobs_of(nodes)}
    result = delete_manifest(client, ref.with_digest(top.digest))
    for info in client.tags_with_metadata(ref):
        other = client.get_manifest(ref.with_digest(info.digest)).parse()
        kept = walk(
            Node(other.descriptor(), b"", other),
            lambda d: client.get_manifest(ref.with_digest(d.digest)).raw,
            lambda _: True,
        )
        candidates -= {d.digest for d in blobs_of(kept)}
    deleted = []
    for digest in sorted(candidates, key=str):
        try:
            client.delete_blob(ref, digest)
            deleted.append(digest)
        except RegistryResponseError as exc:
            if exc.status != 404:
                raise
    return DeleteResult(result.digest, "digest", result.tags_removed, tuple(deleted))
