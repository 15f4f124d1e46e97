"""Network namespaces for tests: a separate "host" behind a veth pair, and nftables faults.

    with NetNamespace() as ns:                       # 10.231.N.1 here, 10.231.N.2 inside
        server = SshServer(root, key, host=ns.inner_address, exec_prefix=ns.exec_prefix).start()
        ns.drop(port=22)                             # packets to sshd vanish: clients time out
        ns.reject(port=22)                           # answered with TCP resets: "connection refused"
        ns.unreachable(port=22)                      # ICMP host-unreachable: "no route to host"
        ns.restore()                                 # the network is healthy again

Needs root, iproute2 (`ip netns`) and nftables (`nft`); `netns_available()` says whether this
machine has them. Names are unique per process, so parallel test runs do not collide; destroy()
(also on exceptions, via the context manager) kills what still runs inside by PID and deletes the
namespace, which removes both ends of the veth pair.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import signal
import subprocess

SUBNET_PREFIX = "10.231"
TABLE = "edgetk_faults"
_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@functools.cache
def netns_available() -> bool:
    """True if this process can create namespaces and veth pairs and run nft (checked once)."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft"):
        return False
    probe = f"etkprobe{os.getpid()}"
    try:
        if _ip("netns", "add", probe, check=False).returncode != 0:
            return False
        table = subprocess.run(
            ["ip", "netns", "exec", probe, "nft", "add", "table", "inet", TABLE], capture_output=True, check=False
        )
        return table.returncode == 0
    finally:
        _ip("netns", "del", probe, check=False)


def _used_subnets() -> set[int]:
    text = _ip("-o", "-4", "addr", "show").stdout
    return {int(m) for m in re.findall(rf"inet {re.escape(SUBNET_PREFIX)}\.(\d+)\.", text)}


class NetNamespace:
    """One network namespace with a veth link to this host and a fault-injection nft table."""

    def __init__(self) -> None:
        serial = next(_counter)
        self.name = f"etk-{os.getpid()}-{serial}"
        tag = f"{os.getpid() % 100000}{serial}"
        self.host_if, self.inner_if = f"eh{tag}"[:15], f"ei{tag}"[:15]
        self.subnet: int | None = None
        self.created = False

    @property
    def host_address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.1"

    @property
    def inner_address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet}.2"

    @property
    def exec_prefix(self) -> list[str]:
        """Prefix an argv with this to run it inside the namespace (it execs: same PID)."""
        return ["ip", "netns", "exec", self.name]

    # --- lifetime -----------------------------------------------------------------------------

    def create(self) -> NetNamespace:
        _ip("netns", "add", self.name)
        self.created = True
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.inner_if)
            _ip("link", "set", self.inner_if, "netns", self.name)
            self._assign_subnet()
            _ip("link", "set", self.host_if, "up")
            _ip("-n", self.name, "addr", "add", f"{self.inner_address}/24", "dev", self.inner_if)
            _ip("-n", self.name, "link", "set", self.inner_if, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
            self._nft("add", "table", "inet", TABLE)
            self._nft("add", "chain", "inet", TABLE, "input", "{ type filter hook input priority 0 ; }")
            self._nft("add", "chain", "inet", TABLE, "output", "{ type filter hook output priority 0 ; }")
        except BaseException:
            self.destroy()
            raise
        return self

    def _assign_subnet(self) -> None:
        """Pick a 10.231.N.0/24 no other namespace on this machine uses (retry on a race)."""
        for candidate in range(1, 255):
            if candidate in _used_subnets():
                continue
            added = _ip("addr", "add", f"{SUBNET_PREFIX}.{candidate}.1/24", "dev", self.host_if, check=False)
            if added.returncode == 0:
                self.subnet = candidate
                return
        raise RuntimeError(f"no free {SUBNET_PREFIX}.N.0/24 subnet for a test namespace")

    def destroy(self) -> None:
        """Kill what runs inside (by PID) and delete the namespace and its veth pair."""
        if not self.created:
            return
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _ip("netns", "del", self.name, check=False)
        _ip("link", "del", self.host_if, check=False)  # normally gone with the namespace
        self.created = False

    def pids(self) -> list[int]:
        out = _ip("netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split()]

    def __enter__(self) -> NetNamespace:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # --- running things inside ----------------------------------------------------------------

    def run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        """Run a command inside the namespace and wait for it."""
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run([*self.exec_prefix, *argv], check=False, **kwargs)

    # --- faults -------------------------------------------------------------------------------

    def drop(self, port: int | None = None) -> None:
        """Silently drop TCP packets both ways (of one port, or all): peers see timeouts.

        Both directions, so a command already sent before the fault cannot still deliver its answer:
        a cable pulled mid-job, not only a closed door for the next one.
        """
        self._add_rule(port, "drop")
        self._add_rule(port, "drop", chain="output")

    def reject(self, port: int | None = None) -> None:
        """Answer incoming TCP packets with a reset: peers see "connection refused"/"reset"."""
        self._add_rule(port, "reject with tcp reset")

    def unreachable(self, port: int | None = None) -> None:
        """Answer incoming TCP packets with ICMP host-unreachable: peers see "no route to host"."""
        self._add_rule(port, "reject with icmpx type host-unreachable")

    def restore(self) -> None:
        """Remove every fault rule."""
        self._nft("flush", "chain", "inet", TABLE, "input")
        self._nft("flush", "chain", "inet", TABLE, "output")

    def _add_rule(self, port: int | None, verdict: str, chain: str = "input") -> None:
        direction = "dport" if chain == "input" else "sport"
        match = f"tcp {direction} {int(port)}" if port is not None else "meta l4proto tcp"
        self._nft("add", "rule", "inet", TABLE, chain, *match.split(), *verdict.split())

    def _nft(self, *args: str) -> None:
        result = self.run(["nft", *args])
        if result.returncode != 0:
            raise RuntimeError(f"nft {' '.join(args)} failed: {result.stderr.strip()}")
