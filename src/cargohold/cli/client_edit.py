"""Client commands that edit images in a registry without moving layers: index create|add|remove, mutate."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ..client.image import parse_platform
from ..client.index_edit import IndexResult, index_add, index_create, index_remove
from ..client.mutate import ConfigChanges, MutateResult, mutate, parse_command
from ..digest import Digest, DigestError
from ..formats import Descriptor
from .client_common import add_transport_options, command, make_client, parse_reference, platform_of, print_json


def parse_pairs(values: Sequence[str] | None, flag: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments (the value may be empty, the key may not); later ones win."""
    pairs: dict[str, str] = {}
    for text in values or ():
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag}: expected KEY=VALUE, got {text!r}")
        pairs[key] = value
    return pairs


def _entry(descriptor: Descriptor) -> dict[str, Any]:
    return {
        "digest": str(descriptor.digest),
        "mediaType": descriptor.media_type,
        "size": descriptor.size,
        "platform": str(descriptor.platform) if descriptor.platform is not None else None,
    }


def _report_index(args: argparse.Namespace, result: IndexResult) -> None:
    if args.json:
        tag = result.reference.with_tag(result.reference.tag) if result.reference.tag else result.reference
        print_json(
            {
                "reference": str(tag),
                "digest": str(result.reference.digest),
                "mediaType": result.media_type,
                "size": result.size,
                "manifests": [_entry(d) for d in result.manifests],
                "removed": [_entry(d) for d in result.removed],
                "manifestsBrought": result.brought,
                "blobsMounted": result.mounted,
            }
        )
    else:
        print(result.reference.digest)


@command
def cmd_index_create(args: argparse.Namespace) -> int:
    target = parse_reference(args.reference)
    sources = [parse_reference(s) for s in args.sources]
    annotations = parse_pairs(args.annotation, "--annotation")
    with make_client(args) as client:
        result = index_create(client, target, sources, annotations=annotations, format=args.format)
    _report_index(args, result)
    return 0


@command
def cmd_index_add(args: argparse.Namespace) -> int:
    target = parse_reference(args.reference)
    sources = [parse_reference(s) for s in args.sources]
    with make_client(args) as client:
        result = index_add(client, target, sources)
    _report_index(args, result)
    return 0


def _digest(text: str) -> Digest:
    try:
        return Digest.parse(text)
    except DigestError as exc:
        raise ValueError(f"{text!r} is not a digest ({exc}); give a digest or --platform OS/ARCH[/VARIANT]") from None


@command
def cmd_index_remove(args: argparse.Namespace) -> int:
    target = parse_reference(args.reference)
    digests = [_digest(d) for d in args.digests]
    platforms = [parse_platform(p) for p in args.platform or ()]
    with make_client(args) as client:
        result = index_remove(client, target, digests=digests, platforms=platforms)
    _report_index(args, result)
    return 0


def _changes(args: argparse.Namespace) -> ConfigChanges:
    return ConfigChanges(
        labels=parse_pairs(args.label, "--label"),
        env=parse_pairs(args.env, "--env"),
        entrypoint=None if args.entrypoint is None else parse_command(args.entrypoint, "--entrypoint"),
        cmd=None if args.cmd is None else parse_command(args.cmd, "--cmd"),
        user=args.user,
        workdir=args.workdir,
        annotations=parse_pairs(args.annotation, "--annotation"),
    )


def _report_mutate(args: argparse.Namespace, result: MutateResult) -> None:
    if not args.json:
        print(result.reference.digest)
        return
    ref = result.reference
    print_json(
        {
            "reference": str(ref.with_tag(ref.tag) if ref.tag else ref),
            "digest": str(ref.digest),
            "mediaType": result.media_type,
            "size": result.size,
            "images": [
                {
                    "platform": str(i.platform) if i.platform is not None else None,
                    "digest": str(i.digest),
                    "mediaType": i.media_type,
                    "size": i.size,
                    "config": str(i.config),
                }
                for i in result.images
            ],
            "blobsMounted": result.mounted,
        }
    )


@command
def cmd_mutate(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    tag = parse_reference(args.tag) if args.tag else None
    changes = _changes(args)
    if not changes.touches_config and not changes.annotations and tag is None:
        raise ValueError("nothing to change: give --label, --env, --entrypoint, --cmd, --user, --workdir, "
                         "--annotation or --tag")
    with make_client(args) as client:
        result = mutate(client, ref, changes, tag=tag, platform=platform_of(args))
    _report_mutate(args, result)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``index`` (create, add, remove) and ``mutate``."""
    index = subparsers.add_parser("index", help="build or change an index from images in a registry")
    verbs = index.add_subparsers(dest="index_command", required=True, metavar="VERB")

    p = verbs.add_parser(
        "create", help="an OCI index (or Docker manifest list) over existing images of the same registry"
    )
    p.add_argument("reference", help="REGISTRY/REPO:TAG to write")
    p.add_argument("sources", nargs="+", metavar="SRC_REF", help="images, or indexes whose entries are taken")
    p.add_argument("--annotation", action="append", metavar="KEY=VALUE", help="index annotation (repeatable)")
    p.add_argument("--format", default="oci", metavar="oci|docker",
                   help="oci: an OCI index (default); docker: a Docker manifest list (Docker schema 2 images only)")
    add_transport_options(p)
    p.set_defaults(func=cmd_index_create)

    p = verbs.add_parser("add", help="add images (or an index's entries) to an index, written back to its tag")
    p.add_argument("reference", metavar="INDEX_REF")
    p.add_argument("sources", nargs="+", metavar="SRC_REF")
    add_transport_options(p)
    p.set_defaults(func=cmd_index_add)

    p = verbs.add_parser("remove", help="remove entries by digest or platform from an index, written back to its tag")
    p.add_argument("reference", metavar="INDEX_REF")
    p.add_argument("digests", nargs="*", metavar="DIGEST")
    p.add_argument("--platform", action="append", metavar="OS/ARCH[/VARIANT]",
                   help="remove the entries for this platform (repeatable)")
    add_transport_options(p)
    p.set_defaults(func=cmd_index_remove)

    p = subparsers.add_parser(
        "mutate", help="change an image's config or annotations in the registry; no layer moves"
    )
    p.add_argument("reference", help="REGISTRY/REPO:TAG or @DIGEST (an image, or an index: every image in it)")
    p.add_argument("--tag", "-t", metavar="NEWREF", help="write to this reference (default: over REF's tag)")
    p.add_argument("--label", "-l", action="append", metavar="KEY=VALUE", help="add or replace a label")
    p.add_argument("--env", "-e", action="append", metavar="KEY=VALUE", help="set an environment variable")
    p.add_argument("--entrypoint", metavar="CMD",
                   help='JSON array (\'["/bin/sh","-c"]\') or shell words; "" clears it')
    p.add_argument("--cmd", metavar="CMD", help='JSON array or shell words; "" clears it')
    p.add_argument("--user", "-u", metavar="USER")
    p.add_argument("--workdir", "-w", metavar="DIR")
    p.add_argument("--annotation", "-a", action="append", metavar="KEY=VALUE",
                   help="manifest annotation (OCI only; on an index, on it and each image changed)")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="of an index, change only this platform's image (default: every image)")
    add_transport_options(p)
    p.set_defaults(func=cmd_mutate)
