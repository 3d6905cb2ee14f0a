"""/static over a real server: the client library's entry point and every module it imports,
nested directory included, served as JavaScript, with CORS and revalidation; the typings too."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import httpx

from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "realtime" / "static"
IMPORT = re.compile(r'^(?:import|export) [^;]*? from "(\./[^"]+)";', re.M)


def module_graph() -> list[str]:
    """Every module realtime.js loads, as paths under /static, by following its imports."""
    seen: list[str] = []
    todo = ["realtime.js"]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.append(rel)
        text = (STATIC / rel).read_text()
        base = Path(rel).parent
        todo += [str((base / spec).as_posix()).removeprefix("./") for spec in IMPORT.findall(text)]
    return sorted(p.replace("/./", "/") for p in seen)


def test_every_module_is_served_as_javascript_with_cors_and_revalidation(server: ServerProcess) -> None:
    """realtime.js and each module it imports (static/realtime/...) answer 200 JavaScript, CORS, no-cache, then 304."""
    modules = module_graph()
    assert "realtime/client.js" in modules and len(modules) > 10, modules
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for rel in modules:
            r = http.get(f"/static/{rel}", headers={"Origin": "https://shop.example"})
            assert r.status_code == 200, (rel, r.status_code)
            assert r.headers["content-type"] == "text/javascript; charset=utf-8", rel
            assert r.headers["access-control-allow-origin"] == "*", rel
            assert r.headers["cache-control"] == "no-cache", rel
            assert r.content == (STATIC / rel).read_bytes(), rel
            again = http.get(f"/static/{rel}", headers={"If-None-Match": r.headers["etag"]})
            assert again.status_code == 304 and again.content == b"", rel
        types = http.get("/static/realtime.d.ts")
        assert types.status_code == 200
        assert types.headers["content-type"] == "application/typescript; charset=utf-8"
        assert "export declare class RealtimeClient" in types.text
        missing = http.get("/static/realtime/nope.js")
        assert missing.status_code == 404 and "javascript" not in missing.headers["content-type"]


def test_the_package_ships_every_static_file() -> None:
    """Each file under realtime/static matches a package-data pattern, so an installed server serves it too."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["realtime"]
    files = [p.relative_to(ROOT / "realtime").as_posix() for p in STATIC.rglob("*") if p.is_file()]
    assert any(f.startswith("static/realtime/") for f in files)
    unshipped = [f for f in files if not any(fnmatch(f, pat) and f.count("/") == pat.count("/") for pat in patterns)]
    assert not unshipped, unshipped
