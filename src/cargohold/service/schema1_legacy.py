"""Schema 1 for legacy clients: made from a stored image once, signed with the registry's key, kept.

A signature over the same payload differs each time (ECDSA is randomized), so the first manifest
generated for a tag from a source image is kept in the metadata database and served from then on,
by every worker and after restarts; a tag moved to another image gets one of its own. The empty
layer that schema 1 gives history entries without a layer is stored and linked in the repository,
as Distribution does, so that a client can fetch every ``blobSum``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..digest import Digest
from ..errcodes import ManifestInvalid, ManifestUnknown
from ..formats import Descriptor, MediaType, is_image_manifest, is_index, parse_manifest
from ..formats.schema1 import PrivateKey, sign
from ..formats.schema1_image import (
    EMPTY_LAYER,
    EMPTY_LAYER_DIGEST,
    NotAnImage,
    Schema1ConversionError,
    check_convertible,
    schema1_image,
)
from ..metadata.store import ManifestRecord, MetadataStore
from ..storage.driver import BlobMissing, BlobStore
from .blob_uploads import BlobUploads


class LegacySchema1:
    def __init__(
        self, store: BlobStore, meta: MetadataStore, uploads: BlobUploads, key: PrivateKey, max_config_size: int
    ):
        self.store = store
        self.meta = meta
        self.uploads = uploads
        self.key = key
        self.max_config_size = max_config_size

    async def for_tag(
        self, repository: str, tag: str, source: ManifestRecord, platform: tuple[str, str]
    ) -> ManifestRecord:
        """The signed schema 1 manifest for ``tag``, which names ``source`` (an image, or a list of them)."""
        image = await self._image(repository, source, platform)
        kept = await self.meta.generated_manifest(repository, tag, image.digest)
        if kept is not None:
            return kept
        manifest = parse_manifest(image.content, image.media_type)
        detail = {"tag": tag, "digest": image.digest}
        try:
            if not is_image_manifest(manifest.media_type) or manifest.config is None:
                raise NotAnImage(f"{manifest.media_type} is not an image manifest")
            check_convertible(manifest.config, manifest.layers)
            config = await self._config(repository, manifest.config)
            built = schema1_image(config, manifest.layers, repository, tag)
        except NotAnImage as exc:  # nothing to convert: unknown in schema 1, as Distribution answers for OCI
            raise ManifestUnknown(f"no schema 1 manifest for {tag}: {exc}", detail=detail) from None
        except Schema1ConversionError as exc:  # an image that cannot be converted: invalid, as in Distribution
            raise ManifestInvalid(f"no schema 1 manifest for {tag}: {exc}", detail=detail) from None
        if EMPTY_LAYER_DIGEST in built.blobs:
            await self._ensure_empty_layer(repository)
        generated = ManifestRecord(
            str(Digest.of(built.payload)), MediaType.DOCKER_SCHEMA1_SIGNED, sign(built.payload, self.key)
        )
        repository_id = await self.meta.repository_id(repository)
        if repository_id is None:  # deleted meanwhile
            raise ManifestUnknown(detail={"tag": tag})
        return await self.meta.keep_generated_manifest(repository_id, tag, image.digest, generated)

    async def _image(self, repository: str, source: ManifestRecord, platform: tuple[str, str]) -> ManifestRecord:
        """``source`` itself, or the image for ``platform`` if it is an index (the first, as Distribution)."""
        if not is_index(source.media_type):
            return source
        listing = parse_manifest(source.content, source.media_type)
        entry = next(
            (
                entry
                for entry in listing.manifests
                if entry.platform is not None and (entry.platform.os, entry.platform.architecture) == platform
            ),
            None,
        )
        if entry is None:
            raise ManifestUnknown(
                f"the {source.media_type} has no {platform[0]}/{platform[1]} image for a schema 1 client",
                detail={"digest": source.digest, "platform": "/".join(platform)},
            )
        found = await self.meta.manifest(repository, str(entry.digest))
        if found is None:
            raise ManifestUnknown(detail={"digest": str(entry.digest)})
        return found

    async def _config(self, repository: str, config: Descriptor) -> bytes:
        size = await self.meta.linked_blob_size(repository, str(config.digest))
        if size is None:
            raise Schema1ConversionError(f"its config {config.digest} is not in the repository")
        if size > self.max_config_size:
            raise Schema1ConversionError(f"its config is larger than {self.max_config_size} bytes")
        try:
            return b"".join([chunk async for chunk in self.store.read(config.digest)])
        except BlobMissing:
            raise Schema1ConversionError(f"its config {config.digest} is missing from the blob store") from None

    async def _ensure_empty_layer(self, repository: str) -> None:
        if await self.meta.linked_blob_size(repository, str(EMPTY_LAYER_DIGEST)) is not None:
            return
        repository_id = await self.meta.ensure_repository(repository)
        if await self.meta.link_blob(repository_id, str(EMPTY_LAYER_DIGEST)):
            return

        async def body() -> AsyncIterator[bytes]:
            yield EMPTY_LAYER

        await self.uploads.monolithic(repository, str(EMPTY_LAYER_DIGEST), body(), len(EMPTY_LAYER))
