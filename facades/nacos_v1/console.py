"""The Nacos console's JSON endpoints under ``/nacos/v1/console``: namespaces, server state and
the health probes (console.md §1.2, §1.3, §1.11), with Nacos's shapes.

* ``GET namespaces``: the RestResult list ``{"code":200,"message":null,"data":[...]}``, each
  namespace with Nacos's fields (public's id rendered ``""``, ``type`` 0; the others 2) and ours:
  ``serviceCount``, ``instanceCount``, ``healthyInstanceCount`` and ``implicit`` (a namespace
  that exists only because a client registered into it). ``show=all&namespaceId=`` gives one
  bare object, ``checkNamespaceIdExist=true&customNamespaceId=`` the bare ``true``/``false``.
* ``POST``/``PUT``/``DELETE namespaces``: the bare ``true``.
* ``GET server/state`` and ``health/liveness|readiness``: public and ungated, as in Nacos (a
  load balancer and the login page read them before anyone has a token).

Who may do what. Nacos leaves the namespace GETs open to anonymous callers, which is reported
again and again as a leak (nacos#12170, #14040, #15158); here they need a login when auth is on,
and the list holds only the namespaces the caller may read (``accounts.auth.readable_namespaces``,
a group-scoped rule is enough). The detail of a namespace the caller may not read is refused
with 403 before its existence is looked up, so the answer does not tell whether it exists.
``checkNamespaceIdExist`` and the writes are ``console/namespaces``: admin only (§2.3).

Errors. Nacos answers a refused create with the bare ``false`` (HTTP 200), so the caller cannot
tell a malformed id from a duplicate, and a script that checks the status code believes it
worked. Every refusal here is a 4xx in the v1 edge's error shape (``caused: <message>;``) that
names the problem: a malformed or oversized id, name or description → 400, a duplicate id → 400
``namespaceId already exist`` (Nacos's text), an unknown id → 404 ``namespaceId [ x ] not exist``
(2.x), deleting a namespace that still holds services → 400 with the count (Nacos deletes it and
orphans them, nacos#8602). A successful write still answers the bare ``true`` Nacos's UI expects.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from accounts.auth import Action, Resource, authorize, installed, readable_namespaces
from accounts.directory import service as accounts
from facades.nacos_v1.api import Caller, by_method, nacos_api
from facades.nacos_v1.context import current
from facades.nacos_v1.params import Params
from lib.errors import Forbidden
from lib.http import respond
from naming.domain import namespace_or_default
from naming.operations import NamespaceInfo, NamespaceKind

QUOTA = 200  # Nacos's constant: a quota of config items, which this server does not hold
NAMESPACE_TYPES = {NamespaceKind.PUBLIC: 0, NamespaceKind.CUSTOM: 2, NamespaceKind.IMPLICIT: 2}
CONSOLE_NAMESPACES = Resource.console("namespaces")


def render_namespace(info: NamespaceInfo) -> dict[str, Any]:
    return {
        "namespace": "" if info.kind == NamespaceKind.PUBLIC else info.id,
        "namespaceShowName": info.name,
        "namespaceDesc": info.description,
        "quota": QUOTA,
        "configCount": 0,
        "type": NAMESPACE_TYPES[info.kind],
        "serviceCount": info.service_count,
        "instanceCount": info.instance_count,
        "healthyInstanceCount": info.healthy_instance_count,
        "implicit": info.kind == NamespaceKind.IMPLICIT,
    }


def _handler_decides(params: Params) -> None:
    """The namespace GETs: authenticated by the decorator, filtered or refused below."""
    return None


def _console_namespaces(params: Params) -> Resource:
    return CONSOLE_NAMESPACES


@nacos_api("GET", resource=_handler_decides)
def get_namespaces(request: HttpRequest, params: Params, caller: Caller) -> Any:
    ops = current().operations
    if params.raw("show") == "all":
        namespace_id = namespace_or_default(params.raw("namespaceId"))
        if not readable_namespaces(caller, [namespace_id]):
            raise Forbidden("authorization failed!")
        return render_namespace(ops.get_namespace(namespace_id))
    if params.strict_boolean("checkNamespaceIdExist", False):
        authorize(caller, Action.READ, CONSOLE_NAMESPACES)
        custom = params.raw("customNamespaceId")
        return custom is not None and ops.namespace_exists(namespace_or_default(custom))
    found = ops.namespaces()
    visible = set(readable_namespaces(caller, [n.id for n in found]))
    return {
        "code": 200,
        "message": None,
        "data": [render_namespace(n) for n in found if n.id in visible],
    }


@nacos_api("POST", resource=_console_namespaces)
def create_namespace(request: HttpRequest, params: Params, caller: Caller) -> bool:
    current().operations.create_namespace(
        params.optional("customNamespaceId"),
        params.optional("namespaceName"),
        params.optional("namespaceDesc"),
    )
    return True


@nacos_api("PUT", resource=_console_namespaces)
def update_namespace(request: HttpRequest, params: Params, caller: Caller) -> bool:
    current().operations.update_namespace(
        namespace_or_default(params.required("namespace")),
        params.optional("namespaceShowName"),
        params.optional("namespaceDesc"),
    )
    return True


@nacos_api("DELETE", resource=_console_namespaces)
def delete_namespace(request: HttpRequest, params: Params, caller: Caller) -> bool:
    current().operations.delete_namespace(namespace_or_default(params.required("namespaceId")))
    return True


namespaces = by_method(
    GET=get_namespaces, POST=create_namespace, PUT=update_namespace, DELETE=delete_namespace
)


# -- server state and health ----------------------------------------------------------------


def _flag(value: bool) -> str:
    return "true" if value else "false"


@nacos_api("GET", secured=False, gated=False)
def server_state(request: HttpRequest, params: Params, caller: Caller) -> dict[str, str]:
    """Nacos 2.x's flat map of module states, every value a string (Java's ``toString``), with
    1.4's ``standalone_mode`` kept for 1.x consoles. ``auth_admin_request`` tells the console
    to offer the first-admin form (``POST /nacos/v1/auth/users/admin``)."""
    node = current()
    mode = "standalone" if node.cluster is None else "cluster"
    auth_on = installed() is not None
    no_admin = auth_on and not accounts().directory().has_admin()
    return {
        "startup_mode": mode,
        "standalone_mode": mode,
        "function_mode": "naming",
        "version": str(node.report.member()["extendInfo"]["version"]),
        "server_port": str(node.http_port),
        "auth_enabled": _flag(auth_on),
        "login_page_enabled": _flag(auth_on),
        "auth_system_type": "nacos",
        "auth_admin_request": _flag(no_admin),
        "console_ui_enabled": "true",
    }


@nacos_api("GET", secured=False, gated=False)
def liveness(request: HttpRequest, params: Params, caller: Caller) -> str:
    return "OK"


@nacos_api("GET", secured=False, gated=False)
def readiness(request: HttpRequest, params: Params, caller: Caller) -> HttpResponse | str:
    if current().effective_status() == "UP":
        return "OK"
    return respond("Naming is not in readiness", 500)
