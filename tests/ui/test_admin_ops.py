"""The operations' administration pages: webhooks and their deliveries, garbage collection, quotas and usage,
retention and immutable tag rules, mirrors and proxies; over plain HTTP (every page and action, bad input,
refusals for others than superusers) and in a chromium (a GC dry run, and a dead delivery redelivered)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser

from cargohold.sizes import human_size
from tests.api.helpers import OCI_MANIFEST, image_manifest, put_manifest, sha256
from tests.auth.world import FAST_ENV
from tests.support.backends import MATRIX, setup_for
from tests.support.requirements import requires_tool
from tests.support.servers import CargoholdServer, cargohold, free_port
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import wait_until

from .conftest import PASSWORDS, basic, make_accounts
from .support import browser_login, csrf_of, http_login

HOOK = "hooked"
PROXY_TOKEN = "proxy-token-never-shown"
ADMIN = "/ui/admin"
PAGES = [f"{ADMIN}/webhooks", f"{ADMIN}/webhooks/{HOOK}/deliveries", f"{ADMIN}/gc", f"{ADMIN}/gc/run",
         f"{ADMIN}/gc/runs/1", f"{ADMIN}/quotas", f"{ADMIN}/rules", f"{ADMIN}/rules/1/lift", f"{ADMIN}/mirrors",
         f"{ADMIN}/mirrors/down/runs", f"{ADMIN}/webhooks/{HOOK}/remove"]


@dataclass
class OpsWorld:
    server: CargoholdServer
    #: the configured endpoint's receiver: it answers 500 until a test says otherwise
    receiver: Receiver

    @property
    def url(self) -> str:
        return self.server.url

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": basic("root")}, timeout=30)

    def push(self, repository: str, tag: str, seed: str) -> tuple[str, dict[str, int]]:
        """Push an image of one layer: the manifest's digest, and its config's and layer's sizes by digest."""
        with self.admin() as root:
            scope = f"repository:{repository}:pull,push,delete"
            token = root.get("/auth/token", params={"service": "cargohold", "scope": scope}).json()["token"]
            root.headers["Authorization"] = f"Bearer {token}"
            raw = image_manifest(root, repository, layers=1, seed=seed)
            assert put_manifest(root, repository, tag, raw, OCI_MANIFEST).status_code == 201
        document = json.loads(raw)
        return sha256(raw), {item["digest"]: item["size"] for item in [document["config"], *document["layers"]]}

    def deliveries(self, state: str = "") -> list[dict[str, Any]]:
        with self.admin() as root:
            found = root.get("/admin/v1/webhooks/deliveries", params={"endpoint": HOOK, "state": state})
            assert found.status_code == 200, found.text
            listed: list[dict[str, Any]] = found.json()
            return listed


@pytest.fixture(scope="module", params=MATRIX)
def ops_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsWorld]:
    setup = setup_for(request.param, request)
    tmp = tmp_path_factory.mktemp("ops-world")
    with ThreadPoolExecutor(1) as thread:  # its own event loop, away from the module's Playwright
        thread.submit(make_accounts, tmp / "data", setup.database_url).result()
    receiver = Receiver(default=500).start()
    config = tmp / "cargohold.yml"
    config.write_text(yaml.safe_dump({
        "notifications": {"endpoints": [{"name": HOOK, "url": receiver.url, "actions": ["push"],
                                         "repositories": [f"{HOOK}/*"], "max_attempts": 2, "backoff": 0.05,
                                         "timeout": 5}]},
        "gc": {"enabled": False, "grace_period": 0, "untagged_grace_period": 0},
        "retention": {"policies": [{"repositories": ["team/*"], "delete_referrers": True, "keep_tags": [
            {"patterns": ["^v"], "most_recently_pushed_count": 3}, {"patterns": ["-prod$"]}]}]},
        "proxies": [{"prefix": "hub", "upstream": f"http://127.0.0.1:{free_port()}", "token": PROXY_TOKEN,
                     "revalidate": "10m", "ttl": "72h"}],
    }))
    try:
        with cargohold(tmp, "--auth", "token", "--config", str(config), env={**FAST_ENV, **setup.env},
                       database_url=setup.database_url) as server:
            world = OpsWorld(server, receiver)
            world.push(f"{HOOK}/app", "one", "one")
            world.push(f"{HOOK}/app", "two", "two")
            # the blobs' and the manifests' events, each refused twice
            wait_until(lambda: {row["state"] for row in world.deliveries()} == {"dead"})
            yield world
    finally:
        receiver.stop()


