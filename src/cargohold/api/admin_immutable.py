"""The immutable tag rules' routes of the administration API (:mod:`cargohold.immutable_tags`).

Superusers manage every rule; the owners of a namespace (the user itself, an organization's
``owners`` team) manage the rules whose repository pattern lies inside it (``acme/*``,
``acme/app``, not ``*`` nor ``acme*``), as Harbor's project administrators manage their project's.
Each change is one unit of work with its audit entry (action ``admin``, change ``immutable.add`` or
``immutable.remove``).

Routes::

    GET    /admin/v1/immutable-tags                          the rules the caller may manage, oldest first
    POST   /admin/v1/immutable-tags {repository, tag}        add one -> the rule (with its id)
    DELETE /admin/v1/immutable-tags/{id}                     lift one
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..auth.login import audit
from ..http import Request
from ..immutable_tags import (
    ImmutableRule,
    ImmutableRuleInvalid,
    ImmutableRuleUnknown,
    check_rule_patterns,
    rule_namespace,
)

if TYPE_CHECKING:
    from .admin_endpoints import AdminApi, Caller, Handler


def _manages(caller: Caller, repository_pattern: str) -> bool:
    namespace = rule_namespace(repository_pattern)
    return caller.superuser or (namespace is not None and caller.view.owns_namespace(namespace))


async def list_rules(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    return [rule.to_json() for rule in await managed_rules(api, caller)]


async def add_rule(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    body = await api.body(request)
    return (await add_immutable_rule(api, caller, body.get("repository"), body.get("tag"))).to_json()


async def remove_rule(api: AdminApi, caller: Caller, params: dict[str, str], request: Request) -> Any:
    await lift_immutable_rule(api, caller, int(params["rule"]))
    return None


async def managed_rules(api: AdminApi, caller: Caller) -> list[ImmutableRule]:
    """The rules the caller may manage, oldest first."""
    return [rule for rule in await api.store.immutable_rules() if _manages(caller, rule.repository)]


async def add_immutable_rule(api: AdminApi, caller: Caller, repository: Any, tag: Any) -> ImmutableRule:
    """Add a rule (glob patterns over repositories and tags) the caller may manage."""
    from .admin_endpoints import record  # (that module imports this one)

    if not isinstance(repository, str) or not isinstance(tag, str):
        raise ImmutableRuleInvalid("repository and tag are required (glob patterns, strings)")
    check_rule_patterns(repository, tag)
    caller.require(_manages(caller, repository))
    async with api.store.transaction() as tx:
        rule = await tx.add_immutable_rule(repository, tag, caller.account.name)
        await record(tx, caller, "immutable.add", rule.repository, id=rule.id, tag=rule.tag)
    audit("immutable_rule_added", id=rule.id, repository=rule.repository, tag=rule.tag, by=caller.account.name)
    return rule


async def lift_immutable_rule(api: AdminApi, caller: Caller, rule_id: int) -> ImmutableRule:
    """Lift a rule the caller may manage; the rule it was."""
    from .admin_endpoints import record  # (that module imports this one)

    async with api.store.transaction() as tx:
        rule = _find(await tx.immutable_rules(), rule_id)
        caller.require(_manages(caller, rule.repository))
        await tx.remove_immutable_rule(rule_id)
        await record(tx, caller, "immutable.remove", rule.repository, id=rule.id, tag=rule.tag)
    audit("immutable_rule_removed", id=rule.id, repository=rule.repository, tag=rule.tag, by=caller.account.name)
    return rule


def _find(rules: list[ImmutableRule], rule_id: int) -> ImmutableRule:
    for rule in rules:
        if rule.id == rule_id:
            return rule
    raise ImmutableRuleUnknown(f"no immutable tag rule {rule_id}")


#: (method, path pattern under the admin prefix, handler)
ROUTES: Final[list[tuple[str, str, Handler]]] = [
    ("GET", "/immutable-tags", list_rules),
    ("POST", "/immutable-tags", add_rule),
    ("DELETE", r"/immutable-tags/(?P<rule>\d{1,18})", remove_rule),
]
