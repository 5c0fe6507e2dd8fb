"""Client commands that read or write layer bytes: append, flatten, export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..client.append import EditResult, append
from ..client.flatten import export, flatten, output_file
from ..reference import Reference, ReferenceError, is_tag
from .client_common import (
    add_transport_options,
    command,
    make_cache,
    make_client,
    parse_reference,
    platform_of,
    print_json,
)


def _new_reference(ref: Reference, text: str | None) -> Reference | None:
    """``--tag``: a full reference, or a bare tag for ``ref``'s repository."""
    if text is None:
        return None
    if "/" not in text:
        tag = text.removeprefix(":")
        if not is_tag(tag):
            raise ReferenceError(f"--tag {text!r}: not a tag, nor a reference HOST/REPO:TAG")
        return ref.with_tag(tag)
    return parse_reference(text)


def _report(args: argparse.Namespace, verb: str, result: EditResult) -> None:
    if args.json:
        document: dict[str, Any] = {
            "source": str(result.source),
            "destination": str(result.destination),
            "digest": str(result.digest),
            "mediaType": result.media_type,
            "layers": result.layers,
            "added": [
                {
                    "source": layer.source,
                    "mediaType": layer.descriptor.media_type,
                    "digest": str(layer.descriptor.digest),
                    "size": layer.descriptor.size,
                    "diffID": str(layer.diff_id),
                }
                for layer in result.added
            ],
            "blobsUploaded": result.blobs_uploaded,
            "blobsSkipped": result.blobs_skipped,
            "blobsMounted": result.blobs_mounted,
        }
        print_json(document)
    else:
        print(
            f"{verb} {result.source} -> {result.destination}: {result.digest} "
            f"({result.layers} layers, {result.blobs_uploaded} blobs uploaded)"
        )


@command
def cmd_append(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    with make_client(args) as client:
        result = append(
            client,
            ref,
            [Path(p) for p in args.layer],
            tag=_new_reference(ref, args.tag),
            compression=args.compress,
        )
    _report(args, "appended", result)
    return 0


@command
def cmd_flatten(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    with make_client(args) as client:
        result = flatten(client, ref, cache=make_cache(args), tag=_new_reference(ref, args.tag))
    _report(args, "flattened", result)
    return 0


@command
def cmd_export(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    with make_client(args) as client:
        if args.output == "-":
            if args.json:
                raise ValueError("--json writes to stdout: export to a file with -o FILE")
            export(client, ref, sys.stdout.buffer, cache=make_cache(args), platform=platform_of(args))
            sys.stdout.buffer.flush()
            return 0
        with output_file(Path(args.output)) as out:
            result = export(client, ref, out, cache=make_cache(args), platform=platform_of(args))
    if args.json:
        print_json(
            {
                "reference": str(result.reference),
                "digest": str(result.digest),
                "output": args.output,
                "layers": result.layers,
                "entries": result.entries,
            }
        )
    else:
        print(f"exported {result.reference} -> {args.output} ({result.layers} layers, {result.entries} entries)")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands that move layer bytes."""
    tag_help = "push the result here (a reference, or a tag of the same repository); default: overwrite REF's tag"
    cache_help = "blob cache for the layers (default ~/.cache/cargohold)"

    p = subparsers.add_parser("append", help="add tar layers on top of an image and push it")
    p.add_argument("reference", help="HOST/REPO:TAG or @DIGEST of an image")
    p.add_argument(
        "--layer", action="append", required=True, metavar="FILE", help="a tar, .tar.gz or .tar.zst (repeatable)"
    )
    p.add_argument("--tag", "-t", metavar="NEWREF", help=tag_help)
    p.add_argument(
        "--compress",
        choices=["gzip", "zstd", "none"],
        default="gzip",
        help="how to compress a plain tar (default gzip); compressed files are kept as they are",
    )
    add_transport_options(p)
    p.set_defaults(func=cmd_append)

    p = subparsers.add_parser("flatten", help="push an image with its layers applied into one layer")
    p.add_argument("reference", help="HOST/REPO:TAG or @DIGEST of an image")
    p.add_argument("--tag", "-t", metavar="NEWREF", help=tag_help)
    p.add_argument("--cache-dir", metavar="DIR", help=cache_help)
    add_transport_options(p)
    p.set_defaults(func=cmd_flatten)

    p = subparsers.add_parser("export", help="write an image's filesystem (its layers applied) as one tar")
    p.add_argument("reference", help="HOST/REPO:TAG or @DIGEST")
    p.add_argument("--output", "-o", required=True, metavar="FILE", help="the tar to write; - for stdout")
    p.add_argument(
        "--platform", metavar="OS/ARCH[/VARIANT]", help="image of an index to export (default: this machine's)"
    )
    p.add_argument("--cache-dir", metavar="DIR", help=cache_help)
    add_transport_options(p)
    p.set_defaults(func=cmd_export)
