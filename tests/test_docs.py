"""The docs stand alone: no file points at notes a user of the project does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Two notes that live outside the repository. Their names are assembled here so that this file
# does not match its own pattern.
PRIVATE_NOTES = re.compile(r"\b(?:" + "|".join(("FACTS", "CONTRACT")) + r")\.md\b")


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


# -- the constants the docs state, read from the code ----------------------------------------

def _words(n: float) -> str:
    return {2: "twice", 4: "four times", 8: "eight times"}.get(int(n), f"{n:g} times")


def _claims() -> list[tuple[str, str]]:
    """(doc, phrase): each phrase is built from the code's value, so a change on either side
    fails until the other follows."""
    import inspect

    from realtime.booking import gate
    from realtime.channels import connection, protocol, runtime, writer
    from realtime.channels.subscriber import Subscriber
    from realtime.db.errors import DEADLINE
    from realtime.eventlog import listener, store
    from realtime.http import responses
    from realtime.loadtest import options as runner
    from realtime.schema import types
    from realtime.settings import Settings
    from realtime.shared.presence import RedisPresence

    defaults = Settings()
    ttl = inspect.signature(RedisPresence.__init__).parameters["ttl"].default
    sub = Subscriber(defaults.ws_send_queue, lambda: None)
    presence = ("at most once per second per channel" if runtime.PRESENCE_INTERVAL == 1
                else f"at most once every {runtime.PRESENCE_INTERVAL:g} s per channel")
    hold_ttl = _hold_ttl()
    return [
        ("architecture.md", f"at most {gate.WIDTH} `rt_book` / `rt_hold` calls per slot in flight"),
        ("architecture.md", f"one per {listener.MIN_DRAIN_SPACING * 1000:g} ms on average"),
        ("architecture.md", f"up to {listener.DRAIN_BURST} drains may start at once"),
        ("architecture.md", f"whole batch of {listener.BATCH:,} events (`BATCH`)"),
        ("architecture.md", f"(at most {store.SNAPSHOT_LIMIT:,}, `SNAPSHOT_LIMIT`)"),
        ("architecture.md", f"A dispatch to `PARALLEL_MIN` ({writer.PARALLEL_MIN}) sockets or more"),
        ("protocol.md", f"Largest frame a client may send: {protocol.MAX_FRAME_BYTES // 1024} KiB"),
        ("protocol.md", f"| 1009 | a frame over {protocol.MAX_FRAME_BYTES // 1024} KiB |"),
        ("protocol.md", f"a string of at most {types.MAX_MESSAGE_ID} characters"),
        ("protocol.md", f"`REALTIME_WS_PING_INTERVAL` seconds (default {defaults.ws_ping_interval:g})"),
        ("protocol.md", f"`REALTIME_WS_MAX_SUBSCRIPTIONS` (default {defaults.ws_max_subscriptions})"),
        ("protocol.md", f"A snapshot holds at most {store.SNAPSHOT_LIMIT:,} slots"),
        ("protocol.md", f"more than {store.RESUME_LIMIT:,} events were missed"),
        ("protocol.md", f"`REALTIME_EVENT_RETENTION`, default {defaults.event_retention_seconds} s"),
        ("protocol.md", f"pruned every {listener.PRUNE_INTERVAL:g} s, or every tenth of the retention"),
        ("protocol.md", presence),
        ("protocol.md", f"a heartbeat that expires after {ttl:g} seconds"),
        ("protocol.md", f"stops counting within {ttl:g} seconds"),
        ("protocol.md", f"messages per second (default {defaults.ws_messages_per_second:g}, bursts of twice that)"),
        ("protocol.md", f"(`REALTIME_WS_SEND_QUEUE`, default {defaults.ws_send_queue} frames)"),
        ("protocol.md", f"at most {_words(sub.hard_limit / sub.limit)} the bound"),
        ("protocol.md", f"about {writer.TRANSPORT_HIGH_WATER // 1024} KiB of bytes waiting in its transport"),
        ("protocol.md", f"a {writer.SOCKET_SEND_BUFFER // 1024} KiB kernel send buffer"),
        ("protocol.md", f"the connection is dropped {connection.STUCK_WRITE_SECONDS:g} seconds later"),
        ("protocol.md", f"sampled on one socket in {connection.LATENCY_SAMPLE_EVERY})"),
        ("protocol.md", f"`ttl_seconds?` ({hold_ttl[0]}, {hold_ttl[1]}..{hold_ttl[2]})"),
        ("api.md", f"`{{slot_id, quantity?=1, ttl_seconds?={hold_ttl[0]}}}` ({hold_ttl[1]}..{hold_ttl[2]})"),
        ("api.md", f"(at most {store.SNAPSHOT_LIMIT:,}, by start time)"),
        ("api.md", f"| 413 | `PAYLOAD_TOO_LARGE` | body over {responses.MAX_BODY // 1024} KiB |"),
        ("api.md", f"kept {_idempotency_hours()} hours"),
        ("api.md", f"or did not answer within {DEADLINE:g} s"),
        ("reliability.md", f"has a deadline of {DEADLINE:g} s"),
        ("reliability.md", f"503 `DATABASE_UNAVAILABLE` within {DEADLINE:g} s"),
        ("deployment.md", f"the listener reconnects (backoff capped at {listener.RECONNECT_CAP:g} s)"),
        ("configuration.md", f"(a crashed process stops counting within {ttl:g} s)"),
        ("loadtest.md", f"at most {runner.MAX_SOCKETS:,} sockets, {runner.MAX_RATE:,.0f} bookings/s and "
                        + ("one hour" if runner.MAX_DURATION == 3600 else f"{runner.MAX_DURATION:g} s")),
        ("loadtest.md", f"one process holds up to {runner.MAX_SOCKETS_PER_PROCESS:,} sockets"),
        *_scaling_claims(defaults, ttl),
    ]


def _every(seconds: float) -> str:
    return "every second" if seconds == 1 else f"every {seconds:g} s"


def _scaling_claims(defaults: Any, ttl: float) -> list[tuple[str, str]]:
    """scaling.md: the connections and the timers of a process, and the sharing through Redis."""
    from realtime.channels import handoff, runtime
    from realtime.eventlog import listener
    from realtime.shared import link
    from realtime.webhooks import dispatcher

    per_process = defaults.pool_size + 1
    # The backstop drains run on the LISTEN connection: while they come more often than the
    # heartbeat, they stand in for it.
    timers = [defaults.sequencer_poll_seconds, listener.READER_BACKSTOP,
              defaults.sweep_interval_seconds, dispatcher.POLL_SECONDS]
    if defaults.sequencer_poll_seconds > listener.HEARTBEAT_INTERVAL:
        timers.append(listener.HEARTBEAT_INTERVAL)
    idle = sum(1 / t for t in timers)
    return [("scaling.md", phrase) for phrase in (
        f"up to `REALTIME_POOL_SIZE` (default {defaults.pool_size})",
        f"{per_process} per process by default",
        f"(100 - 3) / {per_process} = {97 // per_process} processes",
        f"with a heartbeat `SELECT 1` {_every(listener.HEARTBEAT_INTERVAL)}",
        f"| {_every(defaults.sequencer_poll_seconds)} | `REALTIME_SEQUENCER_POLL` |",
        f"| {_every(listener.READER_BACKSTOP)} | `realtime/eventlog/listener.py: READER_BACKSTOP` |",
        f"| {_every(listener.HEARTBEAT_INTERVAL)} | `HEARTBEAT_INTERVAL` |",
        f"| {_every(defaults.sweep_interval_seconds)} | `REALTIME_SWEEP_INTERVAL` |",
        f"| {_every(dispatcher.POLL_SECONDS)} | `realtime/webhooks/dispatcher.py: POLL_SECONDS` |",
        f"| {_every(listener.PRUNE_INTERVAL)} | `PRUNE_INTERVAL` |",
        f"That is {idle:g} transactions a second",
        f"is followed by one more after {listener.MIN_DRAIN_SPACING * 1000:g} ms",
        f"once per {listener.MIN_DRAIN_SPACING * 1000:g} ms on average in each process",
        f"at most {1 / listener.MIN_DRAIN_SPACING:g} per process by the drain spacing",
        f"a heartbeat key that expires after {ttl:g} s, "
        + ("once a second" if runtime.PRESENCE_INTERVAL == 1
           else f"every {runtime.PRESENCE_INTERVAL:g} s"),
        f"(a call times out after {link.TIMEOUT:g} s)",
        f"a ping {_every(link.PING_SECONDS)} notices its return",
        f"(`REALTIME_RESUME_EVENTS`, default {defaults.resume_events:,}",
        f"at most {handoff.HANDOFF_RATE:,.0f} a second, all within {handoff.HANDOFF_SPREAD:g} s",
    )]


def _hold_ttl() -> tuple[int, int, int]:
    """(default, lo, hi) of a hold's ttl_seconds, as the schema declares it."""
    import typing

    from realtime.schema.http import CreateHold

    meta = typing.get_args(typing.get_type_hints(CreateHold, include_extras=True)["ttl_seconds"])[1]
    return CreateHold(slot_id="x").ttl_seconds, meta.ge, meta.le


