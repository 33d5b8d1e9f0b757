"""What the Dagster UI does, as plain calls to the webserver's GraphQL API.

Follow a schedule's ticks and the runs they launched; launch an asset backfill (`launchPartitionBackfill`, as the UI's "Materialize… → Launch backfill"
does), follow it to the end (`partitionBackfillOrError` + the runs tagged `dagster/backfill`), and
read each partition's status as the Partitions tab shows it (`assetPartitionStatuses`) and each
asset check's as the Checks tab shows it (`assetChecksOrError`). Queries
follow the schema of the installed dagster_graphql package.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections import Counter
from collections.abc import Iterable

import httpx

TRANSACTION_ASSETS = (
    "fetched_transactions",
    "normalized_transactions",
    "deduplicated_transactions",
    "loaded_transactions",
    "enriched_transactions",
)
BACKFILL_TAG = "dagster/backfill"
TERMINAL_BACKFILL_STATUSES = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
ACTIVE_RUN_STATUSES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
MATERIALIZED, FAILED, MATERIALIZING, MISSING = "MATERIALIZED", "FAILED", "MATERIALIZING", "MISSING"


class GraphQLError(RuntimeError):
    """The webserver answered with GraphQL errors or an error member of a result union."""


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on PythonError { message stack }
  }
}"""

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status numPartitions timestamp endTimestamp
      error { message }
      assetBackfillData {
        assetBackfillStatuses {
          ... on AssetPartitionsStatusCounts {
            assetKey { path } numPartitionsTargeted numPartitionsInProgress
            numPartitionsMaterialized numPartitionsFailed
          }
        }
      }
    }
    ... on Error { message }
  }
}"""

RUNS = """
query Runs($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs { results { runId status creationTime startTime endTime tags { key value } } }
    ... on Error { message }
  }
}"""

PARTITION_STATUSES = """
query Statuses($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      partitionDefinition { dimensionTypes { name isPrimaryDimension } }
      assetPartitionStatuses {
        __typename
        ... on DefaultPartitionStatuses { materializedPartitions failedPartitions materializingPartitions }
        ... on TimePartitionStatuses { ranges { startKey endKey status } }
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey
            secondaryDim {
              __typename
              ... on DefaultPartitionStatuses { materializedPartitions failedPartitions materializingPartitions }
              ... on TimePartitionStatuses { ranges { startKey endKey status } }
            }
          }
        }
      }
    }
    ... on AssetNotFoundError { message }
  }
}"""

ASSET_CHECKS = """
query Checks($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      assetChecksOrError {
        __typename
        ... on AssetChecks {
          checks {
            name
            executionForLatestMaterialization { runId status }
            partitionStatuses {
              __typename
              ... on AssetCheckMultiPartitionStatuses {
                primaryDimensionName
                ranges {
                  primaryDimStartKey primaryDimEndKey
                  secondaryDim {
                    __typename
                    ... on AssetCheckDefaultPartitionStatuses {
                      succeededPartitions failedPartitions inProgressPartitions skippedPartitions executionFailedPartitions
                    }
                    ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
                  }
                }
              }
            }
          }
        }
      }
    }
    ... on AssetNotFoundError { message }
  }
}"""

RUN_FAILURES = """
query RunFailures($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      eventConnection(limit: 5000) {
        events {
          __typename
          ... on ExecutionStepFailureEvent { stepKey error { message } }
          ... on RunFailureEvent { message }
        }
      }
    }
    ... on Error { message }
  }
}"""

SCHEDULE_TICKS = """
query Ticks($selector: ScheduleSelector!, $limit: Int) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule { scheduleState { ticks(limit: $limit) { tickId status timestamp runIds skipReason error { message } } } }
    ... on Error { message }
  }
}"""

WORKSPACE = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } }
    }
    ... on PythonError { message }
  }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy } } }
}"""


@dataclasses.dataclass
class BackfillRun:
    run_id: str
    status: str
    created: float
    started: float | None
    ended: float | None
    tags: dict[str, str]


