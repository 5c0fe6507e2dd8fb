"""Who is looking at the UI, and what they may read and delete.

With the registry's own accounts (``auth.mode: token``) a viewer is a logged-in user, and what it sees
is what the access policy lets it pull (public repositories included); a delete needs the delete right
the API asks for. With auth off the registry is open to whoever reaches it, so the UI shows it, read
only, only when the server listens on loopback. With htpasswd the UI has no accounts to log in with.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ..access_model import Account
from ..auth.access import Access, ReadOnly, everything
from ..auth.policy import AccessView, load_view
from ..config import ServerConfig
from ..metadata.access import AccessStore

#: the UI logs accounts in
ACCOUNTS: Final = "accounts"
#: auth is off and the server listens on loopback: browsing, read only, without login
OPEN: Final = "open"
#: the UI refuses (see :func:`refusal`)
REFUSED: Final = "refused"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ui_mode(config: ServerConfig) -> str:
    if config.auth.mode == "token":
        return ACCOUNTS
    if config.auth.mode == "none" and is_loopback(config.server.host):
        return OPEN
    return REFUSED


def refusal(config: ServerConfig) -> str:
    """Why the UI is off, for its pages to say."""
    if config.auth.mode == "htpasswd":
        return ("The web UI logs in with the registry's own accounts (auth.mode: token); "
                "with htpasswd authentication it is off.")
    return (f"Authentication is off and the server listens on {config.server.listen}: without logins the web UI "
            "shows the registry only when the server listens on a loopback address. Configure auth.mode: token.")


@dataclass(frozen=True, slots=True)
class Viewer:
    #: None: auth is off (open browsing)
    account: Account | None
    may_pull: Callable[[str], bool]
    view: AccessView | None
    #: the session's CSRF token ("" without a session: there is nothing to post)
    csrf: str = ""

    @property
    def name(self) -> str | None:
        return self.account.name if self.account is not None else None

    @property
    def admin(self) -> bool:
        """Whether the administration pages are this viewer's (superusers)."""
        return self.account is not None and self.account.superuser

    async def may_delete(self, repository: str) -> bool:
        if self.view is None:
            return False  # auth off: read only
        return await self.view.allows(Access("repository", repository, "delete"))


def open_viewer() -> Viewer:
    return Viewer(None, everything, None)


async def account_viewer(store: AccessStore, account: Account, csrf: str, read_only: ReadOnly) -> Viewer:
    view = await load_view(store, account, read_only)
    return Viewer(account, await view.pull_filter(), view, csrf)
