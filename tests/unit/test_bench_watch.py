"""The pure parts of the watch bench (bench/watch.py): SSE and chunk parsing, the requests it
sends, histogram percentiles, delivery and staleness accounting. The load itself is a
benchmark, never a test."""

from __future__ import annotations

import json
import math
import urllib.parse

import pytest

from bench.watch import (
    ChunkDecoder,
    applied_rate,
    change_request,
    change_target,
    delivery,
    event_kind,
    events_request,
    first_event,
    hist_add,
    hist_merge,
    hist_percentile,
    hist_summary,
    max_seq,
    parse_head,
    per_minute,
    scan_changes,
    staleness,
    stream_services,
)


def query_of(request: bytes) -> dict[str, str]:
    line = request.split(b"\r\n", 1)[0].decode()
    return dict(urllib.parse.parse_qsl(line.split(" ")[1].partition("?")[2]))


def chunked(*writes: bytes) -> bytes:
    return b"".join(b"%x\r\n%b\r\n" % (len(w), w) for w in writes)


CURRENT = (
    b'id: ab-1\ndata: {"kind":"current","services":[{"hosts":[{"metadata":{"seq":"1"}}]}]}\n\n'
)
UPDATE = b'id: ab-%d\ndata: {"kind":"update","instance":{"metadata":{"seq":"%d"}}}\n\n'
LEADER = b'id: ab-9\ndata: {"kind":"leader","instance":null,"scope":""}\n\n'


def read_all(stream: bytes, step: int) -> tuple[bytes | None, list[tuple[int, bytes, int]], int]:
    """The stream as the bench's protocol reads it, ``step`` bytes at a time."""
    first: bytes | None = None
    buffer = b""
    changes: list[tuple[int, bytes, int]] = []
    keepalives = 0
    for i in range(0, len(stream), step):
        buffer += stream[i : i + step]
        if first is None:
            first, buffer = first_event(buffer)
            if first is None:
                continue
        got, kept, buffer = scan_changes(buffer)
        changes += got
        keepalives += kept
    return first, changes, keepalives


@pytest.mark.parametrize("framing", ["chunked", "plain"])
def test_the_stream_is_read_in_any_split(framing: str) -> None:
    writes = [CURRENT, UPDATE % (2, 7) + UPDATE % (3, 8), b": keep-alive\n\n", LEADER]
    stream = chunked(*writes) if framing == "chunked" else b"".join(writes)
    for step in (1, 3, 17, len(stream)):
        first, changes, keepalives = read_all(stream, step)
        assert first is not None and event_kind(first) == "current"
        assert changes == [(2, b"update", 7), (3, b"update", 8), (9, b"leader", -1)]
        assert keepalives == 1


def test_crlf_lines_and_spaces_in_the_json() -> None:
    first, rest = first_event(
        b'data: {"kind": "current"}\r\n\r\nid: 0a-4\r\ndata: {"kind" : "up", "x":'
    )
    assert first is not None and event_kind(first) == "current"
    changes, _, rest = scan_changes(rest + b' {"seq": "5"}}\n\n')
    assert changes == [(4, b"up", 5)] and rest == b""
    assert first_event(b"id: 1\ndata: {") == (None, b"id: 1\ndata: {")


def test_chunk_decoder_in_any_split() -> None:
    body = b'id: a-1\ndata: {"kind":"up"}\n\n' * 3
    pieces = [body[:5], body[5:40], body[40:]]
    wire = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    for step in (1, 2, 7, len(wire)):
        decoder = ChunkDecoder()
        out = b"".join(decoder.feed(wire[i : i + step]) for i in range(0, len(wire), step))
        assert out == body and decoder.done


def test_parse_head() -> None:
    status, headers = parse_head(
        b'HTTP/1.1 304 Not Modified\r\nETag: W/"abc"\r\nTransfer-Encoding: chunked'
    )
    assert status == 304
    assert headers == {"etag": 'W/"abc"', "transfer-encoding": "chunked"}
    assert parse_head(b"garbage")[0] == 0


def test_changes_go_round_the_services_then_their_instances() -> None:
    targets = [change_target(seq, 3, 2) for seq in range(1, 8)]
    assert targets == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 0)]
    params = query_of(change_request(5, 3, 2))
    assert params["serviceName"] == "watch-001" and params["groupName"] == "BENCH_WATCH"
    assert params["ip"] == "10.0.1.1" and params["port"] == "8080"
    assert json.loads(params["metadata"]) == {"seq": "5"}
    assert change_request(5, 3, 2).startswith(b"PUT /nacos/v1/ns/instance?")


def test_streams_watch_the_group_first_then_the_services_in_turn() -> None:
    assert stream_services(7, 2, 3) == [None, None, 0, 1, 2, 0, 1]
    assert stream_services(1, 5, 3) == [None]
    group = query_of(events_request(None))
    assert "serviceName" not in group and group["groupName"] == "BENCH_WATCH"
    assert query_of(events_request("watch-002"))["serviceName"] == "watch-002"


def test_max_seq_of_a_list() -> None:
    body = b'{"hosts":[{"metadata":{"seq":"3"}},{"metadata":{"seq":"12"}},{"metadata":{}}]}'
    assert max_seq(body) == 12 and max_seq(b'{"hosts":[]}') == -1


def test_histogram_percentiles_merge_across_processes() -> None:
    a: dict[int, int] = {}
    b: dict[int, int] = {}
    for ms in range(1, 51):
        hist_add(a, ms - 0.05)  # 0.95, 1.95, ... fall in the bucket below each whole ms
    for ms in range(51, 101):
        hist_add(b, ms - 0.05)
    merged = hist_merge([a, json.loads(json.dumps(b))])  # keys as JSON leaves them
    assert hist_percentile(merged, 50) == pytest.approx(50.0)
    assert hist_percentile(merged, 99) == pytest.approx(99.0)
    assert hist_percentile(merged, 100) == pytest.approx(100.0)
    hist_add(merged, -0.3)  # an event may beat the write's own answer
    assert hist_percentile(merged, 0.5) == pytest.approx(-0.2)
    assert math.isnan(hist_percentile({}, 50))
    assert hist_summary(merged, 99.95)["count"] == 101


def test_delivery_counts_loss_duplicates_and_disorder() -> None:
    d = delivery([1, 2, 2, 4, 3], range(1, 6), [10, 11, 11, 13, 14])
    assert (d.expected, d.received, d.missing, d.duplicated, d.out_of_order) == (5, 5, 1, 1, 1)
    assert delivery([], []).missing == 0
    assert delivery([2, 1], [1, 2], [5, 4]).out_of_order == 1  # the feed's order, not seqs


def test_staleness_counts_from_each_change_to_the_first_copy_holding_it() -> None:
    observations = [(1.0, 0), (2.5, 2), (9.0, 3)]
    changes = [(1, 2.0), (2, 2.2), (3, 5.0), (4, 6.0)]
    late, never = staleness(observations, changes)
    assert late == pytest.approx([0.5, 0.3, 4.0]) and never == 1
    assert staleness([], []) == ([], 0)


def test_bytes_per_consumer_per_minute() -> None:
    assert per_minute(6000, 10, 30) == pytest.approx(1200.0)


def test_the_applied_rate_counts_answered_changes_only() -> None:
    record = [[1, 0, 0.0, 0.5, 200], [2, 0, 0.5, 1.0, 200], [3, 0, 1.0, 2.0, -1]]
    assert applied_rate(record) == pytest.approx(2.0)
    assert applied_rate([]) == 0.0
