"""Member states and the ownership map they produce (Nacos thresholds)."""

from __future__ import annotations

from distro.membership import MAX_FAILURES, Membership, MemberState
from distro.transport import InMemoryTransport

LOCAL = "10.0.0.1:8848"
PEERS = ("10.0.0.2:8848", "10.0.0.3:8848")


def membership(state: MemberState = MemberState.UP) -> Membership:
    return Membership(LOCAL, (LOCAL, *PEERS), InMemoryTransport().bind(LOCAL), lambda: state)


def test_nobody_owns_anything_before_the_first_refresh():
    assert membership().mapper.healthy == ()


def test_a_member_that_reports_up_joins_the_ownership_map():
    m = membership()
    m.on_report(PEERS[0], {"state": "UP"})
    assert m.mapper.healthy == (LOCAL, PEERS[0])
    assert m.state_of(PEERS[0]) is MemberState.UP


def test_a_starting_member_owns_nothing_until_it_reports_up():
    m = membership()
    m.on_report(PEERS[0], {"state": "STARTING"})
    assert PEERS[0] not in m.mapper.healthy
    m.on_report(PEERS[0], {"state": "UP"})
    assert PEERS[0] in m.mapper.healthy


def test_this_member_joins_the_map_only_once_it_is_up():
    m = membership(MemberState.STARTING)
    m.on_report(PEERS[0], {"state": "UP"})
    assert m.mapper.healthy == (PEERS[0],)


def test_failed_reports_make_a_member_suspicious_then_down():
    m = membership()
    m.on_report(PEERS[0], {"state": "UP"})
    m.on_failure(PEERS[0], refused=False)
    assert m.state_of(PEERS[0]) is MemberState.SUSPICIOUS
    assert PEERS[0] in m.mapper.healthy, "a suspicious member keeps its keys (Nacos)"
    for _ in range(MAX_FAILURES):
        m.on_failure(PEERS[0], refused=False)
    assert m.state_of(PEERS[0]) is MemberState.DOWN
    assert PEERS[0] not in m.mapper.healthy


def test_a_refused_connection_makes_a_member_down_at_once():
    m = membership()
    m.on_report(PEERS[0], {"state": "UP"})
    m.on_failure(PEERS[0], refused=True)
    assert m.state_of(PEERS[0]) is MemberState.DOWN


def test_a_member_that_says_it_is_leaving_is_down():
    m = membership()
    m.on_report(PEERS[0], {"state": "UP"})
    m.on_report(PEERS[0], {"state": "DOWN"})
    assert m.state_of(PEERS[0]) is MemberState.DOWN


def test_listeners_hear_of_every_change_of_the_map_and_only_of_changes():
    m = membership()
    seen = []
    m.add_listener(lambda mapper: seen.append(mapper.healthy))
    m.refresh()
    m.on_report(PEERS[0], {"state": "UP"})
    m.on_report(PEERS[0], {"state": "UP"})
    m.on_failure(PEERS[0], refused=True)
    assert seen == [(LOCAL,), (LOCAL, PEERS[0]), (LOCAL,)]


def test_reports_from_strangers_are_ignored():
    m = membership()
    m.on_report("10.6.6.6:8848", {"state": "UP"})
    m.refresh()
    assert m.mapper.healthy == (LOCAL,)


def test_a_report_round_to_unreachable_peers_marks_them_down():
    m = membership()
    m.on_report(PEERS[0], {"state": "UP"})
    m.report_once()  # nobody is bound on the in-memory network: every call is refused
    assert m.state_of(PEERS[0]) is MemberState.DOWN
    assert m.reports_failed == 2
