"""/static over a real server: the client library's entry point and every module it imports,
nested directory included, served as JavaScript, with CORS and revalidation; the typings too.
The same files under /static/v/<version>/ immutable, 404 for another version or a path out of
the tree, and the demo page naming them with a preload for every module of the widget."""

from __future__ import annotations

import re
import socket
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import httpx

from tests.support.modules import module_graph
from tests.support.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "realtime" / "static"


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


def raw_get(server: ServerProcess, target: str) -> tuple[int, bytes]:
    """GET `target` byte for byte (an HTTP client would resolve `..` before sending it)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_versioned_files_are_immutable_and_only_for_this_release(server: ServerProcess) -> None:
    """/static/v/<version>/: each module immutable, with CORS; another version, `..`, a missing file: 404 uncached."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        manifest = http.get("/static/v/manifest.json")
        assert manifest.status_code == 200 and manifest.headers["cache-control"] == "no-cache"
        assert manifest.headers["access-control-allow-origin"] == "*"
        version, prefix = manifest.json()["version"], manifest.json()["prefix"]
        assert re.fullmatch(r"[0-9a-f]{16}", version) and prefix == f"/static/v/{version}/"
        modules = module_graph("widget.js")
        assert {"widget.js", "realtime.js", "realtime/client.js"} <= set(modules)
        assert sorted(manifest.json()["modulepreload"]["widget.js"]) == sorted(prefix + m for m in modules)
        for rel in [*modules, "widget.css", "realtime.d.ts"]:
            r = http.get(prefix + rel, headers={"Origin": "https://shop.example"})
            assert r.status_code == 200, (rel, r.status_code)
            assert r.headers["cache-control"] == "public, max-age=31536000, immutable", rel
            assert r.headers["access-control-allow-origin"] == "*", rel
            assert r.content == (STATIC / rel).read_bytes(), rel
            expected = {".js": "text/javascript", ".css": "text/css", ".ts": "application/typescript"}
            assert r.headers["content-type"] == expected[Path(rel).suffix] + "; charset=utf-8", rel
        other = "0" * 16 if version != "0" * 16 else "1" * 16
        for path in (f"/static/v/{other}/realtime.js", f"/static/v/{version[:-1]}/realtime.js",
                     f"/static/v/{version}/realtime/nope.js", f"/static/v/{version}/"):
            r = http.get(path)
            assert r.status_code == 404, path
            assert r.headers["cache-control"] == "no-cache", path
            assert "javascript" not in r.headers.get("content-type", ""), path
    # realtime/app.py is static/../app.py: each target would reach it without the checks.
    secret = (ROOT / "realtime" / "app.py").read_bytes()[:60]
    assert (STATIC / ".." / "app.py").resolve() == ROOT / "realtime" / "app.py"
    # `..` does reach the server as sent: inside the tree it is followed.
    inside = raw_get(server, f"/static/v/{version}/realtime/../realtime.js")
    assert inside == (200, (STATIC / "realtime.js").read_bytes())
    for target in (f"/static/v/{version}/../app.py", f"/static/v/{version}/%2e%2e/app.py",
                   f"/static/v/{version}/..%2fapp.py", f"/static/v/{version}/%2e%2e%2fapp.py",
                   f"/static/v/{version}/realtime/../../app.py", "/static/v/../app.py",
                   f"/static/v/{version}/../http/assets.py", "/static/../app.py", "/static/%2e%2e/app.py"):
        status, body = raw_get(server, target)
        assert status in (400, 404), (target, status)
        assert secret not in body, target


def test_the_demo_page_preloads_every_module_of_the_widget(server: ServerProcess) -> None:
    """GET / names the versioned widget and preloads (tags, Link header) each module it imports; 304 when unchanged."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        prefix = http.get("/static/v/manifest.json").json()["prefix"]
        page = http.get("/")
        assert page.status_code == 200 and page.headers["cache-control"] == "no-cache"
        html = page.text
        expected = sorted(prefix + rel for rel in module_graph("widget.js"))
        tags = re.findall(r'<link rel="modulepreload" href="([^"]+)">', html)
        assert sorted(tags) == expected, set(tags) ^ set(expected)
        header = re.findall(r"<([^>]+)>; rel=modulepreload", page.headers["link"])
        assert sorted(header) == expected
        assert f'<script type="module" src="{prefix}widget.js">' in html
        assert f'href="{prefix}widget.css"' in html
        assert '"/static/' not in html.replace('"/static/v/', "")  # no unversioned URL left
        again = http.get("/", headers={"If-None-Match": page.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