@pytest.fixture
def root(ops_world: OpsWorld) -> Iterator[httpx.Client]:
    with http_login(ops_world.url, "root", PASSWORDS["root"]) as client:
        yield client


def post(client: httpx.Client, path: str, **form: str) -> httpx.Response:
    """A form POST with the session's CSRF token (read from the administration page)."""
    return client.post(path, data={"csrf": csrf_of(client.get(ADMIN).text), **form})


def refused(answer: httpx.Response, status: int, code: str, message: str = "") -> None:
    assert answer.status_code == status, answer.text
    assert f"<h1>{code}</h1>" in answer.text, answer.text
    assert message in answer.text


def audited(ops_world: OpsWorld, change: str) -> list[dict[str, Any]]:
    with ops_world.admin() as admin:
        entries = admin.get("/admin/v1/audit", params={"action": "admin", "n": 500}).json()["entries"]
    return [entry for entry in entries if entry["detail"].get("change") == change]


def test_the_administration_page_links_the_operations_pages(root: httpx.Client) -> None:
    listed = root.get(ADMIN).text
    for path in (f"{ADMIN}/webhooks", f"{ADMIN}/gc", f"{ADMIN}/quotas", f"{ADMIN}/rules", f"{ADMIN}/mirrors"):
        assert f'href="{path}"' in listed


@pytest.mark.parametrize("name", ["alice", "bob"])
def test_the_pages_and_their_actions_are_for_superusers(ops_world: OpsWorld, name: str) -> None:
    with http_login(ops_world.url, name, PASSWORDS[name]) as client:
        token = csrf_of(client.get("/ui/repositories").text)
        for path in PAGES:
            refused(client.get(path), 403, "DENIED", "the administration pages are for superusers")
        dead = ops_world.deliveries("dead")[0]["id"]
        for path, form in [
            (f"{ADMIN}/webhooks", {"name": "sneaky", "url": "http://127.0.0.1:9/x"}),
            (f"{ADMIN}/webhooks/deliveries/{dead}/redeliver", {}),
            (f"{ADMIN}/webhooks/{HOOK}/test", {}),
            (f"{ADMIN}/gc/dry-run", {}), (f"{ADMIN}/gc/run", {}),
            (f"{ADMIN}/quotas", {"namespace": "team", "limit": "1GiB"}), (f"{ADMIN}/quotas/team/lift", {}),
            (f"{ADMIN}/rules", {"repository": "team/*", "tag": "v*"}), (f"{ADMIN}/rules/1/lift", {}),
            (f"{ADMIN}/mirrors/down/run", {}), (f"{ADMIN}/webhooks/{HOOK}/remove", {}),
        ]:
            refused(client.post(path, data={"csrf": token, **form}), 403, "DENIED")
    with ops_world.admin() as admin:
        assert "sneaky" not in admin.get("/admin/v1/webhooks").text
        assert "team" not in [quota["namespace"] for quota in admin.get("/admin/v1/quotas").json()]
    with httpx.Client(base_url=ops_world.url) as anonymous:
        for path in PAGES:
            answer = anonymous.get(path)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login?"), path


def test_a_post_without_the_csrf_token_is_refused(root: httpx.Client, ops_world: OpsWorld) -> None:
    refused(root.post(f"{ADMIN}/gc/dry-run", data={}), 403, "DENIED", "CSRF")
    refused(root.post(f"{ADMIN}/quotas", data={"csrf": "forged", "namespace": "team", "limit": "1GiB"}),
            403, "DENIED", "CSRF")


