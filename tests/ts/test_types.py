"""static/realtime.d.ts: it declares exactly what realtime.js exports, and a TypeScript page
using the whole API (tests/ts/example.ts) compiles against it with `tsc --noEmit --strict`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TYPES = ROOT / "realtime" / "static" / "realtime.d.ts"
TS_VERSION = "5.9.3"  # scripts/install-typescript.sh
TOOLS = Path(os.environ.get("REALTIME_TOOLS_DIR") or Path.home() / ".cache" / "realtime-test-tools")
TSC = TOOLS / f"typescript-{TS_VERSION}" / "node_modules" / "typescript" / "bin" / "tsc"
IN_CI = os.environ.get("CI") == "true"


def need(path: str | None, what: str) -> str:
    if path and os.path.exists(path):
        return path
    if IN_CI:
        pytest.fail(f"{what} is missing")
    pytest.skip(f"{what} is missing")


def js_exports(node: str) -> list[str]:
    """The names the entry point exports, as Node's module loader sees them."""
    script = ("import(process.argv[1]).then((m) => console.log(JSON.stringify(Object.keys(m))))")
    out = subprocess.run([node, "--input-type=module", "-e", script, str(ROOT / "static" / "realtime.js")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return sorted(json.loads(out))


def declared_values() -> list[str]:
    """The value exports of the d.ts: declared consts, functions and classes, and the default."""
    text = TYPES.read_text()
    names = re.findall(r"^export declare (?:const|function|class) (\w+)", text, re.M)
    if re.search(r"^export default \w+;", text, re.M):
        names.append("default")
    return sorted(names)


def test_the_typings_declare_every_export_and_nothing_else() -> None:
    """Node's list of realtime.js's exports equals the values static/realtime.d.ts declares."""
    node = need(shutil.which("node"), "node")
    exported = js_exports(node)
    assert "RealtimeClient" in exported and "default" in exported
    assert declared_values() == exported


def test_the_example_compiles_with_tsc_strict() -> None:
    """tests/ts/example.ts, which uses every part of the API and its refusals, passes `tsc --noEmit --strict`."""
    node = need(shutil.which("node"), "node")
    tsc = need(str(TSC), f"typescript {TS_VERSION} (scripts/install-typescript.sh)")
    proc = subprocess.run([node, tsc, "--noEmit", "--strict", "-p", str(ROOT / "tests" / "ts" / "tsconfig.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
