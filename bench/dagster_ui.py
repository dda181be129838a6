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


def start_dagster(env: dict[str, str], project: Path, log: IO, port: int) -> list[subprocess.Popen]:
    """`dagster-webserver` on 127.0.0.1:``port`` and `dagster-daemon`, as `make dev` runs them
    (the project's workspace.yaml); stop them with ``terminate``."""
    bin_dir = Path(sys.executable).parent
    workspace = ["-w", str(project / "workspace.yaml")]
    commands = [
        [bin_dir / "dagster-webserver", *workspace, "-h", "127.0.0.1", "-p", str(port)],
        [bin_dir / "dagster-daemon", "run", *workspace],
    ]
    return [
        subprocess.Popen(command, env=env, cwd=project, stdout=log, stderr=log)
        for command in commands
    ]


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