def test_webhooks_list_add_test_and_remove(root: httpx.Client, ops_world: OpsWorld) -> None:
    listed = root.get(f"{ADMIN}/webhooks")
    assert listed.status_code == 200
    row = re.search(rf'<tr data-endpoint="{HOOK}">.*?</tr>', listed.text, re.S)
    assert row is not None and ops_world.receiver.url in row[0] and "configuration" in row[0]
    assert "dead" in row[0] and "HTTP 500" in row[0]  # its last delivery
    assert "Remove" not in row[0]  # the configuration's endpoints change with it

    receiver = Receiver(default=204).start()
    try:
        added = post(root, f"{ADMIN}/webhooks", name="runtime", url=receiver.url, format="quay",
                     actions="push, delete", repositories="team/*", max_attempts="3", secret="signing-secret")
        assert (added.status_code, added.headers["location"]) == (303, f"{ADMIN}/webhooks?added=runtime")
        page = root.get(added.headers["location"]).text
        assert "Added the endpoint runtime." in page and "signing-secret" not in page
        with ops_world.admin() as admin:
            stored = {e["name"]: e for e in admin.get("/admin/v1/webhooks").json()}["runtime"]
        assert (stored["format"], stored["actions"], stored["repositories"], stored["max_attempts"],
                stored["signed"]) == ("quay", ["push", "delete"], ["team/*"], 3, True)

        tested = post(root, f"{ADMIN}/webhooks/runtime/test")
        assert tested.status_code == 303
        assert "delivered (HTTP 204" in root.get(tested.headers["location"]).text
        assert receiver.received[-1].headers["X-Cargohold-Event"] == "test"
        failing = post(root, f"{ADMIN}/webhooks/{HOOK}/test")
        assert "not delivered: HTTP 500" in root.get(failing.headers["location"]).text

        for form, status, code, message in [
            ({"name": "runtime", "url": receiver.url}, 409, "WEBHOOK_EXISTS", "there is already a webhook endpoint"),
            ({"name": HOOK, "url": receiver.url}, 409, "WEBHOOK_EXISTS", "the configuration has an endpoint"),
            ({"name": "bad", "url": "ftp://h/"}, 400, "WEBHOOK_INVALID", "must be an http or https URL"),
            ({"name": "bad", "url": receiver.url, "max_attempts": "many"}, 400, "WEBHOOK_INVALID", "max_attempts"),
            ({"name": "bad", "url": receiver.url, "actions": "launch"}, 400, "WEBHOOK_INVALID", "launch"),
            ({"name": "bad"}, 400, "WEBHOOK_INVALID", "url is required"),
        ]:
            refused(post(root, f"{ADMIN}/webhooks", **form), status, code, message)
        refused(post(root, f"{ADMIN}/webhooks/nowhere/test"), 404, "WEBHOOK_UNKNOWN")
        markup = post(root, f"{ADMIN}/webhooks", name="<b>x</b>", url="javascript:alert(1)")
        refused(markup, 400, "WEBHOOK_INVALID", "&lt;b&gt;")
        assert "<b>x</b>" not in markup.text  # shown as text

        confirm = root.get(f"{ADMIN}/webhooks/runtime/remove")
        assert confirm.status_code == 200 and receiver.url in confirm.text
        assert f'action="{ADMIN}/webhooks/runtime/remove"' in confirm.text
        removed = post(root, f"{ADMIN}/webhooks/runtime/remove")
        assert (removed.status_code, removed.headers["location"]) == (303, f"{ADMIN}/webhooks?removed=runtime")
        assert 'data-endpoint="runtime"' not in root.get(f"{ADMIN}/webhooks").text
    finally:
        receiver.stop()
    refused(post(root, f"{ADMIN}/webhooks/runtime/remove"), 404, "WEBHOOK_UNKNOWN")
    refused(root.get(f"{ADMIN}/webhooks/runtime/remove"), 404, "WEBHOOK_UNKNOWN")
    refused(post(root, f"{ADMIN}/webhooks/{HOOK}/remove"), 409, "WEBHOOK_READ_ONLY", "remove it there")


