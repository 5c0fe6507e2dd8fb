"""An htpasswd file of bcrypt entries, as Distribution's ``auth.htpasswd`` reads it.

One ``user:hash`` per line; blank lines and ``#`` comments are skipped. Only
bcrypt hashes (``$2a$``, ``$2b$``, ``$2y$``) are accepted: crypt, MD5 and SHA-1
entries are refused when the file is read, as in Distribution. The file is
re-read when its modification time changes, so ``htpasswd -B`` edits apply
without a restart.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Final

from .passwords import verify_password

log: Final = logging.getLogger("cargohold.auth")

_BCRYPT_PREFIXES: Final = ("$2a$", "$2b$", "$2y$")


class HtpasswdError(ValueError):
    """The htpasswd file cannot be read, or has a line that is not ``user:bcrypt-hash``."""


def parse_htpasswd(text: str, source: str = "htpasswd") -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user:
            raise HtpasswdError(f"{source}:{number}: not user:hash")
        if not hashed.startswith(_BCRYPT_PREFIXES):
            raise HtpasswdError(f"{source}:{number}: the entry for {user!r} is not bcrypt (use htpasswd -B)")
        # htpasswd writes $2y$; the bcrypt library checks it as $2b$ (the same algorithm)
        entries[user] = "$2b$" + hashed[4:] if hashed.startswith("$2y$") else hashed
    return entries


class HtpasswdFile:
    """The users of an htpasswd file, re-read when it changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._mtime: int | None = None
        self._entries: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        try:
            stat = os.stat(self.path)
            if stat.st_mtime_ns == self._mtime:
                return
            entries = parse_htpasswd(self.path.read_text(encoding="utf-8"), str(self.path))
        except OSError as exc:
            raise HtpasswdError(f"cannot read {self.path}: {exc}") from None
        with self._lock:
            self._entries, self._mtime = entries, stat.st_mtime_ns

    def version(self) -> int | None:
        """The modification time of the entries in use (re-reading the file if it changed)."""
        try:
            self._load()
        except HtpasswdError:
            log.exception("htpasswd file unreadable; keeping the entries read before")
        return self._mtime

    def verify(self, user: str, password: str) -> bool:
        """Whether the credentials match (slow: run it off the event loop)."""
        try:
            self._load()
        except HtpasswdError:
            log.exception("htpasswd file unreadable; keeping the entries read before")
        with self._lock:
            hashed = self._entries.get(user)
        return verify_password(password, hashed)
