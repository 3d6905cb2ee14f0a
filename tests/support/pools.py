"""The pool the tests' own pools and in-process apps use: `REALTIME_POOL`, read as the server
reads it (servers the tests start as processes inherit the variable itself).

CI runs the database tests once with the default and once with `REALTIME_POOL=asyncpg`.
"""

from __future__ import annotations

import os

from realtime.settings import POOL_IMPLEMENTATIONS, Settings

SELECTED_POOL = Settings.from_env(
    {"REALTIME_POOL": os.environ.get("REALTIME_POOL", "")}).pool_implementation
ALL_POOLS = POOL_IMPLEMENTATIONS
