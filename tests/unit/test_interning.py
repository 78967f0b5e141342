"""lib.interning: one shared copy per equal key, bounded."""

from __future__ import annotations

from lib.interning import Shared
from naming.domain import shared_port, shared_weight


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
