"""The operations' administration pages (superusers): webhooks and their deliveries, garbage collection,
quotas and usage, retention and immutable tag rules, mirrors and pull-through proxies.

Every change goes through the administration API's own functions, so its checks, audit entries and
refusals are the API's; a refusal is a page with the status the API answers it with.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import quote, urlencode

from ..api import admin_gc, admin_immutable, admin_mirrors, admin_usage
from ..api.admin_webhooks import webhook_admin
from ..api.request import RegistryRequest
from ..errcodes import Denied
from ..http import Response
from ..mirror.model import MirrorBusy, MirrorUnknown
from ..webhooks.manage import WebhookInvalid, WebhookUnknown
from .pages import ADMIN_SECTIONS, PageTable, WebUi, admin_caller, refusal_page, refusals_as_pages
from .render import page, redirect
from .viewer import Viewer

ADMIN: Final = "/ui/admin"
#: deliveries and GC runs per page
PAGE_SIZE: Final = 50
#: the GC runs searched for one run's report
GC_RUNS: Final = admin_gc.MAX_HISTORY
#: mirror runs listed on a job's page
MIRROR_RUNS: Final = 20
DELIVERY_STATES: Final = ("pending", "delivered", "dead")

Handler = Callable[[RegistryRequest], Awaitable[Response]]


def _words(text: str) -> list[str]:
    """A form field's list: its values separated by commas or spaces."""
    return [word for word in re.split(r"[\s,]+", text) if word]


def _number(text: str, name: str) -> int | None:
    if text == "":
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise WebhookInvalid(f"{name}: cannot use {text!r} (must be a whole number)")
    return int(text)


def _link(path: str, **query: Any) -> str:
    shown = {key: value for key, value in query.items() if value not in (None, "")}
    return path + (f"?{urlencode(shown)}" if shown else "")


