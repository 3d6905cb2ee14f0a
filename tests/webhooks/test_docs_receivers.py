"""The receivers docs/webhooks.md shows run as written and verify real deliveries."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.booking.helpers import BASE_TIME, make_service, make_slots
from tests.channels.conftest import Live
from tests.support.server import free_port
from tests.webhooks.test_webhooks import live  # noqa: F401 (a fixture)

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
IN_CI = __import__("os").environ.get("CI") == "true"


def receiver_source(language: str) -> str:
    found = re.search(rf"<!-- webhook-receiver: {language} -->\n```\w+\n(.*?)```", DOC.read_text(),
                      re.S)
    assert found, f"docs/webhooks.md has no {language} receiver"
    return found.group(1)


@pytest.mark.parametrize("language", ["python", "node"])
async def test_the_documented_receiver_verifies_deliveries(live: Live, language: str,  # noqa: F811
                                                           tmp_path: Path) -> None:
    """The doc's receiver accepts a real signed delivery and refuses a forged one."""
    command = {"python": [sys.executable], "node": [shutil.which("node") or ""]}[language]
    if not command[0]:
        if IN_CI:
            pytest.fail("CI: node is not installed")
        pytest.skip("node is not installed")
    script = tmp_path / ("receiver.py" if language == "python" else "receiver.js")
    script.write_text(receiver_source(language))
    port = free_port()
    async with httpx.AsyncClient(base_url=live.url) as http:
        service = await make_service(http, name=f"hooks {language}")
        created = (await http.post("/api/webhooks", json={
            "url": f"http://127.0.0.1:{port}/", "vendor_id": service["vendor_id"],
            "events": ["slot.created"]})).json()
        proc = await asyncio.create_subprocess_exec(
            *command, str(script), stdout=subprocess.PIPE,
            env={"WEBHOOK_SECRET": created["secret"], "PORT": str(port), "PATH": "/usr/bin:/bin"})
        try:
            for _ in range(100):
                try:
                    forged = await http.post(f"http://127.0.0.1:{port}/", content=b'{"id":"x"}',
                                             headers={"Realtime-Signature": "t=1,v1=00"})
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert forged.status_code == 400
            await make_slots(http, service["id"], [(BASE_TIME, BASE_TIME.replace(hour=10), 1)])
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        finally:
            proc.terminate()
            await proc.wait()
    assert line.split()[:2] == ["verified", "slot.created"], line