def test_the_delivery_log_filters_pages_and_redelivers(root: httpx.Client, ops_world: OpsWorld) -> None:
    log = f"{ADMIN}/webhooks/{HOOK}/deliveries"
    dead = [row["id"] for row in ops_world.deliveries("dead")]
    assert len(dead) >= 2
    every = root.get(log).text
    for delivery in dead:
        assert f'data-delivery="{delivery}"' in every
    assert f"push {HOOK}/app:one" in every and "HTTP 500" in every
    assert 'data-delivery=' not in root.get(log, params={"state": "delivered"}).text
    first = root.get(log, params={"limit": "1"}).text
    assert first.count("data-delivery=") == 1 and 'rel="next"' in first
    following = re.search(r'rel="next" href="([^"]+)"', first)
    assert following is not None
    second = root.get(following[1].replace("&amp;", "&")).text
    assert second.count("data-delivery=") == 1 and second != first

    refused(root.get(log, params={"state": "lost"}), 400, "WEBHOOK_INVALID", "must be pending, delivered or dead")
    refused(root.get(log, params={"limit": "5000"}), 400, "WEBHOOK_INVALID", "must be between 1 and 1000")
    refused(root.get(log, params={"before": "x"}), 400, "WEBHOOK_INVALID", "whole number")
    refused(root.get(f"{ADMIN}/webhooks/nowhere/deliveries"), 404, "WEBHOOK_UNKNOWN")
    refused(post(root, f"{ADMIN}/webhooks/deliveries/999999/redeliver"), 404, "DELIVERY_UNKNOWN",
            "only a dead delivery is redelivered")

    again = post(root, f"{ADMIN}/webhooks/deliveries/{dead[-1]}/redeliver", state="dead")
    assert again.status_code == 303
    assert again.headers["location"] == f"{log}?state=dead&redelivered={dead[-1]}"
    assert f"Delivery {dead[-1]} is pending again." in root.get(again.headers["location"]).text
    # the receiver still answers 500: the delivery dies again
    wait_until(lambda: dead[-1] in [row["id"] for row in ops_world.deliveries("dead")])


def test_gc_dry_run_and_collection(root: httpx.Client, ops_world: OpsWorld) -> None:
    manifest, blobs = ops_world.push("gc/app", "old", "gc-page")
    with ops_world.admin() as admin:
        scope = "repository:gc/app:pull,push,delete"
        token = admin.get("/auth/token", params={"service": "cargohold", "scope": scope}).json()["token"]
        assert admin.delete("/v2/gc/app/manifests/old",
                            headers={"Authorization": f"Bearer {token}"}).status_code == 202
    confirm = root.get(f"{ADMIN}/gc/run", params={"repository": "gc/*"})
    assert confirm.status_code == 200 and "gc/*" in confirm.text and 'value="gc/*"' in confirm.text

    dry = post(root, f"{ADMIN}/gc/dry-run", repository="gc/*")
    assert dry.status_code == 303 and dry.headers["location"].startswith(f"{ADMIN}/gc/runs/")
    report = root.get(dry.headers["location"]).text
    assert "Dry run" in report
    freed = re.search(r'data-bytes="(\d+)"', report)
    assert freed is not None and int(freed[1]) == sum(blobs.values())
    for digest in [manifest, *blobs]:
        assert digest in report
    assert f"/ui/admin/gc/runs/{dry.headers['location'].rsplit('/', 1)[1]}" in root.get(f"{ADMIN}/gc").text

    run = post(root, f"{ADMIN}/gc/run", repository="gc/*")
    assert run.status_code == 303
    collected = root.get(run.headers["location"]).text
    assert "Collection" in collected and human_size(sum(blobs.values())) in collected
    with ops_world.admin() as admin:
        for digest in blobs:
            assert admin.head(f"/v2/gc/app/blobs/{digest}").status_code in (401, 404)
    refused(root.get(f"{ADMIN}/gc/runs/999999"), 404, "NOT_FOUND")
    assert root.get(f"{ADMIN}/gc/runs/x").status_code == 404


