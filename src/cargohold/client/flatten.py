"""``export`` (an image's final filesystem as one tar) and ``flatten`` (the image as one layer).

Both apply the layers in order with :mod:`.apply`. The layer blobs are fetched
into the blob cache first, verified against their digests, so nothing
unverified is applied and the two passes of :mod:`.apply` read local files.
``flatten`` follows ``crane flatten``: one gzip layer, one diff ID, one history
entry, the rest of the config kept.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..digest import Digest
from ..formats import Descriptor, Platform, is_schema1
from ..reference import Reference
from .append import AddedLayer, EditResult, destination, load_image, now, push_edited
from .apply import Layer, apply_layers
from .cache import BlobCache
from .convert import v1_layers
from .image import resolve_image
from .layers import LayerWriter, file_chunks, media_type
from .registry import RegistryClient


def _fetched(client: RegistryClient, ref: Reference, layers: list[Descriptor], cache: BlobCache) -> list[Layer]:
    """The layer blobs, fetched into ``cache`` (verified, in parallel), as :mod:`.apply` reads them."""

    def fetch(descriptor: Descriptor) -> Path:
        return cache.fetch(client, ref, descriptor.digest, descriptor.size if descriptor.size >= 0 else None)

    with ThreadPoolExecutor(max_workers=client.workers) as pool:
        paths = list(pool.map(fetch, layers))

    def reader(path: Path) -> Iterable[bytes]:
        return file_chunks(path)

    return [
        (f"layer {i + 1} ({d.digest})", lambda p=path: reader(p))  # type: ignore[misc]
        for i, (d, path) in enumerate(zip(layers, paths, strict=True))
    ]


@dataclass(frozen=True, slots=True)
class ExportResult:
    """An exported image: which one, how many layers were applied, how many entries the tar has."""

    reference: Reference
    digest: Digest
    layers: int
    entries: int


def export(
    client: RegistryClient,
    ref: Reference,
    out: IO[bytes],
    *,
    cache: BlobCache,
    platform: Platform | None = None,
) -> ExportResult:
    """Write the final filesystem of ``ref``'s image (for an index: ``platform``'s, default this machine's)
    as one tar into ``out``. A layer that escapes the root is refused before anything is written."""
    resolved, raw, manifest, _ = resolve_image(client, ref, platform)
    if is_schema1(raw.media_type):
        layers = [Descriptor("", v1.blob, -1) for v1 in reversed(v1_layers(manifest.payload)) if not v1.throwaway]
    else:
        layers = list(manifest.layers)
    with cache.transfer():
        entries = apply_layers(_fetched(client, resolved, layers, cache), out)
    return ExportResult(resolved, raw.digest, len(layers), entries)


@contextlib.contextmanager
def output_file(path: Path) -> Iterator[IO[bytes]]:
    """A file written beside ``path`` and renamed to it when the block succeeds, removed otherwise."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 -- closed below, then renamed or removed
        dir=path.parent, prefix=f".{path.name}.", suffix=".partial", delete=False
    )
    try:
        with handle:
            yield handle
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def flatten(
    client: RegistryClient,
    ref: Reference,
    *,
    cache: BlobCache,
    tag: Reference | None = None,
) -> EditResult:
    """Push ``ref``'s image with its layers applied into one gzip layer, to ``tag`` (default: ``ref``'s tag)."""
    dst = destination(ref, tag)
    image = load_image(client, ref, "flatten")
    layer_type = media_type("gzip", image.docker)
    descriptors = [Descriptor.from_json(layer, f"layers[{i}]") for i, layer in enumerate(image.layers)]
    with tempfile.TemporaryDirectory(prefix="cargohold-flatten-") as work, cache.transfer():
        writer = LayerWriter(Path(work) / "layer.tar.gz", "gzip")
        try:
            apply_layers(_fetched(client, image.ref, descriptors, cache), writer.tar)
        except BaseException:
            writer.abort()
            raise
        written = writer.close()
        config = dict(image.config)
        config["rootfs"] = {"type": "layers", "diff_ids": [str(written.diff_id)]}
        config["history"] = [
            {"created": now(), "created_by": f"cargohold flatten {image.ref.digest}", "comment": "flattened"}
        ]
        added = AddedLayer(Descriptor(layer_type, written.digest, written.size), written.diff_id, str(image.ref))
        return push_edited(client, image, dst, config, [], [(added, written.path)])
