"""Client commands that keep credentials: login, logout (docker's config.json)."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import sys
from pathlib import Path

from ..client import Credentials, DockerConfig, RegistryClient, StaticKeychain
from ..client.errors import ClientError, RegistryResponseError
from .client_common import add_json_option, add_transport_options, command, print_json, transport_options


@command
def cmd_login(args: argparse.Namespace) -> int:
    registry = args.registry.removeprefix("https://").removeprefix("http://").rstrip("/")
    if not sys.stdin.isatty() and not (args.username and (args.password is not None or args.password_stdin)):
        # as docker: no prompting without a terminal (input() would meet the end of the stream)
        raise ValueError(
            "cannot prompt for credentials: standard input is not a terminal; "
            "give --username and --password-stdin (or --password)"
        )
    username = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = args.password if args.password is not None else getpass.getpass("Password: ")
    if not password:
        raise ValueError("a password is required (none was given)")
    credentials = Credentials(username, password)
    options = dataclasses.replace(transport_options(args), retries=0)  # a person at the prompt retries
    with RegistryClient(keychain=StaticKeychain(credentials), options=options) as client:
        try:
            client.ping(registry)
        except RegistryResponseError as exc:
            if exc.status != 429:
                raise
            wait = f"in {exc.retry_after} s" if (exc.retry_after or "").isdigit() else "later"
            raise ClientError(f"{registry}: too many failed logins; try again {wait}") from None
    config = DockerConfig(Path(args.authfile)) if args.authfile else DockerConfig()
    config.store(registry, credentials)
    if args.json:
        print_json({"registry": registry, "username": username, "loggedIn": True})
    else:
        print("Login Succeeded")
    return 0


@command
def cmd_logout(args: argparse.Namespace) -> int:
    config = DockerConfig(Path(args.authfile)) if args.authfile else DockerConfig()
    registry = args.registry.removeprefix("https://").removeprefix("http://").rstrip("/")
    removed = config.erase(registry)
    if args.json:
        print_json({"registry": registry, "removed": removed})
    if not removed:
        print(f"Not logged in to {registry}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"Removing login credentials for {registry}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add login and logout."""
    p = subparsers.add_parser("login", help="store credentials for a registry in docker's config.json")
    p.add_argument("registry", help="HOST[:PORT]")
    p.add_argument("--username", "-u")
    p.add_argument("--password", "-p")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add_transport_options(p)
    p.set_defaults(func=cmd_login)

    p = subparsers.add_parser("logout", help="remove a registry's credentials from config.json")
    p.add_argument("registry", help="HOST[:PORT]")
    p.add_argument("--authfile", metavar="FILE", help="docker config.json to edit")
    add_json_option(p)
    p.set_defaults(func=cmd_logout)
