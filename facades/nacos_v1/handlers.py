"""Nacos 1.x naming endpoints (``/nacos/v1/ns/...``): parse a command, call one operation.

Which endpoints are secured follows Nacos's ``@Secured`` annotations (spec §0.6).
"""

from __future__ import annotations

import json
import os
import resource
import time
from typing import Any

from django.http import HttpRequest, HttpResponse

from facades.nacos_v1 import params as s
from facades.nacos_v1.api import JSON, Raw, authenticate, nacos_api, require_global_admin, respond
from facades.nacos_v1.params import Params
from lib.errors import MissingParam
from naming.domain import DEFAULT_GROUP, CheckType, HealthChecker, namespace_or_default, to_bool
from node import runtime
from node.runtime import VERSION
from raft import guard as raft_guard
from server import serving

OK = "ok"


def _ops() -> Any:
    return runtime.current().operations


def _client(request: HttpRequest) -> s.ClientInfo:
    agent = request.headers.get("User-Agent") or request.headers.get("Client-Version") or ""
    return s.ClientInfo.parse(agent)


def _default_ephemeral() -> bool:
    return bool(runtime.current().registry.switches.defaultInstanceEphemeral)


# -- /instance ------------------------------------------------------------------------------


@nacos_api("POST", "DELETE", "PUT", "PATCH", "GET", distro=True)
def instance(request: HttpRequest, params: Params) -> Any:
    ops = _ops()
    if request.method == "POST":
        ops.register_instance(s.register_instance(params, _default_ephemeral()))
        return OK
    if request.method == "DELETE":
        ops.deregister_instance(s.instance_ref(params, _default_ephemeral()))
        return OK
    if request.method == "PUT":
        ops.update_instance(s.register_instance(params, _default_ephemeral()), _client(request))
        return OK
    if request.method == "PATCH":
        ops.patch_instance(s.patch_instance(params))
        return OK
    key = s.instance_key(params, legacy_cluster=False)
    return ops.get_instance(s.service_name(params), key)


@nacos_api("GET")
def instance_list(request: HttpRequest, params: Params) -> Raw:
    remote = request.META.get("REMOTE_ADDR", "")
    return Raw(_ops().list_instances(s.list_instances(params, _client(request), remote)))


@nacos_api("PUT", "POST", distro=True)
def instance_beat(request: HttpRequest, params: Params) -> dict[str, Any]:
    return _ops().beat(s.beat(params))  # type: ignore[no-any-return]


# Nacos leaves this unsecured for its peers; ours never call it, and it lists every instance.
@nacos_api("GET", "POST", "PUT", "DELETE")
def instance_statuses(request: HttpRequest, params: Params) -> dict[str, Any]:
    return _ops().statuses(s.status_key(params))  # type: ignore[no-any-return]


@nacos_api("PUT", "DELETE", distro=True)
def instance_metadata_batch(request: HttpRequest, params: Params) -> dict[str, Any]:
    cmd = s.metadata_batch(params)
    return _ops().metadata_batch(cmd, delete=request.method == "DELETE")  # type: ignore[no-any-return]


# -- /service -------------------------------------------------------------------------------


@nacos_api("POST", "DELETE", "PUT", "GET")
def service(request: HttpRequest, params: Params) -> Any:
    ops = _ops()
    if request.method == "POST":
        ops.create_service(s.service_spec(params, threshold_required=False))
        return OK
    if request.method == "PUT":
        ops.update_service(s.service_spec(params, threshold_required=True))
        return OK
    name = s.service_name(params)
    if request.method == "DELETE":
        ops.delete_service(name)
        return OK
    return ops.get_service(name)


@nacos_api("GET")
def service_list(request: HttpRequest, params: Params) -> dict[str, Any]:
    page = s.page(params)
    return _ops().list_services(  # type: ignore[no-any-return]
        namespace_or_default(params.raw("namespaceId")),
        params.optional("groupName", DEFAULT_GROUP),
        page,
        params.raw("selector"),
    )


