"""The administration pages: users, roles, permissions, own password, cluster members, audit.

Users, roles, permissions and the audit trail are ``console/...`` resources, so only a global
admin passes ``authorize`` (Nacos §2.3); the menu hides them from everyone else and their URLs
answer a 403 page. Every write is a CSRF-protected POST form that calls the accounts core
(:func:`accounts.directory.service`, never the ORM) inside the audit actor context
(:func:`facades.console.web.acting`), then redirects back with a fixed notice. A refused write
re-renders the same page with the core's message and its 4xx status; nothing stored changes.
The cluster page and the own-password page are open to every signed-in user.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from accounts.auth import installed
from accounts.directory import ADMIN_ROLE, AccountsService, check_password_text, service
from facades.console.web import (
    PAGE_SIZES,
    TOKEN,
    View,
    Viewer,
    acting,
    address_of,
    allow_console,
    console_view,
    ops,
    render_page,
    url,
)
from facades.nacos_v1.audit import KINDS, MAX_WINDOW, AuditQuery, ClusterAudit, cluster_audit
from facades.nacos_v1.context import current
from lib.errors import Forbidden, InvalidParam, MissingParam, NamingError
from naming.audit import AuditEntry, AuditFilter
from naming.domain import DEFAULT_NAMESPACE, namespace_or_default
from naming.operations import NamespaceInfo

CONSOLE = "/nacos/console/"
MAX_FIELD = 256  # any text field longer than this is refused before the core sees it
MAX_FILTER = 128
ACTION_TEXT = {"r": "read only (r)", "w": "write only (w)", "rw": "read and write (rw)"}
VERB = {"r": "read", "w": "write", "rw": "read and write"}
STATE_TAG = {"UP": "up", "DOWN": "down", "SUSPICIOUS": "suspicious", "STARTING": "starting"}

# The notices a redirect may ask for: fixed texts, so a crafted link cannot put words on the page.
NOTICES = {
    "user-created": "user {0} created",
    "user-reset": "the password of {0} was reset; its earlier sessions and tokens are revoked",
    "user-deleted": "user {0} deleted, with its role bindings",
    "role-bound": "role bound to {0}",
    "role-unbound": "role binding of {0} removed",
    "permission-added": "permission added to {0}",
    "permission-deleted": "permission of {0} deleted",
    "password-changed": "your password was changed; your other sessions and tokens are signed "
    "out, this one continues",
}


# -- request helpers --------------------------------------------------------------------------


def _text(request: HttpRequest, name: str, label: str, *, required: bool = True) -> str:
    """A posted field, trimmed; blank or oversized is a visible 400."""
    value = request.POST.get(name, "").strip()
    if required and not value:
        raise MissingParam(label)
    if len(value) > MAX_FIELD:
        raise InvalidParam(f"{label} is too long: at most {MAX_FIELD} characters")
    return value


def _new_password(request: HttpRequest) -> str:
    """The new password and its repetition: both given, equal, within the length rules."""
    password = request.POST.get("password", "")
    repeat = request.POST.get("repeat", "")
    if not password:
        raise MissingParam("password")
    if not repeat:
        raise MissingParam("repeat password")
    if password != repeat:
        raise InvalidParam("the two passwords do not match")
    return check_password_text(password)


def _filter(request: HttpRequest, name: str) -> str:
    return request.GET.get(name, "").strip()[:MAX_FILTER]


def _notice(request: HttpRequest) -> str:
    template = NOTICES.get(request.GET.get("done", ""))
    return template.format(request.GET.get("who", "")[:MAX_FILTER]) if template else ""


def _attempt(
    request: HttpRequest,
    viewer: Viewer,
    action: str,
    write: Callable[[AccountsService], None],
    redisplay: Callable[[str, int], HttpResponse],
    done: str,
) -> HttpResponse:
    """Run one accounts write as the viewer, then go to ``done``; a refusal redisplays the
    page with the core's message and status."""
    try:
        with acting(request, viewer, action):
            write(service())
    except NamingError as exc:
        return redisplay(exc.message, exc.status)
    return HttpResponseRedirect(done)


Fields = dict[str, str]
Render = Callable[[HttpRequest, Viewer, str, int], HttpResponse]


