"""The console's bulk form (parsing, and the view in-process with auth off) and the instance
search of the service list."""

from __future__ import annotations

import urllib.parse

import pytest
from django.test import Client

from facades.console import bulk
from lib.errors import InvalidParam
from naming.codec import EMPTY_INSTANCES, instance_set
from naming.domain import MAX_METADATA_CHARS, MAX_METADATA_ENTRIES, Instance, InstanceKey
from naming.domain import ServiceName as Name
from naming.registry import ServiceView

from .test_console import post_form, token_of


def sel(ip: str, port: int, cluster: str = "DEFAULT", ephemeral: bool = True) -> str:
    query = {"namespace": "public", "group": "DEFAULT_GROUP", "name": "s", "cluster": cluster}
    query |= {"ip": ip, "port": str(port), "ephemeral": "true" if ephemeral else "false"}
    return urllib.parse.urlencode(query)


# -- parsing --------------------------------------------------------------------------------------


def test_targets_parse_the_rows_query_once_each():
    targets = bulk.parse_targets([sel("10.0.0.1", 80), sel("10.0.0.1", 80), sel("::1", 81, "B")])
    assert [(t.key, t.ephemeral) for t in targets] == [
        (InstanceKey("DEFAULT", "10.0.0.1", 80), True),
        (InstanceKey("B", "::1", 81), True),
    ]
    assert bulk.parse_targets([sel("10.0.0.2", 1, ephemeral=False)])[0].ephemeral is False


@pytest.mark.parametrize(
    "value",
    [
        "ip=10.0.0.1",  # no port
        "ip=10.0.0.1&port=x&ephemeral=true",
        "ip=10.0.0.1&port=80&ephemeral=maybe",
        "ip=10.0.0.1&ip=10.0.0.2&port=80&ephemeral=true",
        "ip=bad host&port=80&ephemeral=true",
        "cluster=a%20b&ip=10.0.0.1&port=80&ephemeral=true",
        "x" * (bulk.MAX_SELECTION_CHARS + 1),
    ],
)
def test_a_malformed_selection_is_refused(value):
    with pytest.raises(InvalidParam):
        bulk.parse_targets([value])


def test_too_many_selected_rows_are_refused():
    with pytest.raises(InvalidParam, match="at most"):
        bulk.parse_targets([sel("10.0.0.1", 80)] * (bulk.MAX_SELECTED + 1))


def test_metadata_lines():
    text = "version=2\n\n  zone = a=b \r\nempty=\n"
    assert bulk.parse_metadata_lines(text, remove=False) == {
        "version": "2",
        "zone": " a=b ",
        "empty": "",
    }
    assert bulk.parse_metadata_lines("version\nzone=ignored\n", remove=True) == {
        "version": "",
        "zone": "",
    }


@pytest.mark.parametrize(
    ("text", "remove", "message"),
    [
        ("version", False, "line 1: expected key=value"),
        ("a=1\n=2", False, "line 2"),
        ("", False, "at least one"),
        ("  \n", True, "enter keys"),
        ("k=" + "v" * MAX_METADATA_CHARS, False, "too large"),
        ("\n".join(f"k{i}=v" for i in range(MAX_METADATA_ENTRIES + 1)), False, "at most"),
    ],
)
def test_bad_metadata_lines_are_refused(text, remove, message):
    with pytest.raises(InvalidParam, match=message):
        bulk.parse_metadata_lines(text, remove)


def test_unknown_action_is_refused():
    assert bulk.parse_action("offline") == "offline"
    with pytest.raises(InvalidParam):
        bulk.parse_action("delete")


def inst(ip: str, cluster: str = "DEFAULT", **meta: str) -> Instance:
    return Instance(ip=ip, port=80, cluster=cluster, metadata=meta)


def test_resolve_takes_rows_and_whole_clusters_once_and_reports_the_missing():
    view = ServiceView(
        Name("public", "DEFAULT_GROUP@@s"),
        None,
        instance_set([inst("10.0.0.1"), inst("10.0.0.2"), inst("10.0.0.3", "B")]),
        EMPTY_INSTANCES,
        1,
    )
    targets = bulk.parse_targets(
        [sel("10.0.0.1", 80), sel("10.0.0.9", 80), sel("10.0.0.3", 80, "B")]
    )
    chosen, errors = bulk.resolve(view, targets, ["B", "nope"])
    assert sorted(i.ip for i in chosen) == ["10.0.0.1", "10.0.0.3"]
    assert errors == [
        "10.0.0.9:80 (cluster DEFAULT): not registered any more",
        "cluster nope: no such cluster",
    ]


def test_merge_too_large_counts_the_union_of_keys():
    full = inst("10.0.0.1", **{f"k{i}": "v" for i in range(MAX_METADATA_ENTRIES)})
    assert bulk.merge_too_large(full, {"k0": "x"}) is None
    assert "at most" in (bulk.merge_too_large(full, {"new": "x"}) or "")


# -- the view, in-process (auth off) -------------------------------------------------------------


@pytest.fixture
def browser() -> Client:
    return Client(enforce_csrf_checks=True)


DETAIL = "/nacos/console/service?namespace=public&group=DEFAULT_GROUP&name=s"
BULK = "/nacos/console/instances/bulk"
SERVICE = {"namespace": "public", "group": "DEFAULT_GROUP", "name": "s"}


