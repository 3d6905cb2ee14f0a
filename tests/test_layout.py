"""The tree stays the architecture: small modules, and the layers that `lint-imports` checks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 440  # "about 400": a module that grows past this wants splitting


def test_no_module_is_too_long():
    """Every Python module of the server stays small enough to read in one sitting."""
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / "realtime").rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_import_layers_hold():
    """lint-imports (import-linter, configured in pyproject.toml) finds every contract kept."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]'")
    run = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
