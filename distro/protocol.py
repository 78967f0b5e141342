"""Distro's peer protocol: paths, the one payload codec, and what a receiver does.

Payloads are JSON: a batch is ``{"datums": [<encode_datum>...]}`` (tombstones included, so a
removal replicates), a checksum round is ``{"<datum key>": "<checksum>", ...}``, a key query is
``{"keys": ["<datum key>", ...]}``. Only our own members speak it, so it carries revisions and
typed keys rather than Nacos's ``timestamp`` map (spec §D.1 lists the Nacos original).

:class:`PeerProtocol` is the receiving side, free of HTTP: ``distro/views.py`` verifies the
signature and calls it; the in-memory transport calls it directly in unit tests.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from consistency.datum import Datum, DatumCodec, DatumKey
from consistency.service import Applied, Change
from distro.mapper import DistroMapper
from distro.store import DistroStore
from distro.transport import PeerTransport, PeerUnreachable
from lib.errors import InvalidParam, NamingError

log = logging.getLogger(__name__)

SYNC_PATH = "/nacos/v1/ns/distro/datum"
QUERY_PATH = "/nacos/v1/ns/distro/datum"  # GET with a JSON body, as Nacos does
SNAPSHOT_PATH = "/nacos/v1/ns/distro/datums"
CHECKSUM_PATH = "/nacos/v1/ns/distro/checksum"
CHANGE_PATH = "/nacos/v1/ns/distro/change"
# A renewal (a beat) for an instance this member does not own, sent to the owner, who alone
# keeps its beats and expires it. The body is opaque here: the core encodes and answers it.
TOUCH_PATH = "/nacos/v1/ns/distro/touch"


class BadPayload(InvalidParam):
    """A peer sent something we cannot read: a 400 like any other invalid parameter."""


# A sync batch is split so that no body exceeds this (a receiver accepts up to PEER_MAX_BODY).
MAX_BATCH_BYTES = 4 * 1024 * 1024
PEER_MAX_BODY = 64 * 1024 * 1024


def _encode_one(datum: Datum, codec: DatumCodec) -> bytes:
    return json.dumps(codec.encode_datum(datum), separators=(",", ":"), ensure_ascii=False).encode()


def _join(parts: list[bytes]) -> bytes:
    return b'{"datums":[' + b",".join(parts) + b"]}"


def encode_batch(datums: Iterable[Datum], codec: DatumCodec) -> bytes:
    return _join([_encode_one(d, codec) for d in datums])


def split_batches(
    datums: list[Datum], codec: DatumCodec, max_bytes: int = MAX_BATCH_BYTES
) -> Iterator[tuple[list[Datum], bytes]]:
    """Encoded batches of at most ``max_bytes`` each (a single larger datum goes alone)."""
    chunk: list[Datum] = []
    parts: list[bytes] = []
    size = 0
    for datum in datums:
        part = _encode_one(datum, codec)
        if parts and size + len(part) > max_bytes:
            yield chunk, _join(parts)
            chunk, parts, size = [], [], 0
        chunk.append(datum)
        parts.append(part)
        size += len(part) + 1
    if parts:
        yield chunk, _join(parts)


def decode_batch(body: bytes, codec: DatumCodec, allow_empty: bool = False) -> list[Datum]:
    try:
        data = json.loads(body)
        datums = [codec.decode_datum(d) for d in data["datums"]]
    except Exception as exc:  # any shape a peer (or a forger with the key) could send: a 400
        raise BadPayload(f"malformed datum batch: {type(exc).__name__}") from None
    if not datums and not allow_empty:
        raise BadPayload("empty datum batch")
    for datum in datums:
        if not datum.key.ephemeral:
            raise BadPayload(f"not an ephemeral key: {datum.key.encode()}")
    return datums


def decode_keys(raw: Iterable[Any]) -> list[DatumKey]:
    if not isinstance(raw, (list, tuple, dict)):
        raise BadPayload("keys must be a list")
    keys = []
    for item in raw:
        try:
            key = DatumKey.decode(str(item))
        except ValueError:
            raise BadPayload(f"malformed datum key: {str(item)[:80]}") from None
        if not key.ephemeral:
            raise BadPayload(f"not an ephemeral key: {str(item)[:80]}")
        keys.append(key)
    return keys


def fetch_datums(
    transport: PeerTransport,
    peer: str,
    method: str,
    path: str,
    codec: DatumCodec,
    body: bytes = b"",
    timeout: float = 10.0,
) -> tuple[int, list[Datum] | None]:
    """Ask a peer for a datum batch: (HTTP status or -1 when unreachable, the datums or None).

    Failures are logged here; callers decide what a status means (503: the peer is starting).
    """
    headers = {"Content-Type": "application/json"} if body else {}
    try:
        response = transport.call(peer, method, path, body, headers, timeout=timeout)
    except PeerUnreachable as exc:
        log.info("%s %s: %s", method, path, exc)
        return -1, None
    if not response.ok:
        if response.status != 503:
            log.warning("%s answered %s to %s %s", peer, response.status, method, path)
        return response.status, None
    try:
        return response.status, decode_batch(response.body, codec, allow_empty=True)
    except BadPayload as exc:
        log.warning("bad datum batch from %s for %s: %s", peer, path, exc)
        return response.status, None


class PeerProtocol:
    """What a member does with its peers' sync, checksum, query and snapshot requests.

    Concurrency: called from HTTP worker threads, several at a time; the store locks per key.
    One verify per source runs at a time (a second one is skipped, as in Nacos).
    """

    def __init__(
        self,
        store: DistroStore,
        mapper: Callable[[], DistroMapper],
        transport: PeerTransport,
        ready: Callable[[], bool],
        decode_change: Callable[[Any], Change],
        submit: Callable[[DatumKey, Change, float], Applied] | None = None,
    ) -> None:
        self.store = store
        self.codec = store.codec
        self._decode_change = decode_change
        # How a change from a non-owner is applied here: the cluster's owner path (sync-ack
        # included) when given, else the store alone.
        self._submit = submit or store.submit
        self._mapper = mapper
        self._transport = transport
        self._ready = ready
        self._verifying: set[str] = set()
        self._verify_lock = threading.Lock()
        # Keys a source's previous round said it no longer has; dropped only when two rounds
        # in a row agree, so a key created between a checksum and its arrival survives.
        self._drop_candidates: dict[str, set[DatumKey]] = {}
        self.synced = 0
        self.stale = 0
        self.repaired = 0
        self.dropped = 0
        self.aborted_rounds = 0

    # -- sync --------------------------------------------------------------------------------

    def on_sync(self, body: bytes) -> int:
        stored = 0
        for datum in decode_batch(body, self.codec):
            if self.store.apply_remote(datum):
                stored += 1
            else:
                self.stale += 1
        self.synced += stored
        return stored

    # -- changes from members that do not own the key ----------------------------------------

    def on_change(self, body: bytes) -> bytes:
        """Apply a change a peer could not apply itself (it does not own the key): the answer
        is the new datum, or the change's error as ``{"error": {status, code, message}}``."""
        try:
            data = json.loads(body)
            key = decode_keys([data["key"]])[0]
            change = self._decode_change(data["change"])
        except BadPayload:
            raise
        except Exception as exc:  # any malformed change is the sender's error: a 400
            raise BadPayload(f"malformed change: {type(exc).__name__}") from None
        try:
            applied = self._submit(key, change, 5.0)
        except NamingError as exc:
            return json.dumps({"error": exc.to_wire()}).encode()
        return encode_batch([applied.datum], self.codec)

    # -- queries -----------------------------------------------------------------------------

    def query(self, body: bytes) -> bytes:
        try:
            raw = json.loads(body)["keys"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BadPayload(f"malformed key query: {type(exc).__name__}") from None
        if isinstance(raw, str):
            raw = [k for k in raw.split(",") if k]
        datums = [self.store.raw(k) for k in decode_keys(raw)]
        return encode_batch((d for d in datums if d is not None), self.codec)

    def snapshot(self) -> bytes | None:
        """Everything we hold, or None while we are still loading ourselves."""
        if not self._ready():
            return None
        return encode_batch(self.store.items(), self.codec)

    # -- verify ------------------------------------------------------------------------------

    def checksums_for(self, mapper: DistroMapper) -> dict[str, str]:
        """The checksums of the live keys this member is responsible for (sending side)."""
        return {
            d.key.encode(): self.store.checksum(d)
            for d in self.store.items()
            if mapper.responsible(d.key.service)
        }

    def on_checksums(self, source: str, body: bytes) -> None:
        try:
            raw = json.loads(body)
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            sums = {k: str(v) for k, v in zip(decode_keys(raw), raw.values(), strict=True)}
        except (ValueError, TypeError) as exc:
            raise BadPayload(f"malformed checksums: {exc}") from None
        with self._verify_lock:
            if source in self._verifying:
                return
            self._verifying.add(source)
        try:
            self._verify(source, sums)
        finally:
            with self._verify_lock:
                self._verifying.discard(source)

    def _verify(self, source: str, sums: dict[DatumKey, str]) -> None:
        mapper = self._mapper()
        if any(mapper.responsible(k.service) for k in sums):
            # We disagree on ownership (membership is changing): wait for a calmer round.
            self.aborted_rounds += 1
            return
        stale = []
        for key, checksum in sums.items():
            datum = self.store.get(key)
            if datum is None or self.store.checksum(datum) != checksum:
                stale.append(key)
        if stale:
            self._pull(source, stale)
        owned_by_source = mapper.owner
        gone = {
            d.key
            for d in self.store.items()
            if d.key not in sums and owned_by_source(d.key.service) == source
        }
        confirmed = gone & self._drop_candidates.get(source, set())
        self._drop_candidates[source] = gone - confirmed
        for key in confirmed:
            if self.store.drop(key):
                self.dropped += 1

    def _pull(self, source: str, keys: list[DatumKey]) -> None:
        body = json.dumps({"keys": [k.encode() for k in keys]}).encode()
        _, datums = fetch_datums(self._transport, source, "GET", QUERY_PATH, self.codec, body)
        for datum in datums or ():
            if self.store.apply_remote(datum, authoritative=True):
                self.repaired += 1

    def stats(self) -> dict[str, int]:
        return {
            "synced": self.synced,
            "stale": self.stale,
            "repaired": self.repaired,
            "dropped": self.dropped,
            "abortedVerifyRounds": self.aborted_rounds,
        }
