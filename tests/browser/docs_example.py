"""The embedding examples of the docs, as pages for a test to serve."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def example_html(server_url: str, service_id: str, doc: str = "client.md") -> str:
    """The first ```html block of docs/`doc`, pointed at this server and service."""
    text = (DOCS / doc).read_text()
    match = re.search(r"```html\n(.*?)```", text, re.S)
    assert match, f"docs/{doc} has no ```html example"
    html = match.group(1)
    assert "https://booking.example.com" in html and "SERVICE_ID" in html
    return html.replace("https://booking.example.com", server_url).replace("SERVICE_ID", service_id)