class _Section:
    """One admin-only page (``console/<resource>``) and the writes made from it: a list page,
    POST forms that redirect back with a notice, and deletions confirmed on a page first (a
    GET asks, so it works without JavaScript; the POST deletes)."""

    def __init__(self, resource: str, title: str, template: str) -> None:
        self.resource = resource
        self.title = title
        self.template = template
        self.path = CONSOLE + resource

    def allow(self, viewer: Viewer) -> None:
        """ROLE_ADMIN only, whatever permissions a role has (Nacos §2.3)."""
        try:
            allow_console(viewer, self.resource)
        except Forbidden:
            raise Forbidden(
                f"authorization failed! The {self.title} page is for administrators "
                "(ROLE_ADMIN) only."
            ) from None

    def render(
        self,
        request: HttpRequest,
        viewer: Viewer,
        context: Mapping[str, Any],
        error: str,
        status: int,
    ) -> HttpResponse:
        return render_page(
            request,
            viewer,
            self.template,
            {**context, "error": error, "notice": "" if error else _notice(request)},
            status=status,
        )

    def done(self, code: str, who: str) -> str:
        return url(self.path, {"done": code, "who": who})

    def page(self, render: Render) -> View:
        @console_view("GET")
        def view(request: HttpRequest, viewer: Viewer) -> HttpResponse:
            self.allow(viewer)
            return render(request, viewer, "", 200)

        return view

    def write(
        self,
        render: Render,
        action: str,
        change: Callable[[HttpRequest, AccountsService], None],
        code: str,
        who: str,
    ) -> View:
        """A POST form; ``who`` names the posted field the notice mentions."""

        @console_view("POST")
        def view(request: HttpRequest, viewer: Viewer) -> HttpResponse:
            self.allow(viewer)
            return _attempt(
                request,
                viewer,
                action,
                lambda accounts: change(request, accounts),
                lambda error, status: render(request, viewer, error, status),
                self.done(code, request.POST.get(who, "").strip()),
            )

        return view

    def delete(
        self,
        render: Render,
        action: str,
        fields: tuple[str, ...],
        question: Callable[[Fields], str],
        change: Callable[[AccountsService, Fields], None],
        code: str,
        who: str,
    ) -> View:
        @console_view("GET", "POST")
        def view(request: HttpRequest, viewer: Viewer) -> HttpResponse:
            self.allow(viewer)
            source = request.POST if request.method == "POST" else request.GET
            values = {k: source.get(k, "").strip()[:MAX_FIELD] for k in fields}
            for name, value in values.items():
                if not value:
                    raise MissingParam(name)
            if request.method == "GET":
                return render_page(
                    request,
                    viewer,
                    "console/confirm.html",
                    {
                        "question": question(values),
                        "action": request.path,
                        "hidden": sorted(values.items()),
                        "cancel": self.path,
                    },
                )
            return _attempt(
                request,
                viewer,
                action,
                lambda accounts: change(accounts, values),
                lambda error, status: render(request, viewer, error, status),
                self.done(code, values[who]),
            )

        return view


USERS = _Section("users", "Users", "console/users.html")
ROLES = _Section("roles", "Roles", "console/roles.html")
PERMISSIONS = _Section("permissions", "Permissions", "console/permissions.html")
AUDIT = _Section("audit", "Audit", "console/audit.html")


# -- users ------------------------------------------------------------------------------------


def _users_page(request: HttpRequest, viewer: Viewer, error: str, status: int) -> HttpResponse:
    directory = service().directory()
    search = _filter(request, "q")
    rows = []
    for name in directory.usernames():
        if search and search.lower() not in name.lower():
            continue
        user = directory.user(name)
        roles = sorted(user.roles) if user is not None else []
        rows.append(
            {
                "username": name,
                "admin": ADMIN_ROLE in roles,
                "roles": roles,
                "query": {"username": name},
            }
        )
    posted = request.POST.get("username", "")[:MAX_FIELD] if error else ""
    context = {"rows": rows, "q": search, "new_username": posted}
    return USERS.render(request, viewer, context, error, status)


users = USERS.page(_users_page)
user_create = USERS.write(
    _users_page,
    "create user",
    lambda request, accounts: accounts.create_user(
        _text(request, "username", "username"), _new_password(request)
    ),
    "user-created",
    "username",
)
user_delete = USERS.delete(
    _users_page,
    "delete user",
    ("username",),
    lambda v: (
        f"Delete the user {v['username']}? Its role bindings go with it, and its "
        "sessions and tokens stop working on every member."
    ),
    lambda accounts, v: accounts.delete_user(v["username"]),
    "user-deleted",
    "username",
)


