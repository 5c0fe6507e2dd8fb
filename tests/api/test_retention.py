"""Retention on each setup (SQLite + filesystem, PostgreSQL + S3): each keep rule, immutable tags left alone,
untagged manifests with an index's children and referrers, an audit entry and a webhook event for every
deletion by the actor ``retention``, a dry run that lists exactly what the next real run deletes, and the
server's job.

``cargohold retention`` runs against the server's database with a configuration of the test's own (its
policies cover the test's namespace only, so the other tests' repositories are a repository no policy
covers) and the server's webhook endpoint, whose deliveries the server sends."""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from cargohold.cli.main import main
from tests.support.backends import Setup, setup_for
from tests.support.postgres import query
from tests.support.servers import CargoholdServer, free_port
from tests.webhooks.receiver import Receiver

from .helpers import OCI_INDEX, OCI_MANIFEST, descriptor, image_manifest, put_manifest, sha256

FLUSH = 0.3
NOTIFICATIONS = {"endpoints": [{"name": "hook", "url": "", "actions": ["delete"], "backoff": "100ms"}]}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver().start()
    yield running
    running.stop()


def notifications(receiver: Receiver) -> dict[str, Any]:
    return {"endpoints": [{**NOTIFICATIONS["endpoints"][0], "url": receiver.url}]}


@pytest.fixture(scope="module")
def server(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           receiver: Receiver) -> Iterator[CargoholdServer]:
    tmp = tmp_path_factory.mktemp(f"retention-{backend}")
    place = setup_for(backend, request)
    config = tmp / "server.yml"
    config.write_text(yaml.safe_dump({"notifications": notifications(receiver)}))
    env = {**place.env, "CARGOHOLD_SERVER_PULL_TIMES_FLUSH_SECONDS": str(FLUSH)}
    running = CargoholdServer(tmp / "data", free_port(), ["--config", str(config), "--workers", "2"], env,
                              database_url=place.database_url).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture()
def client(server: CargoholdServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def location(server: CargoholdServer) -> list[str]:
    return ["--data-dir", str(server.data_dir), *(["--database-url", server.database_url]
                                                   if server.database_url else [])]


def cli(server: CargoholdServer, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args[:1], *location(server), *args[1:]])
    return code, out.getvalue(), err.getvalue()


def retention(server: CargoholdServer, tmp: Path, receiver: Receiver, *flags: str, **section: Any) -> dict[str, Any]:
    """``cargohold retention --json`` with these ``retention`` settings; its report."""
    config = tmp / f"retention-{time.monotonic_ns()}.yml"
    config.write_text(yaml.safe_dump({"notifications": notifications(receiver),
                                      "retention": {"delay": "0s", **section}}))
    code, out, err = cli(server, "retention", "--config", str(config), "--json", *flags)
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


def targets(entries: list[dict[str, Any]]) -> set[str]:
    return {entry["target"] for entry in entries}


def push(client: httpx.Client, repo: str, reference: str, seed: str, **fields: Any) -> str:
    raw = image_manifest(client, repo, layers=1, seed=seed, **fields)
    assert put_manifest(client, repo, reference if reference != "-" else sha256(raw), raw, OCI_MANIFEST).status_code \
        == 201
    return sha256(raw)


def push_index(client: httpx.Client, repo: str, reference: str, children: list[str]) -> str:
    documents = [client.get(f"/v2/{repo}/manifests/{digest}").content for digest in children]
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                      "manifests": [descriptor(OCI_MANIFEST, doc) for doc in documents]}).encode()
    digest = sha256(raw)
    assert put_manifest(client, repo, reference if reference != "-" else digest, raw, OCI_INDEX).status_code == 201
    return digest


def tags(client: httpx.Client, repo: str) -> set[str]:
    return set(client.get(f"/v2/{repo}/tags/list").json()["tags"] or [])


def exists(client: httpx.Client, repo: str, digest: str) -> bool:
    return client.head(f"/v2/{repo}/manifests/{digest}").status_code == 200


