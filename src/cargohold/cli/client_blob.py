"""Client commands on single blobs: blob get, blob put."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

from ..client import blobs
from ..client.pull import upload_with_restarts
from ..digest import Digest
from ..formats import Descriptor
from ..reference import Reference
from .client_common import add_transport_options, command, make_client, print_json, repository_of


@command
def cmd_blob_get(args: argparse.Namespace) -> int:
    named = repository_of(args.repository)
    if (named.digest is None) == (args.digest is None):
        raise ValueError("name the blob once: blob get HOST/REPO@DIGEST, or blob get HOST/REPO DIGEST")
    digest = named.digest or Digest.parse(args.digest)
    repo = Reference(named.registry, named.repository)
    to_file = bool(args.output and args.output != "-")
    if args.json and not to_file:
        raise ValueError("blob get --json needs --output FILE: without it, the blob's bytes are the output")
    if to_file and not Path(args.output).absolute().parent.is_dir():
        raise ValueError(f"{Path(args.output).absolute().parent}: no such directory")
    with make_client(args) as client:
        if to_file:
            target = Path(args.output)
            partial = target.with_name(f".{target.name}.partial")
            blobs.download(client, repo, digest, None, partial)
            partial.replace(target)
        else:
            for chunk in blobs.stream(client, repo, digest, None):
                sys.stdout.buffer.write(chunk)
    if args.json:
        print_json({"digest": str(digest), "size": Path(args.output).stat().st_size, "output": args.output})
    return 0


@command
def cmd_blob_put(args: argparse.Namespace) -> int:
    repo = repository_of(args.repository)
    path = Path(args.file)
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(blobs.READ_SIZE):
            hasher.update(block)
    digest = Digest("sha256", hasher.hexdigest())

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as handle:
            while block := handle.read(blobs.READ_SIZE):
                yield block

    descriptor = Descriptor("application/octet-stream", digest, path.stat().st_size)
    with make_client(args) as client:
        if client.blob_size(repo, digest) is None:
            upload_with_restarts(client, repo, descriptor, chunks)
    if args.json:
        print_json({"digest": str(digest), "size": path.stat().st_size})
    else:
        print(digest)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``blob get`` and ``blob put``."""
    blob = subparsers.add_parser("blob", help="get or put a single blob")
    blob_commands = blob.add_subparsers(dest="blob_command", required=True, metavar="COMMAND")
    p = blob_commands.add_parser("get", help="download a blob (verified)")
    p.add_argument("repository", help="HOST/REPO DIGEST, or HOST/REPO@DIGEST as crane writes it")
    p.add_argument("digest", nargs="?")
    p.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    add_transport_options(p)
    p.set_defaults(func=cmd_blob_get)
    p = blob_commands.add_parser("put", help="upload a file as a blob; prints its digest")
    p.add_argument("repository", help="HOST/REPO")
    p.add_argument("file")
    add_transport_options(p)
    p.set_defaults(func=cmd_blob_put)
