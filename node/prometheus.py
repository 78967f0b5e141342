"""``GET /metrics``: every counter of ``lib.counters`` in the Prometheus text format.

Unauthenticated, like Consul's and etcd's ``/metrics`` and Nacos's actuator endpoint: the
numbers carry no names of services, instances or users (labels are loop, listener, route and
method names), and a scraper should not need a token that expires. Operators who want it
private put it behind their network policy, as for those servers. The Nacos ``operator/metrics``
JSON is unchanged.

The gauges below read the node at scrape time (a collector registered once), so they cost
nothing per request; counters and histograms are kept where the work happens.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from lib.counters import REGISTRY, register_scrape_time
from node import runtime
from server import serving

# The held-fetch and event-stream totals of the HTTP server (server/watching.py), as counters.
_WATCH_TOTALS = {
    "heldTotal": "Fetches that were held to wait for a change.",
    "heldWoken": "Held fetches answered by a change before their wait ended.",
    "heldTimedOut": "Held fetches answered at the end of their wait.",
    "streamsOpened": "Event streams opened.",
    "streamsRefused": "Event streams refused over NAMING_EVENTS_MAX_STREAMS.",
    "streamsClosedSlow": "Event streams closed because their client did not read.",
    "streamsClosedLagging": "Event streams closed because the feed no longer had their changes.",
    "eventsSent": "Changes written to event streams (one per stream).",
    "frameErrors": "Changes that could not be written as an event (their streams were closed).",
}


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def _node_gauges() -> Iterable[Metric]:
    try:
        node = runtime.current()
    except RuntimeError:  # Django without a node (tests, manage.py): no node gauges
        return []
    gauges: list[Metric] = []

    def gauge(name: str, doc: str, value: float) -> None:
        gauges.append(GaugeMetricFamily(name, doc, value=value))

    gauge("naming_up", "1 when this node serves clients (status UP), else 0.", float(node.ready))
    gauge("naming_services", "Services in this node's registry.", node.registry.service_count)
    gauge("naming_instances", "Instances in this node's registry.", node.registry.instance_count)
    gauge("naming_notifier_pending", "Changed keys queued for listeners.", node.notifier.pending())
    gauge(
        "naming_push_subscribers",
        "UDP push subscribers (clients that polled with udpPort).",
        node.push.subscriber_count(),
    )
    feed = node.feed.status()
    gauge("naming_feed_events", "Change-feed events kept (naming.feed).", float(feed["size"]))
    gauge(
        "naming_feed_last_index",
        "This member's change-feed index (its global revision: grows on any change).",
        float(feed["lastIndex"]),
    )
    gauge(
        "naming_feed_oldest_index",
        "The oldest change-feed index still kept (a resume from before it starts over).",
        float(feed["oldestIndex"]),
    )
    http = serving.status()
    if http is not None:
        watch = http["watch"]
        gauge("naming_http_held_requests", "Held fetches waiting for a change.", watch["heldNow"])
        gauge("naming_http_event_streams", "Event streams open.", watch["streamsOpen"])
        for key, doc in _WATCH_TOTALS.items():
            gauges.append(CounterMetricFamily(f"naming_http_{_snake(key)}", doc, value=watch[key]))
    # The store's own status, not DistroCluster.status(): that one hashes every datum.
    ephemeral = node.cluster.store if node.cluster is not None else node.distro
    gauge(
        "naming_distro_keys",
        "Ephemeral (Distro) datum keys held by this member.",
        int(ephemeral.status().get("keys", 0)),
    )
    preservation = node.health.preservation
    gauge(
        "naming_self_preservation",
        "1 while self-preservation holds: lapsed instances of the watched sources"
        " (NAMING_SELF_PRESERVATION_SOURCES) are not expired on this member.",
        float(preservation.active),
    )
    gauge(
        "naming_self_preservation_window_renewals",
        "Renewals of watched instances this member counted in the last full window"
        " (NAMING_SELF_PRESERVATION_WINDOW_S, 60 s).",
        preservation.renewals,
    )
    gauge(
        "naming_self_preservation_window_expected",
        "Renewals expected of the watched instances this member owns in that window.",
        preservation.expected,
    )
    gauge(
        "naming_self_preservation_held_instances",
        "Lapsed watched instances kept registered only by self-preservation.",
        preservation.held_instances,
    )
    gauges.append(
        CounterMetricFamily(
            "naming_self_preservation_engaged",
            "Times self-preservation engaged on this member.",
            value=preservation.engaged,
        )
    )
    gauges.append(
        CounterMetricFamily(
            "naming_self_preservation_renewals",
            "Renewals of watched instances counted on this member.",
            value=preservation.renewals_total,
        )
    )
    if node.cluster is not None:
        gauge(
            "naming_distro_healthy_members",
            "Members this one maps Distro keys to (itself included when UP).",
            len(node.cluster.membership.mapper.healthy),
        )
    return gauges


register_scrape_time(_node_gauges)


def metrics(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_PLAIN_0_0_4)
