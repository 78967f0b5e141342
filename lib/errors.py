"""The one error hierarchy of the service.

Every failure a client can cause is a :class:`NamingError` with an HTTP status and a stable code;
one handler (``facades.nacos_v1.api``) renders it in the Nacos error shape (``caused: <message>;``).
Plain Python, no Django: the domain and the consistency layer raise these too.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Stable machine-readable codes; the HTTP body keeps the Nacos text shape."""

    PARAM_REQUIRED = "param_required"
    PARAM_INVALID = "param_invalid"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    FORBIDDEN = "forbidden"
    UNAUTHORIZED = "unauthorized"
    NO_SUCH_API = "no_such_api"
    UNAVAILABLE = "unavailable"
    TOO_LARGE = "too_large"


class NamingError(Exception):
    status: int = 400
    code: ErrorCode = ErrorCode.PARAM_INVALID

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParam(NamingError):
    """Malformed or out-of-range input (Nacos: IllegalArgumentException → 400)."""


class MissingParam(InvalidParam):
    code = ErrorCode.PARAM_REQUIRED

    def __init__(self, name: str) -> None:
        super().__init__(f"Param '{name}' is required.")
        self.param = name


class NotFound(NamingError):
    """Packaged Nacos answers 500 here; a client error is a 4xx for us (issue #2), so 404."""

    status = 404
    code = ErrorCode.NOT_FOUND


class Conflict(NamingError):
    """Nacos answers 400 for 'already exists'; keep 400 so clients see the same status."""

    status = 400
    code = ErrorCode.CONFLICT


class PayloadTooLarge(NamingError):
    status = 413
    code = ErrorCode.TOO_LARGE


class Forbidden(NamingError):
    status = 403
    code = ErrorCode.FORBIDDEN


class NoSuchApi(NamingError):
    status = 501
    code = ErrorCode.NO_SUCH_API


class Unavailable(NamingError):
    """The node cannot serve right now (starting, no quorum, owner unreachable)."""

    status = 503
    code = ErrorCode.UNAVAILABLE


def error_from_parts(status: int, code: str, message: str) -> NamingError:
    """Rebuild an error that crossed a boundary as data (a Raft apply result, a peer answer)."""
    err = NamingError(message)
    err.status = status
    err.code = ErrorCode(code)
    return err
