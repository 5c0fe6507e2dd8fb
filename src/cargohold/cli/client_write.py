"""Client commands that move or change images: pull, push, copy, sync, tag, delete."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..client import (
    OCILayout,
    RegistryClient,
    archive,
    ops,
)
from ..client.copy import copy, sync
from ..client.errors import LayoutError
from ..client.local import LocalArchive, LocalImage, LocalLayout, copy_local
from ..client.pull import TransferResult, pull, push
from ..reference import Reference
from .client_common import (
    Location,
    TerminalProgress,
    add_platform_options,
    add_transport_options,
    command,
    make_cache,
    make_client,
    parse_location,
    parse_reference,
    platform_of,
    print_json,
    progress_for,
    regex,
    repository_of,
)

REFERRERS_HELP = "bring the referrers (signatures, SBOMs) along, theirs too, and cosign's tags"
CONVERT_HELP = "write schema 1 images as Docker schema 2 (config and diff IDs rebuilt from the layers)"


def _document(src: object, dst: object, result: TransferResult) -> dict[str, Any]:
    return {
        "source": str(src),
        "destination": str(dst),
        "digest": str(result.digest),
        "mediaType": result.media_type,
        "manifests": result.manifests,
        "blobsTransferred": result.blobs_transferred,
        "blobsSkipped": result.blobs_skipped,
        "blobsMounted": result.blobs_mounted,
        **({"referrers": [str(d) for d in result.referrers]} if result.referrers else {}),
    }


def _report(args: argparse.Namespace, verb: str, src: object, dst: object, result: TransferResult) -> None:
    if args.json:
        print_json(_document(src, dst, result))
    else:
        print(
            f"{verb} {src} -> {dst}: {result.digest} ({result.blobs_transferred} blobs transferred, "
            f"{result.blobs_skipped} already present, {result.blobs_mounted} mounted)"
        )


def _finish(progress: TerminalProgress | None) -> None:
    if progress is not None:
        progress.finish()


def _one_platform_only(args: argparse.Namespace) -> None:
    if args.all_platforms:
        raise ValueError("a docker-archive holds single images: --all-platforms cannot be written to one")


def _local(location: Location) -> LocalImage:
    assert location.path is not None
    if location.kind == "oci":
        return LocalLayout(location.path, location.name)
    return LocalArchive(location.path, location.name)


def _transfer(
    args: argparse.Namespace, src: Location, dst: Location, client: RegistryClient
) -> TransferResult:
    """Move an image between any two locations (registry, oci:, docker-archive:); local to local needs no registry."""
    cache = make_cache(args)
    progress = progress_for("copying", args)
    try:
        if src.kind == "registry" and dst.kind == "registry":
            assert src.ref is not None and dst.ref is not None
            return copy(
                client,
                src.ref,
                dst.ref,
                platform=platform_of(args),
                all_platforms=args.all_platforms,
                convert_schema2=getattr(args, "convert_schema2", False),
                progress=progress,
                referrers=getattr(args, "referrers", False),
            )
        if getattr(args, "referrers", False):
            raise ValueError("--referrers copies between registries only")
        if src.kind == "registry" and dst.kind == "oci":
            assert src.ref is not None and dst.path is not None
            return pull(
                client,
                src.ref,
                OCILayout(dst.path),
                tag=dst.name or src.ref.tag,
                platform=platform_of(args),
                all_platforms=args.all_platforms,
                cache=cache,
                progress=progress,
            )
        if src.kind == "registry" and dst.kind == "docker-archive":
            assert src.ref is not None and dst.path is not None
            _one_platform_only(args)
            return archive.save(
                client,
                src.ref,
                dst.path,
                repo_tag=dst.name,
                platform=platform_of(args),
                cache=cache,
                progress=progress,
            )
        if src.kind == "oci" and dst.kind == "registry":
            assert src.path is not None and dst.ref is not None
            layout = OCILayout(src.path)
            if not layout.exists():
                raise LayoutError(f"{src.path}: not an OCI image layout")
            return push(
                client,
                layout,
                src.name,
                dst.ref,
                platform=platform_of(args),
                all_platforms=args.all_platforms,
                cache=cache,
                progress=progress,
            )
        if src.kind == "docker-archive" and dst.kind == "registry":
            assert src.path is not None and dst.ref is not None
            return archive.push_archive(
                client, src.path, src.name, dst.ref, platform=platform_of(args), cache=cache, progress=progress
            )
        return copy_local(
            _local(src), _local(dst), platform=platform_of(args), all_platforms=args.all_platforms, progress=progress
        )
    finally:
        _finish(progress)


@command
def cmd_copy(args: argparse.Namespace) -> int:
    src, dst = parse_location(args.source), parse_location(args.destination)
    with make_client(args) as client:
        result = _transfer(args, src, dst, client)
    _report(args, "copied", src, dst, result)
    return 0


@command
def cmd_pull(args: argparse.Namespace) -> int:
    dst = parse_location(args.destination)
    if dst.kind == "registry":
        raise ValueError(
            "pull writes to oci:DIR[:TAG] or docker-archive:FILE[:REF]; use copy between registries"
        )
    if len(args.reference) > 1:
        return _pull_many(args, [parse_reference(r) for r in args.reference], dst)
    src = Location("registry", ref=parse_reference(args.reference[0]))
    with make_client(args) as client:
        result = _transfer(args, src, dst, client)
    _report(args, "pulled", src, dst, result)
    return 0


def _pull_many(args: argparse.Namespace, refs: list[Reference], dst: Location) -> int:
    """Several images into one docker-archive (``docker save a b``)."""
    if dst.kind != "docker-archive" or dst.name is not None:
        raise ValueError("several references can only be pulled into one docker-archive:FILE (no :REF)")
    assert dst.path is not None
    _one_platform_only(args)
    progress = progress_for("pulling", args)
    try:
        with make_client(args) as client:
            results = archive.save_many(
                client,
                [(ref, None) for ref in refs],
                dst.path,
                platform=platform_of(args),
                cache=make_cache(args),
                progress=progress,
            )
    finally:
        _finish(progress)
    if args.json:
        print_json([_document(ref, dst, result) for ref, result in zip(refs, results, strict=True)])
    else:
        for ref, result in zip(refs, results, strict=True):
            _report(args, "pulled", ref, dst, result)
    return 0


@command
def cmd_push(args: argparse.Namespace) -> int:
    src = parse_location(args.source)
    dst = Location("registry", ref=parse_reference(args.reference))
    if src.kind == "registry":
        raise ValueError(
            "push reads from oci:DIR[:TAG] or docker-archive:FILE[:REF]; use copy between registries"
        )
    with make_client(args) as client:
        result = _transfer(args, src, dst, client)
    _report(args, "pushed", src, dst, result)
    return 0


@command
def cmd_sync(args: argparse.Namespace) -> int:
    src, dst = repository_of(args.source), repository_of(args.destination)
    with make_client(args) as client:
        result = sync(
            client,
            src,
            dst,
            tag_pattern=args.tags,
            all_platforms=not args.platform,
            platform=platform_of(args),
            convert_schema2=args.convert_schema2,
            referrers=args.referrers,
        )
    if args.json:
        print_json(
            {
                "copied": {t: str(r.digest) for t, r in result.copied.items()},
                **({"referrers": {t: [str(d) for d in r.referrers] for t, r in result.copied.items()}}
                   if args.referrers else {}),
                "skipped": list(result.skipped),
                "failed": result.failed,
            }
        )
    else:
        for tag, copied in result.copied.items():
            print(f"copied {tag}: {copied.digest}")
        for tag in result.skipped:
            print(f"up to date {tag}")
        for tag, error in result.failed.items():
            print(f"failed {tag}: {error}", file=sys.stderr)
    return 1 if result.failed else 0


@command
def cmd_tag(args: argparse.Namespace) -> int:
    src = parse_reference(args.reference)
    with make_client(args) as client:
        digest = ops.tag(client, src, args.tags)
    if args.json:
        print_json({"digest": str(digest), "tags": args.tags})
    else:
        for name in args.tags:
            print(f"{src.registry}/{src.repository}:{name} -> {digest}")
    return 0


@command
def cmd_delete(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    with make_client(args) as client:
        if args.image:
            result = ops.delete_image(client, ref)
        elif ref.digest is not None or args.manifest:
            result = ops.delete_manifest(client, ref)
        else:
            result = ops.delete_tag(client, ref)
    document: dict[str, Any] = {
        "digest": str(result.digest),
        "method": result.method,
        "tagsRemoved": list(result.tags_removed),
        "blobsDeleted": [str(d) for d in result.blobs_deleted],
    }
    if args.json:
        print_json(document)
    else:
        what = f"tags {', '.join(result.tags_removed)}" if result.tags_removed else "no tags"
        print(f"deleted {result.digest} ({what}; {len(result.blobs_deleted)} blobs)")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands that write."""
    for name, func, first, second, text in (
        (
            "copy",
            cmd_copy,
            "source",
            "destination",
            "copy an image between registries, oci: and docker-archive:",
        ),
        (
            "pull",
            cmd_pull,
            "reference",
            "destination",
            "pull an image into oci:DIR[:TAG] or docker-archive:FILE (several images: one archive)",
        ),
        ("push", cmd_push, "source", "reference", "push an image from oci:DIR[:TAG] or docker-archive:FILE"),
    ):
        p = subparsers.add_parser(name, aliases=["cp"] if name == "copy" else [], help=text)
        if name == "pull":
            p.add_argument(first, nargs="+", help="one image, or several into one docker-archive")
        else:
            p.add_argument(first)
        p.add_argument(second)
        add_platform_options(p)
        p.add_argument("--cache-dir", metavar="DIR", help="blob cache (default ~/.cache/cargohold)")
        if name == "copy":
            p.add_argument("--convert-schema2", action="store_true", help=CONVERT_HELP)
            p.add_argument("--referrers", action="store_true", help=REFERRERS_HELP)
        add_transport_options(p)
        p.set_defaults(func=func)

    p = subparsers.add_parser("sync", help="copy every tag (or tags matching --tags) of a repository")
    p.add_argument("source", help="HOST/REPO")
    p.add_argument("destination", help="HOST/REPO")
    p.add_argument("--tags", metavar="REGEX", type=regex, help="only tags fully matching this")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="one platform only (default: all)")
    p.add_argument("--convert-schema2", action="store_true", help=CONVERT_HELP)
    p.add_argument("--referrers", action="store_true", help=REFERRERS_HELP)
    add_transport_options(p)
    p.set_defaults(func=cmd_sync)

    p = subparsers.add_parser("tag", help="add tags to an image without re-uploading it")
    p.add_argument("reference", help="HOST/REPO:TAG or @DIGEST")
    p.add_argument("tags", nargs="+", metavar="NEW_TAG")
    add_transport_options(p)
    p.set_defaults(func=cmd_tag)

    p = subparsers.add_parser(
        "delete", help="delete a tag (only that tag), a manifest by digest, or an image"
    )
    p.add_argument("reference", help="HOST/REPO:TAG or HOST/REPO@DIGEST")
    p.add_argument(
        "--manifest", action="store_true", help="delete the manifest a tag points to (and all its tags)"
    )
    p.add_argument("--image", action="store_true", help="delete the manifest and its blobs no other tag uses")
    add_transport_options(p)
    p.set_defaults(func=cmd_delete)
