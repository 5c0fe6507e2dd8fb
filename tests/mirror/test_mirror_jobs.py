"""Mirror jobs against real registries: Distribution 2.8 with htpasswd as the upstream, a second cargohold
with token auth as the upstream that has the referrers API, this registry as a real server; jobs added and
run with the command and the admin API, and run on their schedule by the server."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.server
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cargohold.cli.main import main
from cargohold.metadata import open_metadata_store
from cargohold.mirror.model import MirrorJob, MirrorRun
from cargohold.mirror.service import POLL_SECONDS, RETRY_SECONDS
from tests.support.servers import CargoholdServer, cargohold, free_port

from .upstream import (
    NOTATION_SIG,
    OCI_INDEX,
    OCI_MANIFEST,
    PASSWORD,
    SBOM,
    USER,
    Upstream,
    distribution_with_htpasswd,
    push_index,
    push_referrer,
    put_manifest,
    sha256,
    sign_by_tag,
)

REPO = "library/app"
FAST = {"CARGOHOLD_PASSWORD_COST": "4"}


@pytest.fixture()
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    with distribution_with_htpasswd(tmp_path / "upstream") as server:
        yield server


@pytest.fixture()
def password_file(tmp_path: Path) -> str:
    path = tmp_path / "secret.txt"
    path.write_text(PASSWORD + "\n")
    return str(path)


def server_in(folder: Path, *args: str, env: dict[str, str] | None = None) -> contextlib.AbstractContextManager[
        CargoholdServer]:
    folder.mkdir(parents=True, exist_ok=True)
    return cargohold(folder, *args, env=env)


def cli(capsys: pytest.CaptureFixture[str], server: CargoholdServer, *argv: str) -> tuple[int, str, str]:
    """``cargohold mirror ARGV`` on the server's data directory, reaching the server where it listens."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CARGOHOLD_LISTEN", server.host)
        for name, value in server.env.items():
            patch.setenv(name, value)
        code = main(["mirror", "--data-dir", str(server.data_dir), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def stored(server: CargoholdServer, name: str) -> tuple[MirrorJob | None, list[MirrorRun]]:
    async def read() -> tuple[MirrorJob | None, list[MirrorRun]]:
        meta = open_metadata_store(f"sqlite://{server.data_dir / 'metadata.db'}")
        try:
            return await meta.mirror(name), await meta.mirror_runs(name, 100)
        finally:
            await meta.close()

    return asyncio.run(read())


def finished_runs(server: CargoholdServer, name: str, count: int = 1, timeout: float = 30.0) -> list[MirrorRun]:
    """The job's runs, once ``count`` of them have finished (newest first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [run for run in stored(server, name)[1] if run.finished_at is not None]
        if len(runs) >= count:
            return runs
        time.sleep(0.1)
    raise AssertionError(f"{name} did not finish {count} runs in {timeout} s; server log:\n{server.log()[-3000:]}")


def local_digest(server: CargoholdServer, repo: str, tag: str, **kw: Any) -> str | None:
    headers = {"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}", **kw.pop("headers", {})}
    response = httpx.head(f"{server.url}/v2/{repo}/manifests/{tag}", headers=headers, **kw)
    return response.headers["docker-content-digest"] if response.status_code == 200 else None


def test_a_job_copies_multi_arch_images_by_semver_with_their_signatures_and_keeps_removed_tags(
    tmp_path: Path, upstream: Upstream, password_file: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with upstream.client() as up:
        tags = ("1.4.0", "1.4.2", "1.5.0", "2.0.0", "2.0.0-rc.1", "latest")
        pushed = {tag: push_index(up, REPO, tag) for tag in tags}
        signature = sign_by_tag(up, REPO, pushed["1.4.2"])
    with server_in(tmp_path / "local", "--workers", "1") as server:
        code, out, err = cli(capsys, server, "add", "app", "--source", f"{upstream.host}/{REPO}", "--destination",
                             "mirror", "--tags", "^1.4", "--with-referrers", "--username", USER, "--password-file",
                             password_file)
        assert code == 0, err
        # a new job runs at once, on the server's schedule
        [first] = finished_runs(server, "app")
        assert first.started_by == "schedule" and first.errors == {}
        assert first.copied == {tag: pushed[tag] for tag in ("1.4.0", "1.4.2", "1.5.0")}
        assert first.skipped == dict.fromkeys(("2.0.0", "2.0.0-rc.1", "latest"), "outside the tag filter")
        local = f"mirror/{REPO}"
        index = httpx.get(f"{server.url}/v2/{local}/manifests/1.4.2", headers={"Accept": OCI_INDEX})
        assert index.status_code == 200 and sha256(index.content) == pushed["1.4.2"]
        for child in index.json()["manifests"]:  # every platform's image, with its blobs
            image = httpx.get(f"{server.url}/v2/{local}/manifests/{child['digest']}")
            assert image.status_code == 200 and sha256(image.content) == child["digest"]
            for blob in [image.json()["config"], *image.json()["layers"]]:
                got = httpx.get(f"{server.url}/v2/{local}/blobs/{blob['digest']}", follow_redirects=True)
                assert sha256(got.content) == blob["digest"]
        # the cosign signature of 1.4.2 came with it; the unsigned tags have none
        assert local_digest(server, local, pushed["1.4.2"].replace(":", "-") + ".sig") == signature
        assert local_digest(server, local, "2.0.0") is None
        # upstream drops 1.4.0 and adds 1.4.3: the next run copies 1.4.3, keeps 1.4.0, leaves 1.4.2 alone
        with upstream.client() as up:
            assert up.delete(f"/v2/{REPO}/manifests/{pushed['1.4.0']}").status_code == 202
            pushed["1.4.3"] = push_index(up, REPO, "1.4.3")
            late = sign_by_tag(up, REPO, pushed["1.5.0"])  # a signature for a tag copied already
        code, out, err = cli(capsys, server, "run", "app", "--json")
        assert code == 0, err
        second = json.loads(out)
        assert second["started_by"] == "command" and second["copied"] == {"1.4.3": pushed["1.4.3"]}
        assert second["skipped"]["1.4.2"] == "up to date" and second["pruned"] == []
        assert local_digest(server, local, "1.4.0") == pushed["1.4.0"]
        assert local_digest(server, local, pushed["1.5.0"].replace(":", "-") + ".sig") == late
        code, out, _ = cli(capsys, server, "list", "--json")
        assert code == 0 and PASSWORD not in out and PASSWORD not in server.log()
        [listed] = json.loads(out)
        assert (listed["name"], listed["failures"], listed["password_file"]) == ("app", 0, password_file)


def test_platforms_keep_only_their_images(
    tmp_path: Path, upstream: Upstream, password_file: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """An index with other platforms too is copied as a new index of the chosen ones; one with only
    chosen platforms is copied as it is; an image of another platform is skipped."""
    with upstream.client() as up:
        both = push_index(up, REPO, "both")
        arm = push_index(up, REPO, "arm", ("arm64",))
        push_index(up, REPO, "amd", ("amd64",))
        children = up.get(f"/v2/{REPO}/manifests/both", headers={"Accept": OCI_INDEX}).json()["manifests"]
    with server_in(tmp_path / "local", "--workers", "1") as server:
        assert cli(capsys, server, "add", "arm", "--source", f"{upstream.host}/{REPO}", "--destination", "arm",
                   "--platform", "linux/arm64", "--username", USER, "--password-file", password_file)[0] == 0
        [run] = finished_runs(server, "arm")
        assert run.errors == {} and run.skipped == {"amd": "no image for linux/arm64"}
        assert run.copied["arm"] == arm and run.copied["both"] != both
        local = f"arm/{REPO}"
        index = httpx.get(f"{server.url}/v2/{local}/manifests/both", headers={"Accept": OCI_INDEX}).json()
        [kept] = [c for c in children if c["platform"]["architecture"] == "arm64"]
        [dropped] = [c for c in children if c["platform"]["architecture"] == "amd64"]
        assert index["manifests"] == [kept]
        assert local_digest(server, local, kept["digest"]) == kept["digest"]
        assert local_digest(server, local, dropped["digest"]) is None
        assert local_digest(server, local, "amd") is None


def test_prune_a_regex_filter_and_only_signed(
    tmp_path: Path, upstream: Upstream, password_file: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with upstream.client() as up:
        pushed = {tag: push_index(up, REPO, tag, ("amd64",)) for tag in ("1.4.0", "1.4.1", "1.5.0", "latest")}
        sign_by_tag(up, REPO, pushed["1.4.1"])
    credentials = ("--username", USER, "--password-file", password_file)
    with server_in(tmp_path / "local", "--workers", "1") as server:
        assert cli(capsys, server, "add", "pruned", "--source", f"{upstream.host}/{REPO}", "--destination", "pruned",
                   "--tags", r"1\.4\..*", "--prune", *credentials)[0] == 0
        assert cli(capsys, server, "add", "signed", "--source", f"{upstream.host}/{REPO}", "--destination", "signed",
                   "--only-signed", *credentials)[0] == 0
        [first] = finished_runs(server, "pruned")
        assert first.copied == {"1.4.0": pushed["1.4.0"], "1.4.1": pushed["1.4.1"]}
        assert set(first.skipped) == {"1.5.0", "latest"}
        [signed] = finished_runs(server, "signed")
        assert signed.copied == {"1.4.1": pushed["1.4.1"]}
        assert signed.skipped == dict.fromkeys(("1.4.0", "1.5.0", "latest"), "no signature refers to it")
        with upstream.client() as up:
            assert up.delete(f"/v2/{REPO}/manifests/{pushed['1.4.0']}").status_code == 202
        code, out, err = cli(capsys, server, "run", "pruned", "--json")
        assert code == 0, err
        assert json.loads(out)["pruned"] == ["1.4.0"]
        assert local_digest(server, f"pruned/{REPO}", "1.4.0") is None
        assert local_digest(server, f"pruned/{REPO}", "1.4.1") == pushed["1.4.1"]


def test_a_job_copies_out_of_this_registry_to_a_remote_one(
    tmp_path: Path, upstream: Upstream, password_file: str, capsys: pytest.CaptureFixture[str],
) -> None:
    with server_in(tmp_path / "local", "--workers", "1") as server:
        with httpx.Client(base_url=server.url, timeout=30) as here:
            pushed = push_index(here, "team/app", "1.0")
        assert cli(capsys, server, "add", "backup", "--source", "local/team/app", "--destination",
                   f"{upstream.host}/backup", "--username", USER, "--password-file", password_file)[0] == 0
        [run] = finished_runs(server, "backup")
        assert run.errors == {} and run.copied == {"1.0": pushed}
    with upstream.client() as up:
        copied = up.get("/v2/backup/team/app/manifests/1.0", headers={"Accept": OCI_INDEX})
        assert copied.status_code == 200 and sha256(copied.content) == pushed


def test_referrers_by_the_tag_schema_on_a_registry_without_the_api(
    tmp_path: Path, upstream: Upstream, password_file: str, capsys: pytest.CaptureFixture[str],
) -> None:
    """Distribution 2.8 keeps referrers as an index tagged ``sha256-<hex>`` (OCI 1.1's fallback): it counts
    for only_signed, and the referrer and that index come along."""
    with upstream.client() as up:
        signed = push_index(up, REPO, "1.0")
        size = len(up.get(f"/v2/{REPO}/manifests/{signed}", headers={"Accept": OCI_INDEX}).content)
        signature = push_referrer(up, REPO, signed, size, NOTATION_SIG)
        found = up.get(f"/v2/{REPO}/manifests/{signature}", headers={"Accept": OCI_MANIFEST}).content
        fallback = put_manifest(up, REPO, signed.replace(":", "-"), {
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": signature, "size": len(found),
                           "artifactType": NOTATION_SIG}]})
        push_index(up, REPO, "2.0")
    with server_in(tmp_path / "local", "--workers", "1") as server:
        assert cli(capsys, server, "add", "signed", "--source", f"{upstream.host}/{REPO}", "--destination", "m",
                   "--with-referrers", "--only-signed", "--username", USER, "--password-file", password_file)[0] == 0
        [run] = finished_runs(server, "signed")
        assert run.errors == {} and run.copied == {"1.0": signed}
        assert run.skipped == {"2.0": "no signature refers to it"}
        local = f"m/{REPO}"
        assert local_digest(server, local, signature) == signature
        assert local_digest(server, local, signed.replace(":", "-")) == fallback
        listed = httpx.get(f"{server.url}/v2/{local}/referrers/{signed}").json()["manifests"]
        assert [(d["digest"], d["artifactType"]) for d in listed] == [(signature, NOTATION_SIG)]


def _add_user(data_dir: Path, name: str, password: str, *flags: str) -> None:
    with contextlib.redirect_stdout(None), pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.StringIO(password + "\n"))
        for key, value in FAST.items():
            patch.setenv(key, value)
        assert main(["admin", "--data-dir", str(data_dir), "user", "add", name, *flags, "--password-stdin"]) == 0


def _token(server: CargoholdServer, user: str, password: str, repo: str) -> str:
    answer = httpx.get(f"{server.url}/auth/token", auth=(user, password),
                       params={"service": "cargohold", "scope": f"repository:{repo}:pull,push"})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


def test_referrers_from_a_cargohold_upstream_with_token_auth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """The upstream has the referrers API: an image's notation signature and SBOM come with it; only the
    signed tag is copied; the upstream's credentials come from a docker config file."""
    source_dir = tmp_path / "source" / "data"
    _add_user(source_dir, "publisher", "publisher-password")
    with server_in(tmp_path / "source", "--workers", "1", "--auth", "token", env=FAST) as source, \
            server_in(tmp_path / "local", "--workers", "1") as server:
        token = _token(source, "publisher", "publisher-password", "publisher/app")
        with httpx.Client(base_url=source.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as up:
            signed = push_index(up, "publisher/app", "1.0.0")
            size = len(up.get(f"/v2/publisher/app/manifests/{signed}", headers={"Accept": OCI_INDEX}).content)
            signature = push_referrer(up, "publisher/app", signed, size, NOTATION_SIG)
            sbom = push_referrer(up, "publisher/app", signed, size, SBOM)
            push_index(up, "publisher/app", "1.1.0")  # no signature
        docker_config = tmp_path / "docker-config.json"
        encoded = base64.b64encode(b"publisher:publisher-password").decode()
        docker_config.write_text(json.dumps({"auths": {source.host: {"auth": encoded}}}))
        code, _, err = cli(capsys, server, "add", "signed", "--source", f"{source.host}/publisher/app",
                           "--destination", "copies", "--with-referrers", "--only-signed",
                           "--docker-config", str(docker_config))
        assert code == 0, err
        [run] = finished_runs(server, "signed")
        assert run.errors == {} and run.copied == {"1.0.0": signed}
        assert run.skipped == {"1.1.0": "no signature refers to it"}
        found = httpx.get(f"{server.url}/v2/copies/publisher/app/referrers/{signed}").json()["manifests"]
        assert sorted((d["digest"], d["artifactType"]) for d in found) == \
            sorted([(signature, NOTATION_SIG), (sbom, SBOM)])


def test_a_failing_source_is_recorded_and_retried_with_backoff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    gone = f"127.0.0.1:{free_port()}"
    with server_in(tmp_path / "local", "--workers", "1") as server:
        assert cli(capsys, server, "add", "down", "--source", f"{gone}/{REPO}", "--destination", "mirror",
                   "--interval", "50s")[0] == 0
        [first] = finished_runs(server, "down")
        assert list(first.errors) == [""] and gone in first.errors[""]
        job, _ = stored(server, "down")
        assert job is not None and job.failures == 1
        assert first.finished_at is not None
        assert job.next_run_at == pytest.approx(first.finished_at + RETRY_SECONDS, abs=0.01)
        code, out, _ = cli(capsys, server, "run", "down", "--json")  # doubled, and capped at the interval
        assert code == 1 and gone in json.loads(out)["errors"][""]
        job, _ = stored(server, "down")
        assert job is not None and job.failures == 2
        assert job.next_run_at == pytest.approx(json.loads(out)["finished_at"] + min(50, 2 * RETRY_SECONDS), abs=0.01)
        code, _, err = cli(capsys, server, "run", "nope")
        assert code == 1 and "no job 'nope'" in err
        code, out, _ = cli(capsys, server, "runs", "down")
        assert code == 0 and out.count("error   (run)") == 2 and "(command)" in out and "(schedule)" in out
        code, out, _ = cli(capsys, server, "list")
        assert code == 0 and out.split()[:7] == ["NAME", "SOURCE", "DESTINATION", "TAGS", "INTERVAL", "NEXT_RUN",
                                                 "FAILURES"] and out.split()[-1] == "2"
        assert cli(capsys, server, "remove", "down")[0] == 0
        assert stored(server, "down") == (None, [])
        assert cli(capsys, server, "remove", "down")[0] == 1
        code, _, err = cli(capsys, server, "add", "bad", "--source", f"{gone}/{REPO}", "--destination", "m",
                           "--tags", "(unclosed")
        assert code == 2 and "tags" in err


def test_the_admin_api_round_trip_on_a_token_auth_registry(tmp_path: Path, upstream: Upstream,
                                                            password_file: str) -> None:
    data_dir = tmp_path / "local" / "data"
    _add_user(data_dir, "root", "root-password", "--superuser")
    _add_user(data_dir, "alice", "alice-password")
    with upstream.client() as up:
        pushed = push_index(up, REPO, "1.0")
    root, alice = ("root", "root-password"), ("alice", "alice-password")
    with server_in(tmp_path / "local", "--workers", "1", "--auth", "token", env=FAST) as server:
        api = f"{server.url}/admin/v1/mirrors"
        job = {"name": "app", "source": f"{upstream.host}/{REPO}", "destination": "mirror", "interval": "1h",
               "username": USER, "password_file": password_file}
        assert httpx.post(api, json=job, auth=alice).status_code == 403
        bad = httpx.post(api, json={**job, "tags": "[", "name": "x"}, auth=root)
        assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "MIRROR_INVALID"
        assert httpx.post(api, json={**job, "interval": "soon"}, auth=root).status_code == 400
        for wrong in ({"prune": "yes"}, {"interval": 10**12}, {"platforms": ["linux"]}, {"colour": "red"},
                      {"source": "local/team/app"}, {"name": "Bad Name"}, {"username": None}):
            refused = httpx.post(api, json={**job, **wrong}, auth=root)
            assert refused.status_code == 400 and refused.json()["errors"][0]["code"] == "MIRROR_INVALID", wrong
        assert httpx.post(api, content=b"{not json", auth=root).status_code == 400
        created = httpx.post(api, json=job, auth=root)
        assert created.status_code == 201, created.text
        assert created.json()["interval_seconds"] == 3600.0
        again = httpx.post(api, json=job, auth=root)
        assert again.status_code == 409 and again.json()["errors"][0]["code"] == "MIRROR_EXISTS"
        assert [j["name"] for j in httpx.get(api, auth=root).json()["mirrors"]] == ["app"]
        # the scheduled run writes into this token-auth registry with a token the server minted
        [first] = finished_runs(server, "app")
        assert first.errors == {} and first.copied == {"1.0": pushed}
        token = _token(server, "root", "root-password", f"mirror/{REPO}")
        assert local_digest(server, f"mirror/{REPO}", "1.0", headers={"Authorization": f"Bearer {token}"}) == pushed
        ran = httpx.post(f"{api}/app/run", auth=root, timeout=60)
        assert ran.status_code == 200, ran.text
        assert ran.json()["started_by"] == "api" and ran.json()["skipped"] == {"1.0": "up to date"}
        runs = httpx.get(f"{api}/app/runs", auth=root).json()["runs"]
        assert [r["started_by"] for r in runs] == ["api", "schedule"]
        assert httpx.get(f"{api}/app/runs", params={"n": "1"}, auth=root).json()["runs"][0]["id"] == runs[0]["id"]
        assert httpx.get(f"{api}/app", auth=root).json()["source"] == job["source"]
        assert httpx.post(f"{api}/nope/run", auth=root).json()["errors"][0]["code"] == "MIRROR_UNKNOWN"
        assert httpx.delete(f"{api}/app", auth=alice).status_code == 403
        assert httpx.delete(f"{api}/app", auth=root).status_code == 204
        assert httpx.get(f"{api}/app", auth=root).status_code == 404
        assert httpx.delete(f"{api}/app", auth=root).status_code == 404


class _SlowTags(http.server.BaseHTTPRequestHandler):
    """An upstream whose tag list takes :data:`SLOW_SECONDS`: a run lasts longer than the schedule's look."""

    listings: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        if "/tags/list" in self.path:
            type(self).listings.append(self.path)
            time.sleep(SLOW_SECONDS)
        body = json.dumps({"name": REPO, "tags": []} if "/tags/list" in self.path else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


SLOW_SECONDS = POLL_SECONDS + 0.5


def test_one_run_across_two_server_processes_on_one_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Two replicas on one database and data directory, each looking for due jobs every few seconds: a run
    that outlasts their looks is still the only one (the upstream hears one tag listing)."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowTags)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    data = tmp_path / "shared" / "data"
    data.parent.mkdir()
    first = CargoholdServer(data, free_port(), ["--workers", "1"]).start()
    second = CargoholdServer(data, free_port(), ["--workers", "1"]).start()
    try:
        assert cli(capsys, first, "add", "app", "--source", f"127.0.0.1:{upstream.server_port}/{REPO}",
                   "--destination", "mirror")[0] == 0
        [run] = finished_runs(first, "app")
        time.sleep(POLL_SECONDS + 0.5)  # more looks at the schedule by both processes
        assert stored(first, "app")[1] == [run]
        assert run.errors == {} and run.finished_at is not None and run.finished_at - run.started_at >= SLOW_SECONDS
        assert [path.partition("?")[0] for path in _SlowTags.listings] == [f"/v2/{REPO}/tags/list"]
    finally:
        second.stop()
        first.stop()
        upstream.shutdown()