def _idempotency_hours() -> int:
    sql = (ROOT / "realtime/db/migrations/0002_functions.up.sql").read_text()
    body = sql[sql.index("FUNCTION rt_prune_idempotency_keys"):]
    found = re.search(r"interval '(\d+) hours'", body)
    assert found, "rt_prune_idempotency_keys no longer keeps keys for a number of hours"
    return int(found.group(1))


def _flat(doc: str) -> str:
    """The doc with line breaks and runs of spaces as single spaces: prose wraps anywhere."""
    return " ".join((ROOT / "docs" / doc).read_text().split())


@pytest.mark.parametrize(("doc", "phrase"), _claims(), ids=lambda v: v[:60])
def test_docs_state_the_code_constants(doc, phrase):
    """Each constant the docs state is the code's value (the phrase is built from the code)."""
    assert " ".join(phrase.split()) in _flat(doc), f"docs/{doc} should say: {phrase}"


def _documented_variables() -> dict[str, str]:
    """configuration.md's table: variable -> default cell."""
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", (ROOT / "docs/configuration.md").read_text(), re.M)
    return {name: default.strip().strip("`") for name, default in rows}


def test_configuration_table_lists_every_variable_with_its_default():
    """Every variable settings.py reads is in configuration.md's table with the code's default."""
    from realtime.settings import Settings

    source = (ROOT / "realtime/settings.py").read_text()
    read = set(re.findall(r'"((?:REALTIME_|DATABASE_|REDIS_)[A-Z_]+|PORT|LOG_LEVEL)"', source))
    table = _documented_variables()
    assert read == set(table), f"only in code: {read - set(table)}; only in docs: {set(table) - read}"
    base = Settings.from_env({})
    for name, documented in table.items():
        # The field a variable sets is the one that changes when the variable is set.
        probe = {"REALTIME_ALLOWED_ORIGINS": "https://a.example", "REALTIME_POOL": "asyncpg",
                 "REALTIME_JWKS_URL": "https://id.example/jwks.json"}.get(name, "1")
        changed = [f for f, v in vars(Settings.from_env({name: probe})).items() if v != vars(base)[f]]
        assert len(changed) == 1, (name, changed)
        default = vars(base)[changed[0]]
        # By identity: a default of 0 (a number the table shows) equals False.
        if default is None or default is False or default == ():
            assert documented in ("unset", "the server's own origin"), (name, documented)
        elif isinstance(default, Path):
            assert Path(documented) == default, (name, documented, default)
        elif isinstance(default, str):
            assert documented == default, (name, documented, default)
        else:
            assert float(documented) == default, (name, documented, default)


