"""The Distribution spec's error codes, and the exception type for each.

Shared by the server (which turns a :class:`RegistryError` into the spec's
``{"errors": [...]}`` body) and the client (which parses that body back).

Statuses live here and nowhere else: a code answers with the status of its
entry in :class:`ErrorCode`, except from the subclasses marked below, which
answer the same code with another status. Exception tree::

    RegistryError
    ├── BlobUnknown            BLOB_UNKNOWN           404
    ├── BlobUploadInvalid      BLOB_UPLOAD_INVALID    400
    ├── BlobUploadUnknown      BLOB_UPLOAD_UNKNOWN    404
    ├── DigestInvalid          DIGEST_INVALID         400
    ├── ManifestBlobUnknown    MANIFEST_BLOB_UNKNOWN  400
    ├── ManifestInvalid        MANIFEST_INVALID       400
    ├── ManifestUnknown        MANIFEST_UNKNOWN       404
    ├── ManifestUnverified     MANIFEST_UNVERIFIED    400
    ├── NameInvalid            NAME_INVALID           400
    ├── NameUnknown            NAME_UNKNOWN           404
    ├── SizeInvalid            SIZE_INVALID           400
    │   └── ManifestTooLarge   SIZE_INVALID           413
    ├── TagInvalid             TAG_INVALID            400
    │   └── TooManyTags        TAG_INVALID            414
    ├── Unauthorized           UNAUTHORIZED           401
    ├── Denied                 DENIED                 403
    ├── Unsupported            UNSUPPORTED            405
    │   └── RequestUnsupported UNSUPPORTED            400 (a request an endpoint cannot serve)
    ├── TooManyRequests        TOOMANYREQUESTS        429
    ├── RangeInvalid           RANGE_INVALID          416
    ├── PaginationNumberInvalid PAGINATION_NUMBER_INVALID 400
    ├── Unknown                UNKNOWN                500 (a failure of the server's own)
    ├── Unavailable            UNAVAILABLE            503 (not in the spec: the blob store is unreachable)
    └── InsufficientStorage    INSUFFICIENT_STORAGE   507 (not in the spec: the disk is full)

INSUFFICIENT_STORAGE is this registry's own code: the spec has none for a full
disk and Distribution answers 500 UNKNOWN. 507 (RFC 4918) is used because
Docker's and containers/image's clients do not read the body of a 5xx answer
and print its status line ("507 Insufficient Storage"), which then says what is
wrong, and neither retries a 507 (they do retry some 5xx answers).

UNAVAILABLE is Distribution's own code (``errcode.ErrorCodeUnavailable``, 503): the
blob store did not answer, or kept failing, after its retries; the client may try
again later. A store that throttles answers the spec's TOOMANYREQUESTS instead.

Codes outside the spec, written by the server without an exception of this
tree, have their statuses in :data:`OTHER_STATUSES`.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar, Final


class ErrorCode(Enum):
    """A spec error code: its identifier, default message and HTTP status."""

    BLOB_UNKNOWN = ("blob unknown to registry", 404)
    BLOB_UPLOAD_INVALID = ("blob upload invalid", 400)
    BLOB_UPLOAD_UNKNOWN = ("blob upload unknown to registry", 404)
    DIGEST_INVALID = ("provided digest did not match uploaded content", 400)
    MANIFEST_BLOB_UNKNOWN = ("manifest references a manifest or blob unknown to registry", 400)
    MANIFEST_INVALID = ("manifest invalid", 400)
    MANIFEST_UNKNOWN = ("manifest unknown to registry", 404)
    MANIFEST_UNVERIFIED = ("manifest failed signature verification", 400)
    NAME_INVALID = ("invalid repository name", 400)
    NAME_UNKNOWN = ("repository name not known to registry", 404)
    SIZE_INVALID = ("provided length did not match content length", 400)
    TAG_INVALID = ("manifest tag did not match URI", 400)
    UNAUTHORIZED = ("authentication required", 401)
    DENIED = ("requested access to the resource is denied", 403)
    UNSUPPORTED = ("the operation is unsupported", 405)
    TOOMANYREQUESTS = ("too many requests", 429)
    RANGE_INVALID = ("invalid content range", 416)
    PAGINATION_NUMBER_INVALID = ("invalid number of results requested", 400)
    UNKNOWN = ("unknown error", 500)
    UNAVAILABLE = ("service unavailable", 503)
    INSUFFICIENT_STORAGE = ("registry out of space", 507)

    @property
    def message(self) -> str:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]


class RegistryError(Exception):
    """A failure with a spec error code; ``detail`` is any JSON value."""

    code: ClassVar[ErrorCode]
    #: the HTTP status: the code's, unless a class in this module answers that code with another
    status: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__ and "status" not in cls.__dict__:
            cls.status = cls.code.status

    def __init__(
        self,
        message: str | None = None,
        *,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ):
        self.message = message or self.code.message
        self.detail = detail
        #: extra response headers, e.g. the WWW-Authenticate challenge of UNAUTHORIZED
        self.headers = headers or {}
        super().__init__(self.message)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code.name, "message": self.message}
        if self.detail is not None:
            body["detail"] = self.detail
        return body

    def envelope_entries(self) -> list[dict[str, Any]]:
        """The entries of the ``errors`` array this failure produces (usually one)."""
        return [self.to_json()]


class BlobUnknown(RegistryError):
    code = ErrorCode.BLOB_UNKNOWN


class BlobUploadInvalid(RegistryError):
    code = ErrorCode.BLOB_UPLOAD_INVALID


class BlobUploadUnknown(RegistryError):
    code = ErrorCode.BLOB_UPLOAD_UNKNOWN


class DigestInvalid(RegistryError):
    code = ErrorCode.DIGEST_INVALID


class ManifestBlobUnknown(RegistryError):
    """One or more referenced blobs or manifests are missing; one envelope entry per digest."""

    code = ErrorCode.MANIFEST_BLOB_UNKNOWN

    def __init__(self, message: str | None = None, *, digests: list[str] | None = None, **kw: Any):
        self.digests = digests or []
        super().__init__(message, **kw)

    def envelope_entries(self) -> list[dict[str, Any]]:
        if not self.digests:
            return [self.to_json()]
        return [{"code": self.code.name, "message": self.message, "detail": {"digest": d}} for d in self.digests]


class ManifestInvalid(RegistryError):
    code = ErrorCode.MANIFEST_INVALID


class ManifestUnknown(RegistryError):
    code = ErrorCode.MANIFEST_UNKNOWN


class ManifestUnverified(RegistryError):
    code = ErrorCode.MANIFEST_UNVERIFIED


class NameInvalid(RegistryError):
    code = ErrorCode.NAME_INVALID


class NameUnknown(RegistryError):
    code = ErrorCode.NAME_UNKNOWN


class SizeInvalid(RegistryError):
    code = ErrorCode.SIZE_INVALID


class ManifestTooLarge(SizeInvalid):
    """A manifest over the size limit: SIZE_INVALID, with 413 as Distribution answers it."""

    status = 413


class TagInvalid(RegistryError):
    code = ErrorCode.TAG_INVALID


class TooManyTags(TagInvalid):
    """More ``tag`` parameters on a push than the registry takes: TAG_INVALID with 414 (URI too long)."""

    status = 414


class Unauthorized(RegistryError):
    code = ErrorCode.UNAUTHORIZED


class Denied(RegistryError):
    code = ErrorCode.DENIED


class Unsupported(RegistryError):
    code = ErrorCode.UNSUPPORTED


class RequestUnsupported(Unsupported):
    """A request an endpoint cannot serve (a malformed token request): UNSUPPORTED with 400."""

    status = 400


class TooManyRequests(RegistryError):
    code = ErrorCode.TOOMANYREQUESTS


class RangeInvalid(RegistryError):
    code = ErrorCode.RANGE_INVALID


class PaginationNumberInvalid(RegistryError):
    code = ErrorCode.PAGINATION_NUMBER_INVALID


class Unknown(RegistryError):
    code = ErrorCode.UNKNOWN


class Unavailable(RegistryError):
    """A backend the request needs did not answer, or kept failing: the request may be tried again later."""

    code = ErrorCode.UNAVAILABLE


class InsufficientStorage(RegistryError):
    """The registry's disk (or its quota) is full: writes fail until space is freed, reads go on."""

    code = ErrorCode.INSUFFICIENT_STORAGE


