"""The runner's outer process: runs the measurement in a child and always answers.

The child (`measure`) loads the model; a segfaulting runtime or delegate, an OOM kill or a hang
takes only the child down. The supervisor then reports a RunnerCrashedError with the signal, or a
CommandTimeoutError, as a framed document; it removes the run folder in every case. Stdlib only,
no numpy: it must start fast and survive anything the child does.

A result carries `device_time_s` — this process's age when the answer is ready, by the device's
clock (toolkit.runner.clock) — and `phases_ms`, where that time went.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from toolkit.errors import CommandTimeoutError, RunnerCrashedError, ToolkitError
from toolkit.runner.clock import Phases, entry_perf_counter, proc_stat, process_age_s, start_ticks
from toolkit.runner.protocol import ERROR_STATUS, OK_STATUS, frame_text, with_fields

REQUEST_FILE = "request.json"
RESULT_FILE = "result.json"
PHASES_FILE = "phases.json"  # the child's phase marks, beside its result
LOG_FILE = "runner.log"
PID_FILE = "supervisor.pid"
# A run folder without a pid file (an interrupted start) is garbage after this long.
ABANDONED_AFTER_S = 24 * 3600
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
            for block in iter(lambda: handle.read(1 << 16), b""):
                sys.stderr.buffer.write(block)
        sys.stderr.flush()
    except (OSError, AttributeError):
        pass


def remove_folder(path: str) -> None:
    """Delete a run folder (best effort). It holds plain files only, so shutil — an import at every
    start — is needed only if something put a folder in it."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        entries = []
    # The PID file last: a removal cut short (the runner killed meanwhile) leaves a folder that still
    # names its dead owner, so the next run removes it instead of waiting for the age rule.
    entries.sort(key=lambda entry: entry.name == PID_FILE)
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                import shutil

                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _alive(pid: int, started: str | None = None) -> bool:
    """Whether `pid` still runs and, when its start time was recorded, is the same process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    fields = proc_stat(f"/proc/{pid}/stat")
    if fields is None:  # no /proc here: the signal's answer is all there is
        return True
    if fields[0] in ("Z", "X"):  # exited, not yet reaped (a killed supervisor whose parent is init)
        return False
    return started is None or fields[19] == started  # a different start time: the PID was reused


def pid_file_text(pid: int) -> str:
    """The PID file's text, "PID START": an identity that a reused PID does not fake."""
    started = start_ticks(f"/proc/{pid}/stat")
    return f"{pid} {started}" if started is not None else str(pid)


def reader_gone(fd: int = 1) -> bool:
    """True when nobody can read what we write to `fd` any more (its pipe or socket peer closed).

    This is how the supervisor notices that its controller is gone even when its parent process
    is a shell that outlived the connection (the ssh and adb transports keep one to report the
    exit status).
    """
    try:
        import select

        poller = select.poll()
        poller.register(fd, 0)  # no events asked: only POLLERR/POLLHUP, which are always reported
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no poll() here, or fd 1 is not pollable
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def remove_abandoned_runs(runs: str) -> None:
    """Delete run folders whose supervisor is gone (killed with SIGKILL, device rebooted, ...)."""
    try:
        names = os.listdir(runs)
    except OSError:
        return
    for name in names:
        folder = os.path.join(runs, name)
        try:
            with open(os.path.join(folder, PID_FILE)) as handle:
                pid, _, started = handle.read().strip().partition(" ")
            if int(pid) <= 0:
                raise ValueError(pid)
            abandoned = not _alive(int(pid), started or None)
        except (OSError, ValueError):  # no PID file (yet), or a damaged one: judge by age
            try:
                abandoned = time.time() - os.path.getmtime(folder) > ABANDONED_AFTER_S
            except OSError:
                continue
        if abandoned:
            remove_folder(folder)


class ForkedChild:
    """The measurement in a fork of this process: no second interpreter start, no second import of
    the runner (on a Raspberry Pi that is a few hundred milliseconds per profile)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    @staticmethod
    def available() -> bool:
        return hasattr(os, "fork") and hasattr(signal, "sigtimedwait") and hasattr(signal, "pthread_sigmask")

    @classmethod
    def start(cls, request_path: str, log_path: str, prefix: list, env: dict | None) -> ForkedChild:
        # SIGCHLD stays pending while blocked, so wait() can sleep on it without missing the exit.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            _forked_measure(request_path, log_path, parent)
        return cls(pid)

    def wait(self, timeout: float) -> int | None:
        """The exit status (negative: killed by that signal), or None if still running after timeout."""
        if self._reap() is None:
            signal.sigtimedwait({signal.SIGCHLD}, timeout)
        return self._reap()

    def _reap(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        return self.returncode

    def kill(self) -> None:
        if self._reap() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.returncode = -signal.SIGKILL


# prctl(PR_SET_PDEATHSIG, SIGKILL): the kernel kills the child when its parent dies.
PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Make this (forked) process die with its parent, the supervisor (Linux and Android).

    If the supervisor is killed (the OOM killer, kill -9), nobody would read the measurement:
    without this the child would keep the device busy until its own time limit.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes  # numpy imports it anyway

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(ORPHANED_STATUS)


def _forked_measure(request_path: str, log_path: str, parent: int) -> None:
    """Body of the forked child: output to the log, measure, exit without running the parent's cleanup."""
    status = 1
    try:
        die_with_parent(parent)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        from toolkit.runner.measure import main

        status = main(request_path)
    except BaseException:  # the child must never return into the supervisor's code
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(status)


