"""The read-replica numbers the docs state are the code's."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime.eventlog import listener, replica
from realtime.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _flat(doc: str) -> str:
    return " ".join((DOCS / doc).read_text().split())


def _claims() -> list[tuple[str, str]]:
    return [
        ("scaling.md", f"for at most {replica.WAIT:g} s (`WAIT`)"),
        ("scaling.md", f"unreplayed for more than {replica.MAX_LAG:g} s (`MAX_LAG`)"),
        ("scaling.md", "Every second (`RETRY`)" if replica.RETRY == 1
         else f"Every {replica.RETRY:g} s (`RETRY`)"),
        ("scaling.md", f"{listener.REPLICA_POLL_FIRST * 1000:g} ms after the previous read, "
                            f"then doubling up to every {listener.REPLICA_POLL_MAX * 1000:g} ms"),
        ("scaling.md", f"a connect timeout of {replica.CONNECT_TIMEOUT:g} s, a statement "
                            f"timeout of {replica.STATEMENT_TIMEOUT:g} s"),
        ("scaling.md", f"half of `REALTIME_POOL_SIZE`, at least {replica.read_pool_size(1)} "
                            "connections"),
        ("configuration.md", f"waits for it (at most {replica.WAIT:g} s)"),
        ("configuration.md", f"unreplayed for more than {replica.MAX_LAG:g} s"),
        ("configuration.md", f"half of `REALTIME_POOL_SIZE`, at least {replica.read_pool_size(1)} "
                             "connections"),
    ]


@pytest.mark.parametrize(("doc", "phrase"), _claims(), ids=lambda v: v[:50])
def test_docs_state_the_replica_constants(doc: str, phrase: str) -> None:
    """Each replica constant the docs state is the code's value (built from the code)."""
    assert " ".join(phrase.split()) in _flat(doc), f"docs/{doc} should say: {phrase}"


def test_the_read_pool_is_half_the_pool_and_at_least_two() -> None:
    """The read pool's size is what the docs say: half of REALTIME_POOL_SIZE, at least 2."""
    assert replica.read_pool_size(Settings().pool_size) == Settings().pool_size // 2
    assert replica.read_pool_size(30) == 15
    assert replica.read_pool_size(3) == 2
    assert replica.read_pool_size(1) == 2
