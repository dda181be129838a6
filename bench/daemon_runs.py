"""What a run costs when it goes through the Dagster daemon, as the UI launches it.

A library of ``--partitions`` prefixes (two small photos each) is ingested once with
``dam ingest``; then, with a real ``dagster-daemon`` and the instance ``dam init-home`` writes:

1. one unchanged partition is launched as a queued run, timed from the run's creation to
   its end and split into queue, process start, steps and per-run overhead: through
   ``ingest_job`` (``dagster job launch``: the first run after the daemon starts, then
   another) and from the asset graph (an ``__ASSET_JOB`` run, launched through the
   webserver's GraphQL API as the UI's "Materialize" button does);
2. all partitions are backfilled from the asset graph (GraphQL, as "Materialize all" does)
   and as ``ingest_job`` (``dagster job backfill``), each timed from the backfill's creation
   to the end of its last run;
3. while the asset-graph backfill runs, a ``query_job`` run is launched: how long it waits.

    python -m bench.daemon_runs --json out.json
    python -m bench.daemon_runs --project ../old-checkout   # the same on another version

``--project`` runs the code of another checkout (a ``git worktree`` of an older commit) with
this environment, which is how the "before" figures are measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.dagster_ui import start_dagster
from bench.library import make_camera_library

HERE = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PHOTO_SIZE = (1600, 1200)
WAIT_SECONDS = 1800
QUERY_CONFIG = ("--config-json", json.dumps({"mode": "search"}))
REPEATS = 3


def _median_run(timings: list[dict]) -> dict:
    """The run whose end-to-end time is the median, with every run's end-to-end time."""
    ordered = sorted(timings, key=lambda t: t["end_to_end_seconds"])
    middle = ordered[len(ordered) // 2]
    return {**middle, "all_end_to_end_seconds": [t["end_to_end_seconds"] for t in timings]}


def _env(project: Path, data: Path, library: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(project),
        "HF_HUB_OFFLINE": "1",
        "DAM_DATA_DIR": str(data),
        "DAM_SOURCE": str(library),
        "DAGSTER_HOME": str(data / "dagster_home"),
    }


def _run(args: list[str], env: dict, project: Path) -> str:
    done = subprocess.run(
        [str(a) for a in args], env=env, cwd=project, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def _wait(what: str, check, seconds: float = WAIT_SECONDS):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise SystemExit(f"{what} did not happen within {seconds:.0f} s")


def _step_seconds(instance, run_id: str) -> float:
    """Sum of the steps' own durations (STEP_START → STEP_SUCCESS/FAILURE)."""
    import dagster as dg

    starts, total = {}, 0.0
    for record in instance.get_records_for_run(run_id, limit=10_000).records:
        event = record.event_log_entry
        if event.dagster_event is None:
            continue
        kind = event.dagster_event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = event.timestamp
        elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            total += event.timestamp - starts.pop(event.step_key, event.timestamp)
    return total


def _timing(instance, run_id: str) -> dict:
    """Where a run's time went: in the queue (created → launched by the daemon), starting its
    process (→ RUN_START), its steps, and the rest (overhead = end to end minus steps; run
    overhead = the same without the time in the queue)."""
    import dagster as dg

    record = instance.get_run_records(dg.RunsFilter(run_ids=[run_id]), limit=1)[0]
    created = record.create_timestamp.timestamp()
    launched = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.RUN_STARTING, limit=1
    ).records
    launched_at = launched[0].event_log_entry.timestamp if launched else record.start_time
    steps = _step_seconds(instance, run_id)
    return {
        "status": record.dagster_run.status.value,
        "queued_seconds": round(launched_at - created, 2),
        "process_start_seconds": round(record.start_time - launched_at, 2),
        "step_seconds": round(steps, 2),
        "end_to_end_seconds": round(record.end_time - created, 2),
        "overhead_seconds": round(record.end_time - created - steps, 2),
        # what the run costs beyond its steps once it leaves the queue: process start, the
        # executor's bookkeeping, events
        "run_overhead_seconds": round(record.end_time - launched_at - steps, 2),
    }


def measure(project: Path, work: Path, partitions: int) -> dict:
    import dagster as dg

    library, data = work / "library", work / "data"
    shutil.rmtree(data, ignore_errors=True)
    names = [f"p{i:02d}" for i in range(partitions)]
    for number, name in enumerate(names):
        folder = library / name
        if not folder.exists():
            make_camera_library(folder / "tmp", 2, size=PHOTO_SIZE, workers=1)
            for index, photo in enumerate(sorted((folder / "tmp").iterdir())):
                photo.rename(folder / f"photo_{number}_{index}.jpg")
            (folder / "tmp").rmdir()
    env = _env(project, data, library)
    workspace = ["-w", project / "workspace.yaml"]
    _run([BIN / "dam", "ingest"], env, project)
    home = _run([BIN / "dam", "init-home"], env, project).strip().splitlines()[-1]
    env["DAGSTER_HOME"] = home
    instance = dg.DagsterInstance.from_config(home)
    log = (work / "daemon.log").open("w")
    port = _free_port()
    processes = start_dagster(env, project, log, port)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait("the daemon's first heartbeat", instance.get_daemon_heartbeats, 300)
        _wait("the webserver", lambda: _answers(f"{url}/server_info"), 300)
        return _measure_runs(instance, env, project, workspace, names, url)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=120)
        log.close()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _finished(instance, run_ids: list[str]) -> bool:
    import dagster as dg

    runs = instance.get_runs(dg.RunsFilter(run_ids=run_ids))
    return len(runs) == len(run_ids) and all(r.is_finished for r in runs)


