"""A warm parent for run workers: Dagster, the code location and the providers' libraries
are imported once, and each run is a fork of that process.

Dagster's default launcher asks the code server to spawn a fresh interpreter for every run,
which imports Dagster and this project again before the first step: 2.5–3 s on two idle
cores, more on a busy machine, against about 1 s of work for a partition that did not
change. A fork of a process that already holds those imports starts the run in
milliseconds. The parent only imports: it never opens the instance, a store, a client or a
model, so a child inherits no connection, thread or lock, and every run still starts from
a clean state of its own.

    python -c 'from dam_pipeline.defs.run_workers import main; main()' SOCKET_PATH

``LocalRunLauncher`` starts it on first use and talks to it over the Unix socket: one JSON
line per run (``run_id``, the serialized instance ref and job origin), one line back with
the worker's pid. The parent exits when its launcher's process does (its stdin closes);
runs already started carry on.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback

import dagster as dg
from dagster._cli.api import _execute_run_command_body
from dagster._core.instance.ref import InstanceRef
from dagster._core.origin import JobPythonOrigin
from dagster._serdes import deserialize_value
from dagster._utils.hosted_user_process import recon_repository_from_origin
from dagster._utils.interrupts import capture_interrupts, setup_interrupt_handlers

from dam_pipeline.settings import Settings


def provider_libraries() -> list[str]:
    """What the configured providers import on first use (none if the settings are invalid:
    the run reports that properly)."""
    try:
        return Settings.from_env().provider_libraries()
    except Exception as exc:
        print(f"run workers: not preloading providers ({exc})", file=sys.stderr)
        return []


class WarmParent:
    def __init__(self, socket_path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(f"{socket_path}.binding")
        self.listener.listen(64)
        # the path appears only once it accepts connections: the launcher waits for it
        os.rename(f"{socket_path}.binding", socket_path)
        self.loaded: set[str] = set()

    def serve(self) -> None:
        # Children are reaped by the kernel: none lingers as a zombie after its run.
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        selector.register(sys.stdin, selectors.EVENT_READ)
        to_preload = provider_libraries()
        while True:
            # Libraries are imported while no run is asking, one at a time: the first run
            # starts as soon as the code is loaded, the later ones find everything imported.
            events = selector.select(timeout=0 if to_preload else None)
            if not events and to_preload:
                with contextlib.suppress(ImportError):
                    importlib.import_module(to_preload.pop(0))
            for key, _ in events:
                if key.fileobj is sys.stdin:
                    if not os.read(sys.stdin.fileno(), 4096):
                        return  # the launcher's process is gone
                    continue
                connection, _ = self.listener.accept()
                with connection:
                    self.handle(connection)

    def handle(self, connection: socket.socket) -> None:
        try:
            request = json.loads(connection.makefile("r").readline())
            origin = deserialize_value(request["job_origin"], JobPythonOrigin)
            self.load(origin)
        except Exception:
            reply = {"error": traceback.format_exc(limit=5)}
        else:
            pid = os.fork()
            if pid == 0:
                self.listener.close()
                connection.close()
                run_worker(request["run_id"], request["instance_ref"])
            reply = {"pid": pid}
        connection.sendall(json.dumps(reply).encode() + b"\n")

    def load(self, origin: JobPythonOrigin) -> None:
        """Import the code location once (a failure to load is the run's to report)."""
        key = origin.repository_origin.get_id()
        if key in self.loaded:
            return
        try:
            recon_repository_from_origin(origin.repository_origin).get_definition()
        except Exception:
            traceback.print_exc()
        self.loaded.add(key)


def run_worker(run_id: str, serialized_instance_ref: str) -> None:
    """The child: execute the run as ``dagster api execute_run`` would, then exit."""
    exit_code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # its own subprocesses are waited for
        signal.signal(signal.SIGINT, signal.default_int_handler)
        setup_interrupt_handlers()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the parent's lifeline pipe is not the child's
        os.close(null)
        instance_ref = deserialize_value(serialized_instance_ref, InstanceRef)
        with capture_interrupts(), dg.DagsterInstance.from_ref(instance_ref) as instance:
            _execute_run_command_body(
                run_id, instance, lambda _event: None, set_exit_code_on_failure=False
            )
        exit_code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code)


def main() -> None:
    WarmParent(sys.argv[1]).serve()


if __name__ == "__main__":
    main()
