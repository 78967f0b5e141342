from __future__ import annotations

from naming.codec import EMPTY_INSTANCES, instance_set
from naming.domain import Instance, InstanceKey, ServiceName
from naming.health import BeatTable, find_expired
from naming.registry import ServiceView

SVC = ServiceName("public", "DEFAULT_GROUP@@svc")


def view(*instances: Instance) -> ServiceView:
    return ServiceView(SVC, None, instance_set(list(instances)), EMPTY_INSTANCES, 1)


def key(ip: str) -> InstanceKey:
    return InstanceKey("DEFAULT", ip, 1)


def test_unseen_instances_get_a_full_timeout_of_grace():
    beats: dict[InstanceKey, float] = {}
    expiry = find_expired(view(Instance("1.1.1.1", 1)), beats, now=1000.0)
    assert expiry.unhealthy == () and expiry.removed == ()
    assert beats[key("1.1.1.1")] == 1000.0


def test_default_timeouts_mark_unhealthy_after_15s_and_remove_after_30s():
    v = view(Instance("1.1.1.1", 1), Instance("1.1.1.2", 1), Instance("1.1.1.3", 1))
    beats = {key("1.1.1.1"): 100.0, key("1.1.1.2"): 84.0, key("1.1.1.3"): 69.0}
    expiry = find_expired(v, beats, now=100.0)
    assert expiry.unhealthy == (key("1.1.1.2"),)
    assert expiry.removed == (key("1.1.1.3"),)


def test_already_unhealthy_and_marked_instances_are_not_reported_again():
    v = view(Instance("1.1.1.1", 1, healthy=False), Instance("1.1.1.2", 1, marked=True))
    beats = {key("1.1.1.1"): 80.0, key("1.1.1.2"): 0.0}
    assert find_expired(v, beats, now=100.0).unhealthy == ()
    assert find_expired(v, beats, now=100.0).removed == ()


def test_preserved_metadata_shortens_the_timeouts():
    meta = {"preserved.heart.beat.timeout": "3000", "preserved.ip.delete.timeout": "6000"}
    v = view(Instance("1.1.1.1", 1, metadata=meta))
    assert find_expired(v, {key("1.1.1.1"): 96.0}, now=100.0).unhealthy == (key("1.1.1.1"),)
    assert find_expired(v, {key("1.1.1.1"): 93.0}, now=100.0).removed == (key("1.1.1.1"),)


def test_a_service_regained_after_moving_away_gets_a_full_timeout_not_its_stale_beats():
    now = [0.0]
    beats = BeatTable(clock=lambda: now[0])
    beats.touch(SVC, key("1.1.1.1"))
    beats.retain(lambda service: service != SVC)  # ownership moved to another member
    now[0] = 20.0  # it comes back: the beat we saw is 20 s old, but beats went elsewhere
    expiry = find_expired(view(Instance("1.1.1.1", 1)), beats.service_beats(SVC), now[0])
    assert expiry.unhealthy == () and expiry.removed == ()
    now[0] = 36.0  # a full timeout of our own without beats: now it is unhealthy
    expiry = find_expired(view(Instance("1.1.1.1", 1)), beats.service_beats(SVC), now[0])
    assert expiry.unhealthy == (key("1.1.1.1"),)