@nacos_api("GET", "POST", "PUT")
def service_names(request: HttpRequest, params: Params) -> dict[str, Any]:
    raw_ns = params.raw("namespaceId")
    namespace = namespace_or_default(raw_ns) if raw_ns else ""  # blank: every namespace
    return _ops().service_names(namespace, params.optional("expr"))  # type: ignore[no-any-return]


@nacos_api("GET")
def service_subscribers(request: HttpRequest, params: Params) -> dict[str, Any]:
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
        for sub in runtime.current().push.subscribers(name)
    ]
    return {"subscribers": page.slice(subscribers), "count": len(subscribers)}


@nacos_api("PUT", "POST")  # unsecured in Nacos; it tells whether a service exists
def service_checksum(request: HttpRequest, params: Params) -> dict[str, Any]:
    name = s.service_name(params)
    view = _ops()._require_view(name, f"serviceName not found: {name.grouped}")
    return {"checksum": view.checksum}


# -- /catalog -------------------------------------------------------------------------------


@nacos_api("GET")
def catalog_service(request: HttpRequest, params: Params) -> dict[str, Any]:
    return _ops().catalog_service(s.service_name(params))  # type: ignore[no-any-return]


@nacos_api("GET", "POST", "PUT", "DELETE")
def catalog_instances(request: HttpRequest, params: Params) -> dict[str, Any]:
    name = s.service_name(params)
    cluster = params.required("clusterName")
    return _ops().catalog_instances(name, cluster, s.page(params))  # type: ignore[no-any-return]


@nacos_api("GET")
def catalog_services(request: HttpRequest, params: Params) -> Any:
    return _ops().catalog_services(
        namespace_or_default(params.raw("namespaceId")),
        s.page(params, default_size=10),
        params.optional("serviceNameParam"),
        params.optional("groupNameParam"),
        params.optional("instance"),
        params.strict_boolean("hasIpCount", False),
        params.strict_boolean("withInstances", False),
    )


@nacos_api("GET")  # unsecured in Nacos; it reveals services and their clusters
def catalog_rt_service(request: HttpRequest, params: Params) -> dict[str, Any]:
    name = s.service_name(params)
    view = _ops()._require_view(name)
    return {
        "clusters": [
            {"name": c, "checkRTBest": 0, "checkRTWorst": 0, "checkRTNormalized": 0}
            for c in view.clusters
        ]
    }


# -- /cluster, /health ------------------------------------------------------------------------


@nacos_api("PUT")
def cluster(request: HttpRequest, params: Params) -> str:
    name, config = s.cluster_config(params)
    _ops().put_cluster(name, config)
    return OK


@nacos_api("PUT", "POST", distro=True)
def health(request: HttpRequest, params: Params) -> str:
    raw = params.raw("healthy") or params.raw("valid")
    if raw is None:
        raise MissingParam("healthy")
    _ops().set_health(s.service_name(params), s.instance_key(params), to_bool(raw))
    return OK


@nacos_api("GET", "POST", "PUT", "DELETE", secured=False, gated=False)
def health_server(request: HttpRequest, params: Params) -> dict[str, Any]:
    node = runtime.current()
    return {
        "msg": f"Hello! I am Nacos-Naming and healthy! total services: raft "
        f"{node.registry.service_count}, local port:{node.config.port}"
    }


@nacos_api("GET", secured=False)
def health_checkers(request: HttpRequest, params: Params) -> dict[str, Any]:
    return {t.value: HealthChecker(type=t).to_json() for t in CheckType}


# -- /operator ------------------------------------------------------------------------------


@nacos_api("GET", secured=False)
def _get_switches(request: HttpRequest, params: Params) -> dict[str, Any]:
    return runtime.current().registry.switches.to_json()


@nacos_api("PUT")
def _put_switches(request: HttpRequest, params: Params) -> str:
    require_global_admin(request, params)
    runtime.current().operations.set_switch(params.required("entry"), params.required("value"))
    return OK


