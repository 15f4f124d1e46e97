"""A small adbd for tests: the adb device protocol on loopback, commands run in a sandbox folder.

No Android device or emulator can run here, so tests drive this server with the real Debian
`adb` client and a real adb server on a private port (`AdbHostServer`, `ANDROID_ADB_SERVER_PORT`).

What it implements (protocol.txt, SYNC.TXT, shell_protocol.h of AOSP's adb):
- the CNXN handshake with a device banner advertising only `shell_v2,cmd`; optionally the AUTH
  exchange that never succeeds (the client then shows the device `unauthorized`);
- streams (OPEN/OKAY/WRTE/CLSE with one-write-in-flight flow control);
- `shell:CMD` (raw: output, then close) and `shell,v2,...:CMD` (packets: 0 stdin, 1 stdout,
  2 stderr, 3 exit code, 4 close stdin, 5 window size);
- `sync:` with STAT, LIST, SEND (DATA chunks, DONE, mode), RECV and QUIT.

Commands run with /bin/sh in the sandbox folder, with `sandbox/bin` first on PATH. The device
"filesystem" is this machine's: tests point the transport's workdir into the sandbox. Faults:
`restart()` (every connection closed, the port refuses connections for a while), `drop()`
(connections closed, still listening), `hang()`/`unhang()` (a device that stops answering).
`install_benchmark_model()` puts a `benchmark_model` program in the sandbox that prints a recorded
output and exits with its code.
"""

from __future__ import annotations

import os
import shlex
import socket
import struct
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from tests.servers.procs import free_port, stop_process, wait_for

A_SYNC, A_CNXN, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_AUTH = (
    int.from_bytes(name, "little") for name in (b"SYNC", b"CNXN", b"OPEN", b"OKAY", b"CLSE", b"WRTE", b"AUTH")
)
A_VERSION = 0x01000001  # >= this version neither side checks payload checksums
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
SYNC_DATA_MAX = 64 * 1024
FEATURES = "shell_v2,cmd"  # advertise only what is implemented: the client adapts to this list

# shell protocol v2 packet ids
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN, SHELL_WINDOW = range(6)
HEADER = struct.Struct("<6I")