def _password_page(
    request: HttpRequest,
    viewer: Viewer,
    mode: str,
    username: str,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    return render_page(
        request,
        viewer,
        "console/password.html",
        {
            "mode": mode,
            "target": username,
            "error": error,
            "notice": "" if error else _notice(request),
            "auth_off": installed() is None,
        },
        status=status,
    )


@console_view("GET", "POST")
def user_reset(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """An admin sets another user's password (no current password: Nacos's "Edit")."""
    USERS.allow(viewer)
    source = request.POST if request.method == "POST" else request.GET
    username = source.get("username", "").strip()[:MAX_FIELD]
    if not username:
        raise MissingParam("username")
    if request.method == "GET":
        if service().directory().user(username) is None:
            raise InvalidParam(f"user {username} not exist!")
        return _password_page(request, viewer, "reset", username)

    def reset(accounts: AccountsService) -> None:
        password = _new_password(request)
        accounts.set_password(username, password)
        if username == viewer.username:
            _renew_session(request, username, password)

    return _attempt(
        request,
        viewer,
        "reset password",
        reset,
        lambda error, status: _password_page(request, viewer, "reset", username, error, status),
        USERS.done("user-reset", username),
    )


# -- own password -------------------------------------------------------------------------------


def _renew_session(request: HttpRequest, username: str, password: str) -> None:
    """The change revoked every earlier token of the user, this session's included: sign the
    session in again with the new password, so the user who changed it is not thrown out."""
    auth = installed()
    if auth is None:
        return
    auth.forget_user(username)  # the identity cache must not hold the old generation
    try:
        token, _identity = auth.login(username, password, address_of(request))
    except NamingError:
        # The password did change; without a fresh token the next page asks for a login.
        request.session.flush()
        return
    request.session.cycle_key()
    request.session[TOKEN] = token


@console_view("GET", "POST")
def password(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """Any signed-in user changes its own password: current, new, repeat."""
    if request.method == "GET":
        return _password_page(request, viewer, "own", viewer.username)
    auth = installed()
    if auth is None or viewer.identity is None:
        raise InvalidParam("authentication is off: there is no password to change")
    username = viewer.identity.username

    def change(accounts: AccountsService) -> None:
        current_password = request.POST.get("current", "")
        if not current_password:
            raise MissingParam("current password")
        new = _new_password(request)
        if new == current_password:
            raise InvalidParam("the new password is the same as the current one")
        try:  # through the login path: slow hashing on its pool, and throttled
            auth.login(username, current_password, address_of(request))
        except Forbidden as exc:
            if exc.message == "unknown user!":
                raise InvalidParam("the current password is not correct") from None
            raise  # the login throttle's message, as it is
        accounts.set_password(username, new)
        _renew_session(request, username, new)

    return _attempt(
        request,
        viewer,
        "change own password",
        change,
        lambda error, status: _password_page(request, viewer, "own", username, error, status),
        url(CONSOLE + "password", {"done": "password-changed"}),
    )


# -- roles --------------------------------------------------------------------------------------


def _roles_page(request: HttpRequest, viewer: Viewer, error: str, status: int) -> HttpResponse:
    directory = service().directory()
    role_filter = _filter(request, "role")
    user_filter = _filter(request, "user")
    rows = [
        {"role": role, "username": user, "query": {"role": role, "username": user}}
        for role, user in directory.bindings()
        if role_filter.lower() in role.lower() and user_filter.lower() in user.lower()
    ]
    posted = {k: request.POST.get(k, "")[:MAX_FIELD] for k in ("role", "username")}
    context = {
        "rows": rows,
        "role_filter": role_filter,
        "user_filter": user_filter,
        "usernames": directory.usernames(),
        "roles": directory.role_names(),
        "v": posted if error else {},
        "admin_role": ADMIN_ROLE,
    }
    return ROLES.render(request, viewer, context, error, status)


def _unbind_question(v: Fields) -> str:
    lost = ""
    if len(service().directory().holders(v["role"])) == 1:
        lost = " It is the role's last binding: the role's permissions are deleted too."
    return f"Remove the role {v['role']} from the user {v['username']}?{lost}"


roles = ROLES.page(_roles_page)
role_bind = ROLES.write(
    _roles_page,
    "bind role",
    lambda request, accounts: accounts.bind_role(
        _text(request, "role", "role"), _text(request, "username", "username")
    ),
    "role-bound",
    "username",
)
role_unbind = ROLES.delete(
    _roles_page,
    "unbind role",
    ("role", "username"),
    _unbind_question,
    lambda accounts, v: accounts.unbind_role(v["role"], v["username"]),
    "role-unbound",
    "username",
)


# -- permissions ----------------------------------------------------------------------------------


def _namespace_text(namespace_id: str, known: Mapping[str, NamespaceInfo]) -> str:
    """``dev (dev-id)``: the display name and the id, as the Nacos permission table shows it."""
    info = known.get(namespace_id or DEFAULT_NAMESPACE)
    if info is None:
        return f"{namespace_id} (no such namespace now)"
    return f"{info.name} ({info.id})"


def describe(resource: str, action: str, known: Mapping[str, NamespaceInfo]) -> dict[str, str]:
    """A stored rule for people: where it applies and what it grants."""
    namespace, _, rest = resource.partition(":")
    group, _, name = rest.partition(":")
    where = _namespace_text(namespace, known)
    verb = VERB.get(action, action)
    if group == "*" and name == "*":
        scope = where
        grants = f"{verb} every service of {where}, including the service list"
    elif name == "*":
        scope = f"{where}, group {group}"
        grants = (
            f"{verb} the services of group {group} in {where}; not the namespace's service "
            "list (a list asks for every group)"
        )
    else:
        scope = f"{where}, {group}:{name}"
        grants = f"{verb} what matches {resource}"
    return {"scope": scope, "grants": grants, "action_text": ACTION_TEXT.get(action, action)}


def _known_namespaces() -> dict[str, NamespaceInfo]:
    return {n.id: n for n in ops().namespaces()}


def rule_resource(namespace: str, group: str) -> str:
    """The rule's resource: ``<ns>:*:*`` for every group, ``<ns>:<group>:*`` for one group;
    public is the blank namespace, what a request's resource says."""
    ns = namespace_or_default(namespace)
    if group and (group == "*" or not all(c.isalnum() or c in "_.-" for c in group)):
        raise InvalidParam(
            f"malformed group '{group}': use letters, digits and _ . - only, or leave it "
            "blank for every group"
        )
    return f"{'' if ns == DEFAULT_NAMESPACE else ns}:{group or '*'}:*"


def _add_permission(request: HttpRequest, accounts: AccountsService) -> None:
    role = _text(request, "role", "role")
    resource = rule_resource(
        _text(request, "namespace", "namespace"), _text(request, "group", "group", required=False)
    )
    action = _text(request, "action", "action")
    if action not in ACTION_TEXT:
        raise InvalidParam("action must be r, w or rw")
    # Nacos 2.x's check before adding: an existing rule that already grants it (rw covers r, w).
    for p in accounts.directory().permissions():
        if p.role == role and p.resource == resource and set(action) <= set(p.action):
            raise InvalidParam(
                f"duplicate permission: {role} already has {ACTION_TEXT[p.action]} on {resource}"
            )
    accounts.add_permission(role, resource, action)


def _permissions_page(
    request: HttpRequest, viewer: Viewer, error: str, status: int
) -> HttpResponse:
    directory = service().directory()
    namespaces = ops().namespaces()
    known = {n.id: n for n in namespaces}
    role_filter = _filter(request, "role")
    rows = [
        {
            "role": p.role,
            "resource": p.resource,
            "query": p._asdict(),
            **describe(p.resource, p.action, known),
        }
        for p in directory.permissions()
        if role_filter.lower() in p.role.lower()
    ]
    fields = ("role", "namespace", "group", "action")
    posted = {k: request.POST.get(k, "")[:MAX_FIELD] for k in fields}
    context = {
        "rows": rows,
        "role_filter": role_filter,
        "roles": [r for r in directory.role_names() if r != ADMIN_ROLE],
        "namespaces": [{"id": n.id, "label": f"{n.name} ({n.id})"} for n in namespaces],
        "actions": sorted(ACTION_TEXT.items()),
        "v": posted if error else {"action": "r"},
    }
    return PERMISSIONS.render(request, viewer, context, error, status)


def _delete_question(v: Fields) -> str:
    text = describe(v["resource"], v["action"], _known_namespaces())
    return f"Delete the permission of {v['role']}: {text['action_text']} on {text['scope']}?"


permissions = PERMISSIONS.page(_permissions_page)
permission_add = PERMISSIONS.write(
    _permissions_page, "add permission", _add_permission, "permission-added", "role"
)
permission_delete = PERMISSIONS.delete(
    _permissions_page,
    "delete permission",
    ("role", "resource", "action"),
    _delete_question,
    lambda accounts, v: accounts.remove_permission(v["role"], v["resource"], v["action"]),
    "permission-deleted",
    "role",
)


# -- cluster members ----------------------------------------------------------------------------


def _when(ms: object) -> str:
    if not isinstance(ms, int) or ms <= 0:
        return "never"
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@console_view("GET")
def cluster(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    """Every member as this member sees it (read only): membership state from the reports,
    Raft role and term from this member's Raft status."""
    node = current()
    report = node.report
    raft = report.raft()
    leader = report.leader_http_address()
    term = raft.get("term")
    prefix = _filter(request, "address")
    rows = []
    for member in report.members():
        address = str(member["address"])
        if prefix and not address.startswith(prefix):
            continue
        extend = member.get("extendInfo", {})
        state = str(member.get("state", "DOWN"))
        voter = bool(extend.get("raftVoter", True))
        if address == node.address:
            role = str(raft.get("role", "UNKNOWN"))
        elif address == leader:
            role = "LEADER"
        elif state == "UP":
            role = "FOLLOWER"
        else:
            role = "UNKNOWN"
        rows.append(
            {
                "address": address,
                "self": address == node.address,
                "state": state,
                "tag": STATE_TAG.get(state, "other"),
                "role": role,
                "voter": voter,
                "term": term if role in ("LEADER", "FOLLOWER", "CANDIDATE") else None,
                "leader": address == leader,
                "distro_ready": bool(extend.get("distroReady")),
                "last_report": _when(extend.get("lastRefreshTime")),
                "version": str(extend.get("version", "")),
            }
        )
    return render_page(
        request,
        viewer,
        "console/cluster.html",
        {
            "rows": rows,
            "address": prefix,
            "leader": leader or "none",
            "term": term,
            "me": node.address,
            "me_voter": bool(raft.get("voter", True)),
            "voters": len(raft.get("voters", ())),
            "non_voters": len(raft.get("nonVoters", ())),
        },
    )


# -- audit ----------------------------------------------------------------------------------------


def audit_trail(filters: AuditFilter, page: int, size: int) -> ClusterAudit:
    """The one adapter to the audit core: one page of the whole cluster's trail, newest first,
    and which members answered (``facades.nacos_v1.audit.cluster_audit``)."""
    return cluster_audit(current(), AuditQuery(filters, page, size))


def _time_ms(raw: str, name: str) -> int | None:
    """A ``datetime-local`` value, read as UTC (the page shows every time in UTC)."""
    if not raw:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw[:32])
    except ValueError:
        raise InvalidParam(f"{name} must be a date and time like 2026-01-31T13:45") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def _summary(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def _audit_row(entry: AuditEntry) -> dict[str, str]:
    return {
        "time": _when(entry.time_ms),
        "member": entry.member,
        "user": entry.user,
        "address": entry.address,
        "via": entry.via,
        "reason": entry.reason,
        "kind": entry.kind,
        "object": entry.object,
        "action": entry.action,
        "before": _summary(entry.before),
        "after": _summary(entry.after),
    }


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw or default)
    except ValueError:
        return default


@console_view("GET")
def audit(request: HttpRequest, viewer: Viewer) -> HttpResponse:
    AUDIT.allow(viewer)
    kind = _filter(request, "kind")
    if kind and kind not in KINDS:
        raise InvalidParam(f"kind must be one of {', '.join(sorted(KINDS))}")
    since_text, until_text = _filter(request, "since"), _filter(request, "until")
    since, until = _time_ms(since_text, "since"), _time_ms(until_text, "until")
    if since is not None and until is not None and since > until:
        raise InvalidParam("since must not be after until")
    filters = AuditFilter(
        object=_filter(request, "object"),
        user=_filter(request, "user"),
        kind=kind,
        since_ms=since,
        until_ms=until,
    )
    size = _int(request.GET.get("size"), PAGE_SIZES[1])
    if size not in PAGE_SIZES:
        size = PAGE_SIZES[1]
    page = min(max(_int(request.GET.get("page"), 1), 1), MAX_WINDOW // size)
    result = audit_trail(filters, page, size)
    pages = max(1, math.ceil(result.total / size))
    query = {
        "object": filters.object,
        "user": filters.user,
        "kind": kind,
        "since": since_text,
        "until": until_text,
        "size": str(size),
    }
    more = page < min(pages, MAX_WINDOW // size)
    return render_page(
        request,
        viewer,
        "console/audit.html",
        {
            "rows": [_audit_row(e) for e in result.entries],
            "f": query,
            "kinds": sorted(KINDS),
            "sizes": PAGE_SIZES,
            "size": size,
            "total": result.total,
            "page": page,
            "pages": pages,
            "prev_url": url(CONSOLE + "audit", {**query, "page": page - 1}) if page > 1 else "",
            "next_url": url(CONSOLE + "audit", {**query, "page": page + 1}) if more else "",
            "answered": result.answered,
            "failed": sorted(result.failed.items()),
        },
    )