@dataclasses.dataclass
class BackfillResult:
    """A finished backfill as the UI reports it, with the timings a user waits through."""

    backfill_id: str
    status: str
    launched_at: float  # epoch seconds, just before the launch request
    wall_seconds: float  # launch → the backfill's end
    runs: list[BackfillRun]
    asset_counts: dict[str, dict[str, int]]
    error: str | None

    @property
    def time_to_first_run(self) -> float | None:
        """Launch → the first run created (the daemon submitted it)."""
        created = [r.created for r in self.runs]
        return min(created) - self.launched_at if created else None

    @property
    def time_to_first_start(self) -> float | None:
        """Launch → the first run's process started executing."""
        starts = [r.started for r in self.runs if r.started]
        return min(starts) - self.launched_at if starts else None

    @property
    def time_to_last_end(self) -> float | None:
        """Launch → the last run ended: when every partition's data has landed (the backfill itself
        is marked complete at the daemon's next tick)."""
        ends = [r.ended for r in self.runs if r.ended]
        return max(ends) - self.launched_at if ends else None

    @property
    def runs_span(self) -> float | None:
        """First run started → last run ended: the work itself, without the daemon's tick phase
        (Dagster's backfill daemon looks at backfills every 30 s, so wall time carries 0–60 s of
        waiting for ticks that no code of ours can shorten)."""
        starts = [r.started for r in self.runs if r.started]
        ends = [r.ended for r in self.runs if r.ended]
        return max(ends) - min(starts) if starts and ends else None

    @property
    def run_statuses(self) -> dict[str, int]:
        return run_statuses(self.runs)


def run_statuses(runs: Iterable[BackfillRun]) -> dict[str, int]:
    """{status: number of runs}, e.g. {"SUCCESS": 20}."""
    return dict(Counter(run.status for run in runs))


def _date_range(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first[:10]), dt.date.fromisoformat(last[:10])
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _statuses_1d(block: dict) -> dict[str, str]:
    """{key: status} from a DefaultPartitionStatuses or TimePartitionStatuses block (daily keys)."""
    if block["__typename"] == "DefaultPartitionStatuses":
        out = {key: MATERIALIZED for key in block["materializedPartitions"]}
        out.update({key: FAILED for key in block["failedPartitions"]})
        out.update({key: MATERIALIZING for key in block["materializingPartitions"]})
        return out
    return {day: r["status"] for r in block["ranges"] for day in _date_range(r["startKey"], r["endKey"])}


def _expand_multi(statuses: dict, dims: Iterable[str], statuses_1d) -> dict[str, str]:
    """{"<account>|<date>": status} from a multi-partition block: ranges of the primary (date)
    dimension, each with the other dimension's statuses (dimension values in name order)."""
    primary = statuses["primaryDimensionName"]
    secondary = next(name for name in dims if name != primary)
    out: dict[str, str] = {}
    for block in statuses["ranges"]:
        inner = statuses_1d(block["secondaryDim"])
        for primary_key in _date_range(block["primaryDimStartKey"], block["primaryDimEndKey"]):
            for secondary_key, status in inner.items():
                values = dict(sorted({primary: primary_key, secondary: secondary_key}.items()))
                out["|".join(values.values())] = status
    return out


def _check_statuses_1d(block: dict) -> dict[str, str]:
    """{key: SUCCEEDED | FAILED | IN_PROGRESS | SKIPPED | EXECUTION_FAILED} from one dimension's block."""
    if block["__typename"] == "AssetCheckDefaultPartitionStatuses":
        fields = {"succeededPartitions": "SUCCEEDED", "failedPartitions": "FAILED", "inProgressPartitions": "IN_PROGRESS",
                  "skippedPartitions": "SKIPPED", "executionFailedPartitions": "EXECUTION_FAILED"}
        return {key: status for field, status in fields.items() for key in block[field]}
    return {day: r["status"] for r in block["ranges"] for day in _date_range(r["startKey"], r["endKey"])}


@dataclasses.dataclass(frozen=True)
class CheckView:
    """One asset check as the asset's Checks tab shows it: the latest execution and each partition's status."""

    name: str
    latest_run_id: str | None
    latest_status: str | None
    partitions: dict[str, str]


