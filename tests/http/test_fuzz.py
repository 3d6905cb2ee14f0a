"""schemathesis against a real `realtime serve` and its /openapi.json: every check, every
phase, the stateful one following the document's links into bookings, holds, cancels and
releases. Rules JSON Schema cannot state are told to the fuzzer in fuzz_hooks.py; the one
per-operation setting is in schemathesis.toml."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

HERE = Path(__file__).resolve().parent
# Fixed, so that a failure found in CI is found again by the same command; set
# REALTIME_FUZZ_SEED to explore others.
SEED = os.environ.get("REALTIME_FUZZ_SEED", "20261130")
EXAMPLES = os.environ.get("REALTIME_FUZZ_EXAMPLES", "20")
UUID = re.compile(r"/[0-9a-fA-F-]{36}(?=/|$)")


def _successes(log: str) -> Counter[tuple[str, str, int]]:
    """(method, path with {id}, status) of the 2xx requests in the server's log."""
    seen: Counter[tuple[str, str, int]] = Counter()
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "request" and 200 <= entry.get("status", 0) < 300:
            seen[(entry["method"], UUID.sub("/{id}", entry["path"]), entry["status"])] += 1
    return seen


@pytest.fixture
def server(database_url, tmp_path):
    """The server under test; webhook URLs on any address are allowed, since which addresses
    are private is policy that no schema can state (tests/webhooks covers the refusal)."""
    proc = ServerProcess(database_url, env={"REALTIME_WEBHOOKS_ALLOW_PRIVATE": "1"},
                         log_dir=tmp_path).start()
    yield proc
    proc.stop()


@pytest.mark.slow
def test_schemathesis_finds_nothing(server, tmp_path):
    """`st run --checks all` (examples, coverage, fuzzing and stateful phases) passes, and its
    stateful phase books, holds, cancels and releases for real."""
    st = Path(sys.executable).with_name("st")
    command = [str(st), "--config-file", str(HERE / "schemathesis.toml"), "run",
               f"{server.url}/openapi.json", "--checks", "all",
               "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", EXAMPLES,
               "--seed", SEED, "--workers", "1", "--request-timeout", "20"]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HERE / "fuzz_hooks.py"), "NO_COLOR": "1"}
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-8000:]
    assert re.search(r"Stateful .*\n\n\s+Scenarios:\s+[1-9]", output), output[-3000:]
    reached = _successes(server.log_path.read_text(errors="replace"))
    for operation in (("POST", "/api/bookings", 201), ("POST", "/api/holds", 201),
                      ("POST", "/api/bookings/{id}/cancel", 200),
                      ("DELETE", "/api/holds/{id}", 200), ("PATCH", "/api/slots/{id}", 200)):
        assert reached[operation] > 0, (operation, sorted(reached.items()))
