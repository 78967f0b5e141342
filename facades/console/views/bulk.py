"""Bulk actions on the instances selected on the service-detail page: offline, online, set or
remove metadata (nacos#8355, nacos#3917).

One plain POST form (CSRF, works without JavaScript). Offline and online are one core call per
instance; metadata is the core's batch operation (one write per ephemeral / persistent list).
All of it runs under the console's audit actor. When every instance succeeded the page is
redirected to with a summary; otherwise the detail page is rendered with the summary, the
errors and the selection kept.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.auth import Action
from facades.console import bulk
from facades.console.views.naming import _detail_context, _detail_url, _service_of
from facades.console.web import Viewer, acting, allow, console_view, ops, render_page
from lib.errors import InvalidParam, NamingError
from naming.commands import MetadataBatch, PatchInstanceCommand
from naming.domain import Instance, ServiceName


def _set_enabled(
    request: HttpRequest,
    viewer: Viewer,
    service: ServiceName,
    chosen: list[Instance],
    enabled: bool,
) -> tuple[int, list[str]]:
    done, errors = 0, []
    with acting(request, viewer, "bulk online" if enabled else "bulk offline"):
        for inst in chosen:
            try:
                ops().patch_instance(
                    PatchInstanceCommand(service, inst.key, None, None, enabled, None, None)
                )
                done += 1
            except NamingError as exc:
                errors.append(f"{inst.ip}:{inst.port} (cluster {inst.cluster}): {exc.message}")
    return done, errors


def _set_metadata(
    request: HttpRequest,
    viewer: Viewer,
    service: ServiceName,
    chosen: list[Instance],
    metadata: dict[str, str],
    remove: bool,
) -> tuple[int, list[str]]:
    errors: list[str] = []
    targets = []
    for inst in chosen:
        refused = None if remove else bulk.merge_too_large(inst, metadata)
        if refused:
            errors.append(refused)
        else:
            targets.append((inst.key, inst.ephemeral))
    if not targets:
        return 0, errors
    with acting(request, viewer, "bulk remove metadata" if remove else "bulk set metadata"):
        updated = ops().metadata_batch(
            MetadataBatch(service, "", tuple(targets), metadata), delete=remove
        )
    for key, _ephemeral in sorted(set(targets) - set(updated)):
        errors.append(f"{key.ip}:{key.port} (cluster {key.cluster}): not registered any more")
    return len(updated), errors


def _summary(action: str, done: int, remove: bool) -> str:
    n = bulk.counted(done)
    if action == bulk.METADATA:
        return f"metadata keys removed from {n}" if remove else f"metadata set on {n}"
    return f"{n} set {action}"


@console_view("POST")
def instances_bulk(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    service = _service_of(request)
    allow(viewer, Action.WRITE, service.namespace, service.group, service.name)
    view = ops().require_service(service)
    selected = request.POST.getlist("selected")
    all_clusters = request.POST.getlist("all_cluster")
    remove = request.POST.get("remove") == "on"
    raw_metadata = request.POST.get("metadata", "")
    kept: dict[str, Any] = {
        "selected": set(selected),
        "all_clusters": set(all_clusters),
        "bulk_metadata": raw_metadata,
        "bulk_remove": remove,
    }
    try:
        action = bulk.parse_action(request.POST.get("action", ""))
        targets = bulk.parse_targets(selected)
        if not targets and not all_clusters:
            raise InvalidParam("select at least one instance first")
        metadata = {}
        if action == bulk.METADATA:
            metadata = bulk.parse_metadata_lines(raw_metadata, remove)
    except NamingError as exc:
        context = {**_detail_context(viewer, view), **kept, "error": exc.message}
        return render_page(request, viewer, "console/service.html", context, status=exc.status)
    chosen, errors = bulk.resolve(view, targets, all_clusters)
    if action == bulk.METADATA:
        done, failed = _set_metadata(request, viewer, service, chosen, metadata, remove)
    else:
        done, failed = _set_enabled(request, viewer, service, chosen, action == bulk.ONLINE)
    errors += failed
    summary = _summary(action, done, remove)
    if not errors:
        return HttpResponseRedirect(_detail_url(service, done=summary))
    view = ops().require_service(service)
    context = {**_detail_context(viewer, view), **kept, "notice": summary, "bulk_errors": errors}
    return render_page(request, viewer, "console/service.html", context)
