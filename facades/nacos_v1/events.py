"""Watching what changed (issue #13): service revisions and event streams.

``GET /nacos/v1/ns/service/revisions`` gives each service's revision and checksum for a group or
a namespace in one call, with the change feed's position (``lastIndex``, this member's global
revision, and ``epoch``, its incarnation): a client polls that instead of every list.

``GET /nacos/v1/ns/events`` streams the changes of one service, a group or a namespace as
server-sent events, in Flynn discoverd's format (``shared/facades.md`` §3.2): each event is
``id: <epoch>-<index>``, ``data: <json>`` and a blank line, with no ``event:`` name. The first is
``current`` (every service of the scope with all its hosts, checksum, revision and leaders: a
client needs nothing else), its id the feed index it reflects; then one event per change
(``up``, ``down``, ``update``, ``removed``, ``leader``, ``service``). ``Last-Event-ID`` (or the
``lastEventId`` parameter) resumes after an event when this member still has every change since
it; otherwise the stream starts again with ``current``.

The handler validates, authorizes and renders the first batch (on a worker); the node's server
then follows the feed for the stream (``server/watching.py``), framing each change with
:func:`frame_event`.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest, HttpResponse

from accounts.auth import Resource
from facades.nacos_v1 import params as s
from facades.nacos_v1 import render
from facades.nacos_v1.api import Caller, nacos_api, namespace_resource, naming_resource
from facades.nacos_v1.context import current
from facades.nacos_v1.params import Params
from lib.errors import InvalidParam
from lib.http import Waiting
from lib.watching import EventStream
from naming.domain import (
    GROUP_SEPARATOR,
    Instance,
    ServiceMeta,
    check_grouped_name,
    namespace_or_default,
)
from naming.feed import ChangeFeed, EventKind, FeedEvent, Scope, Topic
from naming.leaders import leaders
from naming.registry import ServiceView

EVENT_STREAM = "text/event-stream; charset=utf-8"
_EVENT_ID = re.compile(r"([0-9a-f]{1,16})-([0-9]{1,18})")


# -- parameters -------------------------------------------------------------------------------


def _group(params: Params) -> str | None:
    group = params.raw("groupName")
    if not group:
        return None
    check_grouped_name(f"{group}{GROUP_SEPARATOR}x")  # the group part's own rule
    if GROUP_SEPARATOR in group:
        raise InvalidParam(f"groupName must not contain {GROUP_SEPARATOR}")
    return group


def _topics(event: FeedEvent) -> tuple[Topic, Topic, Topic]:
    return Scope.topics_of(event.service)


def scope_of(params: Params) -> Scope:
    """One service (``serviceName``), a group (``groupName``) or the namespace."""
    namespace = namespace_or_default(params.raw("namespaceId"))
    if params.raw("serviceName"):
        name = s.service_name(params)
        return Scope(namespace, name.group, name.grouped)
    return Scope(namespace, _group(params))


def _scope_resource(params: Params) -> Resource:
    """What a reader of the scope must be allowed to read: the service, every service of the
    group, or every service of the namespace (as instance/list and service/list ask)."""
    if params.raw("serviceName"):
        return naming_resource(params)
    group = params.raw("groupName")
    if group:
        return Resource.naming(params.raw("namespaceId") or "", group)
    return namespace_resource(params)


def last_event_id(request: HttpRequest, params: Params) -> tuple[str, int] | None:
    """``Last-Event-ID`` (or ``lastEventId``): ``<epoch>-<index>`` as this edge sent it."""
    raw = request.META.get("HTTP_LAST_EVENT_ID")
    if raw is None:
        raw = params.raw("lastEventId")
    if raw is None or raw == "":
        return None
    found = _EVENT_ID.fullmatch(str(raw).strip())
    if found is None:
        raise InvalidParam("Last-Event-ID must be <epoch>-<index> as an event's id gave it")
    return found.group(1), int(found.group(2))


def _require_namespace(namespace: str) -> None:
    current().operations.get_namespace(namespace)  # NotFound: "namespaceId [ x ] not exist"


# -- rendering --------------------------------------------------------------------------------


def _host(inst: Instance | None, grouped: str) -> dict[str, Any] | None:
    return None if inst is None else render.host_json(inst, inst.healthy, grouped)


def _settings(meta: ServiceMeta) -> dict[str, Any]:
    return {
        "protectThreshold": meta.protect_threshold,
        "metadata": dict(meta.metadata),
        "selector": meta.selector.to_json(),
        "clusters": [
            {
                "name": name,
                "healthChecker": config.health_checker.to_json(),
                "metadata": dict(config.metadata),
            }
            for name, config in meta.clusters.items()
        ],
    }


def event_json(event: FeedEvent) -> dict[str, Any]:
    name = event.service
    body: dict[str, Any] = {
        "kind": event.kind.value,
        "namespaceId": name.namespace,
        "groupName": name.group,
        "serviceName": name.name,
        "revision": event.revision,
        "instance": _host(event.instance, name.grouped),
    }
    if event.kind is EventKind.LEADER:
        body["scope"] = event.scope
    elif event.kind is EventKind.SERVICE:
        body["service"] = None if event.meta is None else _settings(event.meta)
    return body


def service_state(view: ServiceView) -> dict[str, Any]:
    grouped = view.name.grouped
    return {
        "groupName": view.name.group,
        "serviceName": view.name.name,
        "revision": view.revision,
        "checksum": view.checksum,
        "service": _settings(view.settings),
        "hosts": [_host(i, grouped) for i in view.instances()],
        "leaders": {scope: _host(inst, grouped) for scope, inst in leaders(view).items()},
    }


def _frame(epoch: str, index: int, body: dict[str, Any]) -> bytes:
    data = render.dumps(body).encode()
    return b"id: %s-%d\ndata: %s\n\n" % (epoch.encode(), index, data)


def frame_event(event: FeedEvent) -> bytes:
    """One change as sent (the same function for every stream: the server frames each change
    once). JSON has no raw newline, so ``data:`` is one line."""
    return _frame(current().feed.epoch, event.index, event_json(event))


def _current(feed: ChangeFeed, scope: Scope) -> tuple[int, bytes]:
    index, views = feed.current(scope)
    body = {
        "kind": "current",
        "namespaceId": scope.namespace,
        "groupName": scope.group,
        "serviceName": scope.grouped.partition(GROUP_SEPARATOR)[2] if scope.grouped else None,
        "services": [service_state(v) for v in views],
    }
    return index, _frame(feed.epoch, index, body)


def _replay(feed: ChangeFeed, scope: Scope, after: int) -> tuple[int, bytes] | None:
    """The scope's changes after ``after``, framed, or None when some are no longer kept."""
    if not feed.covers(after):
        return None
    events = feed.since(after)
    if events and events[0].index != after + 1:
        return None  # trimmed between the two reads
    framed = b"".join(frame_event(e) for e in events if scope.matches(e.service))
    return (events[-1].index if events else after), framed