class SpawnedChild:
    """The measurement in a new interpreter (platforms without fork)."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc

    @classmethod
    def start(cls, request_path: str, log_path: str, prefix: list, env: dict | None) -> SpawnedChild:
        import subprocess  # only here: the fork path does without it

        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [*prefix, "measure", request_path], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
            )
        return cls(proc)

    def wait(self, timeout: float) -> int | None:
        import subprocess

        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def _startup_ms(age_s: float, phases: Phases) -> float:
    """From the process start (kernel record) to the runner's first line: interpreter start-up."""
    since_entry = phases.marks[-1][1] - phases.marks[0][1]
    return round(max(age_s - since_entry, 0.0) * 1000.0, 3)


class Supervisor:
    """Run one measurement in a child process inside its own run folder."""

    def __init__(self, request: dict, child_prefix: list, env: dict | None = None) -> None:
        self.request = request
        self.child_prefix = list(child_prefix)
        self.env = env
        self.rundir = request["rundir"]
        self.nonce = request["nonce"]
        self.timeout_s = request.get("timeout_s")
        self.child: ForkedChild | SpawnedChild | None = None
        self.phases = Phases([("entry", entry_perf_counter())])

    def run(self) -> int:
        """Measure, print the framed answer on stdout, return the exit status."""
        self._install_signal_handlers()
        self.phases.mark("supervisor start")
        try:
            body, status = self._measure(), OK_STATUS
        except StaleCache as stale:
            body, status = json.dumps({"missing": stale.paths}), MISSING_STATUS
        except ToolkitError as error:
            body, status = json.dumps({"error": error.to_dict()}), ERROR_STATUS
        finally:
            self._remove_rundir()
        fields: dict = {"rundir_removed": not os.path.exists(self.rundir)}
        if status == OK_STATUS:
            fields.update(self._clock())
        sys.stdout.write(frame_text(with_fields(body, fields), self.nonce))
        sys.stdout.flush()
        return status

    def _clock(self) -> dict:
        """This process's age now (the device's own time for the result) and where it went."""
        self.phases.mark("cleanup")
        age = process_age_s()
        phases = {"interpreter start": _startup_ms(age, self.phases), **self.phases.durations_ms()}
        return {"device_time_s": round(age, 4), "phases_ms": phases}

    def _measure(self) -> str:
        """The child's result document, as the JSON text it wrote."""
        missing = [path for path in self.request.get("requires") or [] if not os.path.exists(path)]
        if missing:
            # The controller believed these were cached; it uploads them again and retries.
            raise StaleCache(missing)
        remove_abandoned_runs(os.path.dirname(self.rundir))
        os.makedirs(self.rundir, exist_ok=True)
        with open(os.path.join(self.rundir, PID_FILE), "w") as handle:
            handle.write(pid_file_text(os.getpid()))
        request_path = os.path.join(self.rundir, REQUEST_FILE)
        self.phases.mark("run folder")
        with open(request_path, "w") as handle:
            json.dump({**self.request, "phases": self.phases.to_wire()}, handle)
        log_path = os.path.join(self.rundir, LOG_FILE)
        returncode = self._run_child(request_path, log_path)
        _copy_log_to_stderr(log_path)
        return self._collect(returncode, log_path)

    def _run_child(self, request_path: str, log_path: str) -> int:
        parent = os.getppid()
        deadline = time.monotonic() + self.timeout_s if self.timeout_s else None
        kind = ForkedChild if ForkedChild.available() else SpawnedChild
        self.child = kind.start(request_path, log_path, self.child_prefix, self.env)
        while True:
            returncode = self.child.wait(WATCH_INTERVAL_S)
            if returncode is not None:
                return returncode
            if os.getppid() != parent or reader_gone():
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
        if self.child is not None:
            self.child.kill()

    def _collect(self, returncode: int, log_path: str) -> str:
        if returncode < 0:
            raise crashed(-returncode, _tail(log_path))
        text = _read(os.path.join(self.rundir, RESULT_FILE))
        if returncode != 0 or not text.rstrip().endswith("}"):
            raise self._failure(returncode, text, log_path)
        marks = _read(os.path.join(self.rundir, PHASES_FILE))
        self.phases = Phases.from_wire(json.loads(marks)["marks"] if marks else self.phases.to_wire())
        self.phases.mark("result file")
        return text  # passed on as it is: no decoding and re-encoding of every sample

    def _failure(self, returncode: int, text: str, log_path: str) -> ToolkitError:
        """The child's own error document, else a crash report."""
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if isinstance(document, dict) and "error" in document:
            from toolkit.errors import error_from_dict

            return error_from_dict(document["error"])
        return RunnerCrashedError(
            f"the runner exited with status {returncode} without a result",
            "run with --debug to see the device log; this is a bug in edgetk if the log shows a Python traceback",
            returncode=returncode,
            log_tail=_tail(log_path),
        )

    def _remove_rundir(self) -> None:
        remove_folder(self.rundir)

    def _install_signal_handlers(self) -> None:
        """On SIGTERM/SIGHUP (the controller gave up): stop the child, clean up, exit."""

        def stop(signum, frame_):
            self._stop_child()
            self._remove_rundir()
            os._exit(128 + signum)

        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), stop)
