"""Safe readers for client-supplied JSON and numbers: every failure is an ``InvalidParam``.

One place for what the standard library lets through and a client must not reach: ``json.loads``
recurses once per nesting level (a ``[[[[…`` parameter of a few kilobytes is a RecursionError),
accepts ``NaN``/``Infinity`` and turns ``1e400`` into ``inf``; ``int(float("inf"))`` is an
OverflowError. Plain Python, no Django: the domain and the edge both use it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from lib.errors import InvalidParam

# Deeper than any Nacos payload (a SwitchDomain batch is 2 levels, a beat 2, metadata 1), far
# below the interpreter's recursion limit.
MAX_JSON_DEPTH = 16
# A bound on the text the parser sees at all; metadata has its own, tighter one.
MAX_JSON_CHARS = 64 * 1024

JAVA_INT_MIN = -(2**31)
JAVA_INT_MAX = 2**31 - 1

# A string token (its closing quote optional, so an unterminated one cannot make the scan
# backtrack) or one bracket; the scan is linear in the input.
_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)
# The escape of a UTF-16 surrogate half (U+D800-U+DFFF).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JsonSyntaxError(InvalidParam):
    """The text is not JSON at all (callers with a non-JSON fallback catch only this)."""


def _reject_constant(name: str) -> Any:
    raise InvalidParam(f"JSON number must be finite, got {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise InvalidParam(f"JSON number out of range: {text[:50]}")
    return value


def _check_depth(raw: str, name: str) -> None:
    depth = 0
    for match in _TOKEN_RE.finditer(raw):
        char = raw[match.start()]
        if char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidParam(f"{name} is nested deeper than {MAX_JSON_DEPTH} levels")
        elif char in "]}":
            depth -= 1


# One decoder: ``json.loads`` with these hooks builds a decoder and its scanner per call,
# which cost as much as decoding a beat.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def parse_json(raw: str, name: str, max_chars: int = MAX_JSON_CHARS) -> Any:
    """``json.loads`` for a client parameter: bounded size and depth, finite numbers only."""
    if len(raw) > max_chars:
        raise InvalidParam(f"{name} too large: {len(raw)} chars, at most {max_chars}")
    # Counting brackets is two C-speed passes; only text that could be too deep is scanned.
    if raw.count("[") + raw.count("{") > MAX_JSON_DEPTH:
        _check_depth(raw, name)
    try:
        if raw.startswith("\ufeff"):  # what json.loads refuses before decoding
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", raw, 0)
        value = _DECODER.decode(raw)
    except ValueError as exc:  # JSONDecodeError, and int() past its digit limit
        raise JsonSyntaxError(f"{name} is not valid JSON: {exc}") from None
    # Only an escape can make a lone surrogate (a request's text is decoded UTF-8): one C-speed
    # scan, and the whole value is checked only when such an escape is there.
    if "\\u" in raw and _SURROGATE_ESCAPE.search(raw):
        _require_text(value, name)
    return value


def _require_text(value: Any, name: str) -> None:
    """A lone surrogate escape (``"\\ud800"``) is valid JSON but no text: stored, it would fail
    every later UTF-8 encode of the value (a list's render, the Distro checksum, a Eureka
    document), long after this request was answered. A pair (an emoji) decodes to one character
    and passes."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise InvalidParam(
            f"{name} holds a lone UTF-16 surrogate escape (\\uD800-\\uDFFF)"
        ) from None


def to_int(value: Any, name: str, low: int = JAVA_INT_MIN, high: int = JAVA_INT_MAX) -> int:
    """An integer field of parsed JSON (a number or a numeric string, as Jackson accepts)."""
    result: int
    if isinstance(value, bool):
        raise InvalidParam(f"{name} must be an integer, got {json.dumps(value)}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not value.is_integer():  # also NaN and the infinities
            raise InvalidParam(f"{name} must be an integer, got {value!r}")
        result = int(value)
    elif isinstance(value, str):
        try:
            result = int(value.strip())
        except ValueError:
            raise InvalidParam(f"{name} must be an integer, got {value[:50]!r}") from None
    else:
        raise InvalidParam(f"{name} must be an integer, got a JSON {type(value).__name__}")
    if not low <= result <= high:
        shown = str(result) if len(str(result)) <= 30 else str(result)[:30] + "..."
        raise InvalidParam(f"{name} must be between {low} and {high}: {shown}")
    return result


def to_number(value: Any, name: str, low: float, high: float) -> float:
    """A finite number field of parsed JSON within ``[low, high]``."""
    result: float
    if isinstance(value, bool):
        raise InvalidParam(f"{name} must be a number, got {json.dumps(value)}")
    if isinstance(value, (int, float)):
        try:
            result = float(value)
        except OverflowError:
            raise InvalidParam(f"{name} out of range: {str(value)[:30]}") from None
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise InvalidParam(f"{name} must be a number, got {value[:50]!r}") from None
    else:
        raise InvalidParam(f"{name} must be a number, got a JSON {type(value).__name__}")
    if math.isnan(result) or not low <= result <= high:
        raise InvalidParam(f"{name} must be between {low} and {high}: {str(value)[:50]}")
    return result
