#!/usr/bin/env bash
# Run the product locally on the embedded SQLite database:
# load data (live CoinGecko, or the bundled sample when the API is unreachable),
# start the scheduler sidecar in the background, and serve the dashboard.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PORT=${DASHBOARD_PORT:-8501}

if ! $PYTHON -m pipeline status --check >/dev/null 2>&1; then
  echo "Loading market data from CoinGecko..."
  # One quick try: offline, fall back to the sample in seconds rather than after a minute of retries.
  if ! COINGECKO_MAX_RETRIES=1 COINGECKO_BACKOFF_SECONDS=1 COINGECKO_DEADLINE_SECONDS=30 \
      $PYTHON -m pipeline run --source api; then
    echo "CoinGecko is unreachable: loading the bundled offline sample instead."
    $PYTHON -m pipeline run --source sample
  fi
fi

$PYTHON -m pipeline schedule &
scheduler=$!
trap 'kill -TERM $scheduler 2>/dev/null; wait $scheduler 2>/dev/null' EXIT INT TERM

echo "Dashboard: http://localhost:$PORT"
$PYTHON -m streamlit run dashboard/app.py --server.port "$PORT"