def operator_switches(request: HttpRequest) -> HttpResponse:
    """GET is not secured in Nacos; PUT is. Other methods get the 501 of the GET view."""
    view = _put_switches if request.method == "PUT" else _get_switches
    return view(request)  # type: ignore[no-any-return]


@nacos_api("GET", secured=False, gated=False)
def metrics(request: HttpRequest, params: Params) -> dict[str, Any]:
    node = runtime.current()
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    notifier = node.notifier.stats
    views = node.registry.views()
    owned = [v for v in views if node.is_responsible(v.name)]
    return {
        "status": node.effective_status(),
        "serviceCount": node.registry.service_count,
        "instanceCount": node.registry.instance_count,
        "raftNotifyTaskCount": node.notifier.pending(),
        "responsibleServiceCount": len(owned),
        "responsibleInstanceCount": sum(v.instance_count for v in owned),
        "cpu": round(min(1.0, load / cores), 4),
        "load": round(load, 4),
        "mem": rss_kb * 1024,
        "beatCount": node.operations.beat_count,
        "raftTransport": raft_guard.stats(),
        "notifier": {
            "notified": notifier.notified,
            "processed": notifier.processed,
            "batches": notifier.batches,
            "listeners": [
                {
                    "name": st.name,
                    "calls": st.calls,
                    "failures": st.failures,
                    "lastError": st.last_error,
                }
                for st in notifier.listeners
            ],
        },
        "distro": dict(node.cluster.status()) if node.cluster is not None else None,
        "http": serving.status(),
        "auth": node.auth.stats() if node.auth is not None else None,
        "health": {
            "sweeps": node.health.stats.sweeps,
            "pausesDetected": node.health.stats.pauses,
            "ownershipChanges": node.health.stats.ownership_changes,
            "regainedServices": node.health.stats.regained_services,
            "expiredUnhealthy": node.health.stats.expired_unhealthy,
            "expiredRemoved": node.health.stats.expired_removed,
            "cleanedServices": node.health.stats.cleaned_services,
            "checks": node.health.stats.checks,
            "checkVerdicts": node.health.stats.check_verdicts,
            "errors": node.health.stats.errors,
            "lastError": node.health.stats.last_error,
        },
    }


def member_json(node: runtime.NodeRuntime, address: str | None = None) -> dict[str, Any]:
    """Nacos Member JSON, plus when it last reported and whether its Distro data is loaded.

    Other members' states come from the membership reports (UP / SUSPICIOUS / DOWN /
    STARTING); ``raftConnected`` says whether our Raft link to it is up.
    """
    cfg = node.config
    address = address or cfg.address
    host, _, port_text = address.rpartition(":")
    extend: dict[str, Any] = {
        "raftPort": cfg.raft_address(address).rpartition(":")[2]
        if address != cfg.address
        else str(cfg.raft_port),
        "version": VERSION,
        "site": "unknown",
    }
    if address == cfg.address:
        state = node.member_state().value
        extend["lastRefreshTime"] = int(time.time() * 1000)
        extend["distroReady"] = node.ready
        fail_count = 0
    else:
        info = node.cluster.membership.info(address) if node.cluster is not None else None
        state = info.state.value if info is not None else "DOWN"
        if info is not None and info.version:
            extend["version"] = info.version  # what the member itself reported
        extend["lastRefreshTime"] = info.last_report_ms if info is not None else 0
        extend["distroReady"] = bool(info is not None and info.distro_ready)
        fail_count = info.fail_count if info is not None else 0
        raw = node.syncobj.getStatus() if node.syncobj is not None else {}
        extend["raftConnected"] = (
            raw.get(f"partner_node_status_server_{cfg.raft_address(address)}") == 2
        )
    return {
        "ip": host,
        "port": int(port_text),
        "state": state,
        "extendInfo": extend,
        "address": address,
        "failAccessCnt": fail_count,
    }


