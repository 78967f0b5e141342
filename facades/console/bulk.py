"""The bulk form of the service-detail page (select instances, then offline / online / set or
remove metadata): parsing and resolving what was posted, with no HTTP.

A selected row posts the query of its instance (``cluster=&ip=&port=&ephemeral=``, the same
string the row's links carry); a "select all in this cluster" box posts the cluster's name, so
the form also works without JavaScript. Everything the form can get wrong on its own (nothing
selected, a malformed line, too much text, too many rows) is an :class:`InvalidParam` before
any write; an instance that went away meanwhile is an error of that instance only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from facades.nacos_v1 import params as s
from facades.nacos_v1.params import Params
from lib.errors import InvalidParam
from naming.domain import (
    DEFAULT_CLUSTER,
    MAX_METADATA_CHARS,
    MAX_METADATA_ENTRIES,
    Instance,
    InstanceKey,
)
from naming.registry import ServiceView

MAX_SELECTED = 1000
MAX_SELECTION_CHARS = 2048  # one posted row: the instance query of the row's links

OFFLINE, ONLINE, METADATA = "offline", "online", "metadata"
ACTIONS = (OFFLINE, ONLINE, METADATA)


@dataclass(frozen=True, slots=True)
class Target:
    key: InstanceKey
    ephemeral: bool

    @property
    def label(self) -> str:
        return f"{self.key.ip}:{self.key.port} (cluster {self.key.cluster})"


def parse_action(raw: str) -> str:
    if raw not in ACTIONS:
        raise InvalidParam(f"unknown bulk action: {raw[:20]!r}")
    return raw


def parse_targets(values: Sequence[str]) -> list[Target]:
    """The selected rows, each ``cluster=&ip=&port=&ephemeral=`` (other fields ignored)."""
    if len(values) > MAX_SELECTED:
        raise InvalidParam(f"{len(values)} instances selected, at most {MAX_SELECTED} at once")
    targets: list[Target] = []
    for value in values:
        if len(value) > MAX_SELECTION_CHARS:
            raise InvalidParam("malformed selection")
        fields = parse_qs(value, keep_blank_values=True)

        def one(name: str, fields: Mapping[str, list[str]] = fields) -> str:
            found = fields.get(name, [""])
            if len(found) != 1:
                raise InvalidParam("malformed selection")
            return found[0]

        key = s.instance_key(
            Params(
                {
                    "ip": one("ip"),
                    "port": one("port"),
                    "clusterName": one("cluster") or DEFAULT_CLUSTER,
                }
            )
        )
        ephemeral = one("ephemeral").lower()
        if ephemeral not in ("true", "false"):
            raise InvalidParam("malformed selection")
        target = Target(key, ephemeral == "true")
        if target not in targets:
            targets.append(target)
    return targets


def parse_metadata_lines(text: str, remove: bool) -> dict[str, str]:
    """``key=value`` lines (blank lines skipped; the value is everything after the first ``=``,
    kept as typed). To remove keys, a line is a key, or ``key=...`` whose value is ignored."""
    if len(text) > MAX_METADATA_CHARS:
        raise InvalidParam(f"metadata too large: {len(text)} chars, at most {MAX_METADATA_CHARS}")
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not key or (not sep and not remove):
            raise InvalidParam(f"line {number}: expected key=value, got {line[:80]!r}")
        found[key] = "" if remove else value
    if not found:
        raise InvalidParam("enter at least one key=value line" if not remove else "enter keys")
    if len(found) > MAX_METADATA_ENTRIES:
        raise InvalidParam(f"{len(found)} keys, at most {MAX_METADATA_ENTRIES}")
    return found


def resolve(
    view: ServiceView, targets: Iterable[Target], all_clusters: Iterable[str]
) -> tuple[list[Instance], list[str]]:
    """The instances to act on (rows selected, then every instance of a "select all" cluster,
    each once) and an error for each selected row that is no longer registered."""
    chosen: dict[tuple[InstanceKey, bool], Instance] = {}
    errors: list[str] = []
    for target in targets:
        inst = view.find(target.key, target.ephemeral)
        if inst is None:
            errors.append(f"{target.label}: not registered any more")
        else:
            chosen.setdefault((inst.key, inst.ephemeral), inst)
    for cluster in all_clusters:
        members = view.clusters.get(cluster)
        if members is None:
            errors.append(f"cluster {cluster[:80]}: no such cluster")
            continue
        for inst in members:
            chosen.setdefault((inst.key, inst.ephemeral), inst)
    return list(chosen.values()), errors


def merge_too_large(inst: Instance, metadata: Mapping[str, str]) -> str | None:
    """Why merging ``metadata`` into this instance's would be refused, or None."""
    size = len(set(inst.metadata) | set(metadata))
    if size > MAX_METADATA_ENTRIES:
        return (
            f"{inst.ip}:{inst.port} (cluster {inst.cluster}): would have {size} metadata "
            f"entries, at most {MAX_METADATA_ENTRIES}"
        )
    return None


def counted(n: int, what: str = "instance") -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")
