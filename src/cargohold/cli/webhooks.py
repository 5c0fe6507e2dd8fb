"""``cargohold webhooks``: list, add, remove and test webhook endpoints; list and redeliver deliveries.

Works on the data directory's database (``--data-dir``, ``--config`` or
``CARGOHOLD_*`` as for ``serve``), as ``cargohold admin`` does; the running
server sees a change at once. Endpoints of the configuration are listed and
tested but changed only in the configuration. A secret is read from one line of
standard input (``--secret-stdin``), never from a flag.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ..config import ConfigError, ServerConfig
from ..metadata import open_metadata_store
from ..metadata.store import MetadataError
from ..webhooks import Links, Source
from ..webhooks.manage import WebhookAdmin, WebhookError
from .registry_options import add_location_options, located_config, print_rows, require_registry, verb_parser


def _document(args: argparse.Namespace, message: str, document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=2) if args.json else message)


async def list_endpoints(admin: WebhookAdmin, args: argparse.Namespace) -> int:
    rows = await admin.endpoint_list()
    if not args.json:
        for row in rows:
            row["actions"] = ",".join(row["actions"])
            row["repositories"] = ",".join(row["repositories"]) or "*"
    print_rows(args, rows, ["name", "source", "format", "url", "actions", "repositories", "disabled"])
    return 0


async def add(admin: WebhookAdmin, args: argparse.Namespace) -> int:
    settings: dict[str, Any] = {"name": args.name, "url": args.url, "format": args.format}
    headers: dict[str, list[str]] = {}
    for header in args.header or []:
        name, sep, value = header.partition(":")
        if not sep:
            raise WebhookError(f"--header: cannot use {header!r} (must be NAME: VALUE)")
        headers.setdefault(name.strip(), []).append(value.strip())
    optional = {"headers": headers, "timeout": args.timeout, "backoff": args.backoff, "max_attempts": args.max_attempts,
                "repositories": args.repository, "actions": args.actions, "disabled": args.disabled or None,
                "ignore": {"mediatypes": args.ignore_media_type} if args.ignore_media_type else None}
    settings.update({key: value for key, value in optional.items() if value})
    if args.secret_stdin:
        settings["secret"] = sys.stdin.readline().rstrip("\r\n")
    view = await admin.add(settings)
    _document(args, f"webhook endpoint {args.name} added ({view['format']}, {view['url']})", view)
    return 0


async def remove(admin: WebhookAdmin, args: argparse.Namespace) -> int:
    await admin.remove(args.name)
    _document(args, f"webhook endpoint {args.name} removed; its pending deliveries are dead",
              {"name": args.name, "removed": True})
    return 0


async def test(admin: WebhookAdmin, args: argparse.Namespace) -> int:
    result = await admin.test(args.name)
    if result["delivered"]:
        message = f"{args.name}: delivered (HTTP {result['status']}) in {result['seconds']} s"
    else:
        message = f"{args.name}: not delivered: {result['error']}"
    _document(args, message, result)
    return 0 if result["delivered"] else 1


async def deliveries(admin: WebhookAdmin, args: argparse.Namespace) -> int:
    rows = await admin.deliveries(args.endpoint, args.state, args.limit, args.before)
    print_rows(args, rows, ["id", "event_id", "endpoint", "state", "attempts", "last_status", "last_error",
                        "next_attempt", "action", "repository"])
    return 0


async def redeliver(admin: WebhookAdmin, args: argparse.Namespace) -> int:
    view = await admin.redeliver(args.id)
    _document(args, f"delivery {args.id} of event {view['event_id']} to {view['endpoint']} is pending again", view)
    return 0


def register(subparsers: Any) -> None:
    webhooks: argparse.ArgumentParser = subparsers.add_parser(
        "webhooks", help="manage webhook endpoints and their deliveries",
        description="Manage webhook endpoints and their deliveries in the data directory's database.",
    )
    add_location_options(webhooks)
    webhooks.set_defaults(func=run)
    verbs = webhooks.add_subparsers(dest="verb", required=True, metavar="VERB")

    verb_parser(verbs, "list", list_endpoints, "list the endpoints (configured and added)")
    parser = verb_parser(verbs, "add", add, "add an endpoint")
    parser.add_argument("name")
    parser.add_argument("url", help="an http or https URL")
    parser.add_argument("--format", choices=["distribution", "quay"], default="distribution")
    parser.add_argument("--header", action="append", metavar="'NAME: VALUE'", help="send this header (repeatable)")
    parser.add_argument("--timeout", metavar="DURATION", help="per attempt (5s, 500ms; default 5s)")
    parser.add_argument("--backoff", metavar="DURATION", help="first wait after a failure (default 1s)")
    parser.add_argument("--max-attempts", dest="max_attempts", type=int, help="before a delivery is dead (12)")
    parser.add_argument("--repository", action="append", metavar="GLOB", help="only these repositories")
    parser.add_argument("--action", dest="actions", action="append", metavar="ACTION",
                        help="only these actions: push, pull, delete, mount or manifest.push, ... (default all four)")
    parser.add_argument("--ignore-media-type", dest="ignore_media_type", action="append", metavar="TYPE")
    parser.add_argument("--disabled", action="store_true", help="add it without sending it anything yet")
    parser.add_argument("--secret-stdin", dest="secret_stdin", action="store_true",
                        help="read the signing secret from one line of standard input")
    verb_parser(verbs, "remove", remove, "remove an added endpoint").add_argument("name")
    verb_parser(verbs, "test", test, "send an endpoint a test event now").add_argument("name")
    parser = verb_parser(verbs, "deliveries", deliveries, "list deliveries, newest first")
    parser.add_argument("--endpoint", metavar="NAME")
    parser.add_argument("--state", choices=["pending", "delivered", "dead"])
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--before", type=int, metavar="ID", help="the next page: deliveries older than this id")
    verb_parser(verbs, "redeliver", redeliver, "make a dead delivery pending again").add_argument("id", type=int)


async def _run(config: ServerConfig, args: argparse.Namespace) -> int:
    meta = open_metadata_store(config.metadata_url)
    try:
        admin = WebhookAdmin(config.notifications.endpoints, meta, Links.of(config), Source.of(config))
        code: int = await args.action(admin, args)
        return code
    finally:
        await meta.close()


def run(args: argparse.Namespace) -> int:
    try:
        config = located_config(args)
        require_registry(config)
    except ConfigError as exc:
        print(f"cargohold webhooks: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(config, args))
    except BrokenPipeError:
        raise
    except (WebhookError, MetadataError, OSError) as exc:
        print(f"cargohold webhooks: {exc}", file=sys.stderr)
        return 1