def members_json(node: runtime.NodeRuntime) -> list[dict[str, Any]]:
    return [member_json(node, m) for m in (node.config.members or (node.config.address,))]


@nacos_api("GET", secured=False, gated=False)
def servers(request: HttpRequest, params: Params) -> dict[str, Any]:
    members = members_json(runtime.current())
    if params.strict_boolean("healthy", False):
        members = [m for m in members if m["state"] == "UP"]
    return {"servers": members}


@nacos_api("GET", secured=False, gated=False)
def cluster_state(request: HttpRequest, params: Params) -> dict[str, Any]:
    node = runtime.current()
    return {
        "raft": dict(node.persistent.status()),
        "member": member_json(node),
        "members": members_json(node),
        "leader": _leader_http_address(node),
    }


@nacos_api("GET", secured=False)
def distro_server(request: HttpRequest, params: Params) -> dict[str, Any]:
    name = s.service_name(params)
    _ops()._require_view(name)
    node = runtime.current()
    owner = node.cluster.owner(name.grouped) if node.cluster is not None else None
    return {"responsibleServer": owner or node.config.address}


@nacos_api("GET", "POST", "PUT", secured=False)
def push_state(request: HttpRequest, params: Params) -> dict[str, Any]:
    """The counters stay public (as in Nacos); the failed subscribers' addresses (``detail``)
    need credentials, and zeroing the counters for everyone needs a global admin."""
    node = runtime.current()
    stats = node.push.stats
    reset = params.strict_boolean("reset", False)
    if reset:
        require_global_admin(request, params)
    elif params.strict_boolean("detail", False):
        authenticate(node, request, params)
    result: dict[str, Any] = {
        "succeed": stats.succeed,
        "total": stats.total,
        "ratio": round(stats.succeed / stats.total, 4) if stats.total else 0.0,
        "reset": reset,
    }
    if params.strict_boolean("detail", False):
        result["data"] = list(stats.failed_packets)
    if reset:
        stats.total = stats.succeed = stats.failed = 0
        stats.failed_packets.clear()
    return result


def _leader_http_address(node: runtime.NodeRuntime) -> str | None:
    leader = node.persistent.status().get("leader")
    if leader is None:
        return None
    if str(leader) == f"{node.config.host}:{node.config.raft_port}":
        return node.config.address
    for member in node.config.members:
        if node.config.raft_address(member) == str(leader):
            return member
    return None


@nacos_api("GET", secured=False, gated=False)
def raft_leader(request: HttpRequest, params: Params) -> dict[str, Any]:
    node = runtime.current()
    status = node.persistent.status()
    leader = _leader_http_address(node)
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
def cluster_nodes(request: HttpRequest, params: Params) -> dict[str, Any]:
    node = runtime.current()
    keyword = params.optional("keyword")
    members = [m for m in members_json(node) if keyword in m["address"]]
    for member in members:
        if member["address"] == node.config.address:
            member["raft"] = dict(node.persistent.status())
    return {"code": 200, "message": None, "data": members}


# -- /auth ----------------------------------------------------------------------------------


@nacos_api("POST", secured=False, gated=False)
def login(request: HttpRequest, params: Params) -> HttpResponse:
    node = runtime.current()
    username = params.required("username")
    password = params.required("password")
    if node.auth is None:
        body = f'{{"accessToken":"","tokenTtl":18000,"globalAdmin":true,"username":"{username}"}}'
        return respond(body, 200, JSON)
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
def logout(request: HttpRequest, params: Params) -> dict[str, Any]:
    """Not in Nacos 1.x. Revokes every token of the caller (all sessions, like a password
    change): tokens are stateless, the user's token generation is all there is to bump."""
    node = runtime.current()
    identity = authenticate(node, request, params)
    if identity is not None:
        node.auth.logout(identity.username)
    return {"code": 200, "message": "logout ok!", "data": None}


def empty(request: HttpRequest) -> HttpResponse:
    """The benchmark's floor: the cheapest answer this server can give."""
    return respond(b"ok")