def test_docs_name_only_metrics_the_server_exports():
    """Every `realtime_*` metric the docs name is one the server registers (read from the
    registry /metrics serves, with every module of the server imported)."""
    import importlib

    from prometheus_client import REGISTRY

    for module in ("realtime.app", "realtime.webhooks.dispatcher", "realtime.shared.link"):
        importlib.import_module(module)
    from realtime.workers import Merged

    exported = set()
    # With --workers N, /metrics adds its own families to the registry's (realtime/workers.py).
    for family in [*REGISTRY.collect(), *Merged([]).collect()]:
        # a labelled metric with no child yet has no sample
        exported |= {family.name, *(s.name for s in family.samples)}
        if family.type in ("counter", "info"):
            exported.add(family.name + ("_total" if family.type == "counter" else "_info"))
    docs = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    named = {(p.name, m) for p in docs for m in re.findall(r"\b(realtime_[a-z0-9_]+)", p.read_text())}
    unknown = sorted((doc, m) for doc, m in named if m not in exported)
    assert not unknown, unknown


def test_docs_name_only_paths_that_exist():
    """Every repository path the README and docs/ name (realtime/..., tests/..., bench/...) exists."""
    path = re.compile(r"(?<![\w/.:-])((?:realtime|tests|bench|scripts|static|docs)/[\w./-]*\w)")
    missing = sorted({(doc.name, p) for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
                      for p in path.findall(doc.read_text()) if not (ROOT / p).exists()})
    assert not missing, missing


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.M | re.S)  # no code blocks
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_doc_links_reach_a_file_and_a_heading():
    """Every relative link in the README and docs/ names a file that exists and, with
    `#anchor`, a heading of that file."""
    broken = []
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            file = (doc.parent / path).resolve() if path else doc
            if not file.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, broken
