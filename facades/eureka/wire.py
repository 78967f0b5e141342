"""Eureka's two wire formats: registration bodies in (XML or JSON, read leniently) and
documents out (one JSON-shaped tree, written as JSON or as Eureka's XML).

Eureka's Jackson codec and its XStream converters describe the same tree: ``@name`` is an XML
attribute (``port@enabled``, ``dataCenterInfo@class``), ``$`` an element's text, a list a
repeated element. So every answer is built once as that tree and :func:`to_xml` writes the XML
from it; what real clients parse (py-eureka-client and Prometheus read XML, eureka-js-client
JSON) is in ``shared/facades.md`` §4 and ``shared/nacos-v1-api.md`` §E.3.

Input is parsed with ``defusedxml`` (no entities, no external references) or the core's
``parse_json`` (bounded depth, finite numbers, text only) after the edge has bounded the body's
size; an XML body is bounded in depth as JSON is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from lib.errors import InvalidParam
from naming.parsing import MAX_JSON_DEPTH, parse_json

JSON_TYPE = "application/json"
XML_TYPE = "application/xml"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'

# A metadata key becomes an element name in XML: a key that is not a valid name is left out
# of the XML (still in JSON), rather than producing a document no client can read.
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
# What XML 1.0 cannot carry at all, escaped or not (control characters, U+FFFE/U+FFFF, lone
# surrogates). Nacos metadata may hold them; written as they are, one such value would make the
# whole registry document unreadable to every Eureka client, so each becomes U+FFFD.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# A Java long: Eureka reads its numbers (ports, timestamps, country ids) as int or long.
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def wants_json(accept: str) -> bool:
    """Eureka's negotiation: JSON when ``Accept`` mentions json, XML otherwise (no header)."""
    return "json" in accept.lower()


# -- input ----------------------------------------------------------------------------------------


def _from_element(element: Element, depth: int = 1) -> Any:
    """An element as the JSON codec would have read it: text for a leaf without attributes,
    else a dict of ``@attributes``, children and ``$`` (the text of a leaf). A registration is
    4 levels deep; the bound keeps a deeply nested body from exhausting the recursion here."""
    if depth > MAX_JSON_DEPTH:
        raise InvalidParam(f"the XML body is nested deeper than {MAX_JSON_DEPTH} levels")
    children = list(element)
    if not children and not element.attrib:
        return (element.text or "").strip()
    tree: dict[str, Any] = {f"@{k}": v for k, v in element.attrib.items()}
    if not children:
        tree["$"] = (element.text or "").strip()
    for child in children:
        tree[child.tag] = _from_element(child, depth + 1)
    return tree


def parse_instance(body: bytes, content_type: str) -> Mapping[str, Any]:
    """The ``instance`` of a registration body, as a JSON-shaped tree; 400 if unreadable."""
    if not body.strip():
        raise InvalidParam("empty registration body")
    kind = content_type.lower()
    is_json = "json" in kind or ("xml" not in kind and body.lstrip()[:1] == b"{")
    if is_json:
        try:
            text = body.decode(json.detect_encoding(body))
        except UnicodeDecodeError as exc:
            raise InvalidParam(f"cannot parse request body as JSON: {exc}") from None
        data = parse_json(text, "request body")
        found = data.get("instance") if isinstance(data, dict) else None
        if isinstance(found, dict):
            return found
        raise InvalidParam('the JSON body must be {"instance": {...}}')
    try:
        root = fromstring(body)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise InvalidParam(f"cannot parse request body as XML: {exc}") from None
    if root.tag != "instance":
        raise InvalidParam(f"the XML body must be an <instance>, not <{root.tag}>")
    tree = _from_element(root)
    return tree if isinstance(tree, dict) else {}


def text_of(value: Any) -> str:
    """A field read as text: strings as given, numbers and booleans as Java prints them."""
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def int_of(value: Any, name: str, default: int = 0) -> int:
    """A number sent as a number or as a string (``"9090"``, ``9090``, ``{"$": 9090}``)."""
    if isinstance(value, dict):
        value = value.get("$")
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise InvalidParam(f"{name} must be a number")
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        text = text_of(value)
        if re.fullmatch(r"-?\d{1,19}", text):
            number = int(text)
    if number is None:
        raise InvalidParam(f"{name} must be a number, not {text_of(value)[:40]!r}")
    if not _LONG_MIN <= number <= _LONG_MAX:
        raise InvalidParam(f"{name} is out of range (a Java long)")
    return number


def bool_of(value: Any, default: bool) -> bool:
    """A flag sent as a boolean or as a string (``true``, ``"true"``)."""
    if isinstance(value, bool):
        return value
    text = text_of(value).lower()
    if text in ("true", "false"):
        return text == "true"
    return default


# -- output ---------------------------------------------------------------------------------------


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _append(parent: Element, tag: str, value: Any) -> None:
    if isinstance(value, list):
        for item in value:
            _append(parent, tag, item)
        return
    element = SubElement(parent, tag)
    if not isinstance(value, dict):
        element.text = _xml_text(value)
        return
    for key, item in value.items():
        if key.startswith("@"):
            element.set(key[1:], _xml_text(item))
        elif key == "$":
            element.text = _xml_text(item)
        elif _XML_NAME.fullmatch(key):
            _append(element, key, item)


def to_xml(tree: Mapping[str, Any]) -> bytes:
    """``{"applications": {...}}`` → ``<applications>...</applications>`` (one root)."""
    ((tag, value),) = tree.items()
    holder = Element("holder")
    _append(holder, tag, value)
    return XML_DECLARATION + tostring(holder[0], encoding="unicode").encode()


def to_json(tree: Mapping[str, Any]) -> bytes:
    return json.dumps(tree, separators=(",", ":")).encode()
