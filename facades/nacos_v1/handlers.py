"""Nacos 1.x naming endpoints (``/nacos/v1/ns/...``): one handler per method, each with its own
gate and auth requirement (healthchecks ``hc/api/views.py``), joined per path by
:func:`~facades.nacos_v1.api.by_method`. A handler parses a command, calls one operation of the
core and renders the domain value it returns (``facades.nacos_v1.render``).

Which endpoints are secured follows Nacos's ``@Secured`` annotations (spec §0.6).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from accounts.auth import Action, Resource, can
from accounts.directory import service as accounts
from facades.nacos_v1 import params as s
from facades.nacos_v1 import render
from facades.nacos_v1.api import (
    Caller,
    Raw,
    authenticate,
    beat_resource,
    by_method,
    nacos_api,
    namespace_resource,
    operator_resource,
    require_global_admin,
    status_key_resource,
)
from facades.nacos_v1.clients import client_of
from facades.nacos_v1.context import current
from facades.nacos_v1.params import Params
from facades.nacos_v1.push import eligible
from lib.errors import InvalidParam, MissingParam, NamingError, Unavailable
from lib.http import JSON, Waiting, error_response, respond
from lib.watching import Held
from naming.domain import (
    DEFAULT_GROUP,
    CheckType,
    HealthChecker,
    Instance,
    ServiceName,
    namespace_or_default,
    to_bool,
)
from naming.operations import NamingOperations
from naming.registry import ServiceView

OK = "ok"
BEAT_OK = 10200
BEAT_NOT_FOUND = 20404


def _ops() -> NamingOperations:
    return current().operations


def _default_ephemeral() -> bool:
    return bool(current().registry.switches.defaultInstanceEphemeral)


# -- /instance ------------------------------------------------------------------------------


@nacos_api("POST", distro=True)
def register_instance(request: HttpRequest, params: Params, caller: Caller) -> str:
    _ops().register_instance(s.register_instance(params, _default_ephemeral()))
    return OK


@nacos_api("DELETE", distro=True)
def deregister_instance(request: HttpRequest, params: Params, caller: Caller) -> str:
    _ops().deregister_instance(s.instance_ref(params, _default_ephemeral()))
    return OK


@nacos_api("PUT", distro=True)
def update_instance(request: HttpRequest, params: Params, caller: Caller) -> str:
    """Strict update for Java ≥ 1.0 (and Node) clients; every other client's PUT registers
    (Nacos 1.4 ``InstanceController.update``: a quirk of this API, not of the core)."""
    cmd = s.register_instance(params, _default_ephemeral())
    if client_of(request).is_java_1x:
        _ops().update_instance(cmd)
    else:
        _ops().register_instance(cmd)
    return OK


@nacos_api("PATCH", distro=True)
def patch_instance(request: HttpRequest, params: Params, caller: Caller) -> str:
    _ops().patch_instance(s.patch_instance(params))
    return OK


@nacos_api("GET", distro=True)
def get_instance(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    service = s.service_name(params)
    inst = _ops().get_instance(service, s.instance_key(params, legacy_cluster=False))
    return render.instance_json(inst, service.grouped)


instance = by_method(
    POST=register_instance,
    DELETE=deregister_instance,
    PUT=update_instance,
    PATCH=patch_instance,
    GET=get_instance,
)


@nacos_api("GET")
def instance_list(request: HttpRequest, params: Params, caller: Caller) -> Raw | HttpResponse:
    query = s.list_instances(params, client_of(request), request.META.get("REMOTE_ADDR", ""))
    wait = wait_ms(params)
    if query.is_check:
        return Raw("{}")  # Nacos 1.4 quirk: the computed result is thrown away
    node = current()
    ops = node.operations
    switches = ops.switches
    cache_millis = switches.defaultCacheMillis
    if (
        query.udp_port > 0
        and query.remote_addr
        and switches.pushEnabled
        and eligible(query.client, switches)
    ):
        push = node.push
        push.push_cache_s = switches.defaultPushCacheMillis / 1000.0
        push.subscribe(
            query.service,
            query.clusters,
            query.cluster_names,
            query.remote_addr,
            query.udp_port,
            query.client,
            query.app,
        )
        cache_millis = switches.defaultPushCacheMillis
    # Read before the view only when asked to wait: a change after it wakes the wait.
    after = node.feed.last_index if wait else 0
    view = ops.find_service(query.service)
    tag = entity_tag(view)

    def listed(view: ServiceView | None, tag: str) -> HttpResponse:
        response = respond(
            render.render_instance_list(
                view,
                query.service.grouped,
                query.clusters,
                query.cluster_names,
                query.healthy_only,
                query.client.is_java_1x,
                query.env,
                cache_millis,
                ops.wall_ms(),
            ),
            200,
            JSON,
        )
        response["ETag"] = tag
        return response

    if not_modified(request, tag):
        if wait:
            return held_until_changed(request, query.service, after, wait, listed)
        return unchanged(tag)
    return listed(view, tag)


# -- conditional fetch (issue #13) -------------------------------------------------------------
# A list's entity tag is the service's checksum: the same for the same instances and settings on
# every member (a client may ask any of them), and weak, as the body also carries lastRefTime.
# A client that sends it back in If-None-Match is answered 304 with no body while nothing
# changed.

_NO_SERVICE_TAG = 'W/"none"'


def entity_tag(view: ServiceView | None) -> str:
    return _NO_SERVICE_TAG if view is None else f'W/"{view.checksum}"'


def not_modified(request: HttpRequest, tag: str) -> bool:
    wanted = request.META.get("HTTP_IF_NONE_MATCH")
    if not wanted:
        return False
    bare = tag[2:]
    for candidate in str(wanted).split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == bare:
            return True
    return False


def unchanged(tag: str) -> HttpResponse:
    response = respond(b"", 304)
    response["ETag"] = tag
    return response


# -- held fetch (long-poll) --------------------------------------------------------------------
# With ``wait=<ms>`` and a matching If-None-Match, the 304 waits: the node's server holds the
# request (no thread) until the service changes (then the new list, 200) or the wait ends (304).
# Without a matching tag ``wait`` changes nothing: the answer is already new to the client.

MAX_WAIT_MS = 60_000


def wait_ms(params: Params) -> int:
    """``wait``: whole milliseconds, 0 to 60,000 (0, or absent: answer at once)."""
    raw = params.raw("wait")
    if raw is None:
        return 0
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5) or int(raw) > MAX_WAIT_MS:
        raise InvalidParam(f"wait must be an integer from 0 to {MAX_WAIT_MS} (milliseconds)")
    return int(raw)


def held_until_changed(
    request: HttpRequest,
    name: ServiceName,
    after: int,
    wait: int,
    render_changed: Callable[[ServiceView | None, str], HttpResponse],
) -> Waiting:
    """Judged again on the server's loop after each change of ``name`` and at the end of the
    wait: the client's tag still current → keep waiting (304 at the end), else the new answer.
    Authentication and authorization were done once, before the wait."""

    def again(final: bool) -> HttpResponse | None:
        view = _ops().find_service(name)
        tag = entity_tag(view)
        if not_modified(request, tag):
            return unchanged(tag) if final else None
        try:
            return render_changed(view, tag)
        except NamingError as exc:  # e.g. the cluster asked for went away meanwhile
            return error_response(exc, request)

    return Waiting(Held(name, after, wait / 1000.0, again))


# Rendered beat answers by (interval, found, light beat): every client of a fleet gets one of
# a handful, so the hottest endpoint renders no JSON. Bounded: an interval comes from an
# instance's metadata, and past the bound an answer is rendered each time.
_BEAT_ANSWERS: dict[tuple[int, bool, bool], Raw] = {}
_MAX_BEAT_ANSWERS = 1024


def _beat_answer(interval_ms: int, found: bool, light_beat: bool) -> Raw:
    key = (interval_ms, found, light_beat)
    answer = _BEAT_ANSWERS.get(key)
    if answer is None:
        body: dict[str, Any] = {"clientBeatInterval": interval_ms}
        if found:
            body.update(code=BEAT_OK, lightBeatEnabled=light_beat)
        else:
            body.update(code=BEAT_NOT_FOUND)
        answer = Raw(json.dumps(body, separators=(",", ":")))
        if len(_BEAT_ANSWERS) < _MAX_BEAT_ANSWERS:
            _BEAT_ANSWERS[key] = answer
    return answer


@nacos_api("PUT", "POST", distro=True, resource=beat_resource)
def instance_beat(request: HttpRequest, params: Params, caller: Caller) -> Raw:
    result = _ops().beat(s.beat(params))
    return _beat_answer(result.interval_ms, result.found, bool(result.light_beat_enabled))


# Nacos leaves this unsecured for its peers; ours never call it, and it lists every instance.
# Whatever the method, it only reads.
@nacos_api("GET", "POST", "PUT", "DELETE", action=Action.READ, resource=status_key_resource)
def instance_statuses(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    view = _ops().statuses(s.status_key(params))
    return {"ips": [f"{i.ip}:{i.port}_{str(i.healthy).lower()}" for i in view.instances()]}


def _metadata_batch(request: HttpRequest, params: Params, delete: bool) -> dict[str, Any]:
    updated = _ops().metadata_batch(s.metadata_batch(params), delete=delete)
    return {
        "updated": [
            f"{k.datum_key()}:{'ephemeral' if ephemeral else 'persist'}" for k, ephemeral in updated
        ]
    }


@nacos_api("PUT", distro=True)
def update_metadata_batch(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    return _metadata_batch(request, params, delete=False)


@nacos_api("DELETE", distro=True)
def delete_metadata_batch(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    return _metadata_batch(request, params, delete=True)


instance_metadata_batch = by_method(PUT=update_metadata_batch, DELETE=delete_metadata_batch)


# -- /service -------------------------------------------------------------------------------


@nacos_api("POST")
def create_service(request: HttpRequest, params: Params, caller: Caller) -> str:
    _ops().create_service(s.service_spec(params, threshold_required=False))
    return OK


@nacos_api("PUT")
def update_service(request: HttpRequest, params: Params, caller: Caller) -> str:
    _ops().update_service(s.service_spec(params, threshold_required=True))
    return OK


@nacos_api("DELETE")
def delete_service(request: HttpRequest, params: Params, caller: Caller) -> str:
    _ops().delete_service(s.service_name(params))
    return OK


@nacos_api("GET")
def get_service(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    return render.service_json(_ops().get_service(s.service_name(params)))


service = by_method(POST=create_service, DELETE=delete_service, PUT=update_service, GET=get_service)


# -- /service/leader (issue #13): naming.leaders -------------------------------------------------


@nacos_api("GET")
def get_leader(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    name = s.service_name(params)
    return render.leader_json(_ops().leader(name, s.leader_cluster(params)), name.grouped)


@nacos_api("PUT")
def pin_leader(request: HttpRequest, params: Params, caller: Caller) -> str:
    _ops().pin_leader(s.pin_leader(params))
    return OK


@nacos_api("DELETE")
def unpin_leader(request: HttpRequest, params: Params, caller: Caller) -> str:
    _ops().unpin_leader(s.unpin_leader(params))
    return OK


service_leader = by_method(GET=get_leader, PUT=pin_leader, DELETE=unpin_leader)


@nacos_api("GET", resource=namespace_resource)
def service_list(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    page = s.page(params)
    group = params.optional("groupName", DEFAULT_GROUP)
    views = _ops().list_services(
        namespace_or_default(params.raw("namespaceId")), group, params.raw("selector")
    )
    names = [v.name.grouped if group == "*" else v.name.name for v in views]
    return {"count": len(names), "doms": page.slice(names)}


def _names_resource(params: Params) -> Resource | None:
    return None if params.raw("namespaceId") is None else namespace_resource(params)


@nacos_api("GET", "POST", "PUT", action=Action.READ, resource=_names_resource)
def service_names(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    """A blank namespace spans every namespace: the answer then holds only the namespaces
    whose service list the caller may read (``<ns>:*:naming/*``), the rest left out rather
    than the whole call refused (Nacos refuses unless the caller may read the public list)."""
    raw_ns = params.raw("namespaceId")
    namespace = namespace_or_default(raw_ns) if raw_ns else ""  # blank: every namespace
    names = _ops().service_names(namespace, params.optional("expr"))
    if not raw_ns:
        names = {
            ns: found
            for ns, found in names.items()
            if can(caller, Action.READ, Resource.naming(ns))
        }
    return {"services": names, "count": len(names)}


@nacos_api("GET")
def service_subscribers(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    name = s.service_name(params)
    page = s.page(params, default_size=1000)
    subscribers = [
        {
            "addrStr": f"{sub.key.ip}:{sub.key.port}",
            "agent": sub.key.agent,
            "app": sub.app,
            "ip": sub.key.ip,
            "port": sub.key.port,
            "namespaceId": name.namespace,
            "serviceName": name.grouped,
            "cluster": sub.key.clusters,
        }
        for sub in current().push.subscribers(name)
    ]
    return {"subscribers": page.slice(subscribers), "count": len(subscribers)}


# Unsecured in Nacos; it tells whether a service exists, so it needs READ whatever the method.
@nacos_api("PUT", "POST", action=Action.READ)
def service_checksum(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    name = s.service_name(params)
    view = _ops().require_service(name, f"serviceName not found: {name.grouped}")
    return {"checksum": view.checksum}


# -- /catalog -------------------------------------------------------------------------------


@nacos_api("GET")
def catalog_service(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    return render.catalog_service_json(_ops().require_service(s.service_name(params)))


@nacos_api("GET", "POST", "PUT", "DELETE", action=Action.READ)
def catalog_instances(request: HttpRequest, params: Params, caller: Caller) -> HttpResponse:
    name = s.service_name(params)
    cluster = params.required("clusterName")
    page = s.page(params)
    wait = wait_ms(params)
    ops = _ops()
    after = current().feed.last_index if wait else 0
    members = ops.catalog_instances(name, cluster)
    tag = entity_tag(ops.find_service(name))

    def listed(found: tuple[Instance, ...], tag: str) -> HttpResponse:
        body = {
            "list": [render.full_instance_json(i, name.grouped) for i in page.slice(found)],
            "count": len(found),
        }
        response = respond(json.dumps(body, separators=(",", ":")), 200, JSON)
        response["ETag"] = tag
        return response

    if request.method == "GET" and not_modified(request, tag):
        if wait:
            return held_until_changed(
                request,
                name,
                after,
                wait,
                lambda view, tag: listed(ops.catalog_instances(name, cluster), tag),
            )
        return unchanged(tag)
    return listed(members, tag)


@nacos_api("GET", resource=namespace_resource)
def catalog_services(request: HttpRequest, params: Params, caller: Caller) -> Any:
    namespace = namespace_or_default(params.raw("namespaceId"))
    page = s.page(params, default_size=10)
    views = _ops().catalog_services(
        namespace,
        params.optional("serviceNameParam"),
        params.optional("groupNameParam"),
        params.optional("instance"),
        params.strict_boolean("hasIpCount", False),
    )
    if params.strict_boolean("withInstances", False):
        return [render.catalog_service_with_instances(v) for v in views]
    return {"serviceList": [render.catalog_row(v) for v in page.slice(views)], "count": len(views)}


@nacos_api("GET")  # unsecured in Nacos; it reveals services and their clusters
def catalog_rt_service(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    view = _ops().require_service(s.service_name(params))
    return {
        "clusters": [
            {"name": c, "checkRTBest": 0, "checkRTWorst": 0, "checkRTNormalized": 0}
            for c in view.clusters
        ]
    }


# -- /cluster, /health ------------------------------------------------------------------------


@nacos_api("PUT")
def cluster(request: HttpRequest, params: Params, caller: Caller) -> str:
    name, config = s.cluster_config(params)
    _ops().put_cluster(name, config)
    return OK


@nacos_api("PUT", "POST", distro=True)
def health(request: HttpRequest, params: Params, caller: Caller) -> str:
    raw = params.raw("healthy") or params.raw("valid")
    if raw is None:
        raise MissingParam("healthy")
    _ops().set_health(s.service_name(params), s.instance_key(params), to_bool(raw))
    return OK


@nacos_api("GET", "POST", "PUT", "DELETE", secured=False, gated=False)
def health_server(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    node = current()
    return {
        "msg": f"Hello! I am Nacos-Naming and healthy! total services: raft "
        f"{node.registry.service_count}, local port:{node.http_port}"
    }


@nacos_api("GET", secured=False)
def health_checkers(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    return {t.value: HealthChecker(type=t).to_json() for t in CheckType}


# -- /operator ------------------------------------------------------------------------------


@nacos_api("GET", secured=False)
def get_switches(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    return current().registry.switches.to_json()


@nacos_api("PUT", action=Action.ADMIN, resource=operator_resource("operator/switches"))
def put_switches(request: HttpRequest, params: Params, caller: Caller) -> str:
    current().operations.set_switch(params.required("entry"), params.required("value"))
    return OK


# GET is not secured in Nacos; PUT is (and needs a global admin: console.md §2.3).
operator_switches = by_method(GET=get_switches, PUT=put_switches)


@nacos_api("GET", secured=False, gated=False)
def metrics(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    return current().report.metrics()


@nacos_api("GET", secured=False, gated=False)
def servers(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    members = current().report.members()
    if params.strict_boolean("healthy", False):
        members = [m for m in members if m["state"] == "UP"]
    return {"servers": members}


@nacos_api("GET", secured=False, gated=False)
def cluster_state(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    node = current()
    return {
        "raft": node.report.raft(),
        "member": node.report.member(),
        "members": node.report.members(),
        "leader": node.report.leader_http_address(),
    }


@nacos_api("GET", secured=False)
def distro_server(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    name = s.service_name(params)
    _ops().require_service(name)
    node = current()
    owner = node.cluster.owner(name.grouped) if node.cluster is not None else None
    return {"responsibleServer": owner or node.address}


@nacos_api("GET", "POST", "PUT", secured=False)
def push_state(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    """The counters stay public (as in Nacos); the failed subscribers' addresses (``detail``)
    need credentials, and zeroing the counters for everyone needs a global admin."""
    node = current()
    reset = params.strict_boolean("reset", False)
    detail = params.strict_boolean("detail", False)
    if reset:
        require_global_admin(request, params, "operator/push/state")
    elif detail:
        authenticate(node, request, params)
    # One reading, zeroed in the same step: the push threads keep counting meanwhile.
    counts = node.push.stats.read(reset=reset)
    result: dict[str, Any] = {
        "succeed": counts.succeed,
        "total": counts.total,
        "ratio": round(counts.succeed / counts.total, 4) if counts.total else 0.0,
        "reset": reset,
    }
    if detail:
        result["data"] = list(counts.failed_packets)
    return result


@nacos_api("GET", secured=False, gated=False)
def raft_leader(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    node = current()
    status = node.report.raft()
    leader = node.report.leader_http_address()
    peer = (
        None
        if leader is None
        else json.dumps(
            {
                "ip": leader,
                "raftAddress": status.get("leader"),
                "term": status.get("term"),
                "state": "LEADER",
            }
        )
    )
    return {"leader": peer}


@nacos_api("GET", secured=False, gated=False)
def cluster_nodes(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    node = current()
    keyword = params.optional("keyword")
    members = [m for m in node.report.members() if keyword in m["address"]]
    for member in members:
        if member["address"] == node.address:
            member["raft"] = node.report.raft()
    return {"code": 200, "message": None, "data": members}


@nacos_api("GET", action=Action.ADMIN, resource=operator_resource("core/loader"), gated=False)
def loader_current(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    """The Nacos 2.x clients connected to this member, by connection id (Nacos
    ``ServerLoaderController``): an admin's view, as it names client addresses."""
    return {row["connectionId"]: row for row in current().report.connections()}


# -- /auth ----------------------------------------------------------------------------------


@nacos_api("POST", secured=False, gated=False)
def login(request: HttpRequest, params: Params, caller: Caller) -> HttpResponse:
    node = current()
    username = params.required("username")
    password = params.required("password")
    if node.auth is None:
        # json.dumps, not string formatting: a username with a quote or a backslash must still
        # give valid JSON. Compact separators keep the bytes Nacos answers.
        body = json.dumps(
            {"accessToken": "", "tokenTtl": 18000, "globalAdmin": True, "username": username},
            separators=(",", ":"),
        )
        return respond(body, 200, JSON)
    if node.effective_status() == "STARTING" and not accounts().directory().usernames():
        # A restarted member learns the replicated accounts once it reaches the leader: until
        # then every user is unknown here, which is not the caller's fault (and must not count
        # as a failed login against its address).
        raise Unavailable(
            "server is STARTING now, accounts not loaded yet, please try again later!"
        )
    token, identity = node.auth.login(username, password, request.META.get("REMOTE_ADDR", ""))
    payload = {
        "accessToken": token,
        "tokenTtl": node.auth.ttl_s,
        "globalAdmin": identity.global_admin,
        "username": identity.username,
    }
    response = respond(json.dumps(payload), 200, JSON)
    response["Authorization"] = f"Bearer {token}"
    return response


@nacos_api("POST", secured=False, gated=False)
def logout(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    """Not in Nacos 1.x. Revokes every token of the caller (all sessions, like a password
    change): tokens are stateless, the user's token generation is all there is to bump."""
    node = current()
    identity = authenticate(node, request, params)
    if identity is not None and node.auth is not None:
        node.auth.logout(identity.username)
    return {"code": 200, "message": "logout ok!", "data": None}


def empty(request: HttpRequest) -> HttpResponse:
    """The benchmark's floor: the cheapest answer this server can give."""
    return respond(b"ok")
