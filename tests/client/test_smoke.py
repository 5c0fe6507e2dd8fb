from pathlib import Path

from cargohold.client import OCILayout, Reference, RegistryClient, pull, push
from cargohold.client.cache import BlobCache

from .images import build_image, multiarch, write_layout


def test_push_pull_roundtrip(registry, client: RegistryClient, tmp_path: Path, cache: BlobCache) -> None:
    image = build_image()
    src = write_layout(tmp_path / "src", image, "v1")
    ref = Reference.parse(registry.ref(registry.repo()))
    result = push(client, src, "v1", ref, cache=cache)
    assert result.digest == image.digest
    assert client.tags(ref) == ["v1"]
    dst = OCILayout(tmp_path / "dst")
    pulled = pull(client, ref, dst, tag="v1", cache=cache)
    assert pulled.digest == image.digest
    index = multiarch()
    src2 = write_layout(tmp_path / "src2", index, "multi")
    ref2 = ref.with_tag("multi")
    assert push(client, src2, "multi", ref2, cache=cache).digest == index.digest
