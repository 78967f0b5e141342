"""Private files: the one helper that creates secret files (0600 in a 0700 directory).

Every secret the node keeps on disk (the Django key, and when standalone the raft password and
the token key: ``lib.keys.node_keys``) is created here, through :func:`write_private`; nothing
is ever readable by another user, not even for a moment.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path


def read_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """A secret generated on first use and kept in the data dir (never a constant in code)."""

    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    write_private(path, value)
    return value


def read_or_create_key(path: Path, nbytes: int = 32) -> bytes:
    """Random key bytes generated on first use and kept (hex) in the data dir."""
    if path.exists():
        key = bytes.fromhex(path.read_text().strip())
        if len(key) < nbytes:
            raise ValueError(f"{path} holds a key shorter than {nbytes} bytes")
        return key
    key = secrets.token_bytes(nbytes)
    write_private(path, key.hex())
    return key


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) readable by the owner only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, created 0600 (never readable by others, not even
    between the write and a chmod), in a private directory."""

    make_private_dir(path.parent)
    # mkstemp creates the file 0600 with a fresh name (no leftover or concurrent writer's file).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