class DagsterGraphQL:
    """A client for one webserver (`http://host:port`)."""

    def __init__(self, url: str, timeout: float = 120):
        self.url = url.rstrip("/")
        self.http = httpx.Client(timeout=timeout)

    def query(self, text: str, variables: dict | None = None) -> dict:
        response = self.http.post(f"{self.url}/graphql", json={"query": text, "variables": variables or {}})
        if response.status_code != 200 and "errors" not in response.text:
            raise GraphQLError(f"GraphQL HTTP {response.status_code}: {response.text[:500]}")
        body = response.json()
        if body.get("errors"):
            raise GraphQLError("; ".join(e.get("message", str(e)) for e in body["errors"]))
        return body["data"]

    # --- workspace ---------------------------------------------------------------------------

    def location_statuses(self) -> dict[str, tuple[str, str | None]]:
        """{location name: (load status, load error message or None)}."""
        workspace = self.query(WORKSPACE)["workspaceOrError"]
        if workspace["__typename"] != "Workspace":
            raise GraphQLError(f"workspace: {workspace.get('message')}")
        out = {}
        for entry in workspace["locationEntries"]:
            loaded = entry["locationOrLoadError"] or {}
            error = loaded.get("message") if loaded.get("__typename") == "PythonError" else None
            out[entry["name"]] = (entry["loadStatus"], error)
        return out

    def healthy_daemons(self) -> set[str]:
        statuses = self.query(WORKSPACE)["instance"]["daemonHealth"]["allDaemonStatuses"]
        return {s["daemonType"] for s in statuses if s["healthy"]}

    # --- backfills ----------------------------------------------------------------------------

    def launch_backfill(
        self, asset_keys: Iterable[str], partition_names: Iterable[str], *, title: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """`launchPartitionBackfill` for these assets over these partition keys; returns the backfill id."""
        params: dict = {
            "assetSelection": [{"path": key.split("/")} for key in asset_keys],
            "partitionNames": list(partition_names),
            "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()],
        }
        if title:
            params["title"] = title
        answer = self.query(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if answer["__typename"] != "LaunchBackfillSuccess":
            raise GraphQLError(f"launchPartitionBackfill: {answer['__typename']}: {answer.get('message')}")
        return answer["backfillId"]

    def backfill(self, backfill_id: str) -> dict:
        answer = self.query(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        if answer["__typename"] != "PartitionBackfill":
            raise GraphQLError(f"backfill {backfill_id}: {answer['__typename']}: {answer.get('message')}")
        return answer

    def runs(self, tags: dict[str, str] | None = None, limit: int = 10_000, statuses=None) -> list[BackfillRun]:
        filt: dict = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        if statuses:
            filt["statuses"] = list(statuses)
        answer = self.query(RUNS, {"filter": filt, "limit": limit})["runsOrError"]
        if answer["__typename"] != "Runs":
            raise GraphQLError(f"runsOrError: {answer.get('message')}")
        return [
            BackfillRun(r["runId"], r["status"], r["creationTime"], r["startTime"], r["endTime"],
                        {t["key"]: t["value"] for t in r["tags"]})
            for r in answer["results"]
        ]

    def failure_reasons(self, run_id: str) -> list[str]:
        """Why a run failed, as its page in the UI says: each failed step's error, then the run's."""
        answer = self.query(RUN_FAILURES, {"runId": run_id})["runOrError"]
        if answer["__typename"] != "Run":
            return [f"{answer['__typename']}: {answer.get('message')}"]
        reasons = []
        for event in answer["eventConnection"]["events"]:
            if event["__typename"] == "ExecutionStepFailureEvent":
                reasons.append(f"{event['stepKey']}: {(event.get('error') or {}).get('message', '').strip()}")
            elif event["__typename"] == "RunFailureEvent":
                reasons.append(event["message"])
        return reasons

    def wait_for_backfill(
        self, backfill_id: str, launched_at: float, *, timeout: float = 540, poll: float = 1.0, alive=None,
    ) -> BackfillResult:
        """Poll until the backfill reaches a final status and all its runs have ended.

        `alive`: called on each poll (e.g. `services.check_alive`) so a dead daemon fails fast."""
        deadline = time.monotonic() + timeout
        while True:
            if alive:
                alive()
            data = self.backfill(backfill_id)
            runs = self.runs({BACKFILL_TAG: backfill_id})
            done = data["status"] in TERMINAL_BACKFILL_STATUSES and all(r.status in TERMINAL_RUN_STATUSES for r in runs)
            if done or time.monotonic() > deadline:
                break
            time.sleep(poll)
        if not done:
            raise GraphQLError(
                f"backfill {backfill_id} not finished after {timeout:.0f}s: status {data['status']}, "
                f"runs {[(r.run_id[:8], r.status) for r in runs]}"
            )
        ended = max([data.get("endTimestamp") or 0.0] + [r.ended or 0.0 for r in runs]) or time.time()
        counts = {}
        for status in (data.get("assetBackfillData") or {}).get("assetBackfillStatuses", []):
            if "assetKey" in status:
                counts["/".join(status["assetKey"]["path"])] = {
                    "targeted": status["numPartitionsTargeted"],
                    "in_progress": status["numPartitionsInProgress"],
                    "materialized": status["numPartitionsMaterialized"],
                    "failed": status["numPartitionsFailed"],
                }
        error = (data.get("error") or {}).get("message")
        return BackfillResult(backfill_id, data["status"], launched_at, ended - launched_at, runs, counts, error)

    def run_backfill(self, asset_keys: Iterable[str], partition_names: Iterable[str], **wait) -> BackfillResult:
        """Launch and wait: what a user sees from clicking "Launch backfill" to the final status."""
        launched_at = time.time()
        backfill_id = self.launch_backfill(asset_keys, partition_names)
        return self.wait_for_backfill(backfill_id, launched_at, **wait)

    def wait_until_idle(self, *, timeout: float = 540, poll: float = 1.0, settle: float = 0.0, alive=None) -> None:
        """Until no run is queued or in progress (e.g. a run that connecting a bank launched).

        `settle`: idle must last this long (a sensor or connect may be about to submit a run)."""
        deadline = time.monotonic() + timeout
        idle_since = None
        while time.monotonic() < deadline:
            if alive:
                alive()
            busy = self.runs(statuses=ACTIVE_RUN_STATUSES, limit=100)
            if busy:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            if idle_since is not None and time.monotonic() - idle_since >= settle:
                return
            time.sleep(poll)
        raise GraphQLError(f"runs still active after {timeout:.0f}s: {[(r.run_id[:8], r.status) for r in busy]}")

    def wait_for_runs(
        self, tags: dict[str, str], expected: int, *, timeout: float = 540, poll: float = 1.0, alive=None, progress=None,
    ) -> list[BackfillRun]:
        """Until at least `expected` runs carry `tags` and all of them have ended (e.g. a schedule's
        tick: `{"dagster/schedule_name": name}`). `progress(text)` is told every 30 s."""
        deadline = time.monotonic() + timeout
        told = time.monotonic()
        while True:
            if alive:
                alive()
            runs = self.runs(tags)
            ended = sum(r.status in TERMINAL_RUN_STATUSES for r in runs)
            if len(runs) >= expected and ended == len(runs):
                return runs
            if time.monotonic() > deadline:
                raise GraphQLError(f"runs tagged {tags}: {len(runs)} of {expected} launched, {ended} ended "
                                   f"after {timeout:.0f}s")
            if progress and time.monotonic() - told >= 30:
                told = time.monotonic()
                progress(f"{len(runs)} of {expected} runs launched, {ended} ended")
            time.sleep(poll)

    # --- schedules ----------------------------------------------------------------------------

    def schedule_ticks(self, schedule: str, location: str = "bank_pipeline", limit: int = 20) -> list[dict]:
        """The schedule's latest ticks, newest first, as its page in the UI lists them
        (`tickId status timestamp runIds skipReason error`)."""
        selector = {"repositoryLocationName": location, "repositoryName": "__repository__", "scheduleName": schedule}
        answer = self.query(SCHEDULE_TICKS, {"selector": selector, "limit": limit})["scheduleOrError"]
        if answer["__typename"] != "Schedule":
            raise GraphQLError(f"schedule {schedule}: {answer['__typename']}: {answer.get('message')}")
        return answer["scheduleState"]["ticks"]

    # --- partition status (the Partitions tab) ------------------------------------------------

    def partition_statuses(self, asset_key: str) -> dict[str, str]:
        """{partition key: MATERIALIZED | FAILED | MATERIALIZING}; keys not listed are missing.

        Multi-partition keys are "<account>|<date>" (dimension values in dimension-name order)."""
        node = self.query(PARTITION_STATUSES, {"key": {"path": asset_key.split("/")}})["assetNodeOrError"]
        if node["__typename"] != "AssetNode":
            raise GraphQLError(f"asset {asset_key}: {node.get('message')}")
        statuses = node["assetPartitionStatuses"]
        if statuses["__typename"] != "MultiPartitionStatuses":
            return _statuses_1d(statuses)
        dims = [d["name"] for d in node["partitionDefinition"]["dimensionTypes"]]
        return _expand_multi(statuses, dims, _statuses_1d)

    def asset_checks(self, asset_key: str, dims: tuple[str, str] = ("account", "date")) -> dict[str, CheckView]:
        """The asset's checks as its Checks tab shows them; multi-partition keys "<account>|<date>"."""
        node = self.query(ASSET_CHECKS, {"key": {"path": asset_key.split("/")}})["assetNodeOrError"]
        if node["__typename"] != "AssetNode":
            raise GraphQLError(f"asset {asset_key}: {node.get('message')}")
        answer = node["assetChecksOrError"]
        if answer["__typename"] != "AssetChecks":
            raise GraphQLError(f"checks of {asset_key}: {answer['__typename']}")
        views = {}
        for check in answer["checks"]:
            latest = check["executionForLatestMaterialization"] or {}
            partitions: dict[str, str] = {}
            statuses = check["partitionStatuses"] or {"__typename": None}
            if statuses["__typename"] == "AssetCheckMultiPartitionStatuses":
                partitions = _expand_multi(statuses, dims, _check_statuses_1d)
            views[check["name"]] = CheckView(check["name"], latest.get("runId"), latest.get("status"), partitions)
        return views

    def status_of(self, asset_key: str, partition_keys: Iterable[str]) -> dict[str, str]:
        """{key: status} for exactly these keys, MISSING for those never materialized or failed."""
        known = self.partition_statuses(asset_key)
        return {key: known.get(key, MISSING) for key in partition_keys}
