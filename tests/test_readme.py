"""The README's API example (and its continuation in docs/api.md), run as written with bash and
curl against a real `realtime serve`: each answer's status and shape as the example's comments
show them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- tests/test_readme.py runs this block"
BASE_LINE = "BASE=http://127.0.0.1:8000"


def marked_block(path: Path) -> str:
    """The first ```sh block after the marker comment in `path`."""
    text = path.read_text()
    assert MARKER in text, f"{path.name} lost the marker of its runnable example"
    after = text[text.index(MARKER):]
    found = re.search(r"```sh\n(.*?)```", after, re.S)
    assert found, f"no ```sh block after the marker in {path.name}"
    return found.group(1)


def expectations(block: str) -> list[tuple[int, str]]:
    """(status, shape) of each `# -> SHAPE STATUS` comment, in order."""
    return [(int(m.group(2)), m.group(1)) for m in re.finditer(r"^# -> (.*) (\d{3})$", block, re.M)]


def pairs(value: Any, out: set[tuple[str, str]] | None = None) -> set[tuple[str, str]]:
    """Every (key, JSON of its value) anywhere in a decoded JSON document."""
    out = set() if out is None else out
    if isinstance(value, dict):
        for k, v in value.items():
            out.add((k, json.dumps(v)))
            pairs(v, out)
    elif isinstance(value, list):
        for v in value:
            pairs(v, out)
    return out


def assert_shape(shape: str, answer: Any) -> None:
    """Every `"key": literal` of the comment is in the answer (elided "..." values aside), and
    every `"key": {`/`[` names a key the answer has."""
    found = pairs(answer)
    keys = {k for k, _ in found}
    for key, literal in re.findall(r'"(\w+)": ("[^"]*"|-?\d+|true|false|null)', shape):
        if "..." in literal:
            continue  # a value the example elides
        assert (key, json.dumps(json.loads(literal))) in found, (key, literal, answer)
    for key in re.findall(r'"(\w+)": [\[{]', shape):
        assert key in keys, (key, answer)


def run_example(script: str, url: str) -> list[tuple[Any, int]]:
    if shutil.which("curl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI: curl is missing")
        pytest.skip("curl is not installed")
    assert BASE_LINE in script, "the example no longer sets BASE at its top"
    script = script.replace(BASE_LINE, f"BASE={url}", 1)
    result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    answers = []
    for line in result.stdout.splitlines():
        body, status = line.rsplit(" ", 1)
        answers.append((json.loads(body), int(status)))
    return answers


def test_readme_api_example_runs_as_written(server):
    """The README's curl session books, replays, and shows bob a 409 with the other slot."""
    readme = marked_block(ROOT / "README.md")
    expected = expectations(readme)
    answers = run_example(readme, server.url)
    assert [status for status, _ in expected] == [201, 201, 409]
    assert [status for _, status in answers] == [status for status, _ in expected]
    for (_, shape), (answer, _) in zip(expected, answers, strict=True):
        assert_shape(shape, answer)
    first, replay, conflict = (answer for answer, _ in answers)
    assert replay == first  # the Idempotency-Key replay is the first answer, not a second booking
    alternatives = conflict["error"]["alternatives"]
    assert len(alternatives) == 1 and alternatives[0]["id"] != first["slot"]["id"]


def test_api_md_hold_example_runs_after_the_readme(server):
    """docs/api.md's hold checkout, run after the README's example, answers as it shows."""
    readme = marked_block(ROOT / "README.md")
    api = marked_block(ROOT / "docs" / "api.md")
    expected = expectations(api)
    answers = run_example(readme + api, server.url)[len(expectations(readme)):]
    assert [status for status, _ in expected] == [200, 201, 410]
    assert [status for _, status in answers] == [status for status, _ in expected]
    for (_, shape), (answer, _) in zip(expected, answers, strict=True):
        assert_shape(shape, answer)
