"""Whether a process exists, for files that name the process that wrote them."""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    """True if a process `pid` exists (a zombie too: it still holds its pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to someone else
        return True
    return True