@dataclass(frozen=True)
class Message:
    command: int
    arg0: int
    arg1: int
    data: bytes

    def pack(self) -> bytes:
        checksum = sum(self.data) & 0xFFFFFFFF
        header = HEADER.pack(self.command, self.arg0, self.arg1, len(self.data), checksum, self.command ^ 0xFFFFFFFF)
        return header + self.data


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionError("peer closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_message(sock: socket.socket) -> Message:
    command, arg0, arg1, length, _checksum, magic = HEADER.unpack(_recv_exact(sock, HEADER.size))
    if magic != command ^ 0xFFFFFFFF:
        raise ConnectionError("bad adb message magic")
    return Message(command, arg0, arg1, _recv_exact(sock, length) if length else b"")


class Gate:
    """An event that hang()/unhang() close and open; every worker passes through it."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()

    def wait(self) -> None:
        self.open.wait()


class Stream:
    """One adb stream (a service instance): inbound data queue and flow-controlled writes."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int) -> None:
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self._inbox: list[bytes | None] = []
        self._inbox_ready = threading.Condition()
        self._buffer = b""
        self._can_send = threading.Event()
        self._can_send.set()
        self.closed = threading.Event()

    # host -> device
    def deliver(self, data: bytes | None) -> None:
        with self._inbox_ready:
            self._inbox.append(data)
            self._inbox_ready.notify()

    def read_chunk(self) -> bytes | None:
        """Next payload from the host, or None once it closed the stream."""
        with self._inbox_ready:
            self._inbox_ready.wait_for(lambda: self._inbox)
            return self._inbox.pop(0)

    def read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.read_chunk()
            if chunk is None:
                raise ConnectionError("stream closed by host")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    # device -> host
    def acknowledged(self) -> None:
        self._can_send.set()

    def write(self, data: bytes) -> None:
        for start in range(0, len(data), self.conn.max_payload):
            while not self._can_send.wait(0.2):  # one WRTE in flight until the host says OKAY
                if self.closed.is_set() or self.conn.dead.is_set():
                    raise ConnectionError("stream closed")
            self.conn.gate.wait()
            self._can_send.clear()
            self.conn.send(Message(A_WRTE, self.local_id, self.remote_id, data[start : start + self.conn.max_payload]))

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            self.conn.send(Message(A_CLSE, self.local_id, self.remote_id, b""))
            self.conn.forget(self.local_id)


class Connection:
    """One transport connection from the adb server: handshake, stream table, services."""

    def __init__(self, device: FakeAdbDevice, sock: socket.socket) -> None:
        self.device, self.sock, self.gate = device, sock, device.gate
        self.max_payload = 4096
        self._send_lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._next_id = 1
        self.dead = threading.Event()

    def send(self, message: Message) -> None:
        with self._send_lock:
            try:
                self.sock.sendall(message.pack())
            except OSError:
                self.dead.set()

    def forget(self, local_id: int) -> None:
        self._streams.pop(local_id, None)

    def serve(self) -> None:
        try:
            while True:
                message = read_message(self.sock)
                self.gate.wait()  # a hung device reads nothing more
                self._handle(message)
        except (ConnectionError, OSError):
            pass
        finally:
            self.dead.set()
            for stream in list(self._streams.values()):
                stream.closed.set()
                stream.deliver(None)
            self.sock.close()

    def _handle(self, message: Message) -> None:
        handler = {
            A_CNXN: self._on_connect,
            A_AUTH: self._on_auth,
            A_OPEN: self._on_open,
            A_OKAY: self._on_okay,
            A_WRTE: self._on_write,
            A_CLSE: self._on_close,
        }.get(message.command)
        if handler is not None:
            handler(message)

    def _on_connect(self, message: Message) -> None:
        self.max_payload = min(message.arg1, MAX_PAYLOAD) or 4096
        if self.device.unauthorized:
            self.send(Message(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))  # a signature we never accept
        else:
            self.send(Message(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.banner()))

    def _on_auth(self, message: Message) -> None:
        if not self.device.unauthorized:
            self.send(Message(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.banner()))
        elif message.arg0 == AUTH_SIGNATURE:
            self.send(Message(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))  # wrong key: ask for the next one
        # AUTH_RSAPUBLICKEY: the phone would show "Allow USB debugging?" and nobody taps it.

    def _on_open(self, message: Message) -> None:
        service = message.data.rstrip(b"\0").decode()
        local_id, self._next_id = self._next_id, self._next_id + 1
        stream = Stream(self, local_id, message.arg0)
        handler = self.device.service_for(service)
        if handler is None:
            self.send(Message(A_CLSE, 0, message.arg0, b""))
            return
        self._streams[local_id] = stream
        self.send(Message(A_OKAY, local_id, message.arg0, b""))
        threading.Thread(target=self._run_service, args=(handler, stream, service), daemon=True).start()

    def _run_service(self, handler, stream: Stream, service: str) -> None:
        try:
            handler(stream, service)
        except (ConnectionError, OSError):
            pass
        finally:
            if not self.dead.is_set():
                stream.close()

    def _on_okay(self, message: Message) -> None:
        stream = self._streams.get(message.arg1)
        if stream is not None:
            stream.acknowledged()

    def _on_write(self, message: Message) -> None:
        stream = self._streams.get(message.arg1)
        if stream is not None:
            stream.deliver(message.data)
            self.send(Message(A_OKAY, stream.local_id, stream.remote_id, b""))

    def _on_close(self, message: Message) -> None:
        stream = self._streams.pop(message.arg1, None)
        if stream is not None:
            stream.closed.set()
            stream.deliver(None)


class FakeAdbDevice:
    """The adbd: listens on host:port, runs shell and sync services in `sandbox`."""

    def __init__(self, sandbox: Path, host: str = "127.0.0.1", port: int | None = None, model: str = "edgetk-test"):
        self.sandbox = Path(sandbox)
        (self.sandbox / "bin").mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port or free_port(host)
        self.model = model
        self.unauthorized = False
        self.gate = Gate()
        self._listener: socket.socket | None = None
        self._connections: list[Connection] = []
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen] = set()
        self.services: dict[str, object] = {"shell": self._shell, "sync": self._sync}

    @property
    def serial(self) -> str:
        return f"{self.host}:{self.port}"

    def banner(self) -> bytes:
        props = f"ro.product.name={self.model};ro.product.model={self.model};ro.product.device={self.model};"
        return f"device::{props}features={FEATURES}".encode()

    def device_path(self, path: str) -> str:
        """Where an Android path such as /data/local/tmp/edgetk lives in the sandbox."""
        return str(self.sandbox / path.lstrip("/"))

    # --- lifetime -----------------------------------------------------------------------------

    def start(self) -> FakeAdbDevice:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()
        return self

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock)
            with self._lock:
                self._connections.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def stop(self) -> None:
        """Stop listening, drop every connection and kill every command still running."""
        self.gate.open.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # close() alone does not wake accept()
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        self.drop()

    def drop(self) -> None:
        """Close every connection (the adb server sees the device go away) but keep listening."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for proc in list(self._processes):
            stop_process(proc)

    def restart(self) -> None:
        """A device reboot: connections drop and the port refuses connections until start()."""
        self.stop()

    def hang(self) -> None:
        """Stop answering: connections stay open but nothing is read or written."""
        self.gate.open.clear()

    def unhang(self) -> None:
        self.gate.open.set()

    def __enter__(self) -> FakeAdbDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- services -----------------------------------------------------------------------------

    def service_for(self, service: str):
        name = service.split(":", 1)[0].split(",", 1)[0]
        return self.services.get(name)

    def _shell(self, stream: Stream, service: str) -> None:
        options, _, command = service.partition(":")
        v2 = "v2" in options.split(",")[1:]
        env = dict(os.environ, PATH=f"{self.sandbox / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command] if command else ["/bin/sh"],
            cwd=self.sandbox,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if v2 else subprocess.STDOUT,
            start_new_session=True,
        )
        self._processes.add(proc)
        try:
            self._pump_shell(stream, proc, v2)
        finally:
            self._processes.discard(proc)
            stop_process(proc)

    def _pump_shell(self, stream: Stream, proc: subprocess.Popen, v2: bool) -> None:
        def packet(kind: int, data: bytes) -> bytes:
            return struct.pack("<BI", kind, len(data)) + data if v2 else data

        def forward(pipe, kind: int) -> None:
            try:
                for chunk in iter(lambda: pipe.read1(SYNC_DATA_MAX), b""):
                    stream.write(packet(kind, chunk))
            except (ConnectionError, OSError):
                pass  # the host went away

        pumps = [threading.Thread(target=forward, args=(proc.stdout, SHELL_STDOUT), daemon=True)]
        if v2:
            pumps.append(threading.Thread(target=forward, args=(proc.stderr, SHELL_STDERR), daemon=True))
        threading.Thread(target=self._feed_stdin, args=(stream, proc, v2), daemon=True).start()
        for pump in pumps:
            pump.start()
        while proc.poll() is None:
            if stream.closed.wait(0.05):
                return  # the host went away: the finally clause kills the command, as adbd does
        for pump in pumps:
            pump.join()
        if v2 and not stream.closed.is_set():
            stream.write(packet(SHELL_EXIT, bytes([proc.returncode & 0xFF])))

    @staticmethod
    def _feed_stdin(stream: Stream, proc: subprocess.Popen, v2: bool) -> None:
        try:
            while True:
                if not v2:
                    chunk = stream.read_chunk()
                    if chunk is None:
                        break
                    proc.stdin.write(chunk)
                    proc.stdin.flush()
                    continue
                kind, length = struct.unpack("<BI", stream.read_exact(5))
                data = stream.read_exact(length)
                if kind == SHELL_STDIN:
                    proc.stdin.write(data)
                    proc.stdin.flush()
                elif kind == SHELL_CLOSE_STDIN:
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def _sync(self, stream: Stream, service: str) -> None:
        while True:
            request = stream.read_exact(8)
            kind, length = request[:4], struct.unpack("<I", request[4:])[0]
            if kind == b"QUIT":
                return
            argument = stream.read_exact(length).decode()
            handler = {b"STAT": self._sync_stat, b"LIST": self._sync_list, b"SEND": self._sync_send}.get(kind)
            if kind == b"RECV":
                self._sync_recv(stream, argument)
            elif handler is not None:
                handler(stream, argument)
            else:
                _sync_fail(stream, f"unknown sync request {kind!r}")
                return

    @staticmethod
    def _sync_stat(stream: Stream, path: str) -> None:
        try:
            st = os.lstat(path)
            values = (st.st_mode, st.st_size, int(st.st_mtime))
        except OSError:
            values = (0, 0, 0)
        stream.write(b"STAT" + struct.pack("<3I", *(v & 0xFFFFFFFF for v in values)))

    @staticmethod
    def _sync_list(stream: Stream, path: str) -> None:
        try:
            entries = list(os.scandir(path))
        except OSError:
            entries = []
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            name = entry.name.encode()
            fields = struct.pack("<4I", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(name))
            stream.write(b"DENT" + fields + name)
        stream.write(b"DONE" + bytes(16))

    @staticmethod
    def _sync_send(stream: Stream, spec: str) -> None:
        path, _, mode = spec.rpartition(",")
        target = Path(path)
        failure = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Written in place, as adbd does: an interrupted push leaves a partial file.
            handle = target.open("wb")
        except OSError as exc:
            failure, handle = f"{path}: {exc.strerror}", None
        while True:
            kind = stream.read_exact(4)
            value = struct.unpack("<I", stream.read_exact(4))[0]
            if kind == b"DATA":
                data = stream.read_exact(value)
                if handle is not None:
                    handle.write(data)
            elif kind == b"DONE":
                break
            else:
                failure = f"unexpected {kind!r} during SEND"
                break
        if handle is not None:
            handle.close()
            if mode.isdigit():
                os.chmod(target, int(mode) & 0o777)
        if failure:
            _sync_fail(stream, failure)
        else:
            stream.write(b"OKAY" + bytes(4))

    @staticmethod
    def _sync_recv(stream: Stream, path: str) -> None:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - read in chunks below
        except OSError as exc:
            _sync_fail(stream, f"{path}: {exc.strerror}")
            return
        with handle:
            for chunk in iter(lambda: handle.read(SYNC_DATA_MAX), b""):
                stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        stream.write(b"DONE" + bytes(4))

    # --- helpers for tests --------------------------------------------------------------------

    def install_benchmark_model(self, output: Path, exit_code: int = 0, name: str = "benchmark_model") -> Path:
        """A program in the sandbox that prints a recorded benchmark_model output and exits with its code.

        Every call's arguments are appended to `<name>.calls` in the sandbox, one line each.
        """
        program = self.sandbox / "bin" / name
        calls = self.sandbox / f"{name}.calls"
        program.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$*" >> {shlex.quote(str(calls))}\n'
            f"cat {shlex.quote(str(output))}\n"
            f"exit {int(exit_code)}\n"
        )
        program.chmod(0o755)
        return program


def _sync_fail(stream: Stream, message: str) -> None:
    data = message.encode()
    stream.write(b"FAIL" + struct.pack("<I", len(data)) + data)


class AdbHostServer:
    """The real adb server (Debian's `adb`) on a private port, in the foreground, stopped by PID."""

    def __init__(self, root: Path, port: int | None = None, adb: str = "adb") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.adb = adb
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        # HOME: the server writes its key pair to ~/.android; keep it out of the real home.
        return dict(os.environ, ANDROID_ADB_SERVER_PORT=str(self.port), HOME=str(self.root))

    def start(self) -> AdbHostServer:
        log = (self.root / "adb-server.log").open("ab")
        self.proc = subprocess.Popen(
            [self.adb, "-P", str(self.port), "nodaemon", "server"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        wait_for(self._answers, 15, f"the adb server on port {self.port}", interval_s=0.05)
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"adb server exited: {(self.root / 'adb-server.log').read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run an adb client command against this server."""
        return subprocess.run(
            [self.adb, "-P", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def __enter__(self) -> AdbHostServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