def _new_run(instance, before: set[str], job: str):
    import dagster as dg

    return _wait(
        f"a new {job} run",
        lambda: [
            r for r in instance.get_runs(dg.RunsFilter(job_name=job)) if r.run_id not in before
        ],
    )[0]


def _backfill_result(instance, backfill_id: str, created: float) -> dict:
    """Wait for every run of the backfill; its time from creation to the last run's end."""
    import dagster as dg

    def runs() -> list:
        return instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))

    def done() -> bool:
        backfill = instance.get_backfill(backfill_id)
        return backfill.status.value != "REQUESTED" and _finished(
            instance, [r.run_id for r in runs()]
        )

    _wait("the backfill", done)
    timings = [_timing(instance, r.run_id) for r in runs()]
    records = instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in runs()]))
    return {
        "seconds": round(max(r.end_time for r in records) - created, 1),
        "runs": len(timings),
        "failed": sum(t["status"] != "SUCCESS" for t in timings),
        "step_seconds": round(sum(t["step_seconds"] for t in timings), 2),
        "run_overhead_seconds": round(sum(t["run_overhead_seconds"] for t in timings), 2),
    }


def _measure_runs(
    instance, env: dict, project: Path, workspace: list, names: list[str], url: str
) -> dict:
    import dagster as dg

    from bench.dagster_ui import backfill_partitions, materialize_partition

    def launch_job(partition: str) -> dict:
        """ingest_job for one partition, queued as the job page's launch button does."""
        before = {r.run_id for r in instance.get_runs(dg.RunsFilter(job_name="ingest_job"))}
        tags = json.dumps({"dagster/partition": partition})
        _run(
            [BIN / "dagster", "job", "launch", *workspace, "-j", "ingest_job", "--tags", tags],
            env,
            project,
        )
        run = _new_run(instance, before, "ingest_job")
        _wait("the single run to finish", lambda: _finished(instance, [run.run_id]))
        return _timing(instance, run.run_id)

    def launch_asset_graph(partition: str) -> dict:
        """The asset graph's "Materialize all" for one partition (an __ASSET_JOB run)."""
        run_id = materialize_partition(url, partition)
        _wait("the asset-graph run to finish", lambda: _finished(instance, [run_id]))
        return _timing(instance, run_id)

    first = launch_job(names[0])
    print(f"first run after the daemon started: {first}", flush=True)
    # three runs on each path, each the median of three (a single run is noisy here)
    jobs = [launch_job(names[-1 - i]) for i in range(REPEATS)]
    one = _median_run(jobs)
    print(f"one unchanged partition, ingest_job: {one}", flush=True)
    graph_one = _median_run([launch_asset_graph(names[1 + i]) for i in range(REPEATS)])
    print(f"one unchanged partition, asset graph: {graph_one}", flush=True)

    # the asset graph's backfill of every partition, with a query launched while it runs
    created = time.time()
    backfill_id = backfill_partitions(url, names)
    before = {r.run_id for r in instance.get_runs(dg.RunsFilter(job_name="query_job"))}
    _run(
        [BIN / "dagster", "job", "launch", *workspace, "-j", "query_job", *QUERY_CONFIG],
        env,
        project,
    )
    query = _new_run(instance, before, "query_job")
    _wait("the query run to finish", lambda: _finished(instance, [query.run_id]))
    query_timing = _timing(instance, query.run_id)
    graph_backfill = _backfill_result(instance, backfill_id, created)
    print(f"asset-graph backfill: {graph_backfill}", flush=True)

    # ingest_job's backfill from its job page ("Materialize all", the same GraphQL call
    # with the job's partition set), and from `dagster job backfill` (a run per partition)
    created = time.time()
    job_backfill = _backfill_result(
        instance, backfill_partitions(url, names, job="ingest_job"), created
    )
    print(f"ingest_job backfill (job page): {job_backfill}", flush=True)
    before_ids = {b.backfill_id for b in instance.get_backfills()}
    created = time.time()
    backfill_command = [BIN / "dagster", "job", "backfill", *workspace, "-j", "ingest_job"]
    _run([*backfill_command, "--noprompt", "--partitions", ",".join(names)], env, project)
    (cli_backfill_id,) = [
        b.backfill_id for b in instance.get_backfills() if b.backfill_id not in before_ids
    ]
    cli_backfill = _backfill_result(instance, cli_backfill_id, created)
    print(f"ingest_job backfill (dagster job backfill): {cli_backfill}", flush=True)
    result = {
        "partitions": len(names),
        "first_run_after_daemon_start": first,
        "single_run": one,
        "asset_graph_single_run": graph_one,
        "backfill": job_backfill,
        "asset_graph_backfill": graph_backfill,
        "cli_job_backfill": cli_backfill,
        "query_during_backfill": query_timing,
    }
    print(json.dumps(result, indent=2), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--project", type=Path, default=HERE, help="the checkout whose code runs")
    parser.add_argument("--work", type=Path, help="keep the library and data here")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = measure(args.project.resolve(), work, args.partitions)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
