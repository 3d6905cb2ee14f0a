"""/static and the demo page: the client library and the widget as ES modules, served so that a
page loads them in about one round trip and a next visit asks for none of them again.

Two URLs reach each file under realtime/static:

- `/static/<file>`, unversioned, for pages that import it by a fixed URL: `no-cache` (every visit
  revalidates each file with its ETag), so a page never runs a new module beside an older one;
- `/static/v/<version>/<file>`, where <version> is a hash of the whole static tree computed once
  at start-up: `public, max-age=31536000, immutable`, so a browser keeps it and never asks again.
  Any other version answers 404 (never a different file under a name that promised this one).
  Relative imports between modules keep the prefix by themselves, so one versioned entry point
  makes the whole graph versioned.

The demo page (`GET /`) names the versioned URLs and lists every module the widget imports as
`<link rel="modulepreload">` (and in a `Link` header), so the browser fetches the whole graph at
once instead of discovering it one level of imports at a time."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent.parent / "static"

# Media types by suffix, not from the machine's mime.types (which differs between hosts and
# calls `.ts` a Qt translation file): a browser loads an ES module only with a JavaScript type.
MEDIA_TYPES = (
    (".d.ts", b"application/typescript; charset=utf-8"),
    (".js", b"text/javascript; charset=utf-8"),
    (".mjs", b"text/javascript; charset=utf-8"),
    (".css", b"text/css; charset=utf-8"),
)
REVALIDATE = b"no-cache"
IMMUTABLE = b"public, max-age=31536000, immutable"
# Long enough to be unguessable by accident, short enough to read in a URL.
VERSION_CHARS = 16
# Static imports and re-exports of a relative specifier: `import x from "./a.js"`,
# `import "./a.js"`, `export { y } from "../b.js"`. The modules are ours and written this way;
# a bare specifier ("lib") or a URL is not a file of this tree and is left out.
IMPORT = re.compile(r'^\s*(?:import|export)\b[^;"\']*?["\'](\.{1,2}/[^"\']+)["\']', re.M)
# Where the demo page gets its preload links: this comment of index.html, replaced whole.
PRELOADS = "<!-- modulepreload: GET / puts a link to each module widget.js imports here -->"


def tree_version(root: Path) -> str:
    """A hash of every file's path and bytes under `root`: changes when any file does."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        # Lengths first, so that no two trees hash the same by moving bytes across a boundary.
        digest.update(b"%d:%s%d:" % (len(rel), rel, len(data)))
        digest.update(data)
    return digest.hexdigest()[:VERSION_CHARS]


def module_graph(root: Path, entry: str) -> list[str]:
    """`entry` and every module it imports, directly or not, as paths relative to `root`, in the
    order they are first found (breadth first). A specifier leaving `root`, or naming no file
    (the browser would fail on it anyway), is skipped; so is a missing entry."""
    found = [entry] if (root / entry).is_file() else []
    for rel in found:  # grows while it is walked
        for spec in IMPORT.findall((root / rel).read_text(encoding="utf-8")):
            parts: list[str] = []
            for part in (PurePosixPath(rel).parent / spec).parts:
                if part == "..":
                    if not parts:
                        break
                    parts.pop()
                elif part != ".":
                    parts.append(part)
            else:
                target = "/".join(parts)
                if target not in found and (root / target).is_file():
                    found.append(target)
    return found


