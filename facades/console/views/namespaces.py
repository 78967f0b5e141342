"""The namespace page: list with service and instance counts, create (custom or generated id),
edit, delete with a confirmation and the core's guard while services remain.

Everyone sees the namespaces they may read; writes are for admins (Nacos's
``console/namespaces`` resource). Public cannot be edited or deleted. A namespace that exists
only because clients registered into it ("implicit") can be registered under its id, which
gives it a name.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from facades.console.web import (
    Viewer,
    acting,
    allow_console,
    confirm_page,
    console_view,
    ops,
    render_page,
    url,
    visible_namespaces,
)
from lib.errors import Forbidden, MissingParam, NamingError
from naming.domain import DEFAULT_NAMESPACE
from naming.operations import NamespaceKind

PAGE = "/nacos/console/namespaces"
RESOURCE = "namespaces"


def _may_write(viewer: Viewer) -> bool:
    try:
        allow_console(viewer, RESOURCE)
    except Forbidden:
        return False
    return True


def _id_of(request: HttpRequest) -> str:
    namespace_id = (request.POST.get("id") or request.GET.get("id") or "").strip()
    if not namespace_id:
        raise MissingParam("id")
    return namespace_id


@console_view("GET")
def namespaces(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    done = request.GET.get("done", "")[:300]
    return render_page(
        request,
        viewer,
        "console/namespaces.html",
        {
            "rows": visible_namespaces(viewer),
            "public": DEFAULT_NAMESPACE,
            "implicit": NamespaceKind.IMPLICIT,
            "can_write": _may_write(viewer),
            "notice": done,
        },
    )


def _form(
    request: HttpRequest,
    viewer: Viewer,
    mode: str,
    values: dict[str, str],
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    context: dict[str, Any] = {"mode": mode, "v": values, "error": error}
    return render_page(request, viewer, "console/namespace_form.html", context, status=status)


def _posted(request: HttpRequest) -> dict[str, str]:
    return {k: request.POST.get(k, "") for k in ("id", "name", "description")}


@console_view("GET", "POST")
def namespace_create(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    allow_console(viewer, RESOURCE)
    if request.method == "GET":
        # ?id= pre-fills an implicit namespace's id, to register it.
        return _form(request, viewer, "create", {"id": request.GET.get("id", "")[:128]})
    values = _posted(request)
    try:
        with acting(request, viewer, "create namespace"):
            info = ops().create_namespace(
                values["id"].strip(), values["name"], values["description"].strip()
            )
    except NamingError as exc:
        return _form(request, viewer, "create", values, exc.message, exc.status)
    return HttpResponseRedirect(url(PAGE, {"done": f"namespace {info.name} ({info.id}) created"}))


@console_view("GET", "POST")
def namespace_edit(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    allow_console(viewer, RESOURCE)
    namespace_id = _id_of(request)
    info = ops().get_namespace(namespace_id)
    if request.method == "GET":
        values = {"id": info.id, "name": info.name, "description": info.description}
        return _form(request, viewer, "edit", values)
    values = {**_posted(request), "id": info.id}
    try:
        with acting(request, viewer, "edit namespace"):
            ops().update_namespace(info.id, values["name"], values["description"].strip())
    except NamingError as exc:
        return _form(request, viewer, "edit", values, exc.message, exc.status)
    return HttpResponseRedirect(url(PAGE, {"done": f"namespace {info.id} saved"}))


@console_view("GET", "POST")
def namespace_delete(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    allow_console(viewer, RESOURCE)
    namespace_id = _id_of(request)
    info = ops().get_namespace(namespace_id)
    if request.method == "GET":
        question = f"Delete the namespace {info.name} (id {info.id})?"
        if info.service_count:
            question += (
                f" It still holds {info.service_count} service(s): the delete will be refused"
                " until they are deleted."
            )
        return confirm_page(
            request,
            viewer,
            None,
            question,
            "/nacos/console/namespace/delete",
            {"id": info.id},
            PAGE,
        )
    with acting(request, viewer, "delete namespace"):
        ops().delete_namespace(info.id)
    return HttpResponseRedirect(url(PAGE, {"done": f"namespace {info.name} ({info.id}) deleted"}))
