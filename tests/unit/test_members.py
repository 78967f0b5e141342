from __future__ import annotations

import logging

import pytest
from django.core.management.base import CommandError

from node.management.commands.runnode import parse_members
from node.runtime import NodeConfig


def test_members_default_to_raft_port_minus_1000_and_accept_an_explicit_one():
    parsed = parse_members("10.0.0.1:8848, 10.0.0.2:8848:7000,10.0.0.3")
    members, raft = parsed.addresses, parsed.raft_ports
    assert parsed.nonvoters == frozenset() and parsed.voters == members
    assert members == ("10.0.0.1:8848", "10.0.0.2:8848", "10.0.0.3:8848")
    assert raft == {"10.0.0.1:8848": 7848, "10.0.0.2:8848": 7000, "10.0.0.3:8848": 7848}
    config = NodeConfig(host="10.0.0.1", port=8848, members=members, member_raft_ports=raft)
    assert config.cluster
    assert config.raft_partners() == ("10.0.0.2:7000", "10.0.0.3:7848")


def test_nonvoters_are_marked_and_left_out_of_every_raft_partner_list():
    parsed = parse_members(
        "10.0.0.1:8848,10.0.0.2:8848:7000,10.0.0.3:8848,"
        "10.0.0.4:8848:7100/nonvoter, 10.0.0.5/nonvoter"
    )
    assert parsed.addresses[3:] == ("10.0.0.4:8848", "10.0.0.5:8848")
    assert parsed.nonvoters == {"10.0.0.4:8848", "10.0.0.5:8848"}
    assert parsed.voters == ("10.0.0.1:8848", "10.0.0.2:8848", "10.0.0.3:8848")
    assert parsed.raft_ports["10.0.0.4:8848"] == 7100

    def config(host: str) -> NodeConfig:
        return NodeConfig(
            host=host,
            port=8848,
            members=parsed.addresses,
            member_raft_ports=parsed.raft_ports,
            nonvoters=parsed.nonvoters,
        )

    voter = config("10.0.0.1")
    assert voter.voter and not voter.is_voter("10.0.0.5:8848")
    assert voter.raft_partners() == ("10.0.0.2:7000", "10.0.0.3:7848")
    nonvoter = config("10.0.0.4")
    assert not nonvoter.voter
    # A non-voter follows every voter, and no other non-voter.
    assert nonvoter.raft_partners() == ("10.0.0.1:7848", "10.0.0.2:7000", "10.0.0.3:7848")


def test_an_even_voter_count_is_allowed_with_a_warning(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="naming.node"):
        parsed = parse_members("a:1001,b:1002,c:1003/nonvoter")
    assert len(parsed.voters) == 2
    assert "2 Raft voters" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="naming.node"):
        parse_members("a:1001,b:1002/nonvoter")
    assert caplog.text == ""


@pytest.mark.parametrize(
    "raw",
    [
        "a:1001/nonvoter",  # no voter at all
        "a:1001,b:1002/voter",  # unknown suffix
        "a:1001,b:1002/",
        "a:1001,b:1002/nonvoter/nonvoter",
        "a:1001,a:1001/nonvoter",  # listed twice
    ],
)
def test_bad_voter_marks_are_refused(raw):
    with pytest.raises(CommandError):
        parse_members(raw)


@pytest.mark.parametrize("raw", ["h:x", "h:1:2:3", ":80", "h:70000", "h:80:0"])
def test_bad_member_lists_are_refused(raw):
    with pytest.raises(CommandError):
        parse_members(raw)
