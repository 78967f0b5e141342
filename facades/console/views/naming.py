"""The naming pages: service list, service detail with clusters and instances, subscribers.

Each view checks its input, authorizes through the one ``authorize`` seam (``web.allow``), calls
one operation of the core and renders. Namespace, filters and paging live in the URL query
(``?namespace=&name=&group=&hideEmpty=&page=&size=``), so a copied link opens the same view.
Writes are plain POST forms that redirect back (they work without JavaScript); htmx only
refreshes the instance tables.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.auth import Action
from facades.console.web import (
    PAGE_SIZES,
    Viewer,
    acting,
    allow,
    confirm_page,
    console_view,
    may,
    namespace_of,
    ops,
    render_page,
    url,
    visible_namespaces,
)
from facades.nacos_v1 import params as s
from facades.nacos_v1.context import current
from facades.nacos_v1.params import Params
from facades.nacos_v1.render import catalog_row
from lib.errors import InvalidParam, MissingParam, NamingError, NotFound
from naming.commands import InstanceRef, PatchInstanceCommand, ServiceSpec
from naming.domain import (
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    CheckType,
    Instance,
    InstanceKey,
    ServiceName,
    check_weight,
    parse_metadata,
)
from naming.leaders import SERVICE_SCOPE, leaders, pinned
from naming.parsing import parse_json
from naming.registry import ServiceView

HIDE_EMPTY_COOKIE = "nacos_hide_empty"
MAX_FILTER_CHARS = 512
CONSOLE = "/nacos/console/"


# -- request helpers --------------------------------------------------------------------------


def _field(request: HttpRequest, name: str, default: str = "") -> str:
    value = request.POST.get(name) if request.method == "POST" else None
    if value is None:
        value = request.GET.get(name, default)
    return value.strip()


def _service_of(request: HttpRequest) -> ServiceName:
    """``namespace``, ``group`` (default DEFAULT_GROUP) and ``name``, validated as the API does."""
    name = _field(request, "name")
    if not name:
        raise MissingParam("name")
    group = _field(request, "group") or DEFAULT_GROUP
    return s.service_name(
        Params({"serviceName": name, "groupName": group, "namespaceId": namespace_of(request)})
    )


def _service_query(service: ServiceName) -> dict[str, str]:
    return {"namespace": service.namespace, "group": service.group, "name": service.name}


def _detail_url(service: ServiceName, **extra: str) -> str:
    return url(CONSOLE + "service", {**_service_query(service), **extra})


def _int(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(raw or default)
    except ValueError:
        return default
    return min(max(value, low), high)


def _metadata_json(raw: str, what: str = "metadata") -> str:
    """The console's metadata fields take a JSON object (the API also accepts ``k=v``)."""
    if not raw.strip():
        return "{}"
    data = parse_json(raw, what)
    if not isinstance(data, dict):
        raise InvalidParam(f'{what} must be a JSON object, like {{"version": "2"}}')
    return raw


def _metadata_text(metadata: Mapping[str, str]) -> str:
    return json.dumps(dict(metadata), indent=2, ensure_ascii=False) if metadata else ""


def _pager(request: HttpRequest, total: int) -> tuple[int, int, int]:
    size = _int(request.GET.get("size"), PAGE_SIZES[0], 1, PAGE_SIZES[-1])
    if size not in PAGE_SIZES:
        size = PAGE_SIZES[0]
    pages = max(1, math.ceil(total / size))
    page = _int(request.GET.get("page"), 1, 1, pages)
    return page, size, pages


def _switcher(viewer: Viewer, namespace: str) -> list[dict[str, Any]]:
    return [
        {"id": info.id, "label": info.name, "current": info.id == namespace}
        for info in visible_namespaces(viewer)
    ]


# -- service list -------------------------------------------------------------------------------


def _hide_empty(request: HttpRequest) -> bool:
    """The URL wins; otherwise the last choice (a cookie); otherwise on, as in Nacos."""
    raw = request.GET.get("hideEmpty")
    if raw is None:
        raw = request.COOKIES.get(HIDE_EMPTY_COOKIE, "1")
    return raw == "1"


