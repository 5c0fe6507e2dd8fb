"""``cargohold mirror``: add, list, run and remove mirror jobs; list a job's runs.

Works on the data directory's database (``--data-dir``, ``--config`` or ``CARGOHOLD_*`` as for ``serve``);
the running server picks up a job added here at its next look (a few seconds) and runs it on its schedule.
``run`` runs a job now, in this process, writing to (or reading from) the running server at its
``server.listen`` address as the server's own runs do (:mod:`cargohold.mirror.local`), and exits 1 when the
run had errors. ``/admin/v1/mirrors`` does the same over HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
from typing import Any

from ..auth.keys import KeyFileError
from ..config import ConfigError, ServerConfig
from ..metadata import open_metadata_store
from ..metadata.store import MetadataError
from ..mirror.local import LocalRegistry
from ..mirror.model import MirrorBusy, MirrorError, MirrorExists, MirrorJob, MirrorRun, MirrorUnknown
from ..mirror.service import Mirrors
from .registry_options import add_location_options, located_config, print_rows, require_registry, verb_parser

RUNS_SHOWN = 20


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run_text(run: MirrorRun) -> str:
    lines = [f"run {run.id} of {run.job} ({run.started_by}), {_when(run.started_at)} to {_when(run.finished_at)}:"
             f" {len(run.copied)} copied, {len(run.skipped)} skipped, {len(run.errors)} errors,"
             f" {len(run.pruned)} pruned"]
    lines += [f"  copied  {tag}  {digest}" for tag, digest in sorted(run.copied.items())]
    lines += [f"  skipped {tag}  ({why})" for tag, why in sorted(run.skipped.items())]
    lines += [f"  pruned  {tag}" for tag in run.pruned]
    lines += [f"  error   {tag or '(run)'}  {message}" for tag, message in sorted(run.errors.items())]
    return "\n".join(lines)


async def list_jobs(mirrors: Mirrors, args: argparse.Namespace) -> int:
    jobs = await mirrors.store.mirrors()
    if args.json:
        print(json.dumps([job.to_json() for job in jobs], indent=2))
        return 0
    print_rows(args, [{"name": j.name, "source": j.source, "destination": j.destination, "tags": j.tags or "*",
                       "interval": f"{j.interval_seconds:g}s", "next_run": _when(j.next_run_at),
                       "failures": j.failures} for j in jobs],
               ["name", "source", "destination", "tags", "interval", "next_run", "failures"])
    return 0


async def add(mirrors: Mirrors, args: argparse.Namespace) -> int:
    document: dict[str, Any] = {
        "name": args.name, "source": args.source, "destination": args.destination, "tags": args.tags or "",
        "interval": args.interval, "platforms": args.platform or [], "with_referrers": args.with_referrers,
        "only_signed": args.only_signed, "prune": args.prune, "username": args.username,
        "password_file": args.password_file, "docker_config": args.docker_config, "insecure": args.insecure,
    }
    job = await mirrors.add(MirrorJob.from_json(document))
    print(json.dumps(job.to_json(), indent=2) if args.json else
          f"mirror job {job.name} added: {job.source} -> {job.destination} every {job.interval_seconds:g} s")
    return 0


async def run_now(mirrors: Mirrors, args: argparse.Namespace) -> int:
    done = await mirrors.run(args.name, "command")
    print(json.dumps(done.to_json(), indent=2) if args.json else _run_text(done))
    return 1 if done.failed else 0


async def remove(mirrors: Mirrors, args: argparse.Namespace) -> int:
    if not await mirrors.store.remove_mirror(args.name):
        raise MirrorUnknown(args.name)
    print(json.dumps({"name": args.name, "removed": True}) if args.json else f"mirror job {args.name} removed")
    return 0


async def runs(mirrors: Mirrors, args: argparse.Namespace) -> int:
    if await mirrors.store.mirror(args.name) is None:
        raise MirrorUnknown(args.name)
    found = await mirrors.store.mirror_runs(args.name, args.limit)
    if args.json:
        print(json.dumps([run.to_json() for run in found], indent=2))
    else:
        print("\n".join(_run_text(run) for run in found) or f"{args.name} has not run yet")
    return 0


def register(subparsers: Any) -> None:
    mirror: argparse.ArgumentParser = subparsers.add_parser(
        "mirror", help="manage scheduled mirror jobs (copy repositories between registries)",
        description="Manage the jobs that copy a repository from another registry into this one, or out of it,"
                    " on a schedule.",
    )
    add_location_options(mirror)
    mirror.set_defaults(func=run)
    verbs = mirror.add_subparsers(dest="verb", required=True, metavar="VERB")
    verb_parser(verbs, "list", list_jobs, "list the jobs")
    parser = verb_parser(verbs, "add", add, "add a job (it runs at once, then every --interval)")
    parser.add_argument("name")
    parser.add_argument("--source", required=True, metavar="REGISTRY/REPOSITORY",
                        help="where to copy from (local/REPOSITORY: this registry)")
    parser.add_argument("--destination", required=True, metavar="PREFIX|REGISTRY/PREFIX",
                        help="a prefix in this registry, or a remote registry and prefix; the source's"
                             " repository path goes after it")
    parser.add_argument("--tags", metavar="FILTER", help="a regular expression or a semver range (^1.4, >=1.2 <2)")
    parser.add_argument("--interval", default="1h", metavar="DURATION", help="between runs (90s, 15m, 6h; 1h)")
    parser.add_argument("--platform", action="append", metavar="OS/ARCH", help="only these platforms (repeatable)")
    parser.add_argument("--with-referrers", dest="with_referrers", action="store_true",
                        help="copy the signatures, SBOMs and other referrers of what is copied")
    parser.add_argument("--only-signed", dest="only_signed", action="store_true",
                        help="copy a tag only when a signature refers to it")
    parser.add_argument("--prune", action="store_true", help="delete copied tags that the source no longer has")
    parser.add_argument("--username", help="the remote registry's user")
    parser.add_argument("--password-file", dest="password_file", metavar="FILE", help="a file holding its password")
    parser.add_argument("--docker-config", dest="docker_config", metavar="FILE",
                        help="a docker config.json to take the remote registry's credentials from")
    parser.add_argument("--insecure", action="store_true", help="do not check the remote registry's certificate")
    verb_parser(verbs, "run", run_now, "run a job now, here").add_argument("name")
    verb_parser(verbs, "remove", remove, "remove a job and its runs").add_argument("name")
    parser = verb_parser(verbs, "runs", runs, "list a job's last runs, newest first")
    parser.add_argument("name")
    parser.add_argument("--limit", type=int, default=RUNS_SHOWN)


async def _run(config: ServerConfig, local: LocalRegistry, args: argparse.Namespace) -> int:
    meta = open_metadata_store(config.metadata_url)
    try:
        code: int = await args.action(Mirrors(meta, local), args)
        return code
    finally:
        await meta.close()


def run(args: argparse.Namespace) -> int:
    try:
        config = located_config(args)
        require_registry(config)
        key = None
        if args.verb == "run" and config.auth.mode == "token":
            from ..auth.stored_keys import token_signing_key

            key = token_signing_key(config)
        local = LocalRegistry.of(config, key)
    except (ConfigError, KeyFileError) as exc:
        print(f"cargohold mirror: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(config, local, args))
    except MirrorError as exc:
        print(f"cargohold mirror: {exc}", file=sys.stderr)
        return 2
    except MirrorExists as exc:
        print(f"cargohold mirror: a job {str(exc)!r} exists already", file=sys.stderr)
        return 1
    except MirrorUnknown as exc:
        print(f"cargohold mirror: no job {str(exc)!r}", file=sys.stderr)
        return 1
    except MirrorBusy as exc:
        print(f"cargohold mirror: job {str(exc)!r} is running now", file=sys.stderr)
        return 1
    except (MetadataError, OSError) as exc:
        print(f"cargohold mirror: {exc}", file=sys.stderr)
        return 1
