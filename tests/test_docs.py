"""The docs stand alone: no file points at notes a user of the project does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Two notes that live outside the repository. Their names are assembled here so that this file
# does not match its own pattern.
PRIVATE_NOTES = re.compile(r"\b(?:" + "|".join(("FACTS", "CONTRACT")) + r")\.md\b")
# Being moved by another change; their mentions go with it. Remove this exception then.
MOVING = {"bench/booking.py", "bench/fanout.py", "realtime/static/widget.js"}


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in out.decode().split("\0") if name]


def test_no_tracked_file_names_the_private_notes():
    """No tracked text file cites the two notes users do not have; the facts live in docs/."""
    offenders = []
    for name in tracked_files():
        if name in MOVING:
            continue
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the working tree but still in the index
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if PRIVATE_NOTES.search(line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
