"""docs/deployment.md says what the code does (no root needed: these read files only).

The balancer configurations in it are run by the host tests themselves (services.py reads
them from the page); here, the rest: the Procfile, the systemd unit, the variables and the
figures that come from constants.
"""

from __future__ import annotations

import inspect
import re
import shlex

import pytest

from realtime.channels import handoff, runtime
from realtime.cli import build_parser
from realtime.shared.presence import RedisPresence
from tests.hosts.services import DEPLOYMENT_DOC, ROOT, doc_block

TEXT = " ".join(DEPLOYMENT_DOC.read_text().split())


def test_procfile_block_is_the_repository_procfile():
    """The Procfile the doc shows is the repository's, line for line."""
    assert doc_block("procfile").strip() == (ROOT / "Procfile").read_text().strip()


def test_systemd_unit_runs_a_command_the_cli_accepts():
    """The unit's ExecStart is `realtime serve` with arguments the parser takes."""
    unit = doc_block("ini")
    exec_start = re.search(r"^ExecStart=(\S+) (.*)$", unit, re.M)
    assert exec_start and exec_start.group(1).endswith("/realtime")
    args = build_parser().parse_args(shlex.split(exec_start.group(2)))
    assert (args.command, args.host, args.workers) == ("serve", "0.0.0.0", 2)
    assert "KillSignal=SIGTERM" in unit


def test_environment_table_names_only_documented_variables():
    """Every variable in the doc's table is one configuration.md documents."""
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", (ROOT / "docs/configuration.md").read_text(), re.M))
    named = set(re.findall(r"`((?:REALTIME|DATABASE|REDIS)_[A-Z_]+|PORT|LOG_LEVEL)`",
                           DEPLOYMENT_DOC.read_text()))
    assert named and named <= documented, named - documented


def test_balancers_are_not_sticky():
    """Neither configuration pins a client to a server."""
    haproxy, nginx = doc_block("haproxy"), doc_block("nginx")
    assert "balance roundrobin" in haproxy
    assert not re.search(r"^\s*(cookie|stick|balance source|hash-type)\b", haproxy, re.M)
    assert not re.search(r"^\s*(ip_hash|hash|sticky)\b", nginx, re.M)
    assert "/readyz" in haproxy


def _phrases() -> list[str]:
    ttl = inspect.signature(RedisPresence.__init__).parameters["ttl"].default
    cli = (ROOT / "realtime/cli.py").read_text()
    graceful = re.search(r"timeout_graceful_shutdown=(\d+)", cli)
    assert graceful
    return [
        f"without a database connection for {handoff.FOLLOW_GRACE:g} seconds",
        f"at most {handoff.HANDOFF_RATE:,.0f} a second, all within {handoff.HANDOFF_SPREAD:g} s",
        f"entries expire after {ttl:g} s",
        f"(up to {runtime.BOOKING_DRAIN_SECONDS:g} s)",
        f"waits up to {runtime.CLOSE_DRAIN_SECONDS:g} s for those sockets to close",
        f"HTTP requests in flight (up to {graceful.group(1)} s)",
        "connections = processes x (REALTIME_POOL_SIZE + 1)",
    ]


@pytest.mark.parametrize("phrase", _phrases())
def test_doc_states_the_code_constants(phrase):
    """Each figure the doc gives for grace, pacing, TTL and drain is the code's value."""
    assert phrase in TEXT


def test_readme_links_the_deployment_doc():
    """README's docs table has a line for docs/deployment.md."""
    assert "| [docs/deployment.md](docs/deployment.md) |" in (ROOT / "README.md").read_text()
