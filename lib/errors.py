"""The one error hierarchy of the service, at the bottom of the layering (``lib``).

Every failure a client can cause is a :class:`NamingError` with a stable :class:`ErrorCode` and
the HTTP status the HTTP APIs answer with; both are fixed when the error is built (a class
attribute, or :class:`LimitedUrl`'s constructor argument) and never changed afterwards. Each edge
renders them itself (``facades.nacos_v1.api``: the Nacos shape ``caused: <message>;``); a
non-HTTP edge maps ``code``. Errors that cross a boundary as data (a Raft apply result, a peer's
answer to a forwarded change) travel in one wire form, :meth:`NamingError.to_wire` /
:func:`from_wire`. Plain Python, no Django: the domain and the storage layers raise these too.
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
    LIMITED = "limited"
    INTERNAL = "internal"


class NamingError(Exception):
    status: int = 400
    code: ErrorCode = ErrorCode.PARAM_INVALID

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, object]:
        """The one wire form (peer answers, Raft apply results): ``{status, code, message}``."""
        return {"status": self.status, "code": self.code.value, "message": self.message}


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


class Unauthorized(NamingError):
    """No (valid) credentials: an unsigned peer request."""

    status = 401
    code = ErrorCode.UNAUTHORIZED


class LimitedUrl(NamingError):
    """A path the operator limited (switch ``limitedUrlMap``): the status is the operator's."""

    code = ErrorCode.LIMITED

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status  # set once, here: the instance attribute shadows the class default


class InternalError(NamingError):
    """A programming error, caught where a stated policy says it must not escape (a replicated
    apply: ``raft/state.py``). Never raised for anything a client sent."""

    status = 500
    code = ErrorCode.INTERNAL


class _Rebuilt(NamingError):
    """An error rebuilt from its wire form: the sender's status and code, fixed here."""

    def __init__(self, status: int, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


# The classes whose (code, status) say everything about them (a message is their only state):
# rebuilt as themselves, so ``except Conflict`` catches a refusal that came back from the Raft
# leader or the Distro owner as well as one raised here.
_BY_WIRE: dict[tuple[ErrorCode, int], type[NamingError]] = {
    (cls.code, cls.status): cls
    for cls in (InvalidParam, NotFound, Conflict, PayloadTooLarge, Forbidden, NoSuchApi,
                Unavailable, Unauthorized, InternalError)
}  # fmt: skip


def from_wire(data: object) -> NamingError:
    """Rebuild an error that crossed a boundary as data (see :meth:`NamingError.to_wire`)."""
    if not isinstance(data, dict):
        raise ValueError("an error's wire form is an object")
    status, code, message = int(data["status"]), ErrorCode(str(data["code"])), str(data["message"])
    known = _BY_WIRE.get((code, status))
    return known(message) if known is not None else _Rebuilt(status, code, message)