@console_view("GET")
def services(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    namespace = namespace_of(request)
    allow(viewer, Action.READ, namespace)
    name = request.GET.get("name", "").strip()[:MAX_FILTER_CHARS]
    group = request.GET.get("group", "").strip()[:MAX_FILTER_CHARS]
    # An instance's ``ip`` or ``ip:port``: which services of the namespace hold it (nacos#1319).
    instance = request.GET.get("instance", "").strip()[:MAX_FILTER_CHARS]
    hide_empty = _hide_empty(request)
    views = ops().catalog_services(namespace, name, group, instance, hide_empty)
    page, size, pages = _pager(request, len(views))
    rows = []
    for view in views[(page - 1) * size : page * size]:
        row = catalog_row(view)
        row["query"] = _service_query(view.name)
        rows.append(row)
    query = {
        "namespace": namespace,
        "name": name,
        "group": group,
        "instance": instance,
        "hideEmpty": "1" if hide_empty else "0",
        "size": str(size),
    }
    deleted = request.GET.get("deleted", "")
    response = render_page(
        request,
        viewer,
        "console/services.html",
        {
            "namespace": namespace,
            "switcher": _switcher(viewer, namespace),
            "switch_path": CONSOLE + "services",
            "name": name,
            "group": group,
            "instance": instance,
            "hide_empty": hide_empty,
            "rows": rows,
            "total": len(views),
            "page": page,
            "pages": pages,
            "size": size,
            "sizes": PAGE_SIZES,
            "prev_url": url(CONSOLE + "services", {**query, "page": page - 1}) if page > 1 else "",
            "next_url": url(CONSOLE + "services", {**query, "page": page + 1})
            if page < pages
            else "",
            "can_write": may(viewer, Action.WRITE, namespace),
            "notice": f"service {deleted} deleted" if deleted else "",
        },
    )
    if "hideEmpty" in request.GET:
        response.set_cookie(
            HIDE_EMPTY_COOKIE,
            "1" if hide_empty else "0",
            max_age=365 * 24 * 3600,
            path="/nacos/",
            httponly=True,
            samesite="Lax",
        )
    return response


# -- service create / edit / delete ---------------------------------------------------------------


def _spec(request: HttpRequest, service: ServiceName) -> ServiceSpec:
    threshold = _field(request, "protectThreshold")
    if not threshold:
        raise MissingParam("protectThreshold")
    selector_type = _field(request, "selectorType", "none")
    expression = _field(request, "selectorExpression")
    if selector_type not in ("none", "label"):
        raise InvalidParam(f"selector type must be none or label: {selector_type[:20]}")
    if selector_type == "label" and not expression:
        raise InvalidParam("a label selector needs an expression")
    selector = {"type": selector_type, "expression": expression if selector_type == "label" else ""}
    return s.service_spec(
        Params(
            {
                "serviceName": service.name,
                "groupName": service.group,
                "namespaceId": service.namespace,
                "protectThreshold": threshold,
                "metadata": _metadata_json(request.POST.get("metadata", "")),
                "selector": json.dumps(selector),
            }
        ),
        threshold_required=True,
    )


def _service_form(
    request: HttpRequest,
    viewer: Viewer,
    namespace: str,
    mode: str,
    values: Mapping[str, str],
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    return render_page(
        request,
        viewer,
        "console/service_form.html",
        {"namespace": namespace, "mode": mode, "v": values, "error": error},
        status=status,
    )


def _posted_service_values(request: HttpRequest) -> dict[str, str]:
    return {
        k: request.POST.get(k, "")
        for k in (
            "name",
            "group",
            "protectThreshold",
            "metadata",
            "selectorType",
            "selectorExpression",
        )
    }


@console_view("GET", "POST")
def service_create(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    namespace = namespace_of(request)
    if request.method == "GET":
        allow(viewer, Action.WRITE, namespace)
        values = {"group": DEFAULT_GROUP, "protectThreshold": "0", "selectorType": "none"}
        return _service_form(request, viewer, namespace, "create", values)
    values = _posted_service_values(request)
    try:
        service = _service_of(request)
        allow(viewer, Action.WRITE, namespace, service.group, service.name)
        spec = _spec(request, service)
        with acting(request, viewer, "create service"):
            ops().create_service(spec)
    except NamingError as exc:
        return _service_form(request, viewer, namespace, "create", values, exc.message, exc.status)
    return HttpResponseRedirect(_detail_url(service))


@console_view("GET", "POST")
def service_edit(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    service = _service_of(request)
    allow(viewer, Action.WRITE, service.namespace, service.group, service.name)
    view = ops().require_service(service)
    if request.method == "GET":
        settings = view.settings
        values = {
            "name": service.name,
            "group": service.group,
            "protectThreshold": str(settings.protect_threshold),
            "metadata": _metadata_text(settings.metadata),
            "selectorType": settings.selector.type,
            "selectorExpression": settings.selector.expression,
        }
        return _service_form(request, viewer, service.namespace, "edit", values)
    values = {**_posted_service_values(request), "name": service.name, "group": service.group}
    try:
        spec = _spec(request, service)
        with acting(request, viewer, "edit service"):
            ops().update_service(spec)
    except NamingError as exc:
        return _service_form(
            request, viewer, service.namespace, "edit", values, exc.message, exc.status
        )
    return HttpResponseRedirect(_detail_url(service))


@console_view("GET", "POST")
def service_delete(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """GET asks (a page, so it works without JavaScript), POST deletes."""
    service = _service_of(request)
    allow(viewer, Action.WRITE, service.namespace, service.group, service.name)
    if request.method == "GET":
        view = ops().require_service(service)
        return confirm_page(
            request,
            viewer,
            service.namespace,
            f"Delete the service {service.name} (group {service.group}) and its "
            f"{view.instance_count} instance(s)?",
            CONSOLE + "service/delete",
            _service_query(service),
            _detail_url(service),
        )
    with acting(request, viewer, "delete service"):
        ops().delete_service(service)
    return HttpResponseRedirect(
        url(CONSOLE + "services", {"namespace": service.namespace, "deleted": service.name})
    )


# -- service detail and instances ---------------------------------------------------------------


def _instance_query(service: ServiceName, inst: Instance) -> dict[str, str]:
    return {
        **_service_query(service),
        "cluster": inst.cluster,
        "ip": inst.ip,
        "port": str(inst.port),
        "ephemeral": "true" if inst.ephemeral else "false",
    }


def _ago(seconds: float) -> str:
    if seconds < 1:
        return "just now"
    return f"{int(seconds)} s ago"


def _moment(ms: int) -> dict[str, str] | None:
    """A wall-clock time as the templates show it: UTC text that ``console.js`` turns into the
    browser's local time, with the ISO form for ``datetime`` and ``title``."""
    if ms <= 0:
        return None
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return {
        "iso": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "text": moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def _prober_note() -> str | None:
    """None when this member runs the active checks (standalone, or the Raft leader); else who
    does, for the persistent rows (their last checks are kept only where they run)."""
    node = current()
    if node.cluster is None:
        return None
    leader = node.report.leader_http_address()
    if leader == node.address:
        return None
    return f"checked by the leader {leader}" if leader else "checked by the leader (none elected)"


def _last_check(view: ServiceView, inst: Instance, prober_note: str | None) -> dict[str, Any]:
    if inst.marked or view.cluster_config(inst.cluster).health_checker.type not in (
        CheckType.TCP,
        CheckType.HTTP,
    ):
        return {"text": "not checked (no active check)"}
    if prober_note is not None:
        return {"text": prober_note}
    last = ops().checks.last(view.name, inst.key)
    if last is None:
        return {"text": "not checked yet"}
    age = max(0.0, (ops().wall_ms() - last.at_ms) / 1000)
    return {
        "text": f"{_ago(age)}: {'passed' if last.ok else 'failed'}",
        "ok": last.ok,
        "at": _moment(last.at_ms),
    }


def _leader_badges(view: ServiceView) -> dict[tuple[InstanceKey, bool], str]:
    """Which rows lead (``naming.leaders``): the service's leader, each cluster's, and whether
    a pin put it there."""
    badges: dict[tuple[InstanceKey, bool], str] = {}
    for scope, inst in leaders(view).items():
        if inst is None:
            continue
        badge = "leader" if scope == SERVICE_SCOPE else "cluster leader"
        if view.settings.pinned_leaders and pinned(view, scope) is not None:
            badge += ", pinned"
        badges.setdefault((inst.key, inst.ephemeral), badge)  # the service's badge first
    return badges


def _clusters(view: ServiceView) -> list[dict[str, Any]]:
    """Per cluster: its health-check settings and its instances, as the templates show them.

    Per instance: its registration time (replicated with it: 0 for instances stored before it
    was kept); the last beat of an ephemeral instance, on the member that owns the service
    (monotonic, so shown as an age); the last active check of a persistent one, on the member
    that probes (the Raft leader)."""
    beats = ops().beats.service_beats(view.name) if view.ephemeral else {}
    prober_note = _prober_note() if view.persistent else None
    now = time.monotonic()
    badges = _leader_badges(view)
    clusters = []
    for name, members in sorted(view.clusters.items()):
        config = view.cluster_config(name)
        rows = []
        for inst in members:
            last = beats.get(inst.key) if inst.ephemeral else None
            rows.append(
                {
                    "inst": inst,
                    "metadata": sorted(inst.metadata.items()),
                    "registered": _moment(inst.registered_ms),
                    "last_beat": _ago(now - last) if last is not None else "",
                    "last_check": None if inst.ephemeral else _last_check(view, inst, prober_note),
                    "query": _instance_query(view.name, inst),
                    "leader": badges.get((inst.key, inst.ephemeral), ""),
                }
            )
        clusters.append(
            {
                "name": name,
                "checker": config.health_checker,
                "check_port": config.check_port,
                "use_instance_port": config.use_instance_port,
                "metadata": sorted(config.metadata.items()),
                "rows": rows,
                "query": {**_service_query(view.name), "cluster": name},
            }
        )
    return clusters


def _detail_context(viewer: Viewer, view: ServiceView) -> dict[str, Any]:
    service = view.name
    return {
        "namespace": service.namespace,
        "service": service,
        "view": view,
        "settings": view.settings,
        "metadata": sorted(view.settings.metadata.items()),
        "clusters": _clusters(view),
        "query": _service_query(service),
        "can_write": may(viewer, Action.WRITE, service.namespace, service.group, service.name),
    }


@console_view("GET")
def service_detail(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    service = _service_of(request)
    allow(viewer, Action.READ, service.namespace, service.group, service.name)
    view = ops().require_service(service)
    context = _detail_context(viewer, view)
    context["notice"] = request.GET.get("done", "")[:200]
    return render_page(request, viewer, "console/service.html", context)


@console_view("GET")
def instances_fragment(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """The instance tables alone: the detail page polls this every 2 s (htmx)."""
    service = _service_of(request)
    allow(viewer, Action.READ, service.namespace, service.group, service.name)
    view = ops().require_service(service)
    return render_page(request, viewer, "console/_instances.html", _detail_context(viewer, view))


# -- clusters -----------------------------------------------------------------------------------


@console_view("GET", "POST")
def cluster_edit(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    service = _service_of(request)
    allow(viewer, Action.WRITE, service.namespace, service.group, service.name)
    view = ops().require_service(service)
    cluster = _field(request, "cluster") or DEFAULT_CLUSTER
    context: dict[str, Any] = {
        "namespace": service.namespace,
        "service": service,
        "cluster": cluster,
        "query": _service_query(service),
        "types": [CheckType.TCP.value, CheckType.HTTP.value, CheckType.NONE.value],
    }
    if request.method == "GET":
        config = view.cluster_config(cluster)
        checker = config.health_checker
        context["v"] = {
            "type": checker.type.value,
            "checkPort": str(config.check_port),
            "useInstancePort": config.use_instance_port,
            "path": checker.path,
            "headers": checker.headers,
            "metadata": _metadata_text(config.metadata),
        }
        return render_page(request, viewer, "console/cluster_form.html", context)
    check_type = _field(request, "type", "TCP").upper()
    use_instance_port = request.POST.get("useInstancePort") == "on"
    context["v"] = {
        "type": check_type,
        "checkPort": request.POST.get("checkPort", ""),
        "useInstancePort": use_instance_port,
        "path": request.POST.get("path", ""),
        "headers": request.POST.get("headers", ""),
        "metadata": request.POST.get("metadata", ""),
    }
    try:
        if check_type not in context["types"]:
            raise InvalidParam(f"check type must be TCP, HTTP or NONE: {check_type[:20]}")
        checker_json = {"type": check_type}
        if check_type == "HTTP":
            checker_json.update(path=_field(request, "path"), headers=_field(request, "headers"))
        name, config = s.cluster_config(
            Params(
                {
                    "serviceName": service.name,
                    "groupName": service.group,
                    "namespaceId": service.namespace,
                    "clusterName": cluster,
                    "checkPort": _field(request, "checkPort") or "80",
                    "useInstancePort4Check": "true" if use_instance_port else "false",
                    "healthChecker": json.dumps(checker_json),
                    "metadata": _metadata_json(request.POST.get("metadata", "")),
                }
            )
        )
        with acting(request, viewer, "edit cluster"):
            ops().put_cluster(name, config)
    except NamingError as exc:
        context["error"] = exc.message
        return render_page(request, viewer, "console/cluster_form.html", context, status=exc.status)
    return HttpResponseRedirect(_detail_url(service, done=f"cluster {cluster} saved"))


# -- instances ----------------------------------------------------------------------------------


def _instance_of(request: HttpRequest, view: ServiceView) -> Instance:
    key = s.instance_key(
        Params(
            {
                "ip": _field(request, "ip"),
                "port": _field(request, "port"),
                "clusterName": _field(request, "cluster") or DEFAULT_CLUSTER,
            }
        )
    )
    ephemeral = _field(request, "ephemeral", "true").lower() != "false"
    inst = view.find(key, ephemeral)
    if inst is None:
        raise NotFound(f"no instance {key.ip}:{key.port} in cluster {key.cluster}")
    return inst


def _writable_instance(request: HttpRequest, viewer: Viewer) -> tuple[ServiceName, Instance]:
    """The instance a write names, after the viewer's write permission on its service."""
    service = _service_of(request)
    allow(viewer, Action.WRITE, service.namespace, service.group, service.name)
    return service, _instance_of(request, ops().require_service(service))


@console_view("POST")
def instance_enable(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """Offline / online: an offline (disabled) instance leaves the clients' lists but stays here."""
    service, inst = _writable_instance(request, viewer)
    enabled = _field(request, "enabled") == "true"
    with acting(request, viewer, "online instance" if enabled else "offline instance"):
        ops().patch_instance(
            PatchInstanceCommand(service, inst.key, None, None, enabled, None, None)
        )
    state = "online" if enabled else "offline"
    return HttpResponseRedirect(_detail_url(service, done=f"{inst.ip}:{inst.port} is {state}"))


def _instance_form(
    request: HttpRequest, viewer: Viewer, context: dict[str, Any], exc: NamingError | None = None
) -> HttpResponse:
    """The add/edit form, again with the submitted values and the message after an error."""
    if exc is None:
        return render_page(request, viewer, "console/instance_form.html", context)
    context["error"] = exc.message
    return render_page(request, viewer, "console/instance_form.html", context, status=exc.status)


@console_view("GET", "POST")
def instance_edit(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    service, inst = _writable_instance(request, viewer)
    context: dict[str, Any] = {
        "namespace": service.namespace,
        "service": service,
        "inst": inst,
        "query": _instance_query(service, inst),
        "mode": "edit",
    }
    if request.method == "GET":
        context["v"] = {
            "weight": str(inst.weight),
            "enabled": inst.enabled,
            "metadata": _metadata_text(inst.metadata),
        }
        return _instance_form(request, viewer, context)
    enabled = request.POST.get("enabled") == "on"
    context["v"] = {
        "weight": request.POST.get("weight", ""),
        "enabled": enabled,
        "metadata": request.POST.get("metadata", ""),
    }
    try:
        p = Params(
            {
                "weight": _field(request, "weight"),
                "metadata": _metadata_json(request.POST.get("metadata", "")),
            }
        )
        command = PatchInstanceCommand(
            service,
            inst.key,
            check_weight(p.number("weight")),
            None,
            enabled,
            parse_metadata(p.raw("metadata")),
            None,
        )
        with acting(request, viewer, "edit instance"):
            ops().patch_instance(command)
    except NamingError as exc:
        return _instance_form(request, viewer, context, exc)
    return HttpResponseRedirect(_detail_url(service, done=f"{inst.ip}:{inst.port} saved"))


@console_view("GET", "POST")
def instance_create(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """Adds a persistent instance (an ephemeral one would expire without a client beating)."""
    service = _service_of(request)
    allow(viewer, Action.WRITE, service.namespace, service.group, service.name)
    ops().require_service(service)
    context: dict[str, Any] = {
        "namespace": service.namespace,
        "service": service,
        "query": _service_query(service),
        "mode": "create",
    }
    if request.method == "GET":
        context["v"] = {"cluster": DEFAULT_CLUSTER, "weight": "1", "enabled": True}
        return _instance_form(request, viewer, context)
    enabled = request.POST.get("enabled") == "on"
    context["v"] = {
        **{k: request.POST.get(k, "") for k in ("ip", "port", "cluster", "weight", "metadata")},
        "enabled": enabled,
    }
    try:
        command = s.register_instance(
            Params(
                {
                    "serviceName": service.name,
                    "groupName": service.group,
                    "namespaceId": service.namespace,
                    "ip": _field(request, "ip"),
                    "port": _field(request, "port"),
                    "clusterName": _field(request, "cluster") or DEFAULT_CLUSTER,
                    "weight": _field(request, "weight") or "1",
                    "enabled": "true" if enabled else "false",
                    "metadata": _metadata_json(request.POST.get("metadata", "")),
                    "ephemeral": "false",
                }
            ),
            default_ephemeral=False,
        )
        with acting(request, viewer, "add instance"):
            ops().register_instance(command)
    except NamingError as exc:
        return _instance_form(request, viewer, context, exc)
    inst = command.instance
    return HttpResponseRedirect(_detail_url(service, done=f"{inst.ip}:{inst.port} added"))


@console_view("GET", "POST")
def instance_delete(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """Persistent instances only: an ephemeral one would re-register at its client's next beat."""
    service, inst = _writable_instance(request, viewer)
    if inst.ephemeral:
        raise InvalidParam(
            "ephemeral instances cannot be deleted here: their client re-registers them at its "
            "next beat (deregister from the client, or take the instance offline)"
        )
    if request.method == "GET":
        return confirm_page(
            request,
            viewer,
            service.namespace,
            f"Delete the persistent instance {inst.ip}:{inst.port} of cluster {inst.cluster}?",
            CONSOLE + "instance/delete",
            _instance_query(service, inst),
            _detail_url(service),
        )
    with acting(request, viewer, "delete instance"):
        ops().deregister_instance(InstanceRef(service, inst.key, False))
    return HttpResponseRedirect(_detail_url(service, done=f"{inst.ip}:{inst.port} deleted"))


# -- subscribers --------------------------------------------------------------------------------


@console_view("GET")
def subscribers(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """The clients subscribed (UDP push) to a service through this member."""
    namespace = namespace_of(request)
    name = request.GET.get("name", "").strip()
    group = request.GET.get("group", "").strip() or DEFAULT_GROUP
    context: dict[str, Any] = {
        "namespace": namespace,
        "switcher": _switcher(viewer, namespace),
        "switch_path": CONSOLE + "subscribers",
        "name": name,
        "group": group,
        "rows": [],
        "total": 0,
        "searched": bool(name),
    }
    if name:
        service = s.service_name(
            Params({"serviceName": name, "groupName": group, "namespaceId": namespace})
        )
        allow(viewer, Action.READ, namespace, service.group, service.name)
        found = current().push.subscribers(service)
        found.sort(key=lambda sub: (sub.key.ip, sub.key.port))
        page, size, pages = _pager(request, len(found))
        query = {"namespace": namespace, "name": name, "group": group, "size": str(size)}
        context.update(
            rows=[
                {
                    "address": f"{sub.key.ip}:{sub.key.port}",
                    "agent": sub.key.agent,
                    "app": sub.app,
                    "clusters": sub.key.clusters,
                }
                for sub in found[(page - 1) * size : page * size]
            ],
            total=len(found),
            page=page,
            pages=pages,
            size=size,
            sizes=PAGE_SIZES,
            prev_url=url(CONSOLE + "subscribers", {**query, "page": page - 1}) if page > 1 else "",
            next_url=url(CONSOLE + "subscribers", {**query, "page": page + 1})
            if page < pages
            else "",
        )
    else:
        allow(viewer, Action.READ, namespace)
    return render_page(request, viewer, "console/subscribers.html", context)
