"""Launch work as the Dagster UI does: GraphQL requests to a running `dagster-webserver`
(the asset graph's "Materialize" for one partition, and an asset backfill of several)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import IO

ASSETS = ("raw_images", "normalized_images", "captions", "embeddings", "vector_index")
LOCATION = "dam_pipeline"

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""

LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
  }
}"""


def start_webserver(env: dict[str, str], project: Path, log: IO, port: int) -> subprocess.Popen:
    """`dagster-webserver` on 127.0.0.1:``port``, as `make dev` runs it."""
    return _start(env, project, log, ["dagster-webserver", "-h", "127.0.0.1", "-p", str(port)])


def start_daemon(env: dict[str, str], project: Path, log: IO) -> subprocess.Popen:
    """`dagster-daemon run`, as `make dev` runs it."""
    return _start(env, project, log, ["dagster-daemon", "run"])


def start_dagster(env: dict[str, str], project: Path, log: IO, port: int) -> list[subprocess.Popen]:
    """The webserver and the daemon; stop them with ``terminate``."""
    return [start_webserver(env, project, log, port), start_daemon(env, project, log)]


def _start(env: dict[str, str], project: Path, log: IO, command: list[str]) -> subprocess.Popen:
    program, *args = command
    return subprocess.Popen(
        [Path(sys.executable).parent / program, *args, "-w", str(project / "workspace.yaml")],
        env=env,
        cwd=project,
        stdout=log,
        stderr=log,
    )


def graphql(url: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        answer = json.loads(reply.read())
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL refused the request: {answer['errors']}")
    return answer["data"]


def _selection() -> list[dict]:
    return [{"path": [name]} for name in ASSETS]


def materialize_partition(url: str, partition: str) -> str:
    """The asset graph's "Materialize all" for one partition: an ``__ASSET_JOB`` run."""
    data = graphql(
        url,
        LAUNCH_RUN,
        {
            "params": {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": "__repository__",
                    "jobName": "__ASSET_JOB",
                    "assetSelection": _selection(),
                },
                "mode": "default",
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
                "runConfigData": {},
            }
        },
    )["launchRun"]
    if data["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launchRun: {data}")
    return data["run"]["runId"]


def backfill_partitions(url: str, partitions: list[str], job: str = "") -> str:
    """The asset graph's "Materialize all" over several partitions (or, with ``job``, the
    job page's "Materialize all" of an asset job): an asset backfill of the five assets."""
    params: dict = {"assetSelection": _selection(), "partitionNames": partitions}
    if job:
        params["selector"] = {
            "partitionSetName": f"{job}_partition_set",
            "repositorySelector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
            },
        }
    data = graphql(url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    if data["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"launchPartitionBackfill: {data}")
    return data["backfillId"]
