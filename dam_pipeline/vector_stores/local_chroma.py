"""One Chroma server per index folder, started on demand and shared by every process of
this machine.

Chroma's embedded mode (``PersistentClient``) is single-process: each process keeps its own
in-memory view of the HNSW segments and id maps, so a process that keeps the library open
(`dam serve`, Dagster's code server and daemon, a notebook) answers from a stale view, or
fails ("Error finding id"), once another process writes; and a stale segment can even be
persisted over newer data. Chroma's own answer for several processes is one server with
every process a client. So the default index folder is never opened in-process: the first
process that needs it starts ``chroma run`` on 127.0.0.1 (a free port) under a small
supervisor, and every process reaches it over HTTP. A write is visible to every reader as
soon as the writer's request returns.

Files beside the folder (``<folder>.server.*``): ``.json`` (pid and URL of the running
server), ``.lock`` (held while starting or stopping it), ``.clients/`` (one lease per
process using it) and ``.log``. The supervisor stops the server once no process has held a
lease for ``idle_seconds``; a client whose server vanished starts a new one.

    python dam_pipeline/vector_stores/local_chroma.py FOLDER PORT IDLE_SECONDS
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil

START_SECONDS = 60.0
CHECK_SECONDS = 2.0


class LocalServerError(ConnectionError):
    """The local Chroma server could not be started."""


def _files(folder: Path) -> tuple[Path, Path, Path, Path]:
    def beside(suffix: str) -> Path:
        return folder.with_name(f"{folder.name}.server.{suffix}")

    return beside("json"), beside("lock"), beside("clients"), beside("log")


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int, started: float | None = None) -> bool:
    """The process exists, is not a zombie and (when known) started when recorded."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.Error:
        return False


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=timeout) as reply:
            return reply.status == 200
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _read_state(state_path: Path) -> dict | None:
    try:
        return json.loads(state_path.read_text())
    except (OSError, ValueError):
        return None


def _running(state_path: Path) -> str | None:
    """The URL of the folder's server if it is up and answering."""
    state = _read_state(state_path)
    if not state or not _alive(int(state["pid"]), state.get("started")):
        return None
    return state["url"] if _answers(state["url"]) else None


_leased: set[Path] = set()


def _take_lease(clients: Path) -> None:
    """Say that this process uses the server (the supervisor keeps it up while any does)."""
    clients.mkdir(parents=True, exist_ok=True)
    lease = clients / str(os.getpid())
    if lease in _leased and lease.exists():
        return
    lease.write_text(str(psutil.Process().create_time()))
    if not _leased:
        atexit.register(_drop_leases)
    _leased.add(lease)


def _drop_leases() -> None:
    for lease in _leased:
        if lease.name == str(os.getpid()):
            lease.unlink(missing_ok=True)
    _leased.clear()


def server_url(folder: Path, idle_seconds: float = 300.0) -> str:
    """The URL of the server of ``folder``, started if none is running; this process holds
    a lease on it until it exits."""
    folder = Path(folder).resolve()
    state_path, lock_path, clients, log_path = _files(folder)
    with _locked(lock_path):
        url = _running(state_path)
        if url is None:
            url = _start(folder, state_path, log_path, idle_seconds)
        _take_lease(clients)
    return url


def _start(folder: Path, state_path: Path, log_path: Path, idle_seconds: float) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    with open(log_path, "ab") as log:
        supervisor = subprocess.Popen(
            # this file as a script: importing the package would cost a second of start-up
            [sys.executable, __file__, str(folder), str(port), str(idle_seconds)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # outlives the command that started it; stops when idle
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_SECONDS
    while not _answers(url, timeout=0.5):
        if supervisor.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                supervisor.terminate()
            tail = log_path.read_text(errors="replace")[-400:] if log_path.exists() else ""
            raise LocalServerError(
                f"Could not start the local Chroma server for {folder} (see {log_path}): "
                f"{tail.strip().splitlines()[-1] if tail.strip() else 'no output'}"
            )
        time.sleep(0.02)
    state = {"pid": supervisor.pid, "started": psutil.Process(supervisor.pid).create_time()}
    state_path.write_text(json.dumps({**state, "url": url, "folder": str(folder)}))
    return url


def stop_server(folder: Path) -> bool:
    """Stop the folder's server now (tests, `dam reset-index`); True if one was running."""
    state_path, lock_path, _, _ = _files(Path(folder).resolve())
    with _locked(lock_path):
        state = _read_state(state_path)
        state_path.unlink(missing_ok=True)
    if not state or not _alive(int(state["pid"]), state.get("started")):
        return False
    process = psutil.Process(int(state["pid"]))
    process.terminate()
    with contextlib.suppress(psutil.TimeoutExpired):
        process.wait(timeout=30)
        return True
    process.kill()
    return True


def stop_servers_under(root: Path) -> int:
    """Stop every local server whose folder lies under ``root``; returns how many."""
    return sum(
        stop_server(state.with_name(state.name.removesuffix(".server.json")))
        for state in Path(root).rglob("*.server.json")
    )


# The supervisor


def _live_leases(clients: Path) -> int:
    live = 0
    for lease in clients.glob("*") if clients.is_dir() else ():
        try:
            started = float(lease.read_text() or 0)
            pid = int(lease.name)
        except (OSError, ValueError):
            continue
        if _alive(pid, started):
            live += 1
        else:
            lease.unlink(missing_ok=True)  # its process ended without saying so (SIGKILL)
    return live


def supervise(folder: Path, port: int, idle_seconds: float) -> int:
    """Run ``chroma run`` for ``folder`` until no process has used it for ``idle_seconds``."""
    state_path, lock_path, clients, _ = _files(folder)
    start = (
        "import sys, chromadb_rust_bindings as chroma; "
        "chroma.cli(['chroma', 'run', '--path', sys.argv[1], '--host', '127.0.0.1', "
        "'--port', sys.argv[2]])"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", start, str(folder), str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # its banner; errors go to stderr (the log)
    )

    def stop(*_: object) -> None:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    idle_since = time.monotonic()
    while server.poll() is None:
        time.sleep(CHECK_SECONDS)
        if _live_leases(clients):
            idle_since = time.monotonic()
            continue
        if time.monotonic() - idle_since < idle_seconds:
            continue
        with _locked(lock_path):  # no client may take a lease while it stops
            if _live_leases(clients):
                idle_since = time.monotonic()
                continue
            state = _read_state(state_path)
            if state and int(state["pid"]) == os.getpid():
                state_path.unlink(missing_ok=True)
            print(f"local Chroma server for {folder}: idle for {idle_seconds:g}s, stopping")
            stop()
    print(f"local Chroma server for {folder} exited with {server.returncode}")
    return server.returncode or 0


if __name__ == "__main__":
    sys.exit(supervise(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
