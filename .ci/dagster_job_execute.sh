#!/usr/bin/env bash
# `dagster job execute -m bank_pipeline` end to end: simulator → connect → partitions → one
# partition imported by the Dagster CLI → the ledger matches the simulator's ground truth.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
work=$(mktemp -d)
export BANK_PIPELINE_HOME="$work/home" DAGSTER_HOME="$work/dagster"
# The configured instance (the packaged dagster.yaml written into DAGSTER_HOME), as `make ui` does.
export $($BIN/python -m bank_pipeline.orchestration.instance)
port=$($BIN/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
export TRUELAYER_AUTH_URL="http://127.0.0.1:$port" TRUELAYER_DATA_URL="http://127.0.0.1:$port/data/v1"
export TRUELAYER_REDIRECT_URI="http://127.0.0.1:$($BIN/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")/callback"

$BIN/bank-pipeline simulator --port "$port" --seed 7 --state-file "$work/sim.json" >"$work/sim.log" 2>&1 &
sim_pid=$!
trap 'kill $sim_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  $BIN/python -c "import httpx,sys; httpx.get('$TRUELAYER_AUTH_URL/_sim/stats').raise_for_status()" 2>/dev/null && break
  sleep 0.2
done

$BIN/bank-pipeline connect --no-browser --simulator-user alice --history-days 30
$BIN/bank-pipeline partitions sync
key=$($BIN/bank-pipeline partitions list | sed -n 1p)
day=$($BIN/python -c "import datetime as d; from bank_pipeline import clock; print(clock.today_utc() - d.timedelta(days=2))")
echo "importing partition $key|$day with dagster job execute"
$BIN/dagster job execute -m bank_pipeline -j import_transactions --tags "{\"dagster/partition\": \"$key|$day\"}"
# The tests are not installed: `python -m` finds bank_pipeline_tests from the checkout (cwd).
$BIN/python -m bank_pipeline_tests.ci_check_partition "$key" "$day"
