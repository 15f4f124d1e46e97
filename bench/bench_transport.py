"""Per-command overhead of the transports, side by side against loopback servers.

Runs `true` on the device N times through each transport, interleaved round by round so the
noise of a shared machine hits all of them alike, and reports the median milliseconds per command:

- local: a child process (the floor);
- ssh with connection reuse (ControlMaster, the default) and without (a new login per command),
  against a private sshd on 127.0.0.1;
- adb: the real adb client and server against the fake adbd on loopback.

Target: ssh with reuse costs at most 0.5 x ssh without reuse (FIELD-NOTES measured ~0.13 s vs
~0.3 s). The other figures are reported for the record (no target: they depend on the machine).

    .venv/bin/python -m bench.bench_transport [--runs 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET_REUSE_RATIO = 0.5


def _time_ms(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return (time.perf_counter() - start) * 1000.0


def _transports(root: Path) -> tuple[dict[str, Any], list[Callable[[], None]]]:
    """Open every transport (and start its servers); return them and their cleanup callbacks."""
    from tests.servers.adbd import AdbHostServer, FakeAdbDevice
    from tests.servers.sshd import SshKey, SshServer
    from toolkit.transports import open_transport

    key = SshKey.generate(root / "client_key")
    sshd = SshServer(root / "sshd", key).start()
    adbd = FakeAdbDevice(root / "adbd").start()
    adb_server = AdbHostServer(root / "adb-server").start()
    adb_options = {"server_port": adb_server.port, "workdir": adbd.device_path("/data/local/tmp/edgetk")}
    transports = {
        "local": open_transport("local", {"workdir": str(root / "local")}),
        "ssh (reuse)": open_transport(sshd.uri, sshd.transport_options()),
        "ssh (new login)": open_transport(sshd.uri, sshd.transport_options(multiplex=False)),
        "adb": open_transport(f"adb://{adbd.serial}", adb_options),
    }
    cleanup = [t.close for t in transports.values()] + [adb_server.stop, adbd.stop, sshd.stop]
    return transports, cleanup


def measure(runs: int) -> dict[str, float]:
    """Median ms per `true` for each transport, interleaved round by round."""
    samples: dict[str, list[float]] = {}
    cleanup: list[Callable[[], None]] = []
    with tempfile.TemporaryDirectory(prefix="etk-bench-") as folder:
        try:
            transports, cleanup = _transports(Path(folder))
            for transport in transports.values():
                transport.run(["true"])  # connect, resolve, warm caches
            for _ in range(runs):
                for name, transport in transports.items():
                    samples.setdefault(name, []).append(_time_ms(lambda t=transport: t.run(["true"])))
        finally:
            for close in cleanup:
                close()
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="bench_transport", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="commands per transport")
    args = parser.parse_args(argv)
    medians = measure(args.runs)
    ratio = medians["ssh (reuse)"] / medians["ssh (new login)"]
    passed = ratio <= TARGET_REUSE_RATIO
    print(f"{'transport':<18}{'ms/command (median)':>22}{'x local':>10}")
    for name, value in medians.items():
        print(f"{name:<18}{value:>22.1f}{value / medians['local']:>10.1f}")
    print(
        f"\nssh reuse / new login: {ratio:.2f}  target <= {TARGET_REUSE_RATIO}  {'PASS' if passed else 'FAIL'}"
        f"   (runs={args.runs}, interleaved)"
    )
    return {
        "runs": args.runs,
        "ms_per_command": medians,
        "ssh_reuse_ratio": ratio,
        "target": TARGET_REUSE_RATIO,
        "pass": passed,
    }


if __name__ == "__main__":
    main()
