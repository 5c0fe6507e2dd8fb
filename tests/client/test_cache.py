"""The blob cache stays bounded: ``cache info``, ``cache prune`` (least recently used first), the limit
pulls keep on their own, and blobs a running transfer uses never vanish under it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cargohold.client import OCILayout, Reference, RegistryClient
from cargohold.client.cache import BlobCache, parse_age
from cargohold.client.pull import pull, push
from cargohold.digest import Digest
from cargohold.sizes import parse_size

from .cli_support import isolated, run  # noqa: F401 - isolated is an autouse fixture
from .conftest import ROOT, RunningRegistry
from .images import BuiltImage, build_image, write_layout


def published(registry: RunningRegistry, tmp_path: Path, name: str, sizes: tuple[int, ...]) -> tuple[str, BuiltImage]:
    image = build_image(sizes)
    write_layout(tmp_path / f"src-{name}", image, "v1")
    ref = registry.ref(registry.repo("cache"), "v1")
    with RegistryClient() as client:
        push(client, OCILayout(tmp_path / f"src-{name}"), "v1", Reference.parse(ref))
    return ref, image


def cached(root: Path, image: BuiltImage) -> set[Digest]:
    """The blobs of ``image`` (config and layers) present in the cache at ``root``."""
    cache = BlobCache(root)
    return {d for d in image.blobs if cache.has(d)}


def complete(path: Path, image: BuiltImage) -> bool:
    layout = OCILayout(path)
    return layout.resolve("x").digest == image.digest and all(
        layout.read_blob(d) == data for d, data in image.blobs.items()
    )


def test_sizes_and_ages() -> None:
    assert parse_size("500M") == 500 * 1024**2
    assert parse_size("2G") == parse_size("2GiB") == parse_size("2gb") == 2 * 1024**3
    assert parse_size("1.5K") == 1536 and parse_size("4096") == 4096
    assert parse_age("7d") == 7 * 86400 and parse_age("12h") == 43200 and parse_age("30m") == 1800
    for bad in ("", "10X", "-1G", "G"):
        with pytest.raises(ValueError):
            parse_size(bad)
    for bad in ("7", "1y", "h"):
        with pytest.raises(ValueError):
            parse_age(bad)


def test_info_and_prune_least_recently_used_first(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    refs = {}
    for name, sizes in (("a", (3000,)), ("b", (4000,)), ("c", (5000,))):
        refs[name] = published(registry, tmp_path, name, sizes)
        code, _, err = run(capsys, "pull", "--cache-dir", str(root), refs[name][0], f"oci:{tmp_path / name}:x")
        assert code == 0, err
    # a pull that finds "a" in the cache makes it the most recently used
    assert run(capsys, "pull", "--cache-dir", str(root), refs["a"][0], f"oci:{tmp_path / 'a2'}:x")[0] == 0
    code, out, _ = run(capsys, "cache", "info", "--cache-dir", str(root), "--json")
    info = json.loads(out)
    sizes = {name: sum(len(b) for b in image.blobs.values()) for name, (_, image) in refs.items()}
    assert (info["blobs"], info["blobBytes"], info["partialDownloads"]) == (6, sum(sizes.values()), 0)
    assert info["maxSize"] == 10 * 1024**3 and info["directory"] == str(root)
    code, out, _ = run(capsys, "cache", "info", "--cache-dir", str(root))
    assert code == 0 and "10.0 GiB" in out and "Blobs" in out
    # room for all but "b", the least recently used
    code, out, _ = run(capsys, "cache", "prune", "--cache-dir", str(root), "--max-size",
                       str(sizes["a"] + sizes["c"]), "--json")
    assert code == 0
    assert json.loads(out) == {"removed": 2, "freedBytes": sizes["b"], "kept": 4,
                               "keptBytes": sizes["a"] + sizes["c"], "inUse": 0}
    assert not cached(root, refs["b"][1]) and len(cached(root, refs["a"][1])) == 2
    assert len(cached(root, refs["c"][1])) == 2
    # by age: nothing is a day old; everything is older than the future
    code, out, _ = run(capsys, "cache", "prune", "--cache-dir", str(root), "--older-than", "1d")
    assert code == 0 and out.startswith("removed 0 (0 B), kept 4")
    assert len(list((root / "sources").iterdir())) == 6  # recent mount hints stay
    three_days_ago = os.path.getmtime(root / "blobs") - 3 * 86400
    for digest in refs["c"][1].blobs:
        os.utime(BlobCache(root).path(digest), (three_days_ago, three_days_ago))
    code, out, _ = run(capsys, "cache", "prune", "--cache-dir", str(root), "--older-than", "2d", "--json")
    assert json.loads(out)["removed"] == 2 and not cached(root, refs["c"][1])
    code, out, _ = run(capsys, "cache", "prune", "--cache-dir", str(root))  # no option: everything
    assert code == 0 and out.startswith("removed 2 ") and not cached(root, refs["a"][1])
    assert not list((root / "sources").iterdir())  # the mount hints went with everything
    # the layouts pulled through the cache are whole: they never depended on it
    assert complete(tmp_path / "a", refs["a"][1]) and complete(tmp_path / "b", refs["b"][1])
    code, _, err = run(capsys, "cache", "prune", "--cache-dir", str(root), "--max-size", "lots")
    assert code == 1 and err == (
        "cargohold: error: invalid size 'lots': expected a number with an optional K, M, G or T (500M, 2G)\n"
    )


def test_pulls_keep_the_limit(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cache"
    first, first_image = published(registry, tmp_path, "first", (20_000,))
    second, second_image = published(registry, tmp_path, "second", (30_000,))
    monkeypatch.setenv("CARGOHOLD_CACHE_MAX_SIZE", "40K")
    for ref, name in ((first, "first"), (second, "second")):
        assert run(capsys, "pull", "--cache-dir", str(root), ref, f"oci:{tmp_path / name}:x")[0] == 0
    info = json.loads(run(capsys, "cache", "info", "--cache-dir", str(root), "--json")[1])
    assert info["maxSize"] == 40 * 1024 and info["totalBytes"] <= 40 * 1024
    first_layer = next(d for d, data in first_image.blobs.items() if len(data) > 1000)
    assert len(cached(root, second_image)) == 2 and first_layer not in cached(root, first_image)  # the older went
    assert complete(tmp_path / "first", first_image) and complete(tmp_path / "second", second_image)
    monkeypatch.setenv("CARGOHOLD_CACHE_MAX_SIZE", "a lot")
    code, _, err = run(capsys, "pull", ref, f"oci:{tmp_path / 'third'}:x")
    assert code == 1 and "invalid size 'a lot'" in err


HOLDER = """
import sys
from cargohold.client import Reference, RegistryClient
from cargohold.client.cache import BlobCache
from cargohold.digest import Digest