def dry_then_real(server: CargoholdServer, tmp: Path, receiver: Receiver, **section: Any) -> list[dict[str, Any]]:
    """A dry run, then a real run with the same policies: the real run deletes exactly what the dry run listed,
    and a dry run after it finds nothing more. The deletions."""
    dry = retention(server, tmp, receiver, "--dry-run", **section)
    real = retention(server, tmp, receiver, **section)
    assert real["deleted"] == dry["would_delete"]
    assert real["skipped"] == []
    assert real["protected"] == dry["protected"]
    assert retention(server, tmp, receiver, "--dry-run", **section)["would_delete"] == []
    deleted: list[dict[str, Any]] = real["deleted"]
    return deleted


def test_patterns_and_most_recently_pushed_with_audit_entries_and_webhook_events(
    server: CargoholdServer, client: httpx.Client, tmp_path: Path, receiver: Receiver,
) -> None:
    digests = {}
    for tag in ("v1.0", "v1.1", "latest", "dev-1", "dev-2", "dev-3"):  # pushed a second apart, in this order
        digests[tag] = push(client, "ret-patterns/app", tag, tag)
        time.sleep(1.05)
    untouched = push(client, "ret-patterns-not/app", "dev-0", "untouched")
    policies = [{"repositories": ["ret-patterns/*"], "keep_tags": [
        {"patterns": ["^v1[.]"]},
        {"patterns": ["^dev-"], "most_recently_pushed_count": 2},
    ]}]
    deleted = dry_then_real(server, tmp_path, receiver, policies=policies)

    assert [(d["kind"], d["target"]) for d in deleted] == [
        ("tag", "dev-1"), ("tag", "latest"),
        *sorted(("manifest", digests[tag]) for tag in ("dev-1", "latest")),
    ]
    assert all(d["repository"] == "ret-patterns/app" for d in deleted)
    assert "no keep rule keeps it" in deleted[0]["reason"]
    assert deleted[2]["reason"] == "untagged by this run's tag deletions"
    assert tags(client, "ret-patterns/app") == {"v1.0", "v1.1", "dev-2", "dev-3"}
    assert not exists(client, "ret-patterns/app", digests["latest"])
    assert tags(client, "ret-patterns-not/app") == {"dev-0"} and exists(client, "ret-patterns-not/app", untouched)

    code, out, err = cli(server, "audit", "--json", "--actor", "retention", "--repository", "ret-patterns/*")
    assert code == 0, err
    entries = [json.loads(line) for line in reversed(out.splitlines())]
    assert [(e["action"], e["tag"] or e["digest"]) for e in entries] == [
        ("tag.delete" if d["kind"] == "tag" else "manifest.delete", d["target"]) for d in deleted]
    assert {e["actor_kind"] for e in entries} == {"system"}

    def ours() -> list[dict[str, Any]]:
        return [e for e in receiver.events() if e["target"]["repository"] == "ret-patterns/app"]

    deadline = time.monotonic() + 30
    while len(ours()) < len(deleted) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted((e["target"].get("tag") or e["target"]["digest"]) for e in ours()) == sorted(
        d["target"] for d in deleted)
    assert {e["action"] for e in ours()} == {"delete"}
    assert {e["actor"]["name"] for e in ours()} == {"retention"}


def test_pushed_within_pulled_within_and_most_recently_pulled(
    server: CargoholdServer, client: httpx.Client, tmp_path: Path, receiver: Receiver,
) -> None:
    repo = "ret-times/app"
    for tag in ("a", "b", "c", "d"):
        push(client, repo, tag, tag)
    # a to d were pushed an hour ago (however long the runs below take, e stays within the window)
    url = server.database_url or f"sqlite://{server.data_dir / 'metadata.db'}"
    query(url, "UPDATE tags SET updated_at = updated_at - 3600 WHERE repository_id ="
               " (SELECT id FROM repositories WHERE name = ?)", (repo,))
    push(client, repo, "e", "e")
    assert client.get(f"/v2/{repo}/manifests/a").status_code == 200
    assert client.get(f"/v2/{repo}/manifests/b").status_code == 200
    assert client.head(f"/v2/{repo}/manifests/c").status_code == 200  # a HEAD is no pull
    time.sleep(6 * FLUSH)  # every worker wrote its pull times
    policies = [{"repositories": [repo], "delete_untagged": False, "keep_tags": [
        {"pushed_within": "10m"},
        {"patterns": ["^a$"], "pulled_within": "1m"},
        {"patterns": ["^[bcd]$"], "most_recently_pulled_count": 1},
    ]}]
    deleted = dry_then_real(server, tmp_path, receiver, policies=policies)
    assert [(d["kind"], d["target"]) for d in deleted] == [("tag", "c"), ("tag", "d")]
    assert "pulled never" in deleted[0]["reason"]
    assert tags(client, repo) == {"a", "b", "e"}


