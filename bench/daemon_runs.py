"""What a run costs when it goes through the Dagster daemon, as the UI launches it.

A library of ``--partitions`` prefixes (two small photos each) is ingested once with
``dam ingest``; then, with a real ``dagster-daemon`` and the instance ``dam init-home`` writes:

1. one unchanged partition is launched as a queued run (``dagster job launch``), timed from
   the run's creation to its end, and split into step time and per-run overhead: the first
   run after the daemon starts (its launcher starts the warm parent of run workers), then
   another, as every later run goes;
2. all partitions are backfilled (``dagster job backfill``), timed from the backfill's creation
   to the end of its last run;
3. while that backfill runs, a ``query_job`` run is launched: how long it waits in the queue.

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

from bench.library import make_camera_library

HERE = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PHOTO_SIZE = (1600, 1200)
WAIT_SECONDS = 1800


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
    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", *workspace], env=env, cwd=project, stdout=log, stderr=log
    )
    try:
        _wait("the daemon's first heartbeat", instance.get_daemon_heartbeats, 300)
        return _measure_runs(instance, env, project, workspace, names)
    finally:
        daemon.terminate()
        daemon.wait(timeout=120)
        log.close()


def _finished(instance, run_ids: list[str]) -> bool:
    import dagster as dg

    runs = instance.get_runs(dg.RunsFilter(run_ids=run_ids))
    return len(runs) == len(run_ids) and all(r.is_finished for r in runs)


def _measure_runs(instance, env: dict, project: Path, workspace: list, names: list[str]) -> dict:
    import dagster as dg

    # 1. one unchanged partition, launched into the queue as the UI does: the first run
    # after the daemon started (which starts the launcher's warm parent), then another
    def launch_one(partition: str) -> dict:
        before = {r.run_id for r in instance.get_runs(dg.RunsFilter(job_name="ingest_job"))}
        tags = json.dumps({"dagster/partition": partition})
        _run(
            [BIN / "dagster", "job", "launch", *workspace, "-j", "ingest_job", "--tags", tags],
            env,
            project,
        )
        run = _wait(
            "the single run",
            lambda: [
                r
                for r in instance.get_runs(dg.RunsFilter(job_name="ingest_job"))
                if r.run_id not in before
            ],
        )[0]
        _wait("the single run to finish", lambda: _finished(instance, [run.run_id]))
        return _timing(instance, run.run_id)

    first = launch_one(names[0])
    print(f"first run after the daemon started: {first}", flush=True)
    one = launch_one(names[-1])
    print(f"one unchanged partition through the daemon: {one}", flush=True)

    # 2. a backfill of every partition, 3. a query launched while it runs
    before = {r.run_id for r in instance.get_runs(dg.RunsFilter(job_name="ingest_job"))}
    started = time.time()
    _run(
        [
            BIN / "dagster",
            "job",
            "backfill",
            *workspace,
            "-j",
            "ingest_job",
            "--partitions",
            ",".join(names),
            "--noprompt",
        ],
        env,
        project,
    )

    def backfill_runs() -> list:
        runs = instance.get_runs(dg.RunsFilter(job_name="ingest_job"))
        return [r for r in runs if r.run_id not in before]

    _wait(
        "the backfill's first run to start",
        lambda: any(r.status != dg.DagsterRunStatus.QUEUED for r in backfill_runs()),
    )
    query_config = json.dumps({"ops": {"answer_question": {"config": {"mode": "search"}}}})
    _run(
        [
            BIN / "dagster",
            "job",
            "launch",
            *workspace,
            "-j",
            "query_job",
            "--config-json",
            query_config,
        ],
        env,
        project,
    )
    query = _wait("the query run", lambda: instance.get_runs(dg.RunsFilter(job_name="query_job")))
    _wait("the query run to finish", lambda: _finished(instance, [query[0].run_id]))
    query_timing = _timing(instance, query[0].run_id)
    backfill_busy = sum(not r.is_finished for r in backfill_runs())
    _wait(
        "every backfill run",
        lambda: (
            len(backfill_runs()) == len(names)
            and _finished(instance, [r.run_id for r in backfill_runs()])
        ),
    )
    runs = [_timing(instance, r.run_id) for r in backfill_runs()]
    records = instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in backfill_runs()]))
    last_end = max(r.end_time for r in records)
    backfills = instance.get_backfills()
    if backfills:  # from the backfill's creation, as the UI creates it (not the CLI's start-up)
        started = backfills[0].backfill_timestamp
    result = {
        "partitions": len(names),
        "first_run_after_daemon_start": first,
        "single_run": one,
        "backfill": {
            "seconds": round(last_end - started, 1),
            "runs": len(runs),
            "failed": sum(r["status"] != "SUCCESS" for r in runs),
            "mean_end_to_end_seconds": round(
                sum(r["end_to_end_seconds"] for r in runs) / len(runs), 2
            ),
            "mean_step_seconds": round(sum(r["step_seconds"] for r in runs) / len(runs), 2),
            "mean_overhead_seconds": round(sum(r["overhead_seconds"] for r in runs) / len(runs), 2),
            "mean_run_overhead_seconds": round(
                sum(r["run_overhead_seconds"] for r in runs) / len(runs), 2
            ),
        },
        "query_during_backfill": {
            **query_timing,
            "backfill_runs_unfinished_when_query_ended": backfill_busy,
        },
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
