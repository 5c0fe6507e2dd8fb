"""Who may do what: the access each request needs, and the controllers that grant it.

The domain only: the HTTP endpoints over it (``/auth/token``, ``/admin/v1``) are in
:mod:`cargohold.api`, and a controller reads a request only through :class:`Credentials`.

The access model's values (accounts, teams, roles, permissions, their names and
errors) are in :mod:`cargohold.access_model`, and its store contract in
:mod:`cargohold.metadata.access` (in SQL: :mod:`cargohold.metadata.sql_access`),
so the stores never import this package.

Modules, from the bottom up::

    access.py      Access, Grant, Credentials, the AccessController protocol, OpenAccess (auth off)
    passwords.py   bcrypt for passwords, SHA-256 for generated secrets
    policy.py      the rules: a caller's role on a repository, who-can
    keys.py        signing and verifying keys, libtrust key IDs, JWKS (PyJWT), certificates
    stored_keys.py the keys cargohold signs with: configured files, or made once and kept in the database
    jwt.py         tokens: key choice by issuer and kid, PyJWT checks, the access claim
    ratelimit.py   failed logins per account and per address
    htpasswd.py    Distribution's htpasswd file
    login.py       checking credentials against the store
    controller.py  BasicAccessController (htpasswd), TokenAccessController (bearer tokens)
    tokens.py      the token service: what a token grants, refresh tokens, the JWKS
    setup.py       all of it, built from the server configuration
"""

from .access import NOTHING, Access, AccessController, Credentials, Grant, OpenAccess, required_access

__all__ = ["NOTHING", "Access", "AccessController", "Credentials", "Grant", "OpenAccess", "required_access"]
