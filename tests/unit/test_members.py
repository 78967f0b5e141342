from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from node.management.commands.runnode import parse_members
from node.runtime import NodeConfig


def test_members_default_to_raft_port_minus_1000_and_accept_an_explicit_one():
    members, raft = parse_members("10.0.0.1:8848, 10.0.0.2:8848:7000,10.0.0.3")
    assert members == ("10.0.0.1:8848", "10.0.0.2:8848", "10.0.0.3:8848")
    assert raft == {"10.0.0.1:8848": 7848, "10.0.0.2:8848": 7000, "10.0.0.3:8848": 7848}
    config = NodeConfig(host="10.0.0.1", port=8848, members=members, member_raft_ports=raft)
    assert config.cluster
    assert config.raft_partners() == ("10.0.0.2:7000", "10.0.0.3:7848")


@pytest.mark.parametrize("raw", ["h:x", "h:1:2:3", ":80", "h:70000", "h:80:0"])
def test_bad_member_lists_are_refused(raw):
    with pytest.raises(CommandError):
        parse_members(raw)