def test_quotas_set_change_and_lift(root: httpx.Client, ops_world: OpsWorld) -> None:
    with ops_world.admin() as admin:
        assert admin.post("/admin/v1/usage").status_code == 200  # the figures of the images pushed so far
        exclusive = next(row for row in admin.get("/admin/v1/usage").json()["namespaces"]
                         if row["namespace"] == HOOK)["exclusive_bytes"]
    listed = root.get(f"{ADMIN}/quotas").text
    row = re.search(rf'<tr data-namespace="{HOOK}">.*?</tr>', listed, re.S)
    assert row is not None and human_size(exclusive) in row[0]

    set_ = post(root, f"{ADMIN}/quotas", namespace=HOOK, limit="2GiB")
    assert (set_.status_code, set_.headers["location"]) == (303, f"{ADMIN}/quotas?changed={HOOK}")
    shown = root.get(set_.headers["location"]).text
    assert f"Set the quota of {HOOK}." in shown and human_size(2 << 30) in shown
    assert post(root, f"{ADMIN}/quotas", namespace=HOOK, limit="1048576").status_code == 303
    with ops_world.admin() as admin:
        assert [(q["namespace"], q["limit_bytes"]) for q in admin.get("/admin/v1/quotas").json()] == [
            (HOOK, 1048576)]
    assert {entry["detail"]["limit"] for entry in audited(ops_world, "quota.set")} == {2 << 30, 1048576}

    for form, message in [
        ({"namespace": HOOK, "limit": "lots"}, ""),
        ({"namespace": HOOK, "limit": ""}, ""),
        ({"namespace": "Not A Namespace", "limit": "1GiB"}, "is not a namespace"),
    ]:
        refused(post(root, f"{ADMIN}/quotas", **form), 400, "QUOTA_INVALID", message)

    lifted = post(root, f"{ADMIN}/quotas/{HOOK}/lift")
    assert (lifted.status_code, lifted.headers["location"]) == (303, f"{ADMIN}/quotas?lifted={HOOK}")
    with ops_world.admin() as admin:
        assert admin.get("/admin/v1/quotas").json() == []
    assert [entry["detail"]["namespace"] for entry in audited(ops_world, "quota.clear")] == [HOOK]
    assert 'class="num quota">—' in root.get(f"{ADMIN}/quotas").text


def test_retention_rules_shown_and_immutable_rules_added_and_lifted(root: httpx.Client, ops_world: OpsWorld) -> None:
    page = root.get(f"{ADMIN}/rules").text
    retention = page.split('class="retention"')[1].split("</table>")[0]
    assert "team/*" in retention and "^v" in retention and "3 most recently pushed" in retention
    assert "-prod$" in retention and "deleted with their subject" in retention

    added = post(root, f"{ADMIN}/rules", repository="team/*", tag="release-*")
    assert added.status_code == 303
    rule = int(added.headers["location"].rsplit("=", 1)[1])
    shown = root.get(added.headers["location"]).text
    assert f'data-rule="{rule}"' in shown and "release-*" in shown
    assert [entry["detail"]["tag"] for entry in audited(ops_world, "immutable.add")] == ["release-*"]

    for form, message in [({"repository": "", "tag": "v*"}, ""), ({"repository": "team/*", "tag": ""}, ""),
                          ({"repository": "Team/*", "tag": "v*"}, "lower-case letters")]:
        refused(post(root, f"{ADMIN}/rules", **form), 400, "IMMUTABLE_RULE_INVALID", message)

    confirm = root.get(f"{ADMIN}/rules/{rule}/lift")
    assert confirm.status_code == 200 and "release-*" in confirm.text
    lifted = post(root, f"{ADMIN}/rules/{rule}/lift")
    assert (lifted.status_code, lifted.headers["location"]) == (303, f"{ADMIN}/rules?lifted={rule}")
    assert f'data-rule="{rule}"' not in root.get(f"{ADMIN}/rules").text
    assert [entry["detail"]["id"] for entry in audited(ops_world, "immutable.remove")] == [rule]
    refused(post(root, f"{ADMIN}/rules/{rule}/lift"), 404, "IMMUTABLE_RULE_UNKNOWN")
    refused(root.get(f"{ADMIN}/rules/{rule}/lift"), 404, "IMMUTABLE_RULE_UNKNOWN")


def test_mirrors_run_now_and_proxies_without_credentials(root: httpx.Client, ops_world: OpsWorld) -> None:
    with ops_world.admin() as admin:
        job = {"name": "down", "source": f"127.0.0.1:{free_port()}/lib/app", "destination": "mirrored/app",
               "interval": "1h", "insecure": True}
        assert admin.post("/admin/v1/mirrors", json=job).status_code == 201
        # the scheduler runs a new job at once: its failed run comes first, then the next waits
        wait_until(lambda: [run["finished_at"] is not None
                            for run in admin.get("/admin/v1/mirrors/down/runs").json()["runs"]] == [True])
    listed = root.get(f"{ADMIN}/mirrors").text
    row = re.search(r'<tr data-mirror="down">.*?</tr>', listed, re.S)
    assert row is not None and "failed" in row[0] and "mirrored/app" in row[0]
    proxies = listed.split('class="proxies"')[1]
    assert "hub/" in proxies and "10m" in proxies and "72h" in proxies and "127.0.0.1" in proxies
    assert PROXY_TOKEN not in root.get(f"{ADMIN}/mirrors").text

    ran = post(root, f"{ADMIN}/mirrors/down/run")
    assert ran.status_code == 303 and ran.headers["location"].startswith(f"{ADMIN}/mirrors/down/runs?ran=")
    runs = root.get(ran.headers["location"]).text
    assert runs.count("data-run=") == 2 and ">ui<" in runs and "the run:" in runs
    refused(post(root, f"{ADMIN}/mirrors/nothing/run"), 404, "MIRROR_UNKNOWN")
    refused(root.get(f"{ADMIN}/mirrors/nothing/runs"), 404, "MIRROR_UNKNOWN")


