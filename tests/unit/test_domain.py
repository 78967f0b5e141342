from __future__ import annotations

import pytest

from lib.errors import InvalidParam
from naming.domain import (
    EMPTY_METADATA,
    Instance,
    Switches,
    apply_switch,
    check_cluster_name,
    check_weight,
    clamp_weight,
    fold_service_name,
    namespace_or_default,
    parse_metadata,
)


def test_service_names_are_folded_with_the_group_unless_already_grouped():
    assert fold_service_name("svc", None) == "DEFAULT_GROUP@@svc"
    assert fold_service_name(" svc ", "G1") == "G1@@svc"
    assert fold_service_name("G2@@svc", "G1") == "G2@@svc"  # groupName ignored


@pytest.mark.parametrize("name", ["@@svc", "G@@", "bad name@@x", "G@@a/b", "G@@" + "s" * 600])
def test_bad_grouped_names_are_rejected(name):
    with pytest.raises(InvalidParam):
        fold_service_name(name, None)


def test_cluster_names_allow_letters_digits_and_hyphen_only():
    assert check_cluster_name("c-1") == "c-1"
    with pytest.raises(InvalidParam, match="cluster name"):
        check_cluster_name("c_1")


def test_namespace_defaults_to_public_and_refuses_separators():
    assert namespace_or_default("") == "public"
    assert namespace_or_default("ns-a.b_c") == "ns-a.b_c"
    with pytest.raises(InvalidParam):
        namespace_or_default("a##b")


def test_metadata_accepts_json_and_key_value_pairs():
    assert parse_metadata('{"a":"1","n":2,"b":true}') == {"a": "1", "n": "2", "b": "true"}
    assert parse_metadata("a=1,b=2") == {"a": "1", "b": "2"}
    assert parse_metadata("  ") is EMPTY_METADATA


@pytest.mark.parametrize("raw", ["a=1,b", "x", '{"a":{"b":1}}', '{"a":[1]}', "a=b=c"])
def test_malformed_metadata_is_rejected(raw):
    with pytest.raises(InvalidParam, match="metadata"):
        parse_metadata(raw)


def test_metadata_size_and_entry_limits():
    with pytest.raises(InvalidParam, match="too large"):
        parse_metadata("k=" + "v" * 20000)
    with pytest.raises(InvalidParam, match="entries"):
        parse_metadata(",".join(f"k{i}=v" for i in range(129)))


def test_weights_outside_zero_to_ten_thousand_are_rejected():
    assert check_weight(0.0) == 0.0
    assert check_weight(10000.0) == 10000.0
    for bad in (-0.1, 10000.5, float("nan")):
        with pytest.raises(InvalidParam):
            check_weight(bad)


@pytest.mark.parametrize(
    ("given", "clamped"), [(0.0, 0.0), (0.001, 0.01), (0.01, 0.01), (5.0, 5.0), (20000.0, 10000.0)]
)
def test_weight_clamping(given, clamped):
    assert clamp_weight(given) == clamped


def test_preserved_metadata_overrides_heartbeat_timeouts_only_when_numeric():
    inst = Instance(
        "1.1.1.1",
        1,
        metadata={"preserved.heart.beat.timeout": "3000", "preserved.ip.delete.timeout": "abc"},
    )
    assert inst.heartbeat_timeout_ms == 3000
    assert inst.ip_delete_timeout_ms == 30000
    assert inst.heartbeat_interval_ms == 5000


def test_switch_updates_are_validated():
    switches = apply_switch(Switches(), "clientBeatInterval", "2000")
    assert switches.clientBeatInterval == 2000
    assert apply_switch(switches, "check", "False").healthCheckEnabled is False
    assert apply_switch(switches, "pushVersion", "java:1.2.3").pushJavaVersion == "1.2.3"
    assert apply_switch(switches, "unknownEntry", "x") == switches
    for entry, value in [
        ("pushCacheMillis", "100"),
        ("defaultCacheMillis", "x"),
        ("distroThreshold", "0"),
        ("pushVersion", "ruby:1"),
        ("overriddenServerStatus", "SLEEPY"),
    ]:
        with pytest.raises(InvalidParam):
            apply_switch(switches, entry, value)


def test_switches_json_has_nacos_names_and_omits_nulls():
    data = Switches().to_json()
    assert data["name"] == "00-00---000-NACOS_SWITCH_DOMAIN-000---00-00"
    assert data["defaultPushCacheMillis"] == 10000 and data["lightBeatEnabled"] is True
    assert "overriddenServerStatus" not in data and "masters" not in data
    assert Switches.from_json(data) == Switches()