root, ref, digest, size = sys.argv[1:]
cache = BlobCache(__import__("pathlib").Path(root))
with RegistryClient() as client, cache.transfer():
    cache.fetch(client, Reference.parse(ref), Digest.parse(digest), int(size))
    print("fetched", flush=True)
    sys.stdin.read()  # a long transfer: until the test closes stdin (or kills it)
"""


def test_prune_spares_what_a_running_transfer_uses(
    registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "cache"
    ref, image = published(registry, tmp_path, "held", (7000, 9000))
    assert run(capsys, "pull", "--cache-dir", str(root), ref, f"oci:{tmp_path / 'pulled'}:x")[0] == 0
    layer = next(d for d, data in image.blobs.items() if len(data) > 1000)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for ending in ("finishes", "is killed"):
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(root), ref, str(layer), str(len(image.blobs[layer]))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline() == "fetched\n"
        code, out, _ = run(capsys, "cache", "prune", "--cache-dir", str(root), "--json")
        result = json.loads(out)
        assert code == 0 and result["inUse"] == 1 and result["kept"] == 1
        assert cached(root, image) == {layer}  # everything else went
        assert holder.stdin is not None
        if ending == "finishes":
            holder.stdin.close()
            assert holder.wait(30) == 0
        else:
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(30)
            holder.stdin.close()
        assert holder.stdout.read() == ""
        holder.stdout.close()
        result = json.loads(run(capsys, "cache", "prune", "--cache-dir", str(root), "--json")[1])
        assert result["removed"] == 1 and result["inUse"] == 0 and not cached(root, image)
        assert not list((root / "in-use").iterdir())  # the killed transfer's claim is cleared too


def test_concurrent_pulls_under_a_tiny_limit(
    registry: RunningRegistry, client: RegistryClient, tmp_path: Path
) -> None:
    """Transfers (each its own cache instance, as separate processes are) pull the same and different
    images at once while each one's end prunes the cache to almost nothing: every pull completes whole."""
    root = tmp_path / "cache"
    images = [published(registry, tmp_path, f"i{n}", (60_000 + n, 50_000, 40_000 + n)) for n in range(3)]
    failures: list[BaseException] = []

    def one(round_: int, worker: int) -> None:
        ref, image = images[(round_ + worker) % len(images)] if worker % 2 else images[0]
        path = tmp_path / f"out-{round_}-{worker}"
        try:
            pull(client, Reference.parse(ref), OCILayout(path), tag="x", cache=BlobCache(root, max_size=1))
            assert complete(path, image)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failures.append(exc)

    for round_ in range(4):
        threads = [threading.Thread(target=one, args=(round_, w)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert failures == []
    # what stayed was kept for transfers then running; none runs now, so the limit holds again
    result = BlobCache(root).prune(max_size=1)
    assert result.in_use == 0 and BlobCache(root).entries() == [] and not list((root / "in-use").iterdir())