class PublicStatic:
    """/static for any site: the client library is ES modules that booking sites import
    cross-origin, which browsers only allow with CORS. The unversioned URLs are `no-cache`: a
    browser revalidates (ETag, 304) and never runs a new realtime.js against a cached older
    module beside it. `cache_control` is IMMUTABLE for the versioned URLs, whose bytes never
    change."""

    def __init__(self, app: ASGIApp, cache_control: bytes = REVALIDATE) -> None:
        self.app = app
        self.cache_control = cache_control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        media_type = next((t for suffix, t in MEDIA_TYPES if path.endswith(suffix)), None)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message.get("status")
                typed = media_type is not None and status in (200, 206)
                headers = [(k, v) for k, v in message.get("headers", [])
                           if not (typed and k.lower() == b"content-type")]
                # Only a file is kept for a year: a 404 may be a file of the next release.
                cache = self.cache_control if status in (200, 206, 304) else REVALIDATE
                headers += [(b"access-control-allow-origin", b"*"), (b"cache-control", cache)]
                if typed:
                    headers.append((b"content-type", media_type or b""))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except HTTPException as exc:
            # StaticFiles raises its 404 and 405: answered here so that they carry CORS and
            # no-cache like every other answer under /static (the file may come with a release).
            response = Response(exc.detail, status_code=exc.status_code, headers=exc.headers,
                                media_type="text/plain")
            await response(scope, receive, send_with_headers)


class ThisVersion:
    """/static/v/{version}/...: the files, for this tree's version only (PublicStatic in front
    makes them immutable)."""

    def __init__(self, directory: Path, version: str) -> None:
        self.version = version
        self.files = StaticFiles(directory=directory)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("path_params", {}).get("version") != self.version:
            # Another release's files (or none): not these bytes under its name.
            raise HTTPException(404)
        await self.files(scope, receive, send)


class Assets:
    """What start-up learns about the static tree once: its version, the module graphs of the
    entry points, and the demo page rendered with them."""

    ENTRIES = ("realtime.js", "widget.js")

    def __init__(self, root: Path = STATIC) -> None:
        self.root = root
        self.version = tree_version(root)
        self.prefix = f"/static/v/{self.version}/"
        self.graphs = {entry: module_graph(root, entry) for entry in self.ENTRIES}
        self.versioned = PublicStatic(ThisVersion(root, self.version), cache_control=IMMUTABLE)
        self.unversioned = PublicStatic(StaticFiles(directory=root))
        self.page, self.link = self._demo_page()
        self.listing = orjson.dumps({
            "version": self.version,
            "prefix": self.prefix,
            "modulepreload": {entry: [self.url(rel) for rel in graph]
                              for entry, graph in self.graphs.items()},
        })

    def url(self, rel: str) -> str:
        return self.prefix + rel

    def _demo_page(self) -> tuple[bytes | None, str]:
        """index.html with versioned URLs and a modulepreload per module of the widget, and the
        same list as a `Link` header (which a proxy can turn into 103 Early Hints)."""
        page = self.root / "index.html"
        if not page.is_file():
            return None, ""
        modules = [self.url(rel) for rel in self.graphs["widget.js"]]
        links = "\n  ".join(f'<link rel="modulepreload" href="{url}">' for url in modules)
        html = page.read_text(encoding="utf-8").replace(PRELOADS, links)
        # The page names its files as /static/...: the versioned URL of the same file.
        html = re.sub(r'((?:href|src)=")/static/(?!v/)', rf"\g<1>{self.prefix}", html)
        header = ", ".join(f"<{url}>; rel=modulepreload" for url in modules)
        if (self.root / "widget.css").is_file():
            header += f', <{self.url("widget.css")}>; rel=preload; as=style'
        return html.encode(), header

    async def index(self, request: Request) -> Response:
        """The demo page: no-cache itself (it names the release), its files immutable."""
        if self.page is None:
            return Response("<!doctype html><title>realtime</title><p>realtime is running.</p>",
                            media_type="text/html")
        etag = f'"{self.version}"'
        headers = {"Cache-Control": "no-cache", "ETag": etag, "Link": self.link}
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(self.page, media_type="text/html; charset=utf-8", headers=headers)

    async def manifest(self, request: Request) -> Response:
        """GET /static/v/manifest.json: what a page rendered elsewhere needs to name this
        release's files and preload them; for any origin, revalidated (it changes per release)."""
        return Response(self.listing, media_type="application/json",
                        headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"})
