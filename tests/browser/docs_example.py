"""The embedding example of docs/client.md, as a page for a test to serve."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def example_html(server_url: str, service_id: str) -> str:
    """The first ```html block of docs/client.md, pointed at this server and service."""
    text = DOC.read_text()
    match = re.search(r"```html\n(.*?)```", text, re.S)
    assert match, "docs/client.md has no ```html example"
    html = match.group(1)
    assert "https://booking.example.com" in html and "SERVICE_ID" in html
    return html.replace("https://booking.example.com", server_url).replace("SERVICE_ID", service_id)
