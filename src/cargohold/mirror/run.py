"""One run of a mirror job: list the source's tags, copy those the job wants, record what happened.

Runs in a thread (the client is synchronous). Each tag is resolved to its digest once and copied by that
digest (a tag moved meanwhile is copied as it was when listed), through the client's :func:`copy`, which
streams, mounts and skips what the destination has; a tag already at the same digest is skipped. A tag
that fails is recorded and does not stop the others; an error of the whole run (the source unreachable,
bad credentials) is recorded under ``""``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from ..auth.access import Access
from ..client import Credentials, DockerConfig, RegistryClient, StaticKeychain, TransportOptions
from ..client.copy import DIGEST_TAG, copy, copy_referrers
from ..client.errors import ClientError, RegistryResponseError
from ..client.image import ImageConfig, platform_matches
from ..client.keychain import Keychain
from ..client.ops import delete_tag
from ..client.referrers import SIGNATURE_TYPES, fallback_tag, referrers
from ..digest import Digest
from ..formats import Platform
from ..reference import Reference
from .local import LocalRegistry, LocalUnreachable, SelfAuth
from .model import MirrorJob, MirrorRun

log: Final = logging.getLogger("cargohold.mirror")


class _Failed(Exception):
    """The whole run stops (recorded under "")."""


def _keychain(job: MirrorJob, remote: str) -> Keychain | None:
    if job.username and job.password_file:
        try:
            password = Path(job.password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise _Failed(f"cannot read password_file {job.password_file}: {exc.strerror}") from None
        return StaticKeychain(Credentials(job.username, password), [remote])
    if job.docker_config:
        if not Path(job.docker_config).is_file():
            raise _Failed(f"docker_config {job.docker_config} is not a file")
        return DockerConfig(Path(job.docker_config))
    return StaticKeychain(Credentials(), [])  # anonymous: never the server's own ~/.docker/config.json


def _client(job: MirrorJob, local: LocalRegistry, src: Reference, dst: Reference) -> RegistryClient:
    remote = dst.registry if job.source_end.local else src.registry
    insecure = {remote} if job.insecure else set()
    if local.tls:
        insecure.add(local.address)
    client = RegistryClient(keychain=_keychain(job, remote),
                            options=TransportOptions(insecure_registries=frozenset(insecure), retries=2))
    if local.mint is not None:
        mint = local.mint
        actions = ("pull",) if job.source_end.local else ("pull", "push", "delete") if job.prune else ("pull", "push")
        here = src.repository if job.source_end.local else dst.repository
        accesses = [Access("repository", here, action) for action in actions]
        client.auth = SelfAuth(client.auth, local.address, lambda: mint(accesses))
        client.http.auth = client.auth
    return client


def _ends(job: MirrorJob, local: LocalRegistry) -> tuple[Reference, Reference]:
    source, destination = job.source_end, job.destination_end
    src = Reference(local.address if source.local else source.registry, source.path, None, None)
    dst = Reference(local.address if destination.local else destination.registry, job.target_path, None, None)
    return src, dst


def run_job(job: MirrorJob, local: LocalRegistry, run: MirrorRun) -> MirrorRun:
    """Run ``job`` once; ``run`` (as recorded when it started) comes back with what it did."""
    copied: dict[str, str] = {}
    skipped: dict[str, str] = {}
    errors: dict[str, str] = {}
    pruned: list[str] = []
    try:
        src, dst = _ends(job, local)
        with _client(job, local, src, dst) as client:
            _Run(job, client, src, dst, copied, skipped, errors, pruned).all()
    except (_Failed, LocalUnreachable, ClientError) as exc:
        errors[""] = str(exc)
    except Exception as exc:  # recorded (the job backs off) rather than left as a run that never ends
        log.exception("mirror run failed", extra={"job": job.name})
        errors[""] = f"unexpected error: {exc!r}"
    return MirrorRun(run.job, run.started_by, run.started_at, time.time(), copied, skipped, errors,
                     tuple(pruned), id=run.id)


class _Run:
    def __init__(self, job: MirrorJob, client: RegistryClient, src: Reference, dst: Reference,
                 copied: dict[str, str], skipped: dict[str, str], errors: dict[str, str], pruned: list[str]):
        self.job, self.client, self.src, self.dst = job, client, src, dst
        self.copied, self.skipped, self.errors, self.pruned = copied, skipped, errors, pruned
        self.filter = job.tag_filter
        self.platforms = job.platform_filter
        self.source_tags: set[str] = set()
        self._referred: set[Digest] = set()

    def all(self) -> None:
        try:
            self.source_tags = set(self.client.tags(self.src))
        except ClientError as exc:
            raise _Failed(f"listing the tags of {self.src.registry}/{self.src.repository}: {exc}") from None
        wanted = [t for t in sorted(self.source_tags) if not DIGEST_TAG.match(t)]
        for tag in wanted:
            if not self.filter.matches(tag):
                self.skipped[tag] = "outside the tag filter"
                continue
            try:
                self.tag(tag)
            except (ClientError, ValueError) as exc:  # ManifestError and a malformed upstream's JSON too
                self.errors[tag] = str(exc)
            except (KeyError, TypeError, AttributeError) as exc:  # an index whose JSON is not what it says
                self.errors[tag] = f"malformed manifest: {exc!r}"
        if self.job.prune:
            self.prune()

    def tag(self, tag: str) -> None:
        digest = self.client.head_manifest(self.src.with_tag(tag)).digest
        if self.job.only_signed and not self.signed(digest):
            self.skipped[tag] = "no signature refers to it"
            return
        source = self.src.with_digest(digest)
        if not self.platforms and self._there(tag) == digest:
            self.skipped[tag] = "up to date"
            if self.job.with_referrers:  # a signature may have come since (no manifest GET: they count as pulls)
                self.referrers([digest])
            return
        written = self.copy(source, tag)
        if written is None:
            self.skipped[tag] = "no image for " + ", ".join(self.job.platforms)
            return
        self.copied[tag] = str(written)
        if self.job.with_referrers:
            self.referrers([digest, *self._children(source)])

    def _there(self, tag: str) -> Digest | None:
        try:
            return self.client.head_manifest(self.dst.with_tag(tag)).digest
        except RegistryResponseError as exc:
            if exc.status == 404:
                return None
            raise

    def copy(self, source: Reference, tag: str) -> Digest | None:
        """Copy the manifest at ``source`` to ``tag``: whole, or only the images for the job's platforms."""
        if not self.platforms:
            return copy(self.client, source, self.dst.with_tag(tag), all_platforms=True).digest
        top = self.client.get_manifest(source)
        manifest = top.parse()
        if not manifest.is_index:
            if manifest.config is None:
                return None
            image = ImageConfig.from_json(self.client.read_blob(source, manifest.config.digest))
            have = Platform(architecture=image.architecture, os=image.os, variant=image.variant)
            if not self._wanted(have):
                return None
            return copy(self.client, source, self.dst.with_tag(tag), all_platforms=True).digest
        keep = [child for child in manifest.manifests if child.platform is not None and self._wanted(child.platform)]
        if not keep:
            return None
        if len(keep) == len(manifest.manifests):
            return copy(self.client, source, self.dst.with_tag(tag), all_platforms=True).digest
        for child in keep:
            copy(self.client, source.with_digest(child.digest), self.dst.with_digest(child.digest), all_platforms=True)
        # an index of the chosen images only: a new manifest, with a digest of its own
        document = json.loads(top.raw)
        chosen = {str(child.digest) for child in keep}
        document["manifests"] = [entry for entry in document["manifests"] if entry.get("digest") in chosen]
        raw = json.dumps(document, indent=3).encode()
        return self.client.put_manifest(self.dst.with_tag(tag), raw, top.media_type)

    def _wanted(self, have: Platform) -> bool:
        return any(platform_matches(want, have) for want in self.platforms)

    def _children(self, source: Reference) -> list[Digest]:
        manifest = self.client.get_manifest(source).parse()
        return [child.digest for child in manifest.manifests] if manifest.is_index else []

    def signed(self, digest: Digest) -> bool:
        """A signature refers to ``digest``: an OCI referrer of a signature type, or cosign's ``.sig`` tag."""
        if f"{fallback_tag(digest)}.sig" in self.source_tags:
            return True
        return any(d.artifact_type in SIGNATURE_TYPES for d in referrers(self.client, self.src, digest).manifests)

    def referrers(self, subjects: Iterable[Digest]) -> None:
        """Copy what refers to each of ``subjects`` (by digest) and cosign's tags for them, once a run."""
        copy_referrers(self.client, self.src, self.dst, subjects, source_tags=self.source_tags, seen=self._referred)

    def prune(self) -> None:
        """Delete the destination's tags (those the filter admits) that the source no longer has."""
        try:
            there = self.client.tags(self.dst)
        except RegistryResponseError as exc:
            if exc.status == 404:
                return
            raise
        for tag in sorted(set(there) - self.source_tags):
            if DIGEST_TAG.match(tag) or not self.filter.matches(tag):
                continue
            try:
                delete_tag(self.client, self.dst.with_tag(tag))
                self.pruned.append(tag)
            except ClientError as exc:
                self.errors[tag] = f"pruning: {exc}"
