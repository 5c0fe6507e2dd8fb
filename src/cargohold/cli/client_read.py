"""Read-only client commands: catalog, tags, inspect, manifest, config, digest, check."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from ..client import check, inspect, platforms
from ..client.image import config_bytes, resolve_image
from ..formats import is_index
from ..sizes import human_size
from .client_common import (
    add_platform_options,
    add_transport_options,
    command,
    make_client,
    parse_reference,
    platform_of,
    print_json,
    print_table,
    regex,
    repository_of,
)


@command
def cmd_catalog(args: argparse.Namespace) -> int:
    registry = args.registry.removeprefix("docker://").rstrip("/")
    if "/" in registry:
        raise ValueError(f"{registry!r}: catalog lists a registry (HOST[:PORT]), not a repository")
    with make_client(args) as client:
        if args.namespaces:
            names = client.get_namespaces(registry, args.namespace_filter)
        else:
            names = client.get_repositories(registry, args.repository_filter, args.namespace_filter)
    if args.json:
        print_json(names)
    else:
        for name in names:
            print(name)
    return 0


@command
def cmd_tags(args: argparse.Namespace) -> int:
    repo = repository_of(args.repository)
    with make_client(args) as client:
        if args.details:
            infos = client.tags_with_metadata(repo, args.filter)
            if args.json:
                print_json(
                    [
                        {"tag": t.tag, "digest": str(t.digest), "mediaType": t.media_type, "size": t.size}
                        for t in infos
                    ]
                )
            else:
                print_table(
                    ["TAG", "DIGEST", "MEDIA TYPE", "SIZE"],
                    [(t.tag, t.digest, t.media_type, t.size) for t in infos],
                )
            return 0
        pattern = re.compile(args.filter) if args.filter else None
        tags = [t for t in client.tags(repo) if pattern is None or pattern.search(t)]
    if args.json:
        print_json(tags)
    else:
        for tag in tags:
            print(tag)
    return 0


@command
def cmd_inspect(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    with make_client(args) as client:
        top = client.head_manifest(ref)
        entries = platforms(client, ref) if is_index(top.media_type) else []
        info = inspect(client, ref, platform_of(args))
    config = info.config
    document: dict[str, Any] = {
        "reference": str(ref),
        "digest": str(top.digest),
        "mediaType": top.media_type,
        "size": top.size,
        "image": {
            "digest": str(info.digest),
            "mediaType": info.media_type,
            "architecture": config.architecture,
            "os": config.os,
            "variant": config.variant,
            "created": config.created,
            "labels": config.labels,
            "env": config.env,
            "entrypoint": config.entrypoint,
            "cmd": config.cmd,
            "layers": [
                {"digest": str(d.digest), "size": d.size, "mediaType": d.media_type} for d in info.layers
            ],
            "totalSize": info.total_size,
        },
        "platforms": [
            {"platform": str(e.platform) if e.platform else None, "digest": str(e.digest), "size": e.size}
            for e in entries
        ],
    }
    if args.json:
        print_json(document)
        return 0
    print_table(
        ["FIELD", "VALUE"],
        [
            ("Reference", ref),
            ("Digest", top.digest),
            ("Media type", top.media_type),
            ("Image digest", info.digest),
            ("Platform", "/".join(p for p in (config.os, config.architecture, config.variant) if p)),
            ("Created", config.created),
            ("Entrypoint", json.dumps(config.entrypoint) if config.entrypoint is not None else ""),
            ("Cmd", json.dumps(config.cmd) if config.cmd is not None else ""),
            ("Total size", human_size(info.total_size)),
        ],
    )
    if config.labels:
        print("\nLabels:")
        print_table(["KEY", "VALUE"], sorted(config.labels.items()))
    print("\nLayers:")
    print_table(
        ["DIGEST", "SIZE", "MEDIA TYPE"], [(d.digest, human_size(d.size), d.media_type) for d in info.layers]
    )
    if entries:
        print("\nPlatforms:")
        print_table(["PLATFORM", "DIGEST", "SIZE"], [(e.platform, e.digest, e.size) for e in entries])
    return 0


@command
def cmd_manifest(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    with make_client(args) as client:
        if args.platform:
            _, raw, _, _ = resolve_image(client, ref, platform_of(args))
        else:
            raw = client.get_manifest(ref)
    sys.stdout.buffer.write(raw.raw)
    if sys.stdout.isatty() and not raw.raw.endswith(b"\n"):
        sys.stdout.write("\n")
    return 0


@command
def cmd_config(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    with make_client(args) as client:
        resolved, _, manifest, _ = resolve_image(client, ref, platform_of(args))
        data = config_bytes(client, resolved, manifest)
    sys.stdout.buffer.write(data)
    if sys.stdout.isatty() and not data.endswith(b"\n"):
        sys.stdout.write("\n")
    return 0


@command
def cmd_digest(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    with make_client(args) as client:
        if args.platform:
            resolved, _, _, _ = resolve_image(client, ref, platform_of(args))
            assert resolved.digest is not None
            digest = resolved.digest
            info = client.head_manifest(resolved)
        else:
            info = client.head_manifest(ref)
            digest = info.digest
    if args.json:
        print_json({"digest": str(digest), "mediaType": info.media_type, "size": info.size})
    else:
        print(digest)
    return 0


@command
def cmd_check(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    with make_client(args) as client:
        result = check(client, ref)
    if args.json:
        print_json(
            {
                "ok": result.ok,
                "manifests": [str(d) for d in result.manifests],
                "blobsChecked": result.blobs_checked,
                "missing": [
                    {
                        "manifest": str(m.manifest),
                        "digest": str(m.descriptor.digest),
                        "mediaType": m.descriptor.media_type,
                        "size": m.descriptor.size,
                    }
                    for m in result.missing
                ],
                "missingManifests": [str(d) for d in result.missing_manifests],
            }
        )
    elif result.ok:
        print(f"{ref}: all {result.blobs_checked} blobs of {len(result.manifests)} image(s) present")
    else:
        print_table(
            ["MANIFEST", "MISSING BLOB", "SIZE"],
            [(m.manifest, m.descriptor.digest, m.descriptor.size) for m in result.missing]
            + [(d, "(manifest)", "") for d in result.missing_manifests],
        )
    return 0 if result.ok else 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the read-only client commands."""
    p = subparsers.add_parser("catalog", help="list a registry's repositories (or namespaces)")
    p.add_argument("registry", help="HOST[:PORT]")
    p.add_argument("--repository-filter", "-r", metavar="REGEX", type=regex, help="keep repositories matching this")
    p.add_argument("--namespace-filter", "-n", metavar="REGEX", type=regex, help="keep namespaces matching this")
    p.add_argument("--namespaces", action="store_true", help="list namespaces instead of repositories")
    add_transport_options(p)
    p.set_defaults(func=cmd_catalog)

    p = subparsers.add_parser("tags", aliases=["ls"], help="list a repository's tags")
    p.add_argument("repository", help="[HOST/]NAMESPACE/REPO")
    p.add_argument("--filter", metavar="REGEX", type=regex, help="keep tags matching this")
    p.add_argument("--details", "-l", action="store_true", help="with digest, media type and size")
    add_transport_options(p)
    p.set_defaults(func=cmd_tags)

    for name, func, text in (
        ("inspect", cmd_inspect, "show an image's digest, platform, config and layers"),
        ("manifest", cmd_manifest, "print a manifest exactly as stored"),
        ("config", cmd_config, "print an image's config blob"),
        ("digest", cmd_digest, "print the digest a reference resolves to"),
    ):
        p = subparsers.add_parser(name, help=text)
        p.add_argument("reference", help="HOST/REPO[:TAG][@DIGEST]")
        add_platform_options(p, all_platforms=False)
        add_transport_options(p)
        p.set_defaults(func=func)

    p = subparsers.add_parser("check", help="check every blob of an image (or index) is present")
    p.add_argument("reference", help="HOST/REPO[:TAG][@DIGEST]")
    add_transport_options(p)
    p.set_defaults(func=cmd_check)
