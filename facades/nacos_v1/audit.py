"""``GET /nacos/v1/console/audit``: the audit trail of the whole cluster (admin only).

``scope=cluster`` (the default) asks every other member for its entries over a signed peer
request (``scope=local`` there), merges them newest first and says which members answered; a
member that is down or slow is listed under ``membersFailed``, never an error. A signed request
from a member is answered with this member's own entries only (it never fans out again).

:func:`cluster_audit` is the same query as a plain function, for the console's page.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest

from distro.http import verify_peer
from distro.transport import PeerUnreachable
from facades.nacos_v1.api import SIGNED, Caller, nacos_api, require_global_admin
from facades.nacos_v1.context import Node, current
from facades.nacos_v1.params import Params
from lib.errors import InvalidParam
from naming.audit import AuditEntry, AuditFilter, merge_newest_first

PATH = "/nacos/v1/console/audit"
PEER_TIMEOUT_S = 3.0
MAX_PAGE_SIZE = 1000
MAX_WINDOW = 10_000  # pageNo x pageSize: every member sends that many entries to merge
KINDS = frozenset(
    ("instance", "service", "cluster", "switch", "namespace", "user", "role", "permission")
)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    filters: AuditFilter = field(default_factory=AuditFilter)
    page_no: int = 1
    page_size: int = 100

    def params(self, local: bool = False) -> dict[str, str]:
        """The query as request parameters; ``local``: the first pages up to this one, for a
        peer (the merge needs each member's newest ``page_no x page_size``)."""
        f = self.filters
        values = {
            "object": f.object,
            "user": f.user,
            "kind": f.kind,
            "since": "" if f.since_ms is None else str(f.since_ms),
            "until": "" if f.until_ms is None else str(f.until_ms),
        }
        if local:
            values.update(scope="local", pageNo="1", pageSize=str(self.page_no * self.page_size))
        else:
            values.update(pageNo=str(self.page_no), pageSize=str(self.page_size))
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True, slots=True)
class ClusterAudit:
    total: int
    entries: list[AuditEntry]
    answered: list[str]
    failed: dict[str, str]  # member → why


def _optional_ms(params: Params, name: str) -> int | None:
    raw = params.raw(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParam(f"{name} must be a time in ms since the epoch, not {raw!r}") from None
    if value < 0:
        raise InvalidParam(f"{name} must not be negative")
    return value


def _page_param(params: Params, name: str, default: int, maximum: int) -> int:
    value = params.integer(name, default)
    if not 1 <= value <= maximum:
        raise InvalidParam(f"{name} must be 1-{maximum}")
    return value


def query_of(params: Params) -> AuditQuery:
    kind = params.raw("kind") or ""
    if kind and kind not in KINDS:
        raise InvalidParam(f"kind must be one of {', '.join(sorted(KINDS))}")
    since = _optional_ms(params, "since")
    until = _optional_ms(params, "until")
    if since is not None and until is not None and since > until:
        raise InvalidParam("since must not be after until")
    page_size = _page_param(params, "pageSize", 100, MAX_PAGE_SIZE)
    page_no = _page_param(params, "pageNo", 1, MAX_WINDOW)
    if page_no * page_size > MAX_WINDOW:
        raise InvalidParam(f"pageNo x pageSize must be at most {MAX_WINDOW}; narrow the filters")
    filters = AuditFilter(
        object=(params.raw("object") or "")[:512],
        user=(params.raw("user") or "")[:128],
        kind=kind,
        since_ms=since,
        until_ms=until,
    )
    return AuditQuery(filters, page_no, page_size)


def _ask(node: Node, member: str, query: AuditQuery) -> tuple[int, list[AuditEntry]]:
    cluster = node.cluster
    assert cluster is not None
    target = f"{PATH}?{urlencode(query.params(local=True))}"
    answer = cluster.transport.call(member, "GET", target, b"", {}, timeout=PEER_TIMEOUT_S)
    if not answer.ok:
        raise PeerUnreachable(member, f"answered {answer.status}")
    try:
        data: Any = json.loads(answer.body)
        entries = [AuditEntry.from_json(item) for item in data["pageItems"]]
        return int(data["totalCount"]), entries
    except (ValueError, KeyError, TypeError):
        raise PeerUnreachable(member, "answered something that is no audit page") from None


def cluster_audit(node: Node, query: AuditQuery) -> ClusterAudit:
    """This member's entries and every other member's, merged newest first, one page."""
    local = node.audit.query(query.filters, 1, query.page_no * query.page_size)
    total = local.total
    pages = [local.entries]
    answered = [node.address]
    failed: dict[str, str] = {}
    cluster = node.cluster
    peers = [] if cluster is None else [m for m in cluster.membership.members if m != node.address]
    if peers:
        with ThreadPoolExecutor(len(peers), thread_name_prefix="audit-query") as pool:
            futures = {m: pool.submit(_ask, node, m, query) for m in peers}
        for member, future in futures.items():
            try:
                count, entries = future.result()
            except PeerUnreachable as exc:
                failed[member] = exc.reason
                continue
            total += count
            pages.append(entries)
            answered.append(member)
    start = (query.page_no - 1) * query.page_size
    merged = merge_newest_first(pages)[start : start + query.page_size]
    return ClusterAudit(total, merged, sorted(answered), failed)


def _page(total: int, page_no: int, page_size: int, entries: list[AuditEntry]) -> dict[str, Any]:
    return {
        "totalCount": total,
        "pageNumber": page_no,
        "pagesAvailable": (total + page_size - 1) // page_size,
        "pageItems": [e.to_json() for e in entries],
    }


@nacos_api("GET", secured=False)
def audit(request: HttpRequest, params: Params, caller: Caller) -> dict[str, Any]:
    node = current()
    query = query_of(params)
    peer = node.cluster is not None and SIGNED in request.META
    if peer:
        verify_peer(request)  # a member merging the cluster's trail: its own entries only
    else:
        require_global_admin(request, params, "audit")
    scope = params.raw("scope") or "cluster"
    if scope not in ("cluster", "local"):
        raise InvalidParam("scope must be cluster or local")
    if peer or scope == "local":
        page = node.audit.query(query.filters, query.page_no, query.page_size)
        body = _page(page.total, query.page_no, query.page_size, page.entries)
        body.update(membersAnswered=[node.address], membersFailed={})
        return body
    result = cluster_audit(node, query)
    body = _page(result.total, query.page_no, query.page_size, result.entries)
    body.update(membersAnswered=result.answered, membersFailed=result.failed)
    return body
