"""Password hashing (bcrypt) and generated secrets (robot tokens, refresh tokens).

Passwords chosen by people get bcrypt, a deliberately slow hash; the cost is a
setting (``password_cost``, default 12: about a quarter of a second, as
OWASP advises for bcrypt). Generated secrets carry 256 random bits, far beyond
guessing, so they are stored as a SHA-256 digest: fast to check on every
token request, and useless to whoever reads the database.

bcrypt reads at most 72 bytes; longer passwords are refused rather than
silently truncated. Checks against an unknown account still spend one bcrypt
verification, so response times do not reveal which names exist.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

import bcrypt

from ..access_model import PasswordRejected

#: bcrypt's own ceiling; a longer password would be cut silently
MAX_PASSWORD_BYTES: Final = 72
#: NIST SP 800-63B's minimum for chosen secrets
MIN_PASSWORD_LENGTH: Final = 8
DEFAULT_COST: Final = 12
#: bcrypt's smallest cost; for tests only
MIN_COST: Final = 4
#: prefix of generated robot tokens, so secret scanners can recognise leaked ones
ROBOT_TOKEN_PREFIX: Final = "chr_"

# A hash of a random password, checked when the account does not exist (same cost as real checks).
_DUMMY: dict[int, bytes] = {}


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise PasswordRejected(f"passwords may have at most {MAX_PASSWORD_BYTES} bytes (bcrypt's limit)")


def hash_password(password: str, cost: int = DEFAULT_COST) -> str:
    """A bcrypt hash (``$2b$``) of a password that passed :func:`check_new_password`."""
    check_new_password(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=max(cost, MIN_COST))).decode("ascii")


def verify_password(password: str, hashed: str | None, cost: int = DEFAULT_COST) -> bool:
    """Whether ``password`` matches a bcrypt hash; with ``hashed=None``, spend the same time and say no."""
    raw = password.encode()
    if hashed is None:
        if cost not in _DUMMY:
            _DUMMY[cost] = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=max(cost, MIN_COST)))
        bcrypt.checkpw(b"-", _DUMMY[cost])
        return False
    if len(raw) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(raw, hashed.encode("ascii"))
    except ValueError:  # not a bcrypt hash
        return False


def generate_secret(prefix: str = "") -> str:
    """256 random bits, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    """How a generated secret is stored: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, digest: str | None) -> bool:
    if digest is None:
        return False
    return hmac.compare_digest(secret_digest(secret), digest)
