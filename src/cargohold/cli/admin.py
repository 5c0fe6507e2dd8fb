"""``cargohold admin``: users, robots, organizations, teams, grants, visibility, immutable tag rules and namespace
quotas, on the database directly.

Works on the data directory's database, or on ``--database-url`` (``--data-dir``,
``--config`` or ``CARGOHOLD_*`` as for ``serve``), so whoever may read the data may administer;
the running server sees changes at once. The HTTP admin API offers the same
operations to authenticated callers. Passwords are read from the terminal or,
with ``--password-stdin``, from one line of standard input; never from flags.
Each action runs in one event loop, and each change in one unit of work of the
access store (``store.transaction()``), with its audit entry (actor: the admin CLI, as
the operating system's user); passwords are read and hashed before it opens.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ..access_model import AccessModelError, AccountKind, Role, split_robot_name, split_team_name
from ..auth.passwords import ROBOT_TOKEN_PREFIX, generate_secret, hash_password, secret_digest
from ..auth.policy import who_can
from ..auth.setup import access_store_for
from ..auth.stored_keys import current_token_key, token_key_source
from ..config import ConfigError, ServerConfig
from ..events import ADMIN_CLI, Event
from ..events import Action as EventAction
from ..events.log import EventLog
from ..events.origin import FixedOrigin, origin_scope
from ..metadata.access import AccessStore
from ..metadata.schema import migrate, status
from ..metadata.store import MetadataError
from ..sizes import human_size
from .registry_options import add_location_options, located_config, print_rows, verb_parser

Action = Callable[[AccessStore, ServerConfig, argparse.Namespace], Awaitable[int]]


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    try:
        first, again = getpass.getpass("Password: "), getpass.getpass("Repeat password: ")
    except EOFError:  # no terminal, and standard input ended
        raise AccessModelError("no password given: there is no terminal to ask on; use --password-stdin") from None
    if again != first:
        raise AccessModelError("the passwords differ")
    return first


def _cli_origin() -> FixedOrigin:
    """The admin CLI, as the operating system's user running it (if it can be told)."""
    try:
        user: str | None = getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (a bare container)
        user = None
    return FixedOrigin(actor=user, actor_kind=ADMIN_CLI.actor_kind, user_agent="cargohold admin")


async def _record(tx: EventLog, change: str, repository: str = "", **args: Any) -> None:
    """The audit entry of a change, in the change's transaction (never a secret)."""
    await tx.add_event(Event.now(EventAction.ADMIN, repository=repository, detail={"change": change, **args}))


def _done(args: argparse.Namespace, message: str, **document: Any) -> None:
    """What a change did: a sentence, or with --json the document."""
    print(json.dumps(document, indent=2) if args.json else message)


# users


