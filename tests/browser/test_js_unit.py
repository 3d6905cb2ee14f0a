"""Runs the client library's unit tests (tests/js/*.test.mjs) with Node's built-in runner."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_client_library_unit_tests() -> None:
    node = shutil.which("node") or "/usr/bin/node"
    if not os.path.exists(node):
        if os.environ.get("CI") == "true":
            pytest.fail("node is not installed")
        pytest.skip("node is not installed")
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "js").glob("*.test.mjs"))
    assert files, "no tests/js/*.test.mjs"
    proc = subprocess.run([node, "--test", *files], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"node --test failed:\n{out[-8000:]}"
    assert "# fail 0" in out, out[-3000:]