def test_immutable_tags_are_kept_and_said_so(
    server: CargoholdServer, client: httpx.Client, tmp_path: Path, receiver: Receiver,
) -> None:
    repo = "ret-immutable/app"
    for tag in ("v1", "v2", "keep", "tmp"):
        push(client, repo, tag, tag)
    code, out, err = cli(server, "admin", "immutable", "add", "ret-immutable/*", "v*", "--json")
    assert code == 0, err
    rule = json.loads(out)["id"]
    section = {"policies": [{"repositories": ["ret-immutable/*"], "keep_tags": [{"patterns": ["^keep$"]}]}]}
    dry = retention(server, tmp_path, receiver, "--dry-run", **section)
    assert [(p["tag"], p["rule"]) for p in dry["protected"]] == [
        (tag, f"immutable tag rule {rule} (repository 'ret-immutable/*', tag 'v*')") for tag in ("v1", "v2")]
    deleted = dry_then_real(server, tmp_path, receiver, **section)
    assert {(d["kind"], d["target"]) for d in deleted if d["kind"] == "tag"} == {("tag", "tmp")}
    assert tags(client, repo) == {"v1", "v2", "keep"}

    config = tmp_path / "table.yml"
    config.write_text(yaml.safe_dump({"retention": section}))
    code, out, err = cli(server, "retention", "--config", str(config), "--dry-run")
    assert code == 0, err
    assert f"kept    ret-immutable/app  v1             protected by immutable tag rule {rule}" in out, out
    assert "0 would delete, 2 kept by immutable tag rules" in err


def test_untagged_manifests_index_children_and_referrers(
    server: CargoholdServer, client: httpx.Client, tmp_path: Path, receiver: Receiver,
) -> None:
    repo = "ret-untagged/app"
    child1, child2, child3 = (push(client, repo, "-", f"child {n}") for n in (1, 2, 3))
    multi = push_index(client, repo, "multi", [child1, child2])
    orphan_index = push_index(client, repo, "-", [child3])  # untagged: it goes, then its child
    orphan = push(client, repo, "-", "orphan")
    signed = push(client, repo, "signed", "signed")
    gone = push(client, repo, "gone", "gone")

    def referrer(subject: str, seed: str) -> str:
        document = client.get(f"/v2/{repo}/manifests/{subject}").content
        return push(client, repo, "-", seed, subject=descriptor(OCI_MANIFEST, document),
                    artifactType="application/vnd.example.signature")

    signature_kept, signature_gone = referrer(signed, "sig 1"), referrer(gone, "sig 2")
    keep = {"repositories": [repo], "delete_untagged": True, "keep_tags": [{"patterns": ["^multi$", "^signed$"]}]}

    # the GET of `gone` (its referrer's subject) is recorded as a pull once the server's pull times are written
    # (every FLUSH seconds, later on a loaded machine): until then a dry run and the real run after it may
    # give the tag's reason differently ("pulled never", then its time)
    deadline = time.monotonic() + 30
    while True:
        young = retention(server, tmp_path, receiver, "--dry-run", policies=[keep], delay="1h")
        assert [(d["kind"], d["target"]) for d in young["would_delete"]] == [("tag", "gone")]
        if "pulled never" not in young["would_delete"][0]["reason"] or time.monotonic() > deadline:
            break
        time.sleep(FLUSH)
    assert "pulled never" not in young["would_delete"][0]["reason"], young

    deleted = dry_then_real(server, tmp_path, receiver, policies=[keep])
    order = [d["target"] for d in deleted]
    assert order[0] == "gone"
    assert set(order[1:]) == {gone, orphan, orphan_index, child3}
    assert order.index(orphan_index) < order.index(child3)  # an index goes before its child
    reasons = {d["target"]: d["reason"] for d in deleted}
    assert reasons[gone] == "untagged by this run's tag deletions"
    assert reasons[orphan].startswith("untagged, pushed ")
    for kept in (multi, child1, child2, signed, signature_kept, signature_gone):
        assert exists(client, repo, kept)

    deleted = dry_then_real(server, tmp_path, receiver, policies=[{**keep, "delete_referrers": True}])
    assert [(d["target"], d["reason"]) for d in deleted] == [
        (signature_gone, f"referrer of {gone}, which is not kept")]
    assert exists(client, repo, signature_kept)
    assert tags(client, repo) == {"multi", "signed"}