# -- endpoints --------------------------------------------------------------------------------


@nacos_api("GET", resource=_scope_resource)
def events(request: HttpRequest, params: Params, caller: Caller) -> HttpResponse:
    scope = scope_of(params)
    resume = last_event_id(request, params)
    node = current()
    feed = node.feed
    _require_namespace(scope.namespace)
    started: tuple[int, bytes] | None = None
    if resume is not None and resume[0] == feed.epoch:
        started = _replay(feed, scope, resume[1])
    if started is None:
        if scope.grouped is not None:
            name = s.service_name(params)
            node.operations.require_service(name, f"service not found: {name.grouped}")
        started = _current(feed, scope)
    after, first = started
    return Waiting(
        EventStream(
            [("Content-Type", EVENT_STREAM)],
            first,
            after,
            scope.topic,
            _topics,
            lambda event: scope.matches(event.service),
            frame_event,
        )
    )


def _revisions_resource(params: Params) -> Resource:
    group = params.raw("groupName")
    if group:
        return Resource.naming(params.raw("namespaceId") or "", group)
    return namespace_resource(params)


@nacos_api("GET", resource=_revisions_resource)
def service_revisions(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    """Every service of the group (or namespace): its revision (this member's, grows on every
    change) and checksum (equal on every member for equal data), and the feed's position."""
    namespace = namespace_or_default(params.raw("namespaceId"))
    group = _group(params)
    _require_namespace(namespace)
    feed = current().feed
    index, views = feed.current(Scope(namespace, group))
    return {
        "namespaceId": namespace,
        "groupName": group,
        "epoch": feed.epoch,
        "lastIndex": index,
        "count": len(views),
        "services": [
            {
                "groupName": v.name.group,
                "serviceName": v.name.name,
                "revision": v.revision,
                "checksum": v.checksum,
            }
            for v in views
        ],
    }
