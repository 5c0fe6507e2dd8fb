"""Images as users think of them: inspect, platforms, config, check.

Built on :class:`~cargohold.client.registry.RegistryClient`; each function
here matches a CLI verb (``inspect``, ``config``, ``check``), as crane's verbs
match ``pkg/crane``.
"""

from __future__ import annotations

import json
import platform as _platform
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from .. import jsontext
from ..digest import Digest
from ..formats import Descriptor, Manifest, Platform, is_index, is_schema1, parse_manifest
from ..reference import Reference
from .errors import ClientError, PlatformNotFound, RegistryResponseError
from .registry import RawManifest, RegistryClient

# Python's machine names -> OCI architecture (and variant), as Go's GOARCH names them
_MACHINES: Final[dict[str, tuple[str, str | None]]] = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", None),
    "arm64": ("arm64", None),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", None),
    "i686": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


def current_platform() -> Platform:
    """The platform of the running machine (``linux/amd64`` on a typical server)."""
    arch, variant = _MACHINES.get(_platform.machine().lower(), (_platform.machine().lower(), None))
    system = _platform.system().lower()
    return Platform(
        architecture=arch, os=system if system in ("linux", "windows", "darwin") else "linux", variant=variant
    )


def parse_platform(text: str) -> Platform:
    """``os/arch[/variant]`` (``linux/arm64/v8``), as docker's ``--platform`` takes it."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant]")
    return Platform(architecture=parts[1], os=parts[0], variant=parts[2] if len(parts) == 3 else None)


def platform_matches(want: Platform, have: Platform) -> bool:
    """Same os and architecture; the variant must agree only when asked for (arm64's is v8 by default)."""
    if want.os != have.os or want.architecture != have.architecture:
        return False
    if want.variant is None:
        return True
    default = "v8" if have.architecture == "arm64" else None
    return want.variant == (have.variant or default)


def select_platform(index: Manifest, want: Platform) -> Descriptor:
    """The index entry for ``want``; :class:`PlatformNotFound` lists what there is otherwise."""
    for child in index.manifests:
        if child.platform is not None and platform_matches(want, child.platform):
            return child
    have = ", ".join(str(c.platform) for c in index.manifests if c.platform is not None) or "none"
    raise PlatformNotFound(f"no image for platform {want} in index {index.digest} (has: {have})")


def check_platform(want: Platform, config: bytes, what: str) -> None:
    """Refuse a single image (its ``config``) that is not for ``want``, as ``docker pull --platform`` does."""
    image = ImageConfig.from_json(config)
    have = Platform(architecture=image.architecture, os=image.os, variant=image.variant)
    if not platform_matches(want, have):
        raise PlatformNotFound(f"{what} is an image for {have}, not {want}")


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image's config that people look at; ``raw`` has the rest."""

    architecture: str
    os: str
    variant: str | None
    created: str | None
    labels: dict[str, str]
    env: list[str]
    entrypoint: list[str] | None
    cmd: list[str] | None
    user: str | None
    working_dir: str | None
    raw: bytes = field(repr=False)

    @classmethod
    def from_json(cls, raw: bytes) -> ImageConfig:
        try:
            data = jsontext.loads(raw)
        except ValueError as exc:
            raise ClientError(f"image config is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ClientError("image config is not a JSON object")
        conf: dict[str, Any] = data.get("config") or {}
        return cls(
            architecture=str(data.get("architecture", "")),
            os=str(data.get("os", "")),
            variant=data.get("variant"),
            created=data.get("created"),
            labels=dict(conf.get("Labels") or {}),
            env=list(conf.get("Env") or []),
            entrypoint=conf.get("Entrypoint"),
            cmd=conf.get("Cmd"),
            user=conf.get("User") or None,
            working_dir=conf.get("WorkingDir") or None,
            raw=raw,
        )


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image manifest resolved: its identity, config and layers."""

    reference: Reference
    digest: Digest
    media_type: str
    size: int
    config: ImageConfig
    layers: tuple[Descriptor, ...]
    #: the index this image was selected from, if any
    index_digest: Digest | None = None

    @property
    def total_size(self) -> int:
        """Bytes a pull moves: manifest, config and layers (schema 1 layers have no size: 0)."""
        config_size = len(self.config.raw)
        return self.size + config_size + sum(max(layer.size, 0) for layer in self.layers)


@dataclass(frozen=True, slots=True)
class PlatformEntry:
    """One image of an index."""

    platform: Platform | None
    digest: Digest
    media_type: str
    size: int


def resolve_image(
    client: RegistryClient, ref: Reference, platform: Platform | None = None
) -> tuple[Reference, RawManifest, Manifest, Digest | None]:
    """Fetch ``ref``'s manifest; for an index, the image for ``platform`` (default: this machine's).
    A single image must be for ``platform`` if one is given.

    Returns (reference by digest, raw manifest, parsed manifest, index digest or None).
    """
    raw = client.get_manifest(ref)
    manifest = raw.parse()
    if not manifest.is_index:
        if platform is not None and manifest.config is not None:
            check_platform(platform, client.read_blob(ref, manifest.config.digest), str(ref))
        return ref.with_digest(raw.digest), raw, manifest, None
    child = select_platform(manifest, platform or current_platform())
    child_ref = ref.with_digest(child.digest)
    child_raw = client.get_manifest(child_ref)
    return child_ref, child_raw, child_raw.parse(), raw.digest


def config_bytes(client: RegistryClient, ref: Reference, manifest: Manifest) -> bytes:
    """An image's config blob; for schema 1, the newest ``v1Compatibility`` entry (its equivalent)."""
    if manifest.config is not None:
        return client.read_blob(ref, manifest.config.digest)
    if is_schema1(manifest.media_type):
        history = json.loads(manifest.payload).get("history") or [{}]
        return str(history[0].get("v1Compatibility", "{}")).encode()
    raise ClientError(f"{ref}: manifest {manifest.media_type} has no config")


def inspect(client: RegistryClient, ref: Reference, platform: Platform | None = None) -> ImageInfo:
    """Digest, media type, config and layers of an image (of the chosen platform for an index)."""
    resolved, raw, manifest, index_digest = resolve_image(client, ref, platform)
    config = ImageConfig.from_json(config_bytes(client, resolved, manifest))
    return ImageInfo(resolved, raw.digest, raw.media_type, raw.size, config, manifest.layers, index_digest)


def platforms(client: RegistryClient, ref: Reference) -> list[PlatformEntry]:
    """The images of an index; for a single image, that image with its config's platform."""
    raw = client.get_manifest(ref)
    manifest = raw.parse()
    if manifest.is_index:
        return [PlatformEntry(c.platform, c.digest, c.media_type, c.size) for c in manifest.manifests]
    config = ImageConfig.from_json(config_bytes(client, ref, manifest))
    here = Platform(architecture=config.architecture, os=config.os, variant=config.variant)
    return [PlatformEntry(here, raw.digest, raw.media_type, raw.size)]


@dataclass(frozen=True, slots=True)
class MissingBlob:
    """A blob a manifest references that the repository does not serve."""

    manifest: Digest
    descriptor: Descriptor


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What :func:`check` found: manifests and blobs checked, and the missing ones."""

    manifests: tuple[Digest, ...]
    blobs_checked: int
    missing: tuple[MissingBlob, ...]
    missing_manifests: tuple[Digest, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.missing and not self.missing_manifests


def check(client: RegistryClient, ref: Reference) -> CheckResult:
    """Check that every blob of an image, or of every image of an index, is present (HEAD each)."""
    raw = client.get_manifest(ref)
    manifest = raw.parse()
    images: list[tuple[Digest, Manifest]] = []
    missing_manifests: list[Digest] = []
    if manifest.is_index:
        for child in manifest.manifests:
            try:
                child_raw = client.get_manifest(ref.with_digest(child.digest))
            except RegistryResponseError as exc:
                if exc.status != 404:
                    raise
                missing_manifests.append(child.digest)
                continue
            if not is_index(child_raw.media_type):
                images.append((child.digest, child_raw.parse()))
    else:
        images.append((raw.digest, manifest))
    pairs = [(digest, d) for digest, m in images for d in m.references]

    def present(pair: tuple[Digest, Descriptor]) -> bool:
        size = client.blob_size(ref, pair[1].digest)
        return size is not None and (pair[1].size < 0 or size < 0 or size == pair[1].size)

    with ThreadPoolExecutor(max_workers=client.workers) as pool:
        found = list(pool.map(present, pairs))
    missing = tuple(MissingBlob(m, d) for (m, d), ok in zip(pairs, found, strict=True) if not ok)
    return CheckResult(tuple(d for d, _ in images), len(pairs), missing, tuple(missing_manifests))


@dataclass(frozen=True, slots=True)
class Node:
    """One manifest of an image graph: its descriptor, exact bytes and parsed view."""

    descriptor: Descriptor
    raw: bytes
    manifest: Manifest


def walk(
    root: Node, fetch: Callable[[Descriptor], bytes], chosen: Callable[[Descriptor], bool]
) -> list[Node]:
    """Every manifest under ``root`` (itself included), children before parents: the order to write them.

    ``fetch`` gets a child manifest's verified bytes; ``chosen`` says which children of an index to follow.
    """
    order: list[Node] = []
    if root.manifest.is_index:
        for child in root.manifest.manifests:
            if not chosen(child):
                continue
            data = fetch(child)
            node = Node(child, data, parse_manifest(data, child.media_type))
            order.extend(walk(node, fetch, chosen))
    order.append(root)
    return order


def remote_graph(
    client: RegistryClient, ref: Reference, top: RawManifest, platform: Platform | None, all_platforms: bool
) -> tuple[Node, list[Node]]:
    """The manifests to move from ``ref``, whose manifest is ``top``: (root, every node, children first).

    For an index, the image for ``platform`` (default: this machine's), or with
    ``all_platforms`` the whole index. A single image must be for ``platform`` if one is given.
    """

    def fetch(descriptor: Descriptor) -> bytes:
        return client.get_manifest(ref.with_digest(descriptor.digest)).raw

    root = Node(Descriptor(top.media_type, top.digest, top.size), top.raw, top.parse())
    root = choose_root(root, fetch, lambda d: client.read_blob(ref, d.digest), str(ref), platform, all_platforms)
    return root, walk(root, fetch, lambda _: True)


def choose_root(
    root: Node,
    fetch: Callable[[Descriptor], bytes],
    read_config: Callable[[Descriptor], bytes],
    what: str,
    platform: Platform | None,
    all_platforms: bool,
    *,
    default_all: bool = False,
) -> Node:
    """What to move of ``root``: an index whole (``all_platforms``, or ``default_all`` when no
    ``platform`` is given), else its image for ``platform`` (default: this machine's); a single image
    after checking it is for ``platform``."""
    if all_platforms and platform is not None:
        raise ValueError("--platform and --all-platforms exclude each other")
    if root.manifest.is_index:
        if all_platforms or (default_all and platform is None):
            return root
        child = select_platform(root.manifest, platform or current_platform())
        data = fetch(child)
        return Node(child, data, parse_manifest(data, child.media_type))
    if platform is not None and root.manifest.config is not None:
        check_platform(platform, read_config(root.manifest.config), what)
    return root


def blobs_of(nodes: list[Node]) -> list[Descriptor]:
    """The distinct blobs (configs and layers) the image manifests among ``nodes`` reference."""
    seen: set[Digest] = set()
    found: list[Descriptor] = []
    for node in nodes:
        if node.manifest.is_index:
            continue
        for descriptor in node.manifest.references:
            if descriptor.digest not in seen:
                seen.add(descriptor.digest)
                found.append(descriptor)
    return found
