"""The console's administration pages over an in-memory runtime (auth off, no sockets): what
each form stores, what it refuses, and the texts the permission table shows."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.directory import service
from facades.console.views.admin import describe, rule_resource
from lib.errors import InvalidParam
from naming.operations import NamespaceInfo
from node.runtime import NodeRuntime

C = "/nacos/console/"


def _user(client: Client, name: str, password: str = "pass-word-1", repeat: str | None = None):
    return client.post(
        C + "users/create",
        {"username": name, "password": password, "repeat": password if repeat is None else repeat},
    )


def test_create_user_checks_the_repeat_and_never_shows_a_hash(node: NodeRuntime, client: Client):
    refused = _user(client, "alice", repeat="other-word-1")
    assert refused.status_code == 400
    assert b"the two passwords do not match" in refused.content
    assert service().directory().user("alice") is None
    assert _user(client, "a" * 300).status_code == 400
    assert _user(client, "alice", "short").status_code == 400
    created = _user(client, "alice")
    assert created.status_code == 302
    page = client.get(created["Location"])
    assert b"user alice created" in page.content
    assert b"pbkdf2" not in page.content
    duplicate = _user(client, "alice")
    assert (duplicate.status_code, b"already exist!" in duplicate.content) == (400, True)


def test_roles_and_permissions_forms(node: NodeRuntime, client: Client):
    _user(client, "bob")
    admin = client.post(C + "roles/bind", {"role": "ROLE_ADMIN", "username": "bob"})
    assert admin.status_code == 400
    assert b"is not permitted to create!" in admin.content
    assert client.post(C + "roles/bind", {"role": "ROLE_DEV", "username": "bob"}).status_code == 302
    grant = {"role": "ROLE_DEV", "namespace": "public", "group": "", "action": "rw"}
    assert client.post(C + "permissions/add", grant).status_code == 302
    covered = client.post(C + "permissions/add", {**grant, "action": "r"})
    assert covered.status_code == 400
    assert b"duplicate permission" in covered.content
    bad = client.post(C + "permissions/add", {**grant, "group": "a:b"})
    assert bad.status_code == 400
    assert b"malformed group" in bad.content
    bad_action = client.post(C + "permissions/add", {**grant, "action": "x"})
    assert bad_action.status_code == 400
    assert service().directory().permissions() == [("ROLE_DEV", ":*:*", "rw")]
    confirm = client.get(C + "permissions/delete", {"role": "ROLE_DEV", "resource": ":*:*"})
    assert confirm.status_code == 400  # no action: nothing to confirm
    asked = client.get(C + "roles/unbind", {"role": "ROLE_DEV", "username": "bob"})
    assert b"the role&#x27;s permissions are deleted too" in asked.content
    client.post(C + "roles/unbind", {"role": "ROLE_DEV", "username": "bob"})
    assert service().directory().permissions() == []


def test_a_refused_write_changes_nothing_and_a_get_cannot_write(node: NodeRuntime, client: Client):
    assert client.get(C + "users/create").status_code == 405
    before = service().directory().document
    assert client.post(C + "users/delete", {"username": "nobody"}).status_code == 400
    assert service().directory().document == before


def test_pages_render_escaped(node: NodeRuntime, client: Client):
    for page in ("users", "roles", "permissions", "cluster", "audit", "password"):
        response = client.get(C + page, {"q": "<script>", "address": "<script>"})
        assert response.status_code == 200, page
        assert b"<script>" not in response.content.replace(b'<script src="', b"")
    assert client.get(C + "audit", {"since": "soon"}).status_code == 400
    assert client.get(C + "audit", {"kind": "bogus"}).status_code == 400
    # Auth is off here: there is no own password to change.
    assert client.post(C + "password", {"current": "x"}).status_code == 400


def test_the_permission_texts():
    dev = NamespaceInfo("dev-id", "dev", "", "custom", 0, 0, 0)
    public = NamespaceInfo("public", "public", "", "public", 0, 0, 0)
    known = {"dev-id": dev, "public": public}
    whole = describe("dev-id:*:*", "r", known)
    assert whole["scope"] == "dev (dev-id)"
    assert whole["action_text"] == "read only (r)"
    assert "including the service list" in whole["grants"]
    group = describe(":GRP:*", "rw", known)
    assert group["scope"] == "public (public), group GRP"
    assert "not the namespace's service list" in group["grants"]
    assert describe("gone:*:*", "w", known)["scope"] == "gone (no such namespace now)"
    assert rule_resource("public", "") == ":*:*"
    assert rule_resource("dev-id", "GRP.1") == "dev-id:GRP.1:*"
    for group_text in ("*", "a b", "a:b"):
        with pytest.raises(InvalidParam):
            rule_resource("dev-id", group_text)
    with pytest.raises(InvalidParam):
        rule_resource("bad ns", "")


def test_the_cluster_page_shows_each_state_as_a_tag_with_text(
    node: NodeRuntime, client: Client, monkeypatch: pytest.MonkeyPatch
):
    def member(address: str, state: str, ready: bool, voter: bool = True) -> dict[str, object]:
        info = {
            "distroReady": ready,
            "lastRefreshTime": 1_700_000_000_000,
            "version": "v",
            "raftVoter": voter,
        }
        return {"address": address, "state": state, "extendInfo": info}

    members = [
        member(node.address, "UP", True),
        member("10.0.0.2:8848", "UP", True),
        member("10.0.0.3:8848", "SUSPICIOUS", False),
        member("10.0.0.4:8848", "DOWN", False, voter=False),
    ]
    report = node.report
    monkeypatch.setattr(report, "members", lambda: members)
    raft = {"role": "FOLLOWER", "term": 7, "voter": True, "voters": [1, 2, 3], "nonVoters": [4]}
    monkeypatch.setattr(report, "raft", lambda: raft)
    monkeypatch.setattr(report, "leader_http_address", lambda: "10.0.0.2:8848")
    page = client.get(C + "cluster").content.decode()
    assert '<span class="tag tag-suspicious">SUSPICIOUS</span>' in page
    assert '<span class="tag tag-down">DOWN</span>' in page
    assert "2023-11-14 22:13:20 UTC" in page
    rows = page.split('<tr data-address="')[1:]
    assert "LEADER" in rows[1] and ">7<" in rows[1]
    assert "UNKNOWN" in rows[3] and "unknown" in rows[3]
    assert '<td class="raft-vote">voter</td>' in rows[1]
    assert '<td class="raft-vote">non-voter</td>' in rows[3]
    assert "3 voting members, 1 non-voting" in page and "a voter" in page
    only = client.get(C + "cluster", {"address": "10.0.0.3"}).content.decode()
    assert only.count('<tr data-address="') == 1


def test_the_audit_page_names_members_that_did_not_answer(
    node: NodeRuntime, client: Client, monkeypatch: pytest.MonkeyPatch
):
    from facades.console.views import admin
    from facades.nacos_v1.audit import ClusterAudit
    from naming.audit import AuditEntry

    entry = AuditEntry(
        1_700_000_000_000, "m1", "<b>eve</b>", "1.2.3.4", "api", "POST /x", "user", "user/x", "op"
    )
    asked = []

    def trail(filters, page, size):
        asked.append((filters, page, size))
        return ClusterAudit(1, [entry], ["m1"], {"m2": "answered 503"})

    monkeypatch.setattr(admin, "audit_trail", trail)
    page = client.get(C + "audit", {"user": "eve", "since": "2023-11-14T22:00", "page": "9"})
    body = page.content.decode()
    assert "Not answering: m2 (answered 503)" in body
    assert "&lt;b&gt;eve&lt;/b&gt;" in body
    filters, page_no, size = asked[0]
    assert (filters.user, filters.since_ms, page_no, size) == ("eve", 1_699_999_200_000, 9, 20)
