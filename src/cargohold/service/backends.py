"""The backends' own failures, as the API tells them from a refused request."""

from __future__ import annotations

from typing import Final

from ..metadata.store import MetadataError
from ..storage.driver import StorageError

#: failures of the database or the blob store (not of the request): a 500 for the caller, an error in the log
BACKEND_ERRORS: Final = (StorageError, MetadataError)