ERROR_TYPES: dict[str, type[RegistryError]] = {
    cls.code.name: cls for cls in RegistryError.__subclasses__()
}

#: statuses of the codes outside the spec: the server's own NOT_FOUND (no such endpoint), and the
#: access model's failures as the admin API answers them; any other such code answers 400
OTHER_STATUSES: Final[dict[str, int]] = {
    "NOT_FOUND": 404,
    "ACCOUNT_UNKNOWN": 404,
    "TEAM_UNKNOWN": 404,
    "ACCOUNT_EXISTS": 409,
    "TEAM_EXISTS": 409,
    "WEBHOOK_INVALID": 400,
    "WEBHOOK_UNKNOWN": 404,
    "WEBHOOK_EXISTS": 409,
    "WEBHOOK_READ_ONLY": 409,
    "DELIVERY_UNKNOWN": 404,
    "IMMUTABLE_RULE_INVALID": 400,
    "IMMUTABLE_RULE_UNKNOWN": 404,
    "IMMUTABLE_RULE_EXISTS": 409,
    "QUOTA_INVALID": 400,
    "QUOTA_UNKNOWN": 404,
    "MIRROR_INVALID": 400,
    "MIRROR_UNKNOWN": 404,
    "MIRROR_EXISTS": 409,
    "MIRROR_BUSY": 409,
}
