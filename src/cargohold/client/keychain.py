"""Credentials per registry: explicit, or from docker's ``config.json`` and credential helpers.

A :class:`Keychain` answers ``resolve(registry) -> Credentials | None`` (ggcr's
``authn.Keychain``). :class:`DockerConfig` reads and writes the file docker
writes: ``auths`` (base64 ``user:password``, or an ``identitytoken``),
``credHelpers`` (per registry) and ``credsStore`` (the default helper), each
helper being a ``docker-credential-NAME`` program speaking JSON on stdin/stdout.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from ..reference import DOCKER_HUB, DOCKER_HUB_API
from .errors import CredentialHelperError

#: the key docker uses for Docker Hub in config.json (a v1 URL, for history's sake)
DOCKER_HUB_CONFIG_KEY: Final = "https://index.docker.io/v1/"
#: the user name helpers report for an identity (refresh) token
TOKEN_USERNAME: Final = "<token>"


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password, or an identity token exchanged for access tokens via OAuth2."""

    username: str = ""
    password: str = ""
    identity_token: str | None = None

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(username={self.username!r}, password=***)"


class Keychain(Protocol):
    """Finds credentials for a registry host (``host[:port]``)."""

    def resolve(self, registry: str) -> Credentials | None: ...


class StaticKeychain:
    """Fixed credentials, for all registries or for a chosen set."""

    def __init__(self, credentials: Credentials, registries: Sequence[str] | None = None) -> None:
        self._credentials = credentials
        self._registries = None if registries is None else frozenset(registries)

    def resolve(self, registry: str) -> Credentials | None:
        if self._registries is None or registry in self._registries:
            return self._credentials
        return None


class MultiKeychain:
    """The first answer of several keychains, in order."""

    def __init__(self, *keychains: Keychain) -> None:
        self._keychains = keychains

    def resolve(self, registry: str) -> Credentials | None:
        for keychain in self._keychains:
            found = keychain.resolve(registry)
            if found is not None:
                return found
        return None


def default_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``, as docker looks."""
    directory = os.environ.get("DOCKER_CONFIG")
    base = Path(directory) if directory else Path.home() / ".docker"
    return base / "config.json"


def _config_keys(registry: str) -> list[str]:
    if registry in (DOCKER_HUB, DOCKER_HUB_API, "index.docker.io"):
        return [DOCKER_HUB_CONFIG_KEY, DOCKER_HUB, "index.docker.io", DOCKER_HUB_API]
    return [registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v2/"]


def _normalise_key(key: str) -> str:
    host = key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    return DOCKER_HUB if host in ("index.docker.io", DOCKER_HUB_API) else host


def run_helper(name: str, action: str, payload: str) -> str:
    """Run ``docker-credential-NAME ACTION`` with ``payload`` on stdin; return stdout."""
    program = f"docker-credential-{name}"
    try:
        result = subprocess.run(
            [program, action], input=payload.encode(), capture_output=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise CredentialHelperError(f"credential helper {program} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise CredentialHelperError(f"credential helper {program} timed out") from None
    out = result.stdout.decode(errors="replace")
    if result.returncode != 0:
        if "credentials not found" in out.lower():
            return ""
        message = (out or result.stderr.decode(errors="replace")).strip()
        raise CredentialHelperError(f"{program} {action}: {message}")
    return out


class DockerConfig:
    """docker's ``config.json``: a :class:`Keychain` that can also store and erase (``login``/``logout``)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_config_path()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise CredentialHelperError(f"{self.path}: not valid JSON: {exc}") from None
        return data if isinstance(data, dict) else {}

    def _save(self, data: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent="\t")
            out.write("\n")
        os.replace(tmp, self.path)

    def _helper_for(self, data: Mapping[str, Any], registry: str) -> str | None:
        helpers = data.get("credHelpers") or {}
        for key in _config_keys(registry):
            if key in helpers:
                return str(helpers[key])
        store = data.get("credsStore")
        return str(store) if store else None

    def resolve(self, registry: str) -> Credentials | None:
        data = self._load()
        auths: Mapping[str, Any] = data.get("auths") or {}
        entry = next((auths[k] for k in _config_keys(registry) if k in auths), None)
        if entry is None:
            entry = next((v for k, v in auths.items() if _normalise_key(k) == registry), None)
        if isinstance(entry, dict) and (
            entry.get("auth") or entry.get("identitytoken") or entry.get("username")
        ):
            return _from_entry(entry)
        helper = self._helper_for(data, registry)
        if helper is None:
            return None
        server = _config_keys(registry)[0]
        out = run_helper(helper, "get", server)
        if not out.strip():
            return None
        try:
            answer = json.loads(out)
        except ValueError:
            raise CredentialHelperError(f"docker-credential-{helper}: unreadable answer") from None
        username, secret = str(answer.get("Username", "")), str(answer.get("Secret", ""))
        if username == TOKEN_USERNAME:
            return Credentials(identity_token=secret)
        return Credentials(username, secret)

    def store(self, registry: str, credentials: Credentials) -> None:
        """Save credentials as ``docker login`` does: in the configured helper, else in ``auths``."""
        data = self._load()
        key = _config_keys(registry)[0]
        helper = self._helper_for(data, registry)
        if helper is not None:
            username = TOKEN_USERNAME if credentials.identity_token else credentials.username
            secret = credentials.identity_token or credentials.password
            run_helper(
                helper, "store", json.dumps({"ServerURL": key, "Username": username, "Secret": secret})
            )
            return
        auths = data.setdefault("auths", {})
        entry: dict[str, str] = {}
        if credentials.identity_token:
            entry["identitytoken"] = credentials.identity_token
        else:
            raw = f"{credentials.username}:{credentials.password}".encode()
            entry["auth"] = base64.b64encode(raw).decode()
        auths[key] = entry
        self._save(data)

    def erase(self, registry: str) -> bool:
        """Forget a registry's credentials; False if there were none."""
        data = self._load()
        auths: dict[str, Any] = data.get("auths") or {}
        removed = False
        for key in list(auths):
            if key in _config_keys(registry) or _normalise_key(key) == registry:
                del auths[key]
                removed = True
        helper = self._helper_for(data, registry)
        if helper is not None:
            run_helper(helper, "erase", _config_keys(registry)[0])
            removed = True
        if removed:
            self._save(data)
        return removed


def _from_entry(entry: Mapping[str, Any]) -> Credentials:
    if entry.get("identitytoken"):
        return Credentials(identity_token=str(entry["identitytoken"]))
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(str(entry["auth"])).decode()
        except ValueError:
            raise CredentialHelperError("config.json: an 'auth' entry is not base64") from None
        username, _, password = decoded.partition(":")
        return Credentials(username, password)
    return Credentials(str(entry.get("username", "")), str(entry.get("password", "")))
