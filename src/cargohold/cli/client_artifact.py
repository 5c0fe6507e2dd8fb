"""Client commands for OCI artifacts and referrers: artifact push, artifact pull, referrers."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..client.artifact import ArtifactFile, check_media_type, parse_annotations, pull_artifact, push_artifact
from ..client.referrers import referrers
from ..digest import Digest, DigestError
from ..reference import Reference, ReferenceError
from .client_common import add_transport_options, command, make_client, parse_reference, print_json, print_table


def _target(text: str) -> Reference:
    """``REGISTRY/REPO[:TAG]``: no tag means the artifact is pushed by digest (as ``oras attach`` does)."""
    ref = parse_reference(text)
    if ref.digest is not None:
        raise ReferenceError(f"{text!r}: an artifact is pushed to REGISTRY/REPO[:TAG], not to a digest")
    tagged = ":" in text.removeprefix("docker://").rpartition("/")[2]
    return ref if tagged else Reference(ref.registry, ref.repository, None, None)


def _subject(text: str, target: Reference) -> Reference:
    """A full reference, or a digest (``sha256:...``, ``@sha256:...``) in the target's repository."""
    bare = text.removeprefix("@")
    if "/" not in bare:
        try:
            return Reference(target.registry, target.repository, None, Digest.parse(bare))
        except DigestError:
            pass
    return parse_reference(text)


@command
def cmd_artifact_push(args: argparse.Namespace) -> int:
    target = _target(args.reference)
    artifact_type = check_media_type(args.artifact_type, "--artifact-type")
    annotations = parse_annotations(args.annotation)
    files = [ArtifactFile.parse(text) for text in args.files]
    with make_client(args) as client:
        subject = _subject(args.subject, target) if args.subject else None
        pushed = push_artifact(client, target, files, artifact_type, subject=subject, annotations=annotations)
    if args.json:
        print_json(pushed.to_json())
    else:
        about = f" (subject {pushed.subject.digest})" if pushed.subject else ""
        print(f"pushed {pushed.reference.registry}/{pushed.reference.repository}@{pushed.digest}{about}")
    return 0


@command
def cmd_artifact_pull(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    with make_client(args) as client:
        pulled = pull_artifact(client, ref, Path(args.output))
    if args.json:
        print_json(pulled.to_json())
    else:
        for title, path, _ in pulled.files:
            print(f"{title} -> {path}")
        if pulled.untitled:
            print(f"({pulled.untitled} layers without a title skipped)")
    return 0


@command
def cmd_referrers(args: argparse.Namespace) -> int:
    ref = parse_reference(args.reference)
    if args.artifact_type:
        check_media_type(args.artifact_type, "--artifact-type")
    with make_client(args) as client:
        subject = ref.digest or client.head_manifest(ref).digest
        found = referrers(client, ref, subject, args.artifact_type)
    if args.json:
        print_json(found.to_json())
    else:
        print_table(["DIGEST", "ARTIFACT TYPE", "MEDIA TYPE", "SIZE"],
                    [(d.digest, d.artifact_type or "", d.media_type, d.size) for d in found.manifests])
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``artifact push|pull`` and ``referrers``."""
    artifact = subparsers.add_parser("artifact", help="push or pull an OCI artifact (files, optional subject)")
    verbs = artifact.add_subparsers(dest="artifact_command", required=True, metavar="COMMAND")
    p = verbs.add_parser("push", help="push files as an OCI artifact, optionally referring to a subject")
    p.add_argument("reference", help="REGISTRY/REPO[:TAG] (no tag: pushed by digest)")
    p.add_argument("files", nargs="*", metavar="FILE[:MEDIATYPE]",
                   help="a file per layer, titled with its name (default type application/vnd.oci.image.layer.v1.tar)")
    p.add_argument("--artifact-type", required=True, metavar="TYPE", help="the artifact's media type")
    p.add_argument("--subject", metavar="REF", help="the manifest this artifact refers to (same repository)")
    p.add_argument("--annotation", action="append", default=[], metavar="K=V", help="manifest annotation")
    add_transport_options(p)
    p.set_defaults(func=cmd_artifact_push)
    p = verbs.add_parser("pull", help="write an artifact's files into a directory under their titles")
    p.add_argument("reference", help="REGISTRY/REPO:TAG or @DIGEST")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="directory to write the files in")
    add_transport_options(p)
    p.set_defaults(func=cmd_artifact_pull)

    p = subparsers.add_parser("referrers", help="list the manifests that refer to an image (signatures, SBOMs)")
    p.add_argument("reference", help="REGISTRY/REPO:TAG or @DIGEST")
    p.add_argument("--artifact-type", metavar="TYPE", help="only referrers of this artifact type")
    add_transport_options(p)
    p.set_defaults(func=cmd_referrers)
