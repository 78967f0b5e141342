"""The change feed (naming/feed.py) and service leaders (naming/leaders.py), over views built
by hand: what each difference between two views appends, in order, and the bounds."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from naming import commands as s
from naming.codec import instance_set
from naming.domain import Instance, ServiceMeta, ServiceName
from naming.feed import ChangeFeed, EventKind, Scope
from naming.leaders import leader, leaders
from naming.registry import ServiceView
from node.runtime import NodeRuntime
from testkit.harness import wait_for

SVC = ServiceName("public", "DEFAULT_GROUP@@feed")
OTHER = ServiceName("public", "G2@@other")


class Views:
    """Successive views of services, with revisions as the registry gives them."""

    def __init__(self) -> None:
        self.revision = 0

    def __call__(
        self,
        *instances: Instance,
        meta: ServiceMeta | None = None,
        name: ServiceName = SVC,
        persistent: tuple[Instance, ...] = (),
    ) -> ServiceView:
        self.revision += 1
        eph = instance_set(list(instances)) if instances else None
        pers = instance_set(list(persistent)) if persistent else None
        return ServiceView(name, meta, eph, pers, self.revision)


def inst(n: int, **changes: object) -> Instance:
    return Instance(f"10.0.0.{n}", 80, registered_ms=n).with_changes(**changes)


def kinds(feed: ChangeFeed, after: int = 0) -> list[tuple[str, str | None]]:
    return [
        (e.kind.value, e.instance.ip if e.instance else None)
        for e in feed.since(after)
        if e.kind is not EventKind.LEADER
    ]


def test_each_difference_is_one_event_in_order() -> None:
    feed, view = ChangeFeed(), Views()
    feed.on_view(view(inst(1), inst(2, healthy=False)))
    assert kinds(feed) == [("up", "10.0.0.1"), ("down", "10.0.0.2")]
    mark = feed.last_index
    feed.on_view(view(inst(1, weight=3.0), inst(2)))
    assert kinds(feed, mark) == [("update", "10.0.0.1"), ("up", "10.0.0.2")]
    mark = feed.last_index
    feed.on_view(view(inst(2, enabled=False)))
    assert kinds(feed, mark) == [("down", "10.0.0.2"), ("removed", "10.0.0.1")]
    indexes = [e.index for e in feed.since(0)]
    assert indexes == list(range(1, len(indexes) + 1))


def test_what_clients_never_see_is_no_event_and_weights_are_shown_clamped() -> None:
    feed, view = ChangeFeed(), Views()
    feed.on_view(view(inst(1)))
    mark = feed.last_index
    feed.on_view(view(inst(1, lease="a|1")))  # a reconnect's re-register moves the lease
    assert feed.since(mark) == []
    feed.on_view(view(inst(1, lease="a|1", weight=20000.0)))
    [event] = feed.since(mark)
    assert event.kind is EventKind.UPDATE and event.instance is not None
    assert event.instance.weight == 10000.0


def test_settings_and_deletion_are_service_events() -> None:
    feed, view = ChangeFeed(), Views()
    feed.on_view(view(inst(1)))
    mark = feed.last_index
    meta = ServiceMeta(protect_threshold=0.5)
    feed.on_view(view(inst(1), meta=meta))
    [event] = feed.since(mark)
    assert event.kind is EventKind.SERVICE and event.meta == meta
    mark = feed.last_index
    gone = ServiceView(SVC, None, None, None, view.revision + 1)
    feed.on_view(gone)
    got = [(e.kind, e.scope) for e in feed.since(mark)]
    assert (EventKind.REMOVED, "") in got
    assert (EventKind.SERVICE, "") in got
    assert (EventKind.LEADER, "") in got  # the last leader left: a leader event with no one
    assert feed.current(Scope("public"))[1] == []


def test_leaders_oldest_serving_first_then_hand_over_in_order() -> None:
    feed, view = ChangeFeed(), Views()
    a, b, c = inst(1), inst(2), inst(3, cluster="east")
    feed.on_view(view(a, b, c))
    assert feed.leaders_of(SVC)[""] == a
    assert feed.leaders_of(SVC)["east"] == c
    mark = feed.last_index
    feed.on_view(view(a.with_changes(healthy=False), b, c))  # expiry's first step: unhealthy
    handed = [e for e in feed.since(mark) if e.kind is EventKind.LEADER]
    assert [(e.scope, e.instance) for e in handed] == [("", b), ("DEFAULT", b)]
    mark = feed.last_index
    feed.on_view(view(b, c))  # a deregistered: nothing changes for leaders
    assert [e for e in feed.since(mark) if e.kind is EventKind.LEADER] == []
    feed.on_view(view(b, c, a))  # a comes back: appended, so it is the youngest now
    assert feed.leaders_of(SVC)[""] == b


def test_persistent_and_ephemeral_compare_by_registration_time() -> None:
    early_persistent = inst(5, ephemeral=False).with_changes(registered_ms=1)
    late_ephemeral = inst(6).with_changes(registered_ms=2)
    view = ServiceView(
        SVC,
        None,
        instance_set([late_ephemeral]),
        instance_set([early_persistent]),
        1,
    )
    assert leader(view) == early_persistent
    tie = ServiceView(
        SVC,
        None,
        instance_set([late_ephemeral.with_changes(registered_ms=1)]),
        instance_set([early_persistent]),
        2,
    )
    assert leader(tie) == early_persistent


def test_a_pin_holds_while_its_instance_serves() -> None:
    a, b = inst(1), inst(2)
    pinned = ServiceMeta(pinned_leaders=MappingProxyType({"": "10.0.0.2:80"}))
    view = ServiceView(SVC, pinned, instance_set([a, b]), None, 1)
    assert leaders(view) == {"": b, "DEFAULT": b}
    down = ServiceView(SVC, pinned, instance_set([a, b.with_changes(healthy=False)]), None, 2)
    assert leader(down) == a
    by_cluster = ServiceMeta(pinned_leaders=MappingProxyType({"DEFAULT": "10.0.0.2:80"}))
    view = ServiceView(SVC, by_cluster, instance_set([a, b]), None, 3)
    assert leaders(view) == {"": a, "DEFAULT": b}


def test_current_is_consistent_with_the_index_and_scoped() -> None:
    feed, view = ChangeFeed(), Views()
    feed.on_view(view(inst(1)))
    feed.on_view(view(inst(2), name=OTHER))
    index, views = feed.current(Scope("public", group="G2"))
    assert index == feed.last_index and [v.name for v in views] == [OTHER]
    assert [v.name for v in feed.current(Scope("public"))[1]] == [SVC, OTHER]
    assert feed.current(Scope("public", grouped=SVC.grouped))[1][0].name == SVC
    assert feed.current(Scope("other-ns"))[1] == []


def test_retention_and_the_size_bound() -> None:
    now = [0.0]
    feed, view = ChangeFeed(retention_s=10.0, max_events=1000, clock=lambda: now[0]), Views()
    feed.on_view(view(inst(1)))
    first = feed.last_index
    assert feed.covers(0) and feed.oldest_index() == 1
    now[0] = 11.0
    feed.on_view(view(inst(1), inst(2)))
    assert not feed.covers(0) and feed.covers(first)
    assert feed.oldest_index() == first + 1
    for n in range(3, 1300):  # one up each (and no leader change)
        feed.on_view(view(*(inst(1), inst(n))))
    status = feed.status()
    assert status["size"] == 1000 and int(status["trimmedEarly"]) > 0
    assert feed.oldest_index() == feed.last_index - 999
    assert feed.since(feed.last_index - 2, limit=1)[0].index == feed.last_index - 1


def test_sinks_are_told_once_per_change_with_the_last_index() -> None:
    feed, view = ChangeFeed(), Views()
    told: list[int] = []
    feed.sinks.add("test", told.append)
    feed.on_view(view(inst(1), inst(2)))
    feed.on_view(view(inst(1), inst(2)))  # nothing visible changed: no call
    assert told == [feed.last_index]


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        ChangeFeed(retention_s=0)


def test_the_runtime_feeds_every_registry_change(node: NodeRuntime) -> None:
    node.operations.register_instance(s.RegisterInstance(SVC, Instance("10.1.0.1", 8080)))
    wait_for(lambda: any(e.kind is EventKind.UP for e in node.feed.since(0)), 5.0)
    [up] = [e for e in node.feed.since(0) if e.kind is EventKind.UP]
    assert up.service == SVC and up.instance is not None and up.instance.ip == "10.1.0.1"
    assert up.revision == node.registry.get(SVC).revision
    assert node.feed.status()["lastIndex"] == node.feed.last_index


def test_changes_anywhere_in_a_large_service_are_found() -> None:
    feed, view = ChangeFeed(), Views()
    many = [Instance(f"10.2.{n // 250}.{n % 250}", 80) for n in range(600)]
    feed.on_view(view(*many))
    mark = feed.last_index
    changed = list(many)
    changed[5] = many[5].with_changes(weight=2.0)
    changed[590] = many[590].with_changes(healthy=False)
    feed.on_view(view(*changed, Instance("10.3.0.1", 80)))  # same order, one appended
    assert kinds(feed, mark) == [("update", "10.2.0.5"), ("down", "10.2.2.90"), ("up", "10.3.0.1")]
    mark = feed.last_index
    del changed[300]
    changed[400] = changed[400].with_changes(metadata=MappingProxyType({"a": "b"}))
    feed.on_view(view(*changed))  # a removal shifts the order: the other path
    assert kinds(feed, mark) == [
        ("update", "10.2.1.151"),
        ("removed", "10.2.1.50"),
        ("removed", "10.3.0.1"),
    ]


def test_a_scope_matches_a_service_exactly_when_its_topic_is_among_the_services_topics() -> None:
    names = [SVC, OTHER, ServiceName("other-ns", SVC.grouped), ServiceName("public", "G2@@feed")]
    scopes = [
        Scope("public"),
        Scope("public", group="G2"),
        Scope("public", SVC.group, SVC.grouped),
        Scope("other-ns", grouped=SVC.grouped),
        Scope("nowhere"),
    ]
    for scope in scopes:
        for name in names:
            assert scope.matches(name) == (scope.topic in Scope.topics_of(name)), (scope, name)
