"""The launcher's warm parent of run workers, on its own (the daemon tests run real runs
through it): it accepts every launcher thread from the moment it is announced, answers a
request it cannot serve with a reason instead of a crash, and ends with its launcher."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from dagster._core.errors import DagsterLaunchFailedError

from dam_pipeline.defs.run_launcher import WarmRunWorkers


class _NoInstance:
    def get_ref(self) -> None:
        return None


def _launch(workers: WarmRunWorkers, number: int) -> str:
    run = SimpleNamespace(run_id=f"run-{number}", job_code_origin=None)
    with pytest.raises(DagsterLaunchFailedError) as failed:
        workers.start(run, _NoInstance())
    return str(failed.value)


def test_the_warm_parent_serves_every_launcher_thread_and_ends_with_its_launcher() -> None:
    workers = WarmRunWorkers()
    try:
        # six dequeue threads at once, the first of them starting the parent
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda n: _launch(workers, n), range(6)))
        assert all("could not start run run-" in answer for answer in answers), answers
        assert all("JobPythonOrigin" in answer for answer in answers), answers[0]
        parent = workers._process
        assert parent is not None and parent.poll() is None  # a bad request is not fatal
    finally:
        workers.close()
    deadline = time.monotonic() + 30
    while parent.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert parent.returncode == 0