def test_bad_policies_are_refused_in_one_line(server: CargoholdServer, tmp_path: Path) -> None:
    for section, message in (
        ({"policies": [{"keep_tags": [{"patterns": ["("]}]}]},
         "retention.policies[0].keep_tags[0].patterns[0]: cannot use '(' (not a regular expression"),
        ({"delay": "soon"}, "retention.delay: cannot use 'soon' (a duration such as 30m, 24h or 720h, or seconds)"),
        ({"policies": [{"keep_tags": [{"most_recently_pushed_count": -1}]}]},
         "retention.policies[0].keep_tags[0].most_recently_pushed_count: cannot use -1 (must not be negative)"),
        ({"policies": [{"keep": []}]}, "retention.policies[0]"),
        ({}, "retention.policies is empty"),
    ):
        config = tmp_path / "bad.yml"
        config.write_text(yaml.safe_dump({"retention": section}))
        code, out, err = cli(server, "retention", "--config", str(config), "--dry-run")
        assert code == 2 and out == "", (section, err)
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_the_job_applies_the_policies_in_one_worker(
    setup: Setup, tmp_path: Path, receiver: Receiver,
) -> None:
    repo = "ret-job/app"
    section = {"enabled": True, "interval": "1s", "delay": "0s",
               "policies": [{"repositories": ["ret-job/*"], "keep_tags": [{"patterns": ["^keep$"]}]}]}
    config = tmp_path / "job.yml"
    config.write_text(yaml.safe_dump({"notifications": notifications(receiver), "retention": section}))
    server = CargoholdServer(tmp_path / "data", free_port(), ["--config", str(config), "--workers", "2"],
                             setup.env, database_url=setup.database_url).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            push(client, repo, "keep", "keep")
            dropped = push(client, repo, "drop", "drop")
            deadline = time.monotonic() + 30
            while exists(client, repo, dropped) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not exists(client, repo, dropped)
            assert tags(client, repo) == {"keep"}
            time.sleep(2.5)  # more runs: nothing more to delete
            code, out, err = cli(server, "audit", "--json", "--actor", "retention")
            assert code == 0, err
            entries = sorted((e["action"], e["tag"] or e["digest"]) for e in map(json.loads, out.splitlines()))
            assert entries == [("manifest.delete", dropped), ("tag.delete", "drop")]  # one worker deleted each
    finally:
        server.stop()
    assert "retention deleted" in server.log()


def test_the_job_in_dry_run_deletes_nothing(setup: Setup, tmp_path: Path) -> None:
    section = {"enabled": True, "interval": "1s", "delay": "0s", "dry_run": True,
               "policies": [{"repositories": ["ret-dry/*"], "keep_tags": [{"patterns": ["^keep$"]}]}]}
    config = tmp_path / "dry.yml"
    config.write_text(yaml.safe_dump({"retention": section}))
    server = CargoholdServer(tmp_path / "data", free_port(), ["--config", str(config)], setup.env,
                             database_url=setup.database_url).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            push(client, "ret-dry/app", "drop", "drop")
            deadline = time.monotonic() + 30
            while "retention would delete" not in server.log() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert tags(client, "ret-dry/app") == {"drop"}
    finally:
        server.stop()
    assert "retention would delete" in server.log()
