"""The pool the tests' own pools and in-process apps use: `REALTIME_POOL`, read as the server
reads it (servers the tests start as processes inherit the variable itself).

CI runs the database tests once with REALTIME_POOL unset (ours) and once with
`REALTIME_POOL=asyncpg`.
"""

from __future__ import annotations

import os

from realtime.settings import POOL_IMPLEMENTATIONS, Settings

_ASKED = os.environ.get("REALTIME_POOL", "").strip()
SELECTED_POOL = Settings.from_env({"REALTIME_POOL": _ASKED}).pool_implementation
# The interface-level pool tests run on every pool, unless a run asks for one.
POOLS_UNDER_TEST = (SELECTED_POOL,) if _ASKED else POOL_IMPLEMENTATIONS
