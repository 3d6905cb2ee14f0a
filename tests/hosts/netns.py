"""A private network of hosts: one network namespace per host, wired to a bridge.

    root namespace (the test process: clients, asserts) --veth--+
    db    10.77.N.10  PostgreSQL                      --veth--+
    redis 10.77.N.11  Redis                           --veth--+-- br0 in the "sw" namespace
    lb    10.77.N.20  HAProxy (nginx on 10.77.N.21)   --veth--+
    app1  10.77.N.31, app2 10.77.N.32: realtime serve --veth--+

Each host namespace sees only its `eth0` and `lo`, so a server reaches PostgreSQL over a real
link that a test can cut (iptables DROP inside that host), and a killed process's sockets are
reset by a kernel that is not shared with the client's view of the balancer.

Names carry the test process's pid (`rth-<pid>-<host>`): a run never collides with another
run, and namespaces left by a run that was killed (its pid gone) are removed by the next one.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

PREFIX = "rth-"
HOSTS = {"db": 10, "redis": 11, "lb": 20, "nginx": 21, "app1": 31, "app2": 32}
CLIENT = 1


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_namespace_processes(name: str) -> None:
    """SIGKILL whatever still runs inside namespace `name` (a process outlives its netns)."""
    out = run("ip", "netns", "pids", name, check=False).stdout
    for pid in (int(p) for p in out.split() if p.isdigit()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def sweep_stale() -> list[str]:
    """Remove namespaces of earlier runs whose test process is gone; returns their names."""
    removed = []
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        found = re.fullmatch(rf"{PREFIX}(\d+)-\w+", name)
        if found and int(found.group(1)) != os.getpid() and not _alive(int(found.group(1))):
            kill_namespace_processes(name)
            run("ip", "netns", "del", name, check=False)
            removed.append(name)
    return removed


def _free_subnet() -> int:
    """A third octet N such that 10.77.N.0/24 is nowhere on this machine's root namespace."""
    used = run("ip", "-4", "route", "show", "table", "all").stdout + run("ip", "-4", "addr").stdout
    candidates = [n for n in range(1, 255) if f"10.77.{n}." not in used]
    if not candidates:
        raise RuntimeError("no free 10.77.N.0/24 subnet")
    return random.choice(candidates)


@dataclass
class Network:
    """The namespaces, veths and bridge of one run; `close()` removes every one of them."""

    run_id: str = field(default_factory=lambda: str(os.getpid()))
    subnet: int = 0
    namespaces: list[str] = field(default_factory=list)
    root_link: str = ""

    def ns(self, host: str) -> str:
        return f"{PREFIX}{self.run_id}-{host}"

    def ip(self, host: str) -> str:
        return f"10.77.{self.subnet}.{CLIENT if host == 'client' else HOSTS[host]}"

    def up(self, hosts: Sequence[str] = tuple(HOSTS)) -> Network:
        self.subnet = self.subnet or _free_subnet()
        switch = self.ns("sw")
        self._add_ns(switch)
        run("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", switch, "link", "set", "br0", "up")
        for host in hosts:
            name = self.ns(host)
            self._add_ns(name)
            # The host's end is `eth0` inside its namespace; the switch's end joins the bridge.
            run("ip", "-n", switch, "link", "add", f"v-{host}", "type", "veth",
                "peer", "name", "eth0", "netns", name)
            run("ip", "-n", switch, "link", "set", f"v-{host}", "master", "br0", "up")
            run("ip", "-n", name, "addr", "add", f"{self.ip(host)}/24", "dev", "eth0")
            run("ip", "-n", name, "link", "set", "eth0", "up")
        # The test process's own link into the switch: clients reach the balancer (and the
        # asserts reach each host) from the root namespace.
        self.root_link = f"rth{self.run_id}"[:15]
        run("ip", "link", "add", self.root_link, "type", "veth", "peer", "name", "v-client",
            "netns", switch)
        run("ip", "-n", switch, "link", "set", "v-client", "master", "br0", "up")
        run("ip", "addr", "add", f"{self.ip('client')}/24", "dev", self.root_link)
        run("ip", "link", "set", self.root_link, "up")
        return self

    def _add_ns(self, name: str) -> None:
        run("ip", "netns", "add", name)
        self.namespaces.append(name)
        run("ip", "-n", name, "link", "set", "lo", "up")

    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """`argv` run inside `host` (`ip netns exec` replaces itself with it: same pid)."""
        return ["ip", "netns", "exec", self.ns(host), *argv]

    def cut(self, host: str, peer: str) -> None:
        """Drop every packet between `host` and `peer`, inside `host`: a silent partition."""
        addr = self.ip(peer)
        run(*self.exec_argv(host, ["iptables", "-w", "-I", "OUTPUT", "-d", addr, "-j", "DROP"]))
        run(*self.exec_argv(host, ["iptables", "-w", "-I", "INPUT", "-s", addr, "-j", "DROP"]))

    def heal(self, host: str, peer: str) -> None:
        addr = self.ip(peer)
        run(*self.exec_argv(host, ["iptables", "-w", "-D", "OUTPUT", "-d", addr, "-j", "DROP"]),
            check=False)
        run(*self.exec_argv(host, ["iptables", "-w", "-D", "INPUT", "-s", addr, "-j", "DROP"]),
            check=False)

    def close(self) -> None:
        """Kill what runs in the namespaces, delete them (their veths and rules go with them)."""
        for name in self.namespaces:
            kill_namespace_processes(name)
        if self.root_link:
            run("ip", "link", "del", self.root_link, check=False)
        for name in reversed(self.namespaces):
            for _ in range(50):
                if run("ip", "netns", "del", name, check=False).returncode == 0:
                    break
                time.sleep(0.1)
        self.namespaces.clear()
