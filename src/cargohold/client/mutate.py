"""Change an image's config and annotations in place, as ``crane mutate`` does: only the config moves.

The config is read, changed (labels, environment, entrypoint, command, user, working directory) and
uploaded as a new blob; the manifest gets the new config's digest (and annotations) and is written
back. ``rootfs`` and ``history`` are left as they were and every layer is reused: no layer byte is
downloaded or uploaded. A Docker schema 2 image stays Docker schema 2, an OCI image stays OCI.

An index: the image for one platform, or every image (attestations, ``unknown/unknown``, are left
as they are), then a new index naming the new images. Written to the source's tag unless another is
given; one in another repository of the same registry gets the layers by cross-repository mount.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import jsontext
from ..digest import Digest
from ..formats import Descriptor, MediaType, Platform, is_index, is_schema1
from ..reference import Reference
from .errors import ClientError, UnsupportedOperation
from .image import check_platform, select_platform
from .index_edit import ATTESTATION_PLATFORM, bring, compact, mount_blobs, platform_of_config, same_registry
from .registry import RawManifest, RegistryClient


@dataclass(frozen=True, slots=True)
class ConfigChanges:
    """What to change. ``None`` leaves a field alone; an empty tuple clears entrypoint or command."""

    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    user: str | None = None
    workdir: str | None = None
    #: manifest annotations (OCI manifests and indexes only)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def touches_config(self) -> bool:
        return bool(self.labels or self.env) or any(
            v is not None for v in (self.entrypoint, self.cmd, self.user, self.workdir)
        )

    def apply(self, config: dict[str, Any]) -> dict[str, Any]:
        """``config`` (an image config document) with the changes; ``rootfs`` and ``history`` untouched.

        Labels are merged; an environment variable replaces the one of the same name in place, or is
        appended, as ``ENV`` does.
        """
        run: dict[str, Any] = dict(config.get("config") or {})
        if self.labels:
            run["Labels"] = {**(run.get("Labels") or {}), **self.labels}
        if self.env:
            env = list(run.get("Env") or [])
            for name, value in self.env.items():
                setting = f"{name}={value}"
                at = next((i for i, item in enumerate(env) if str(item).partition("=")[0] == name), None)
                if at is None:
                    env.append(setting)
                else:
                    env[at] = setting
            run["Env"] = env
        for key, words in (("Entrypoint", self.entrypoint), ("Cmd", self.cmd)):
            if words is not None:
                run[key] = list(words) or None
        if self.user is not None:
            run["User"] = self.user
        if self.workdir is not None:
            run["WorkingDir"] = self.workdir
        return {**config, "config": run}


@dataclass(frozen=True, slots=True)
class MutatedImage:
    """One image written by :func:`mutate`."""

    platform: Platform | None
    digest: Digest
    media_type: str
    size: int
    config: Digest


@dataclass(frozen=True, slots=True)
class MutateResult:
    """What :func:`mutate` wrote: the top manifest (an image, or a new index) and the images in it."""

    reference: Reference  # by tag (if written to one), with the new digest
    media_type: str
    size: int
    images: tuple[MutatedImage, ...]
    #: blobs mounted from the source's repository (writing to another repository)
    mounted: int = 0


def _load(raw: bytes, what: str) -> dict[str, Any]:
    try:
        document = jsontext.loads(raw)
    except ValueError as exc:
        raise ClientError(f"{what} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ClientError(f"{what} is not a JSON object")
    return document


def _mutate_image(
    client: RegistryClient,
    source: Reference,
    target: Reference,
    raw: RawManifest,
    changes: ConfigChanges,
    platform: Platform | None,
    want: Platform | None = None,
) -> tuple[MutatedImage, bytes, int]:
    """Write the changed config to ``target``'s repository and return the new manifest's bytes (not yet
    written), with the blobs mounted for it. ``platform`` is the image's entry in its index, if any;
    ``want``, the platform asked for, which the image must be for."""
    if is_index(raw.media_type):
        raise UnsupportedOperation(f"{source}: an index inside an index cannot be mutated; name its images")
    manifest = raw.parse()
    if manifest.config is None:
        raise ClientError(f"{source}: {raw.media_type} has no config")
    if changes.annotations and raw.media_type != MediaType.OCI_MANIFEST:
        raise UnsupportedOperation(
            f"{source} is {raw.media_type}, which has no annotations; only OCI manifests and indexes do"
        )
    document = _load(raw.raw, f"manifest {source}")
    config = manifest.config
    old = client.read_blob(source, config.digest)
    if want is not None:
        check_platform(want, old, str(source))
    if platform is None:
        with contextlib.suppress(ClientError):  # an artifact's config names none
            platform = platform_of_config(old, str(source))
    if changes.touches_config:
        new = compact(changes.apply(_load(old, f"config {config.digest}")))
        config = Descriptor(config.media_type, Digest.of(new), len(new))
        if config.digest != manifest.config.digest and client.blob_size(target, config.digest) is None:
            client.upload_blob(target, config.digest, config.size, [new])
        document["config"] = {**document["config"], "digest": str(config.digest), "size": config.size}
    reused = [d for d in manifest.references if d.digest != manifest.config.digest]
    if config.digest == manifest.config.digest:
        reused.append(config)
    mounted = mount_blobs(client, source, target, reused)
    if changes.annotations:
        document["annotations"] = {**(document.get("annotations") or {}), **changes.annotations}
    written = compact(document) if changes.touches_config or changes.annotations else raw.raw
    image = MutatedImage(platform, Digest.of(written), raw.media_type, len(written), config.digest)
    return image, written, mounted


def put_tagged(client: RegistryClient, target: Reference, raw: bytes, media_type: str) -> Reference:
    """``raw`` under ``target``'s tag, or by its digest when ``target`` has none."""
    where = target if target.tag is not None else target.with_digest(Digest.of(raw))
    if where.tag is not None:
        where = Reference(where.registry, where.repository, where.tag, None)
    return where.with_digest(client.put_manifest(where, raw, media_type))


