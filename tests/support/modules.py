"""The client library's module graph, read from the files' `import` statements apart from the
server's own parser (realtime/http/assets.py), so that a module the server missed fails a test."""

from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).resolve().parents[2] / "realtime" / "static"
# `import {a} from "./x.js";`, `import "./x.js";`, `export {b} from "./x.js";`
IMPORT = re.compile(r'^(?:import|export)(?: [^;]*? from)? "(\./[^"]+)";', re.M)


def module_graph(entry: str = "realtime.js") -> list[str]:
    """Every module `entry` loads, itself included, as paths under /static, by following its imports."""
    seen: list[str] = []
    todo = [entry]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.append(rel)
        text = (STATIC / rel).read_text()
        base = Path(rel).parent
        todo += [str((base / spec).as_posix()).removeprefix("./") for spec in IMPORT.findall(text)]
    return sorted(p.replace("/./", "/") for p in seen)