class OpsPages:
    def __init__(self, ui: WebUi) -> None:
        self.ui = ui
        assert ui.admin is not None  # the pages answer only with accounts (else _administrator refuses)
        self.api = ui.admin

    def table(self) -> PageTable:
        hook = r"(?P<webhook>[^/]+)"
        mirror = r"(?P<mirror>[^/]+)"
        pages: list[tuple[str, str, dict[str, Handler]]] = [
            ("ui-admin-webhooks", rf"{ADMIN}/webhooks", {"GET": self.webhooks, "POST": self.add_webhook}),
            ("ui-admin-redeliver", rf"{ADMIN}/webhooks/deliveries/(?P<delivery>\d{{1,18}})/redeliver",
             {"POST": self.redeliver}),
            ("ui-admin-deliveries", rf"{ADMIN}/webhooks/{hook}/deliveries", {"GET": self.deliveries}),
            ("ui-admin-webhook-test", rf"{ADMIN}/webhooks/{hook}/test", {"POST": self.test_webhook}),
            ("ui-admin-webhook-remove", rf"{ADMIN}/webhooks/{hook}/remove",
             {"GET": self.confirm_remove_webhook, "POST": self.remove_webhook}),
            ("ui-admin-gc", rf"{ADMIN}/gc", {"GET": self.gc}),
            ("ui-admin-gc-dry-run", rf"{ADMIN}/gc/dry-run", {"POST": self.gc_dry_run}),
            ("ui-admin-gc-run", rf"{ADMIN}/gc/run", {"GET": self.confirm_gc, "POST": self.gc_run}),
            ("ui-admin-gc-report", rf"{ADMIN}/gc/runs/(?P<run>\d{{1,18}})", {"GET": self.gc_report}),
            ("ui-admin-quotas", rf"{ADMIN}/quotas", {"GET": self.quotas, "POST": self.set_quota}),
            ("ui-admin-quota-lift", rf"{ADMIN}/quotas/(?P<namespace>[^/]+)/lift", {"POST": self.lift_quota}),
            ("ui-admin-rules", rf"{ADMIN}/rules", {"GET": self.rules, "POST": self.add_rule}),
            ("ui-admin-rule-lift", rf"{ADMIN}/rules/(?P<rule>\d{{1,18}})/lift",
             {"GET": self.confirm_lift_rule, "POST": self.lift_rule}),
            ("ui-admin-mirrors", rf"{ADMIN}/mirrors", {"GET": self.mirrors}),
            ("ui-admin-mirror-runs", rf"{ADMIN}/mirrors/{mirror}/runs", {"GET": self.mirror_runs}),
            ("ui-admin-mirror-run", rf"{ADMIN}/mirrors/{mirror}/run", {"POST": self.run_mirror}),
        ]
        return [(name, pattern, {method: refusals_as_pages(handler) for method, handler in methods.items()})
                for name, pattern, methods in pages]

    async def _posted(self, request: RegistryRequest) -> tuple[Viewer, dict[str, str]]:
        viewer, form = await self.ui._posted(request)
        if not viewer.admin:
            raise Denied("the administration pages are for superusers")
        return viewer, form

    def _needs(self, present: object, what: str) -> None:
        if present is None:
            raise Denied(f"this server has no {what}")

    # webhooks

    async def webhooks(self, request: RegistryRequest) -> Response:
        viewer = await self.ui._administrator(request)
        self._needs(self.api.webhooks, "webhooks")
        admin = webhook_admin(self.api, admin_caller(viewer))
        endpoints = await admin.endpoint_list()
        last = {e["name"]: next(iter(await admin.deliveries(e["name"], None, 1)), None) for e in endpoints}
        return page("admin_ops_webhooks.html", viewer=viewer, endpoints=endpoints, last=last,
                    tested=request.query("tested") or "", outcome=request.query("outcome") or "",
                    added=request.query("added") or "", removed=request.query("removed") or "")

    async def add_webhook(self, request: RegistryRequest) -> Response:
        viewer, form = await self._posted(request)
        self._needs(self.api.webhooks, "webhooks")
        settings: dict[str, Any] = {key: form[key].strip() for key in ("name", "url", "format", "secret")
                                    if form.get(key, "").strip()}
        for key in ("actions", "repositories"):
            if form.get(key, "").strip():
                settings[key] = _words(form[key])
        attempts = form.get("max_attempts", "").strip()
        if attempts:
            settings["max_attempts"] = int(attempts) if attempts.isascii() and attempts.isdigit() \
                and len(attempts) <= 9 else attempts
        added = await webhook_admin(self.api, admin_caller(viewer)).add(settings)
        return redirect(_link(f"{ADMIN}/webhooks", added=added["name"]))

    async def deliveries(self, request: RegistryRequest) -> Response:
        viewer = await self.ui._administrator(request)
        self._needs(self.api.webhooks, "webhooks")
        admin = webhook_admin(self.api, admin_caller(viewer))
        name = request.params["webhook"]
        if name not in {e["name"] for e in await admin.endpoint_list()}:
            raise WebhookUnknown(f"no webhook endpoint named {name!r}")
        state, before = request.query("state") or "", _number(request.query("before") or "", "before")
        limit = _number(request.query("limit") or "", "limit")
        rows = await admin.deliveries(name, state or None, limit or PAGE_SIZE, before)
        # a full page may have a next one (then perhaps empty)
        following = rows[-1]["id"] if len(rows) == (limit or PAGE_SIZE) else None
        return page("admin_ops_deliveries.html", viewer=viewer, endpoint=name, rows=rows, state=state,
                    states=DELIVERY_STATES, limit=limit, following=following,
                    redelivered=request.query("redelivered") or "")

    async def redeliver(self, request: RegistryRequest) -> Response:
        viewer, form = await self._posted(request)
        self._needs(self.api.webhooks, "webhooks")
        delivery = await webhook_admin(self.api, admin_caller(viewer)).redeliver(int(request.params["delivery"]))
        return redirect(_link(f"{ADMIN}/webhooks/{quote(delivery['endpoint'], safe='')}/deliveries",
                              state=form.get("state", ""), redelivered=delivery["id"]))

    async def test_webhook(self, request: RegistryRequest) -> Response:
        viewer, _ = await self._posted(request)
        self._needs(self.api.webhooks, "webhooks")
        name = request.params["webhook"]
        answer = await webhook_admin(self.api, admin_caller(viewer)).test(name)
        if answer["delivered"]:
            outcome = f"delivered (HTTP {answer['status']}, {answer['seconds']} s)"
        else:
            outcome = f"not delivered: {answer['error'] or 'HTTP ' + str(answer['status'])}"
        return redirect(_link(f"{ADMIN}/webhooks", tested=name, outcome=outcome))

    async def confirm_remove_webhook(self, request: RegistryRequest) -> Response:
        viewer = await self.ui._administrator(request)
        self._needs(self.api.webhooks, "webhooks")
        name = request.params["webhook"]
        endpoints = {e["name"]: e for e in await webhook_admin(self.api, admin_caller(viewer)).endpoint_list()}
        if name not in endpoints:
            raise WebhookUnknown(f"no webhook endpoint named {name!r}")
        return page("admin_confirm.html", viewer=viewer, title=f"Remove the webhook endpoint {name}?",
                    text=f"Events stop going to {endpoints[name]['url']}; its deliveries stay listed.",
                    action=f"{ADMIN}/webhooks/{quote(name, safe='')}/remove", fields={}, button="Remove",
                    back=f"{ADMIN}/webhooks")

    async def remove_webhook(self, request: RegistryRequest) -> Response:
        viewer, _ = await self._posted(request)
        self._needs(self.api.webhooks, "webhooks")
        name = request.params["webhook"]
        await webhook_admin(self.api, admin_caller(viewer)).remove(name)
        return redirect(_link(f"{ADMIN}/webhooks", removed=name))

    # garbage collection

    async def gc(self, request: RegistryRequest) -> Response:
        viewer = await self.ui._administrator(request)
        self._needs(self.api.collector, "garbage collector")
        runs = await admin_gc.runs(self.api, admin_caller(viewer), PAGE_SIZE)
        return page("admin_ops_gc.html", viewer=viewer, runs=runs)

    def _glob(self, form: dict[str, str]) -> str | None:
        return form.get("repository", "").strip() or None

    async def gc_dry_run(self, request: RegistryRequest) -> Response:
        viewer, form = await self._posted(request)
        self._needs(self.api.collector, "garbage collector")
        report = await admin_gc.collect(self.api, admin_caller(viewer), True, self._glob(form))
        return redirect(f"{ADMIN}/gc/runs/{report.id}")

    async def confirm_gc(self, request: RegistryRequest) -> Response:
        viewer = await self.ui._administrator(request)
        self._needs(self.api.collector, "garbage collector")
        glob = (request.query("repository") or "").strip()
        where = f"the repositories matching {glob}" if glob else "every repository"
        return page("admin_confirm.html", viewer=viewer, title="Run garbage collection?",
                    text=f"Manifests and blobs nothing keeps in {where} are deleted for good, "
                         "once past the grace period. A dry run first shows what goes.",
                    action=f"{ADMIN}/gc/run", fields={"repository": glob}, button="Collect", back=f"{ADMIN}/gc")

    async def gc_run(self, request: RegistryRequest) -> Response:
        viewer, form = await self._posted(request)
        self._needs(self.api.collector, "garbage collector")
        report = await admin_gc.collect(self.api, admin_caller(viewer), False, self._glob(form))
        return redirect(f"{ADMIN}/gc/runs/{report.id}")

    async def gc_report(self, request: RegistryRequest) -> Response:
        viewer = await self.ui._administrator(request)
        self._needs(self.api.collector, "garbage collector")
        wanted = int(request.params["run"])
        for run in await admin_gc.runs(self.api, admin_caller(viewer), GC_RUNS):
            if run["id"] == wanted:
                return page("admin_ops_gc_run.html", viewer=viewer, run=run)
        return refusal_page("NOT_FOUND", f"no garbage collection run {wanted} among the last {GC_RUNS}")

    # quotas and usage

    async def quotas(self, request: RegistryRequest) -> Response:
        viewer = await self.ui._administrator(request)
        report = await self.api.store.usage_report(None)
        quotas = {quota.namespace: quota for quota in await self.api.store.quotas()}
        usage = {row.name: row for row in report.namespaces}
        rows = [(name, usage.get(name), quotas.get(name)) for name in sorted({*usage, *quotas})]
        return page("admin_ops_quotas.html", viewer=viewer, rows=rows, computed_at=report.computed_at,
                    changed=request.query("changed") or "", lifted=request.query("lifted") or "")

    async def set_quota(self, request: RegistryRequest) -> Response:
        viewer, form = await self._posted(request)
        limit: Any = form.get("limit", "").strip()
        if limit.isascii() and limit.isdigit() and len(limit) <= 20:
            limit = int(limit)
        quota = await admin_usage.apply_quota(self.api, admin_caller(viewer), form.get("namespace", "").strip(), limit)
        return redirect(_link(f"{ADMIN}/quotas", changed=quota.namespace))

    async def lift_quota(self, request: RegistryRequest) -> Response:
        viewer, _ = await self._posted(request)
        namespace = request.params["namespace"]
        await admin_usage.lift_quota(self.api, admin_caller(viewer), namespace)
        return redirect(_link(f"{ADMIN}/quotas", lifted=namespace))

    # retention and immutable tags

    async def rules(self, request: RegistryRequest) -> Response:
        viewer = await self.ui._administrator(request)
        rules = await admin_immutable.managed_rules(self.api, admin_caller(viewer))
        return page("admin_ops_rules.html", viewer=viewer, retention=self.ui.config.retention, rules=rules,
                    added=request.query("added") or "", lifted=request.query("lifted") or "")

    async def add_rule(self, request: RegistryRequest) -> Response:
        viewer, form = await self._posted(request)
        rule = await admin_immutable.add_immutable_rule(
            self.api, admin_caller(viewer), form.get("repository", "").strip(), form.get("tag", "").strip())
        return redirect(_link(f"{ADMIN}/rules", added=rule.id))

    async def confirm_lift_rule(self, request: RegistryRequest) -> Response:
        viewer = await self.ui._administrator(request)
        wanted = int(request.params["rule"])
        rule = next((r for r in await admin_immutable.managed_rules(self.api, admin_caller(viewer)) if r.id == wanted),
                    None)
        if rule is None:
            return refusal_page("IMMUTABLE_RULE_UNKNOWN", f"no immutable tag rule {wanted}")
        return page("admin_confirm.html", viewer=viewer, title=f"Lift immutable tag rule {rule.id}?",
                    text=f"Tags matching {rule.tag} in repositories matching {rule.repository} may then be "
                         "pushed over and deleted.",
                    action=f"{ADMIN}/rules/{rule.id}/lift", fields={}, button="Lift", back=f"{ADMIN}/rules")

    async def lift_rule(self, request: RegistryRequest) -> Response:
        viewer, _ = await self._posted(request)
        rule = await admin_immutable.lift_immutable_rule(self.api, admin_caller(viewer), int(request.params["rule"]))
        return redirect(_link(f"{ADMIN}/rules", lifted=rule.id))

    # mirrors and proxies

    async def mirrors(self, request: RegistryRequest) -> Response:
        viewer = await self.ui._administrator(request)
        self._needs(self.api.mirrors, "mirrors")
        mirrors = admin_mirrors.mirrors_of(self.api, admin_caller(viewer))
        jobs = await mirrors.store.mirrors()
        last = {job.name: next(iter(await mirrors.store.mirror_runs(job.name, 1)), None) for job in jobs}
        return page("admin_ops_mirrors.html", viewer=viewer, jobs=jobs, last=last, proxies=self.ui.config.proxies)

    async def mirror_runs(self, request: RegistryRequest) -> Response:
        viewer = await self.ui._administrator(request)
        self._needs(self.api.mirrors, "mirrors")
        mirrors = admin_mirrors.mirrors_of(self.api, admin_caller(viewer))
        name = request.params["mirror"]
        job = await mirrors.store.mirror(name)
        if job is None:
            return refusal_page(*admin_mirrors.run_refusal(MirrorUnknown(name), name))
        runs = await mirrors.store.mirror_runs(name, MIRROR_RUNS)
        return page("admin_ops_mirror_runs.html", viewer=viewer, job=job, runs=runs,
                    ran=request.query("ran") or "")

    async def run_mirror(self, request: RegistryRequest) -> Response:
        viewer, _ = await self._posted(request)
        self._needs(self.api.mirrors, "mirrors")
        name = request.params["mirror"]
        try:
            run = await admin_mirrors.run_now(self.api, admin_caller(viewer), name, "ui")
        except (MirrorUnknown, MirrorBusy) as exc:
            return refusal_page(*admin_mirrors.run_refusal(exc, name))
        return redirect(_link(f"{ADMIN}/mirrors/{quote(name, safe='')}/runs", ran=run.id))


def ops_pages(ui: WebUi) -> PageTable:
    """The operations' pages (none without the administration API: there are no superusers to show them)."""
    return OpsPages(ui).table() if ui.admin is not None else []


ADMIN_SECTIONS.append(ops_pages)
