"""Managing webhooks at run time: ``/admin/v1/webhooks`` for superusers and ``cargohold webhooks``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from unittest import mock

import httpx

from cargohold.cli.main import main
from tests.api.helpers import codes
from tests.auth.world import FAST_ENV, basic
from tests.support.servers import free_port
from tests.webhooks.receiver import Receiver, receiving
from tests.webhooks.support import push_event, record, serving, wait_until, write_config

ROOT = basic("root", "root-password")
ALICE = basic("alice", "alice-password")


def cli(*args: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), mock.patch.dict(os.environ, FAST_ENV):
            code = main(list(args))
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


def _users(data: Path) -> None:
    for name, flags in (("root", ["--superuser"]), ("alice", [])):
        code, _, err = cli("admin", "--data-dir", str(data), "user", "add", name, *flags, "--password-stdin",
                           stdin=f"{name}-password\n")
        assert code == 0, err


def test_admin_api_lists_adds_tests_removes_and_redelivers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _users(data)
    with receiving() as receiver:
        configured = [{"name": "conf", "url": receiver.url + "/conf"}]
        with serving(tmp_path, configured, "--auth", "token", data_dir=data) as server, \
                httpx.Client(base_url=server.url, headers={"Authorization": ROOT}, timeout=30) as api:
            listed = api.get("/admin/v1/webhooks").json()
            assert [(e["name"], e["source"], e["actions"]) for e in listed] == [
                ("conf", "config", ["push", "pull", "delete", "mount"])]
            assert httpx.get(f"{server.url}/admin/v1/webhooks").status_code == 401
            denied = httpx.get(f"{server.url}/admin/v1/webhooks", headers={"Authorization": ALICE})
            assert (denied.status_code, codes(denied)) == (403, ["DENIED"])

            added = api.post("/admin/v1/webhooks", json={
                "name": "rt", "url": receiver.url + "/rt", "format": "quay", "secret": "sekrit-value",
                "headers": {"X-Token": "t"}})
            assert added.status_code == 200, added.text
            assert added.json()["source"] == "runtime" and added.json()["signed"] is True
            # secrets and header values are never shown
            assert "sekrit" not in added.text and '"t"' not in added.text and added.json()["headers"] == ["X-Token"]
            for body, status, code, message in [
                ({"name": "rt", "url": receiver.url}, 409, "WEBHOOK_EXISTS", "there is already a webhook endpoint"
                                                                             " named 'rt'"),
                ({"name": "conf", "url": receiver.url}, 409, "WEBHOOK_EXISTS", "the configuration has an endpoint"
                                                                               " named 'conf'"),
                ({"name": "x", "url": "ftp://h/"}, 400, "WEBHOOK_INVALID", "url: cannot use 'ftp://h/' (must be an"
                                                                           " http or https URL)"),
                ({"name": "x", "url": receiver.url, "retries": 3}, 400, "WEBHOOK_INVALID",
                 "unknown setting 'retries'"),
                ({"name": "x"}, 400, "WEBHOOK_INVALID", "url is required"),
            ]:
                refused = api.post("/admin/v1/webhooks", json=body)
                assert (refused.status_code, refused.json()["errors"][0]) == (
                    status, {"code": code, "message": message}), body

            tested = api.post("/admin/v1/webhooks/conf/test")
            assert tested.status_code == 200 and tested.json()["delivered"] is True
            [test] = receiver.wait_for(1)
            assert test.events[0]["action"] == "test" and test.events[0]["target"] == {"repository": "test/webhook"}
            receiver.received.clear()

            # both endpoints hear of the next push: the one added at run time too, in the quay format
            event = push_event()
            record(data, configured, event)
            got = receiver.wait_for(2)
            assert sorted(r.path for r in got) == ["/hook/conf", "/hook/rt"]
            assert next(r for r in got if r.path == "/hook/rt").json["updated_tags"] == ["1.0"]

            # a dead delivery is listed with what went wrong, and redelivered
            down = Receiver()
            api.post("/admin/v1/webhooks", json={"name": "down", "url": down.url, "max_attempts": 1,
                                                  "actions": ["manifest.push"]}).raise_for_status()
            record(data, configured, push_event(tag="2.0"))
            wait_until(lambda: bool(api.get("/admin/v1/webhooks/deliveries", params={"state": "dead"}).json()))
            [dead] = api.get("/admin/v1/webhooks/deliveries", params={"state": "dead"}).json()
            assert (dead["endpoint"], dead["attempts"], dead["last_status"], dead["next_attempt"]) == (
                "down", 1, None, None)
            assert dead["last_error"].startswith("cannot connect") and dead["tag"] == "2.0"
            down.start()
            try:
                again = api.post(f"/admin/v1/webhooks/deliveries/{dead['id']}/redeliver")
                assert again.status_code == 200 and again.json()["state"] == "pending"
                [redelivered] = down.wait_for(1)
                assert redelivered.events[0]["id"] == dead["event_id"]
            finally:
                down.stop()
            missing = api.post(f"/admin/v1/webhooks/deliveries/{dead['id']}/redeliver")
            assert (missing.status_code, codes(missing)) == (404, ["DELIVERY_UNKNOWN"])
            wait_until(lambda: api.get("/admin/v1/webhooks/deliveries", params={"endpoint": "down"}).json()[0][
                "state"] == "delivered")
            bad = api.get("/admin/v1/webhooks/deliveries", params={"state": "lost"})
            assert (bad.status_code, codes(bad)) == (400, ["WEBHOOK_INVALID"])

            read_only = api.delete("/admin/v1/webhooks/conf")
            assert (read_only.status_code, codes(read_only)) == (409, ["WEBHOOK_READ_ONLY"])
            assert api.delete("/admin/v1/webhooks/rt").status_code == 204
            gone = api.delete("/admin/v1/webhooks/rt")
            assert (gone.status_code, codes(gone)) == (404, ["WEBHOOK_UNKNOWN"])
            assert [e["name"] for e in api.get("/admin/v1/webhooks").json()] == ["conf", "down"]


def test_cli_adds_lists_tests_and_redelivers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _users(data)
    with receiving() as receiver:
        configured = [{"name": "conf", "url": receiver.url + "/conf", "repositories": ["team/*"]}]
        config = str(write_config(tmp_path, configured))
        where = ["webhooks", "--data-dir", str(data), "--config", config]
        code, out, err = cli(*where, "add", "bad", "ftp://h/x")
        assert (code, err) == (1, "cargohold webhooks: url: cannot use 'ftp://h/x' (must be an http or https URL)\n")
        closed = f"http://127.0.0.1:{free_port()}/hook"
        code, out, err = cli(*where, "add", "rt", closed, "--header", "X-Token: t", "--max-attempts", "1",
                             "--secret-stdin", "--json", stdin="shh\n")
        assert code == 0, err
        assert json.loads(out)["signed"] is True
        code, out, _ = cli(*where, "list", "--json")
        assert [(e["name"], e["source"], e["repositories"]) for e in json.loads(out)] == [
            ("conf", "config", ["team/*"]), ("rt", "runtime", [])]
        code, out, _ = cli(*where, "list")
        assert out.splitlines()[0].split() == ["NAME", "SOURCE", "FORMAT", "URL", "ACTIONS", "REPOSITORIES", "DISABLED"]
        code, out, err = cli(*where, "test", "conf")
        assert code == 0 and out.startswith("conf: delivered (HTTP 200)")
        code, out, err = cli(*where, "test", "rt")
        assert code == 1 and out.startswith("rt: not delivered: cannot connect")
        code, _, err = cli(*where, "remove", "conf")
        assert (code, err) == (1, "cargohold webhooks: 'conf' is an endpoint of the configuration: remove it there\n")

        with serving(tmp_path, configured, data_dir=data) as server:
            record(server.data_dir, configured, push_event(repository="other/app"))
            wait_until(lambda: json.loads(cli(*where, "deliveries", "--state", "dead", "--json")[1]) != [])
            [dead] = json.loads(cli(*where, "deliveries", "--state", "dead", "--json")[1])
            assert (dead["endpoint"], dead["repository"], dead["attempts"]) == ("rt", "other/app", 1)
            code, out, _ = cli(*where, "deliveries")
            assert out.splitlines()[1].split()[:5] == [str(dead["id"]), dead["event_id"], "rt", "dead", "1"]
            code, out, err = cli(*where, "redeliver", str(dead["id"]))
            assert code == 0 and out == f"delivery {dead['id']} of event {dead['event_id']} to rt is pending again\n"
            code, out, err = cli(*where, "remove", "rt")
            assert (code, out) == (0, "webhook endpoint rt removed; its pending deliveries are dead\n")
            [removed] = json.loads(cli(*where, "deliveries", "--json")[1])
            assert (removed["state"], removed["last_error"]) == ("dead", "the endpoint was removed")


def test_https_receivers_are_verified_as_any_tls_client_would(tmp_path: Path) -> None:
    from tests.interop.tools import make_tls

    tls = make_tls(tmp_path / "tls")
    data = tmp_path / "data"
    _users(data)
    with receiving(tls=(tls.cert, tls.key)) as receiver:
        assert receiver.url.startswith("https://")
        config = str(write_config(tmp_path, [{"name": "secure", "url": receiver.url}]))
        where = ["webhooks", "--data-dir", str(data), "--config", config]
        code, out, _ = cli(*where, "test", "secure")
        assert code == 1 and "TLS failed: CERTIFICATE_VERIFY_FAILED" in out  # a CA nobody trusts
        with mock.patch.dict(os.environ, {"SSL_CERT_FILE": str(tls.ca)}):
            code, out, _ = cli(*where, "test", "secure")
        assert code == 0 and out.startswith("secure: delivered (HTTP 200)"), out
        [request] = receiver.requests()
        assert request.events[0]["action"] == "test"
