"""Temporary names that say which process owns them (`~pid@host`).

A process killed mid-write cannot remove its own temporary file; the sweep at worker start
can, once it knows the owner is gone. A name of another host is never judged gone from here
(its owner may be alive there): such leftovers go once stale.
"""

from __future__ import annotations

import os
import socket
import uuid


def owner_suffix() -> str:
    return f"~{os.getpid()}@{socket.gethostname()}"


def owned_name(prefix: str) -> str:
    """A unique name starting with `prefix` and ending with its owner (pid@host)."""
    return f"{prefix}{uuid.uuid4().hex}{owner_suffix()}"


def owner_gone(name: str) -> bool:
    """True when `name` says it belongs to a process of this host that no longer runs."""
    _, _, owner = name.rpartition("~")
    pid, _, host = owner.partition("@")
    if not pid.isdigit() or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
