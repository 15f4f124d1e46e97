"""The runner's outer process: runs the measurement in a child and always answers.

The child (`measure`) loads the model; a segfaulting runtime or delegate, an OOM kill or a hang
takes only the child down. The supervisor then reports a RunnerCrashedError with the signal, or a
CommandTimeoutError, as a framed document; it removes the run folder in every case. Stdlib only,
no numpy: it must start fast and survive anything the child does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

from toolkit.errors import CommandTimeoutError, RunnerCrashedError, ToolkitError
from toolkit.runner.protocol import ERROR_STATUS, OK_STATUS, frame

REQUEST_FILE = "request.json"
RESULT_FILE = "result.json"
LOG_FILE = "runner.log"
LOG_TAIL_LINES = 20
# How often the supervisor checks its deadline and whether its controller is still there.
WATCH_INTERVAL_S = 0.5
ORPHANED_STATUS = 98
MISSING_STATUS = 96  # a cached file the request relies on is gone: {"missing": [paths]}

# Signals that mean "the runner died", with what usually causes them on devices.
CRASH_CAUSES = {
    "SIGSEGV": "a segmentation fault in the TFLite runtime or a delegate library",
    "SIGBUS": "a bus error in the TFLite runtime or a delegate library (often a truncated model file)",
    "SIGILL": "an illegal instruction: the runtime or delegate was built for another CPU",
    "SIGABRT": "an abort inside the runtime or a delegate",
    "SIGKILL": "SIGKILL, most often the out-of-memory killer",
    "SIGFPE": "an arithmetic fault in the runtime",
}


class StaleCache(Exception):
    """Files the request needs are not on the device (a cache the controller remembered was cleared)."""

    def __init__(self, paths: list) -> None:
        super().__init__(", ".join(paths))
        self.paths = paths


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def crashed(number: int, log_tail: str) -> RunnerCrashedError:
    """The error for a child killed by signal `number`."""
    name = signal_name(number)
    cause = CRASH_CAUSES.get(name, "an unexpected signal")
    return RunnerCrashedError(
        f"the runner was killed by {name}: {cause}",
        "try another delegate or runtime (--delegate cpu), or check the model file; the device log tail is in the details",
        signal=number,
        signal_name=name,
        log_tail=log_tail,
    )


def _tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 16384, 0))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def _copy_log_to_stderr(path: str) -> None:
    """Pass the child's output on (TFLite's log lines), on stderr where it cannot mix with the result."""
    try:
        with open(path, "rb") as handle:
            shutil.copyfileobj(handle, sys.stderr.buffer)
        sys.stderr.flush()
    except (OSError, AttributeError):
        pass


class Supervisor:
    """Run one measurement in a child process inside its own run folder."""

    def __init__(self, request: dict, child_prefix: list, env: dict | None = None) -> None:
        self.request = request
        self.child_prefix = list(child_prefix)
        self.env = env
        self.rundir = request["rundir"]
        self.nonce = request["nonce"]
        self.timeout_s = request.get("timeout_s")
        self.child: subprocess.Popen | None = None

    def run(self) -> int:
        """Measure, print the framed answer on stdout, return the exit status."""
        self._install_signal_handlers()
        try:
            document, status = self._measure(), OK_STATUS
        except StaleCache as stale:
            document, status = {"missing": stale.paths}, MISSING_STATUS
        except ToolkitError as error:
            document, status = {"error": error.to_dict()}, ERROR_STATUS
        finally:
            self._remove_rundir()
        document["rundir_removed"] = not os.path.exists(self.rundir)
        sys.stdout.write(frame(document, self.nonce))
        sys.stdout.flush()
        return status

    def _measure(self) -> dict:
        missing = [path for path in self.request.get("requires") or [] if not os.path.exists(path)]
        if missing:
            # The controller believed these were cached; it uploads them again and retries.
            raise StaleCache(missing)
        os.makedirs(self.rundir, exist_ok=True)
        request_path = os.path.join(self.rundir, REQUEST_FILE)
        with open(request_path, "w") as handle:
            json.dump(self.request, handle)
        log_path = os.path.join(self.rundir, LOG_FILE)
        with open(log_path, "wb") as log:
            returncode = self._run_child(request_path, log)
        _copy_log_to_stderr(log_path)
        return self._collect(returncode, log_path)

    def _run_child(self, request_path: str, log) -> int:
        argv = [*self.child_prefix, "measure", request_path]
        parent = os.getppid()
        deadline = time.monotonic() + self.timeout_s if self.timeout_s else None
        self.child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        while True:
            try:
                return self.child.wait(timeout=WATCH_INTERVAL_S)
            except subprocess.TimeoutExpired:
                pass
            if os.getppid() != parent:
                # The controller's session is gone (connection lost, controller killed): nobody
                # will read the answer, so stop measuring instead of burning the device's CPU.
                self._stop_child()
                self._remove_rundir()
                os._exit(ORPHANED_STATUS)
            if deadline is not None and time.monotonic() > deadline:
                self._stop_child()
                raise CommandTimeoutError(
                    f"the measurement did not finish within {self.timeout_s:g} s on the device",
                    "lower --max-secs or --runs, or raise the timeout; check that the device is not overloaded",
                    timeout_s=self.timeout_s,
                )

    def _stop_child(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.kill()
            self.child.wait()

    def _collect(self, returncode: int, log_path: str) -> dict:
        result_path = os.path.join(self.rundir, RESULT_FILE)
        if returncode < 0:
            raise crashed(-returncode, _tail(log_path))
        try:
            with open(result_path) as handle:
                document = json.load(handle)
        except (OSError, ValueError):
            document = None
        if isinstance(document, dict) and "error" in document:
            from toolkit.errors import error_from_dict

            raise error_from_dict(document["error"])
        if returncode != 0 or not isinstance(document, dict):
            raise RunnerCrashedError(
                f"the runner exited with status {returncode} without a result",
                "run with --debug to see the device log; this is a bug in edgetk if the log shows a Python traceback",
                returncode=returncode,
                log_tail=_tail(log_path),
            )
        return document

    def _remove_rundir(self) -> None:
        shutil.rmtree(self.rundir, ignore_errors=True)

    def _install_signal_handlers(self) -> None:
        """On SIGTERM/SIGHUP (the controller gave up): stop the child, clean up, exit."""

        def stop(signum, frame_):
            self._stop_child()
            self._remove_rundir()
            os._exit(128 + signum)

        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), stop)