async def user_add(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    hashed = hash_password(_read_password(args), config.auth.password_cost)
    async with store.transaction() as tx:
        user = await tx.create_user(args.name, hashed, args.superuser)
        await _record(tx, "user.add", name=user.name, superuser=user.superuser)
    _done(args, f"user {args.name} created" + (" (superuser)" if args.superuser else ""),
          name=user.name, superuser=user.superuser, created=True)
    return 0


async def user_passwd(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    await store.require(args.name, AccountKind.USER)
    hashed = hash_password(_read_password(args), config.auth.password_cost)
    async with store.transaction() as tx:
        await tx.require(args.name, AccountKind.USER)
        await tx.set_secret(args.name, hashed)
        await _record(tx, "user.change", name=args.name, fields=["password"])
    _done(args, f"password of {args.name} changed; its tokens are void", name=args.name, passwordChanged=True)
    return 0


async def user_disable(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        await tx.set_disabled(args.name, args.disable)
        await _record(tx, "user.change", name=args.name, fields=["disabled"], disabled=args.disable)
    _done(args, f"{args.name} {'disabled' if args.disable else 'enabled'}", name=args.name, disabled=args.disable)
    return 0


async def user_superuser(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        await tx.set_superuser(args.name, not args.remove)
        await _record(tx, "user.change", name=args.name, fields=["superuser"], superuser=not args.remove)
    _done(args, f"{args.name} is {'no longer ' if args.remove else ''}a superuser", name=args.name,
          superuser=not args.remove)
    return 0


async def account_delete(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        await tx.require(args.name, args.kind)
        await tx.delete_account(args.name)
        await _record(tx, f"{'org' if args.kind is AccountKind.ORGANIZATION else args.kind.value}.delete",
                      name=args.name)
    _done(args, f"{args.kind.value} {args.name} deleted", name=args.name, kind=args.kind.value, deleted=True)
    return 0


async def account_list(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    accounts = await store.accounts(args.kind, owner=getattr(args, "owner", None))
    rows = [{"name": a.name, "superuser": a.superuser, "disabled": a.disabled, "owner": a.owner or ""}
            for a in accounts]
    columns = ["name", "owner"] if args.kind is not AccountKind.USER else ["name", "superuser", "disabled"]
    print_rows(args, rows, columns)
    return 0


# robots


async def robot_add(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    token = generate_secret(ROBOT_TOKEN_PREFIX)
    async with store.transaction() as tx:
        robot = await tx.create_robot(args.owner, args.name, secret_digest(token))
        await _record(tx, "robot.add", name=robot.name)
    if args.json:  # the token is shown once: in the document
        _done(args, "", name=robot.name, owner=args.owner, token=token)
        return 0
    print(f"robot {robot.name} created; its token (shown once, log in with it as the password):", file=sys.stderr)
    print(token)
    return 0


async def robot_rotate(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    split_robot_name(args.name)
    token = generate_secret(ROBOT_TOKEN_PREFIX)
    async with store.transaction() as tx:
        await tx.require(args.name, AccountKind.ROBOT)
        await tx.set_secret(args.name, secret_digest(token))
        await _record(tx, "robot.rotate", name=args.name)
    if args.json:
        _done(args, "", name=args.name, token=token)
        return 0
    print(f"new token for {args.name} (the old one and its access tokens are void):", file=sys.stderr)
    print(token)
    return 0


# organizations and teams


async def org_add(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        await tx.create_organization(args.name, args.owner or [])
        await _record(tx, "org.add", name=args.name, owners=args.owner or [])
    _done(args, f"organization {args.name} created" + (f", owned by {', '.join(args.owner)}" if args.owner else ""),
          name=args.name, owners=args.owner or [], created=True)
    return 0


async def team_add(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    organization, team = split_team_name(args.team)
    async with store.transaction() as tx:
        await tx.create_team(organization, team)
        await _record(tx, "team.add", team=args.team)
    _done(args, f"team {args.team} created", team=args.team, created=True)
    return 0


async def team_delete(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        await tx.delete_team(args.team)
        await _record(tx, "team.delete", team=args.team)
    _done(args, f"team {args.team} deleted", team=args.team, deleted=True)
    return 0


async def team_member(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        for member in args.members:
            await tx.set_member(args.team, member, not args.remove)
            await _record(tx, "team.member.remove" if args.remove else "team.member.add", team=args.team,
                          member=member)
    _done(args, f"{', '.join(args.members)} {'removed from' if args.remove else 'added to'} {args.team}",
          team=args.team, members=args.members, removed=args.remove)
    return 0


async def team_list(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    await store.require(args.org, AccountKind.ORGANIZATION)
    rows = [{"team": t.full_name, "members": " ".join(await store.members(t.full_name))}
            for t in await store.teams(args.org)]
    print_rows(args, rows, ["team", "members"])
    return 0


# permissions


async def grant(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    role = Role.parse(args.role)
    async with store.transaction() as tx:
        await tx.grant(args.repository, args.grantee, role)
        await _record(tx, "permission.grant", args.repository, grantee=args.grantee, role=str(role))
    _done(args, f"{args.grantee} may {role} {args.repository}", grantee=args.grantee, role=str(role),
          repository=args.repository)
    return 0


async def revoke(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        revoked = await tx.revoke(args.repository, args.grantee)
        if revoked:
            await _record(tx, "permission.revoke", args.repository, grantee=args.grantee)
    if not revoked:
        print(f"{args.grantee} held no grant on {args.repository}", file=sys.stderr)
        return 1
    _done(args, f"grant of {args.grantee} on {args.repository} revoked", grantee=args.grantee,
          repository=args.repository, revoked=True)
    return 0


async def repo_visibility(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        await tx.set_public(args.repository, args.visibility == "public")
        await _record(tx, "repository.visibility", args.repository, public=args.visibility == "public")
    _done(args, f"{args.repository} is {args.visibility}", repository=args.repository, visibility=args.visibility)
    return 0


async def show_who_can(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    rows = [{"who": h.who, "role": str(h.role), "actions": ",".join(sorted(h.role.actions)), "via": h.via}
            for h in await who_can(store, args.repository)]
    print_rows(args, rows, ["who", "role", "actions", "via"])
    return 0


# immutable tags


async def immutable_list(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    print_rows(args, [rule.to_json() for rule in await store.immutable_rules()],
               ["id", "repository", "tag", "created_by"])
    return 0


async def immutable_add(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        rule = await tx.add_immutable_rule(args.repository, args.tag, _cli_origin().actor)
        await _record(tx, "immutable.add", rule.repository, id=rule.id, tag=rule.tag)
    _done(args, f"{rule} added: matching tags can no longer be moved or deleted", **rule.to_json())
    return 0


async def immutable_remove(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        rule = await tx.remove_immutable_rule(args.id)
        await _record(tx, "immutable.remove", rule.repository, id=rule.id, tag=rule.tag)
    _done(args, f"{rule} lifted", **rule.to_json(), removed=True)
    return 0


# namespace quotas


async def quota_list(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    print_rows(args, [{**quota.to_json(), "limit": human_size(quota.limit_bytes), "used": human_size(quota.used_bytes)}
                      for quota in await store.quotas()], ["namespace", "limit", "used", "created_by"])
    return 0


async def quota_set(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        quota = await tx.set_quota(args.namespace, args.limit, _cli_origin().actor)
        await _record(tx, "quota.set", f"{quota.namespace}/*", namespace=quota.namespace, limit=quota.limit_bytes)
    _done(args, f"{quota} set: {human_size(quota.used_bytes)} used now", **quota.to_json())
    return 0


async def quota_clear(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    async with store.transaction() as tx:
        quota = await tx.clear_quota(args.namespace)
        await _record(tx, "quota.clear", f"{quota.namespace}/*", namespace=quota.namespace)
    _done(args, f"{quota} cleared", **quota.to_json(), cleared=True)
    return 0


async def token_key(store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    key = current_token_key(config)
    rows = [{"kid": key.kid, "algorithm": key.algorithm, "key": token_key_source(config),
             "certificate": config.token_cert_path, "issuer": config.auth.issuer, "service": config.auth.service}]
    if args.json:
        print(json.dumps(rows[0], indent=2))
    else:
        for name, value in rows[0].items():
            print(f"{name}: {value}")
    return 0


def register(subparsers: Any) -> None:
    admin: argparse.ArgumentParser = subparsers.add_parser(
        "admin", help="manage users, robots, organizations, teams, permissions, immutable tags and quotas",
        description="Manage the access model in the data directory's database (as the server's owner).",
    )
    add_location_options(admin)
    admin.set_defaults(func=run)
    groups = admin.add_subparsers(dest="group", required=True, metavar="COMMAND")

    users = groups.add_parser("user", help="users").add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, action, help_text in [("add", user_add, "create a user"), ("passwd", user_passwd, "set a password")]:
        parser = verb_parser(users, name, action, help_text)
        parser.add_argument("name")
        parser.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        if name == "add":
            parser.add_argument("--superuser", action="store_true", help="may administer everything")
    for name, disable in [("disable", True), ("enable", False)]:
        verb_parser(users, name, user_disable, f"{name} a user", disable=disable).add_argument("name")
    parser = verb_parser(users, "superuser", user_superuser, "make a user a superuser (or not, with --remove)")
    parser.add_argument("name")
    parser.add_argument("--remove", action="store_true")
    verb_parser(users, "delete", account_delete, "delete a user and its robots",
                kind=AccountKind.USER).add_argument("name")
    verb_parser(users, "list", account_list, "list users", kind=AccountKind.USER)

    robots = groups.add_parser("robot", help="robot accounts").add_subparsers(dest="verb", required=True,
                                                                             metavar="VERB")
    parser = verb_parser(robots, "add", robot_add, "create robot OWNER+NAME; prints its token")
    parser.add_argument("owner", help="user or organization")
    parser.add_argument("name")
    verb_parser(robots, "rotate", robot_rotate, "replace a robot's token; prints it").add_argument("name",
                                                                                              help="OWNER+NAME")
    verb_parser(robots, "delete", account_delete, "delete a robot", kind=AccountKind.ROBOT).add_argument("name")
    verb_parser(robots, "list", account_list, "list robots", kind=AccountKind.ROBOT).add_argument("owner", nargs="?")

    orgs = groups.add_parser("org", help="organizations").add_subparsers(dest="verb", required=True, metavar="VERB")
    parser = verb_parser(orgs, "add", org_add, "create an organization (its owners team holds --owner users)")
    parser.add_argument("name")
    parser.add_argument("--owner", action="append", metavar="USER", help="a user to put in the owners team")
    verb_parser(orgs, "delete", account_delete, "delete an organization", kind=AccountKind.ORGANIZATION).add_argument(
        "name")
    verb_parser(orgs, "list", account_list, "list organizations", kind=AccountKind.ORGANIZATION)

    teams = groups.add_parser("team", help="teams").add_subparsers(dest="verb", required=True, metavar="VERB")
    verb_parser(teams, "add", team_add, "create a team").add_argument("team", metavar="ORG/TEAM")
    verb_parser(teams, "delete", team_delete, "delete a team").add_argument("team", metavar="ORG/TEAM")
    parser = verb_parser(teams, "member", team_member, "add users or robots to a team (or remove them)")
    parser.add_argument("team", metavar="ORG/TEAM")
    parser.add_argument("members", nargs="+", metavar="ACCOUNT")
    parser.add_argument("--remove", action="store_true")
    verb_parser(teams, "list", team_list, "list an organization's teams").add_argument("org")

    parser = verb_parser(groups, "grant", grant, "grant a role on a repository (or NAMESPACE/*)")
    parser.add_argument("role", choices=["read", "write", "admin"])
    parser.add_argument("grantee", metavar="USER|ROBOT|ORG/TEAM")
    parser.add_argument("repository", metavar="REPOSITORY|NAMESPACE/*")
    parser = verb_parser(groups, "revoke", revoke, "revoke a grant")
    parser.add_argument("grantee", metavar="USER|ROBOT|ORG/TEAM")
    parser.add_argument("repository", metavar="REPOSITORY|NAMESPACE/*")

    repos = groups.add_parser("repo", help="repository visibility").add_subparsers(dest="verb", required=True,
                                                                                  metavar="VERB")
    for visibility in ("public", "private"):
        verb_parser(repos, visibility, repo_visibility, f"make a repository {visibility}",
                visibility=visibility).add_argument("repository")
    rules = groups.add_parser(
        "immutable", help="immutable tag rules: tags that may not be moved or deleted",
        description="Tags whose repository and name match a rule's globs (* also matches /) cannot be moved to "
                    "another digest or deleted; pushing the same digest again succeeds.",
    ).add_subparsers(dest="verb", required=True, metavar="VERB")
    verb_parser(rules, "list", immutable_list, "list the rules")
    parser = verb_parser(rules, "add", immutable_add, "make the tags matching TAG in repositories matching "
                         "REPOSITORY immutable")
    parser.add_argument("repository", metavar="REPOSITORY", help="glob over repository names, e.g. 'prod/*'")
    parser.add_argument("tag", metavar="TAG", help="glob over tags, e.g. 'v*'")
    verb_parser(rules, "remove", immutable_remove, "lift a rule").add_argument("id", type=int, metavar="ID")
    quotas = groups.add_parser(
        "quota", help="namespace quotas: a byte limit on what a namespace's manifests reference",
        description="A push that would take a namespace's referenced bytes (each distinct blob its manifests "
                    "reference, and the manifests) over its limit is refused with DENIED.",
    ).add_subparsers(dest="verb", required=True, metavar="VERB")
    verb_parser(quotas, "list", quota_list, "list the quotas, with the bytes each namespace uses")
    parser = verb_parser(quotas, "set", quota_set, "set or change a namespace's limit")
    parser.add_argument("namespace", metavar="NAMESPACE")
    parser.add_argument("limit", metavar="LIMIT", help="bytes, or a size: 50GiB, 500M (binary multiples)")
    verb_parser(quotas, "clear", quota_clear, "lift a namespace's quota").add_argument("namespace", metavar="NAMESPACE")
    verb_parser(groups, "who-can", show_who_can, "who may do what on a repository").add_argument("repository")
    verb_parser(groups, "token-key", token_key, "the token signing key: kid, algorithm, certificate path")


def _check_registry(config: ServerConfig, args: argparse.Namespace) -> None:
    """Refuse a data directory that holds no registry (a mistyped --data-dir would silently start an
    empty one); only ``user add`` may create it, for the first administrator, and migrates the new
    database. An existing database is never migrated here: one that is behind is refused until
    ``cargohold migrate`` (or ``serve``) has run, as the workers refuse it."""
    if not config.metadata_url.startswith("sqlite://"):
        # a database server: the URL names an existing database; a new (empty) one is migrated for
        # its first user, as a new data directory is
        if args.action is user_add and status(config.metadata_url)[0] == 0:
            migrate(config.metadata_url)
        return
    database = config.metadata_url.removeprefix("sqlite://")
    if os.path.exists(database):
        return
    if args.action is user_add:
        print(f"cargohold admin: creating a new registry in {config.data_dir}", file=sys.stderr)
        os.makedirs(config.data_dir, exist_ok=True)
        migrate(config.metadata_url)
        return
    raise ConfigError(
        f"{config.data_dir} holds no registry (no {os.path.basename(database)}): check --data-dir; "
        "a new registry starts with its first user (admin user add NAME --superuser)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = located_config(args)
        _check_registry(config, args)
        store = access_store_for(config)
    except (ConfigError, MetadataError, OSError) as exc:
        print(f"cargohold admin: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_act(args.action, store, config, args))


async def _act(action: Action, store: AccessStore, config: ServerConfig, args: argparse.Namespace) -> int:
    try:
        with origin_scope(_cli_origin()):
            return await action(store, config, args)
    except BrokenPipeError:
        raise  # the top level ends quietly
    except (AccessModelError, MetadataError, ValueError, OSError) as exc:
        print(f"cargohold admin: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.close()

