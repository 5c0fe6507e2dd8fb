"""``cargohold retention``: apply the configuration's ``retention`` policies now, or list what they would delete.

Works on the database directly (``--config``, ``--data-dir``, ``--database-url`` as for ``serve``), as
``cargohold audit`` does, through the same service code as the server's retention job and the API's
DELETE: every deletion is an audit entry and a webhook event (delivered by a running server), by the actor
``retention``. It deletes rows; garbage collection frees the bytes later. ``retention.dry_run`` applies to
the job only: this command deletes unless given ``--dry-run``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ..config import ConfigError, ServerConfig
from ..config.proxies import proxy_retention
from ..config.retention import RetentionSection
from ..events.recorder import Recorder
from ..metadata import open_metadata_store
from ..metadata.store import MetadataError
from ..service.common import Guard, RegistryOptions
from ..service.manifests import Manifests
from ..service.retention import Retention, RetentionReport
from ..webhooks import Endpoints
from .registry_options import add_location_options, located_config, require_registry


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "retention", help="apply the retention policies (or list what they would delete)",
        description="Delete the tags and untagged manifests the configuration's retention policies let go,"
                    " or with --dry-run list them: repository, tag or digest, and why.",
    )
    add_location_options(parser)
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.set_defaults(func=run)


async def _apply(config: ServerConfig, dry_run: bool) -> RetentionReport:
    meta = open_metadata_store(config.metadata_url)
    try:
        recorder = Recorder(Endpoints(config.notifications.endpoints, meta))
        guard = Guard(RegistryOptions(read_only=config.server.read_only))
        return await Retention(meta, Manifests(meta, guard, recorder=recorder), _section(config)).run(dry_run)
    finally:
        await meta.close()


def _section(config: ServerConfig) -> RetentionSection:
    """The configured policies, after those the proxies' ``ttl`` derive."""
    return proxy_retention(config.retention, config.proxies, configured=True)


def _print(report: RetentionReport) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    rows = [(verb, r.repository, r.target if r.kind == "tag" else f"@{r.target}", r.reason) for r in report.removals]
    rows += [("kept", p.repository, p.tag, f"protected by {p.rule}") for p in report.protected]
    rows += [("skipped", r.repository, r.target if r.kind == "tag" else f"@{r.target}", why)
             for r, why in report.skipped]
    header = ("ACTION", "REPOSITORY", "TAG OR DIGEST", "WHY")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3])
    print(f"{len(report.removals)} {verb}, {len(report.protected)} kept by immutable tag rules,"
          f" {len(report.skipped)} skipped, in {report.repositories} repositories", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        config = located_config(args)
        require_registry(config)
        if not _section(config).policies:
            raise ConfigError("retention.policies is empty: no policy to apply (give the server's --config)")
    except ConfigError as exc:
        print(f"cargohold retention: {exc}", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(_apply(config, args.dry_run))
    except (MetadataError, OSError) as exc:
        print(f"cargohold retention: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print(report)
    return 0
