"""Who is calling, from the User-Agent (or ``Client-Version``) header: the Nacos v1 quirks that
depend on the client (Java ≥ 1.0 gets grouped names and a strict PUT; UDP push by client type
and version) are decided here, in the edge, never in the core.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

from django.http import HttpRequest


class ClientType(StrEnum):
    JAVA = "JAVA"
    DNS = "DNS"
    C = "C"
    JAVA_SDK = "JAVA_SDK"
    NACOS_SERVER = "NACOS_SERVER"
    GO = "GO"
    CSHARP = "CSHARP"
    TENGINE = "TENGINE"
    UNKNOWN = "UNKNOWN"


_AGENT_PREFIXES = (
    ("Nacos-Java-Client", ClientType.JAVA),
    ("Nacos-DNS", ClientType.DNS),
    ("Nacos-C-Client", ClientType.C),
    ("vip-client4cpp", ClientType.C),
    ("Nacos-SDK-Java", ClientType.JAVA_SDK),
    ("Nacos-Server", ClientType.NACOS_SERVER),
    ("Nacos-Go-Client", ClientType.GO),
    ("Nacos-CSharp-Client", ClientType.CSHARP),
    ("unit-nginx", ClientType.TENGINE),
)


@dataclass(frozen=True, slots=True)
class ClientInfo:
    type: ClientType
    version: tuple[int, ...]
    agent: str

    @property
    def is_java_1x(self) -> bool:
        """Java ≥ 1.0.0 (the Node SDK identifies as Java 1.0.0): grouped names, strict PUT."""
        return self.type is ClientType.JAVA and self.version >= (1, 0, 0)

    @classmethod
    def parse(cls, agent: str) -> ClientInfo:
        return _parse(agent)


MAX_CACHED_AGENT = 200  # longer agents are parsed each time: the cache stays a few KB


@functools.lru_cache(maxsize=256)
def _parse(agent: str) -> ClientInfo:
    """Cached: a fleet sends a handful of distinct agents, and every list, register and beat
    asks (a client inventing agents only cycles the bounded cache)."""
    for prefix, kind in _AGENT_PREFIXES:
        if agent.startswith(prefix):
            _, _, version = agent.partition(":v")
            return ClientInfo(kind, version_tuple(version), agent)
    return ClientInfo(ClientType.UNKNOWN, (), agent)


def version_tuple(raw: str) -> tuple[int, ...]:
    out = []
    for part in raw.split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        out.append(int(match.group()))
    return tuple(out)


def client_of(request: HttpRequest) -> ClientInfo:
    meta = request.META
    agent = meta.get("HTTP_USER_AGENT") or meta.get("HTTP_CLIENT_VERSION") or ""
    agent = str(agent)
    return _parse(agent) if len(agent) <= MAX_CACHED_AGENT else _parse.__wrapped__(agent)
