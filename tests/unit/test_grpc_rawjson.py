"""``wire.RawJson``: a cached JSON fragment spliced into an encoded body decodes to the same
body as the value itself, wherever it sits and however often, and a client's string that looks
like the splice mark cannot corrupt an answer."""

from __future__ import annotations

import json

import pytest

from facades.nacos_v2 import wire


def body_of(data: bytes) -> dict:
    return wire.decode(data).body


def test_a_fragment_decodes_as_its_value() -> None:
    hosts = [{"ip": "10.0.0.1", "port": 80, "weight": 1.0, "metadata": {"k": "vé"}}]
    spliced = wire.encode("X", {"serviceInfo": {"hosts": wire.RawJson.of(hosts), "n": 1}})
    plain = wire.encode("X", {"serviceInfo": {"hosts": hosts, "n": 1}})
    assert body_of(spliced) == body_of(plain) == {"serviceInfo": {"hosts": hosts, "n": 1}}


def test_several_fragments_and_an_empty_one() -> None:
    one, two = wire.RawJson.of([1, 2]), wire.RawJson.of([])
    body = {"a": one, "b": [two, one], "c": "x"}
    assert body_of(wire.encode("X", body)) == {"a": [1, 2], "b": [[], [1, 2]], "c": "x"}


@pytest.mark.parametrize("where", ["serviceName", "message"])
def test_a_string_equal_to_the_mark_is_kept_as_a_string(where: str) -> None:
    mark = "\x00raw\x00"
    body = {where: mark, "hosts": wire.RawJson.of([{"ip": "1.1.1.1"}])}
    assert body_of(wire.encode("X", body)) == {where: mark, "hosts": [{"ip": "1.1.1.1"}]}


def test_other_objects_still_refuse_to_encode() -> None:
    with pytest.raises(TypeError):
        wire.encode("X", {"x": object()})
    assert json.loads(wire.RawJson.of({"a": 1}).text) == {"a": 1}