@requires_tool("chromium")
def test_in_a_browser_a_dry_run_frees_a_deleted_tags_bytes_and_a_dead_delivery_is_redelivered(
        ops_world: OpsWorld, browser: Browser, tmp_path: Path) -> None:
    _, blobs = ops_world.push("browser/app", "gone", "browser")
    with ops_world.admin() as admin:
        token = admin.get("/auth/token", params={"service": "cargohold",
                                                 "scope": "repository:browser/app:pull,push,delete"}).json()["token"]
        assert admin.delete("/v2/browser/app/manifests/gone",
                            headers={"Authorization": f"Bearer {token}"}).status_code == 202
    page = browser.new_context().new_page()
    url = ops_world.url
    try:
        browser_login(page, url, "root", PASSWORDS["root"])
        page.click("a:text-is('Administration')")
        page.screenshot(path=str(tmp_path / "admin.png"), full_page=True)
        page.click("a:text-is('Garbage collection')")
        page.fill("form[action='/ui/admin/gc/dry-run'] input[name=repository]", "browser/*")
        page.click("form[action='/ui/admin/gc/dry-run'] button")
        page.wait_for_url(re.compile(r".*/ui/admin/gc/runs/\d+$"))
        page.screenshot(path=str(tmp_path / "gc-dry-run.png"), full_page=True)
        assert page.get_attribute("dd.bytes", "data-bytes") == str(sum(blobs.values()))
        assert human_size(sum(blobs.values())) in page.inner_text("dd.bytes")
        page.goto(f"{url}/ui/admin/gc")
        page.screenshot(path=str(tmp_path / "gc.png"), full_page=True)
        page.click("form[action='/ui/admin/gc/run'] button")
        page.screenshot(path=str(tmp_path / "gc-confirm.png"), full_page=True)

        dead = ops_world.deliveries("dead")[0]["id"]
        ops_world.receiver.default = 200  # the receiver is fixed
        page.goto(f"{url}/ui/admin/webhooks")
        page.screenshot(path=str(tmp_path / "webhooks.png"), full_page=True)
        page.click(f"a:text-is('{HOOK}')")
        page.select_option("select[name=state]", "dead")
        page.click("form.filters button")
        page.screenshot(path=str(tmp_path / "deliveries-dead.png"), full_page=True)
        page.click(f"tr[data-delivery='{dead}'] button:text-is('Redeliver')")
        assert page.inner_text("p.done") == f"Delivery {dead} is pending again."
        wait_until(lambda: any(row["id"] == dead for row in ops_world.deliveries("delivered")))
        page.goto(f"{url}/ui/admin/webhooks/{HOOK}/deliveries?state=delivered")
        page.screenshot(path=str(tmp_path / "deliveries-delivered.png"), full_page=True)
        assert page.inner_text(f"tr[data-delivery='{dead}'] td.state") == "delivered"

        with ops_world.admin() as admin:
            job = {"name": "shown", "source": f"127.0.0.1:{free_port()}/lib/app", "destination": "shown/app"}
            assert admin.post("/admin/v1/mirrors", json=job).status_code == 201
        for name in ("quotas", "rules", "mirrors", "mirrors/shown/runs"):
            page.goto(f"{url}/ui/admin/{name}")
            page.screenshot(path=str(tmp_path / f"{name.replace('/', '-')}.png"), full_page=True)
            assert page.locator("h1").count() == 1 and page.locator("p.error").count() == 0
    finally:
        page.context.close()
