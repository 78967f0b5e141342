"""Process limits the node raises at start, whichever part of it asks first."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

# No reason to ask for more than this even when the hard limit is "unlimited"-sized.
FD_CAP = 1 << 20


def raise_fd_limit(cap: int = FD_CAP) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (at most ``cap``); returns (before, after).

    An unprivileged process may always raise its soft limit up to the hard one. Idempotent:
    the HTTP server and the raft transport both call it, for thousands of connections each.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, target, exc)
            return soft, soft
        return soft, target
    return soft, soft