def mutate(
    client: RegistryClient,
    ref: Reference,
    changes: ConfigChanges,
    *,
    tag: Reference | None = None,
    platform: Platform | None = None,
) -> MutateResult:
    """Change the config (and annotations) of the image at ``ref`` and write it to ``tag`` (default:
    ``ref``'s own tag; by digest if ``ref`` has none). See the module docstring for indexes."""
    if tag is not None and tag.digest is not None:
        raise ValueError(f"--tag {tag}: a new reference is written by tag, not by digest")
    target = tag or ref
    same_registry(ref, target)
    top = client.get_manifest(ref)
    if is_schema1(top.media_type):
        raise UnsupportedOperation(
            f"{ref}: a schema 1 image has no config to change; convert it first (copy --convert-schema2)"
        )
    source = ref.with_digest(top.digest)
    if not is_index(top.media_type):
        image, written, mounted = _mutate_image(client, source, target, top, changes, None, platform)
        where = put_tagged(client, target, written, top.media_type)
        return MutateResult(where, top.media_type, len(written), (image,), mounted)
    return _mutate_index(client, source, target, top, changes, platform)


def _mutate_index(
    client: RegistryClient,
    source: Reference,
    target: Reference,
    top: RawManifest,
    changes: ConfigChanges,
    platform: Platform | None,
) -> MutateResult:
    index = top.parse()
    if changes.annotations and top.media_type != MediaType.OCI_INDEX:
        raise UnsupportedOperation(f"{source} is a Docker manifest list, which has no annotations")
    chosen = (
        {select_platform(index, platform).digest}
        if platform is not None
        else {c.digest for c in index.manifests if c.platform != ATTESTATION_PLATFORM}
    )
    document = _load(top.raw, f"index {source}")
    entries: list[dict[str, Any]] = list(document.get("manifests") or [])
    images: list[MutatedImage] = []
    unchanged: list[Digest] = []
    mounted = 0
    for i, child in enumerate(index.manifests):
        if child.digest not in chosen:
            unchanged.append(child.digest)
            continue
        child_ref = source.with_digest(child.digest)
        image, written, count = _mutate_image(
            client, child_ref, target, client.get_manifest(child_ref), changes, child.platform
        )
        mounted += count
        client.put_manifest(target.with_digest(image.digest), written, image.media_type)
        entries[i] = {**entries[i], "digest": str(image.digest), "size": image.size}
        images.append(image)
    mounted += bring(client, source, target, unchanged)[1]
    document["manifests"] = entries
    if changes.annotations:
        document["annotations"] = {**(document.get("annotations") or {}), **changes.annotations}
    raw = compact(document)
    where = put_tagged(client, target, raw, top.media_type)
    return MutateResult(where, top.media_type, len(raw), tuple(images), mounted)


def parse_command(text: str, what: str) -> tuple[str, ...]:
    """``--entrypoint``/``--cmd``: a JSON array (exec form), or words split as a shell would; ``""`` clears."""
    if text.lstrip().startswith("["):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{what}: not a JSON array of strings: {exc}") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{what}: not a JSON array of strings: {text}")
        return tuple(value)
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}: {text}") from None
