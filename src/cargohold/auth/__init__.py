"""Who may do what: the access each request needs, and the controllers that grant it."""

from .access import Access, AccessController, Grant, OpenAccess, required_access

__all__ = ["Access", "AccessController", "Grant", "OpenAccess", "required_access"]