def register(browser: Client, service: str, ip: str, port: int = 80, **extra: str) -> None:
    query = {"serviceName": service, "ip": ip, "port": str(port), "ephemeral": "false", **extra}
    answer = browser.post("/nacos/v1/ns/instance?" + urllib.parse.urlencode(query))
    assert answer.status_code == 200, answer.content


def instances(browser: Client, service: str = "s") -> dict[str, dict]:
    listed = browser.get(
        "/nacos/v1/ns/instance/list", {"serviceName": service, "healthyOnly": "false"}
    )
    return {f"{h['ip']}:{h['port']}": h for h in listed.json()["hosts"]}


def bulk_post(browser: Client, form: dict[str, object]):
    token = token_of(browser.get(DETAIL).content.decode())
    return browser.post(BULK, {**SERVICE, **form, "csrfmiddlewaretoken": token})


def test_bulk_offline_then_online(node, browser):
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        register(browser, "s", ip)
    page = browser.get(DETAIL).content.decode()
    assert 'aria-label="select 10.0.0.1:80"' in page and 'id="bulk"' in page
    chosen = [sel("10.0.0.1", 80, ephemeral=False), sel("10.0.0.2", 80, ephemeral=False)]
    done = bulk_post(browser, {"action": "offline", "selected": chosen})
    assert done.status_code == 302
    assert "2+instances+set+offline" in done.headers["Location"]
    assert sorted(instances(browser)) == ["10.0.0.3:80"]
    back = bulk_post(browser, {"action": "online", "all_cluster": "DEFAULT"})
    assert "3+instances+set+online" in back.headers["Location"]
    assert len(instances(browser)) == 3


def test_bulk_metadata_set_and_remove(node, browser):
    register(browser, "s", "10.0.0.1", metadata="keep=1")
    register(browser, "s", "10.0.0.2")
    chosen = [sel("10.0.0.1", 80, ephemeral=False), sel("10.0.0.2", 80, ephemeral=False)]
    done = bulk_post(browser, {"action": "metadata", "selected": chosen, "metadata": "zone=a\nv=2"})
    assert "metadata+set+on+2+instances" in done.headers["Location"]
    hosts = instances(browser)
    assert hosts["10.0.0.1:80"]["metadata"] == {"keep": "1", "zone": "a", "v": "2"}
    assert hosts["10.0.0.2:80"]["metadata"] == {"zone": "a", "v": "2"}
    bulk_post(
        browser, {"action": "metadata", "selected": chosen, "metadata": "zone", "remove": "on"}
    )
    assert instances(browser)["10.0.0.1:80"]["metadata"] == {"keep": "1", "v": "2"}


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"action": "offline"}, "select at least one instance first"),
        ({"action": "metadata", "metadata": "broken"}, "expected key=value"),
        ({"action": "offline", "selected": "ip=x"}, ""),
        ({"action": "nuke"}, "unknown bulk action"),
    ],
)
def test_bad_bulk_input_is_a_visible_400_and_changes_nothing(node, browser, form, message):
    register(browser, "s", "10.0.0.1")
    if form.get("action") == "metadata":
        form = {**form, "selected": sel("10.0.0.1", 80, ephemeral=False)}
    before = instances(browser)
    answer = bulk_post(browser, form)
    assert answer.status_code == 400
    page = answer.content.decode()
    assert message in page and 'role="alert"' in page
    assert instances(browser) == before
    if "broken" in str(form):
        assert "broken</textarea>" in page and " checked" in page  # what was typed is kept


def test_a_vanished_instance_is_listed_and_the_others_change(node, browser):
    register(browser, "s", "10.0.0.1")
    chosen = [sel("10.0.0.1", 80, ephemeral=False), sel("10.0.0.9", 80, ephemeral=False)]
    answer = bulk_post(browser, {"action": "offline", "selected": chosen})
    assert answer.status_code == 200
    page = answer.content.decode()
    assert "1 instance set offline" in page
    assert "10.0.0.9:80 (cluster DEFAULT): not registered any more" in page
    assert instances(browser) == {}


def test_bulk_needs_csrf(node, browser):
    register(browser, "s", "10.0.0.1")
    refused = browser.post(BULK, {**SERVICE, "action": "offline", "all_cluster": "DEFAULT"})
    assert refused.status_code == 403
    assert len(instances(browser)) == 1


def test_service_list_searches_by_instance(node, browser):
    register(browser, "holder", "10.1.2.3", 8080)
    register(browser, "other", "10.1.2.30", 8080)
    for query, found in [
        ("10.1.2.3", ["holder"]),
        ("10.1.2.3:8080", ["holder"]),
        ("10.1.2.3:9", []),
        ("10.1.2.30", ["other"]),
    ]:
        page = browser.get("/nacos/console/services", {"instance": query}).content.decode()
        shown = [n for n in ("holder", "other") if f"<td>{n}</td>" in page]
        assert shown == found, query
        assert f'name="instance" value="{query}"' in page


def test_first_run_page_is_absent_when_auth_is_off(node, browser):
    register(browser, "s", "10.0.0.1")
    assert browser.get("/nacos/console/init").status_code == 404
    assert post_form(browser, DETAIL, {"password": ""}, "/nacos/console/init").status_code == 404
