"""The shortcuts of the lean hot path (issue #11) answer exactly what the long way did."""

from __future__ import annotations

import threading
from urllib.parse import parse_qsl, quote_plus, unquote_plus

import pytest
from django.test import RequestFactory
from hypothesis import example, given
from hypothesis import strategies as st

from consistency.datum import Datum, DatumKey, KeyKind
from consistency.notifier import Notifier
from distro import signing
from distro.http import signature_headers
from distro.mapper import distro_hash, java_string_hash
from facades.nacos_v1.api import _first_values, unquote_value
from facades.nacos_v1.clients import ClientType, client_of

KEY = DatumKey(KeyKind.EPHEMERAL_INSTANCES, "public", "DEFAULT_GROUP@@a")


def first_wins(encoded: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in parse_qsl(encoded, keep_blank_values=True):
        values.setdefault(name, value)
    return values


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "a=1&b=2",
        "a=1&a=2&b=",
        "a&b=&&c=3&",
        "serviceName=x&beat=%7B%22ip%22%3A%221.2.3.4%22%2C%22port%22%3A80%7D",
        "q=a+b&r=a%2Bb&%61=first&a=second",
        "bad=%zz%&half=%4&utf=%E2%82%AC&broken=%E2%82",
        "x==y&=v&k=a=b",
        "m=\u00e9t\u00e9&n=%C3%A9",
        "a+b=1&a%20b=2",
    ],
)
def test_query_parsing_is_parse_qsl_first_value_wins(encoded: str) -> None:
    assert _first_values(encoded) == first_wins(encoded)


def test_client_of_reads_the_agent_from_meta_and_caches_nothing_wrong() -> None:
    factory = RequestFactory()
    java = client_of(factory.get("/", HTTP_USER_AGENT="Nacos-Java-Client:v1.4.6"))
    assert (java.type, java.version, java.is_java_1x) == (ClientType.JAVA, (1, 4, 6), True)
    assert client_of(factory.get("/", HTTP_USER_AGENT="Nacos-Java-Client:v1.4.6")) is java
    by_version = client_of(factory.get("/", HTTP_CLIENT_VERSION="Nacos-Go-Client:v2.1"))
    assert (by_version.type, by_version.version) == (ClientType.GO, (2, 1))
    long_agent = "Nacos-Java-Client:v0.9." + "1" * 500  # parsed, never cached
    assert client_of(factory.get("/", HTTP_USER_AGENT=long_agent)).version[:2] == (0, 9)
    assert client_of(factory.get("/")).type is ClientType.UNKNOWN


def test_signature_headers_come_from_meta_as_request_headers_gives_them() -> None:
    headers = signing.sign(b"k" * 32, "POST", "/p?q=1", b"", "a:1", "b:2", actor="user=u")
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()}
    request = RequestFactory().post("/p?q=1", HTTP_USER_AGENT="x", **meta)
    assert signature_headers(request) == headers
    assert {k: request.headers[k] for k in headers} == headers


def test_the_cached_distro_hash_is_the_java_one() -> None:
    for name in ("DEFAULT_GROUP@@a", "G@@\u00e9\u4e2d", "DEFAULT_GROUP@@a"):
        h = java_string_hash(name)
        assert distro_hash(name) == abs(h % (2**31 - 1) if h >= 0 else -((-h) % (2**31 - 1)))


def test_a_writer_that_delivers_itself_does_not_wake_the_worker() -> None:
    notifier = Notifier()
    delivered_on: list[str] = []
    notifier.add_listener("rec", lambda d: delivered_on.append(threading.current_thread().name))
    notifier.start()
    try:
        with notifier.writer_delivers():
            ticket = notifier.notify(Datum(KEY, None, 1))
        assert notifier.wakes_skipped == 1
        assert notifier.wait_processed(ticket, 5.0)
        assert delivered_on == [threading.current_thread().name]
    finally:
        notifier.stop()


def test_a_writer_that_fails_after_notifying_wakes_the_worker() -> None:
    notifier = Notifier()
    delivered = threading.Event()
    notifier.add_listener("rec", lambda d: delivered.set())
    notifier.start()
    try:
        with pytest.raises(RuntimeError), notifier.writer_delivers():
            notifier.notify(Datum(KEY, None, 1))
            raise RuntimeError("the store failed after applying")
        assert delivered.wait(5.0)  # the worker delivered it: nobody waited for the ticket
    finally:
        notifier.stop()


# Percent-escapes, multi-byte UTF-8 escapes, bad escapes, plus signs, backslashes and
# characters beyond latin-1: every case the fast path must hand back to unquote_plus.
_PIECES = [
    "%41",
    "%7B",
    "%22",
    "%E4%B8%AD",
    "%C3",
    "%zz",
    "%",
    "%4",
    "+",
    "\\",
    "\\x41",
    "a",
    "é",
    "中",
]


@given(st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=4)), max_size=12))
@example(["Â\x80"])  # a literal non-ASCII character is itself (found by this test in CI)
def test_unquote_value_matches_unquote_plus(pieces: list[str]) -> None:
    value = "".join(pieces)
    assert unquote_value(value) == unquote_plus(value, errors="replace")


def test_unquote_value_decodes_a_beat() -> None:
    beat = '{"ip":"10.0.0.1","metadata":{"k":"中 \\"q\\" \\\\"},"port":80,"weight":1.0}'
    assert unquote_value(quote_plus(beat)) == beat
