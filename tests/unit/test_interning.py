"""lib.interning: one shared copy per equal key, bounded."""

from __future__ import annotations

from lib.interning import Shared
from naming.domain import (
    EMPTY_METADATA,
    MAX_SHARED_METADATA_CHARS,
    parse_metadata,
    shared_metadata,
    shared_port,
    shared_weight,
)


def test_the_first_copy_is_handed_back_for_an_equal_key() -> None:
    table: Shared[tuple[str, str], list[str]] = Shared(8)
    first = ["a"]
    assert table.share(("x", "y"), first) is first
    assert table.share(("x", "y"), ["a"]) is first
    other = ["b"]
    assert table.share(("x", "z"), other) is other


def test_past_its_limit_the_table_starts_over() -> None:
    table: Shared[int, str] = Shared(2)
    table.share(1, "one")
    table.share(2, "two")
    assert len(table) == 2
    assert table.share(3, "three") == "three"
    assert len(table) == 1
    again = "un"
    assert table.share(1, again) is again  # forgotten: only sharing is lost


def test_ports_and_weights_keep_their_type_and_value() -> None:
    port = int("8080")
    assert shared_port(port) == 8080
    assert shared_port(int("8080")) is shared_port(port)
    assert isinstance(shared_weight(float("1")), float)
    assert shared_weight(float("2.5")) is shared_weight(float("2.5"))


def test_equal_small_metadata_is_one_mapping_and_reads_the_same() -> None:
    first = shared_metadata({"preserved.register.source": "SPRING_CLOUD", "zone": "a"})
    again = shared_metadata(dict([("preserved.register.source", "SPRING_CLOUD"), ("zone", "a")]))
    assert again is first
    assert dict(again) == {"preserved.register.source": "SPRING_CLOUD", "zone": "a"}
    other_order = shared_metadata({"zone": "a", "preserved.register.source": "SPRING_CLOUD"})
    assert list(other_order) == ["zone", "preserved.register.source"]
    assert parse_metadata('{"zone":"a","preserved.register.source":"SPRING_CLOUD"}') is other_order
    assert shared_metadata({}) is EMPTY_METADATA


def test_large_metadata_is_not_kept_by_the_table() -> None:
    big = {"blob": "x" * (MAX_SHARED_METADATA_CHARS + 1)}
    assert shared_metadata(big) is not shared_metadata(dict(big))
    assert dict(shared_metadata(big)) == big
