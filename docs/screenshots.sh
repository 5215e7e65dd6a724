#!/usr/bin/env bash
# Retake the README's screenshots of the MLflow UI from a fresh quickstart:
#   docs/img/mlflow-runs-table.png (the experiment's runs table, as `resnetctl ui` opens it),
#   docs/img/mlflow-run-overview.png (the run's Overview tab) and docs/img/mlflow-run-charts.png
#   (its Model metrics tab), in headless Chromium (Debian: apt-get install -y chromium),
#   driven by docs/screenshot.py.
#
#   docs/screenshots.sh            # with .venv/bin/python (make install)
#   PYTHON=/path/to/python docs/screenshots.sh
#
# Everything runs in a temporary folder: its own HOME (so Ray and MLflow never touch ~/.ray),
# run storage, data cache, Ray auth token, MLflow store; `resnetctl ui` is started in a
# session of its own and killed by its process group on exit.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
CHROMIUM=${CHROMIUM:-chromium}
WORK=$(mktemp -d /tmp/shots.XXXXXX)
export HOME=$WORK/home RESNETCTL_STORAGE=$WORK/runs RESNETCTL_CACHE=$WORK/cache
export RAY_AUTH_TOKEN_PATH=$WORK/ray-token
unset MLFLOW_TRACKING_URI RAY_ADDRESS
mkdir -p "$HOME" "$REPO/docs/img"
"$PYTHON" -c 'import secrets; print(secrets.token_hex(32))' > "$RAY_AUTH_TOKEN_PATH"
cp "$REPO/jobs/quickstart.yaml" "$WORK/"
cd "$WORK"

"$PYTHON" -m resnetctl submit quickstart.yaml --json > summary.json
RUN_ID=$("$PYTHON" -c 'import json; print(json.load(open("summary.json"))["mlflow_run_id"])')

PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid "$PYTHON" -m resnetctl ui --port "$PORT" > ui.out 2> ui.err &
UI=$!
trap 'kill -- -"$UI" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
    curl -fsS "http://127.0.0.1:$PORT/health" > /dev/null 2>&1 && break
    sleep 1
done
EXPERIMENT_URL=$(head -n 1 ui.out)   # what `resnetctl ui` prints: the last run's experiment
VIEW=workflowType=${EXPERIMENT_URL#*workflowType=}; VIEW=${VIEW%%&*}  # Model training, kept
EXPERIMENT=${EXPERIMENT_URL%%\?*}; EXPERIMENT=${EXPERIMENT%/runs}  # .../#/experiments/ID
RUN_URL="$EXPERIMENT/runs/$RUN_ID"

shot() {  # shot URL FILE [--until table]: once drawn, MLflow's assistant panel closed
    "$PYTHON" "$REPO/docs/screenshot.py" --chromium "$CHROMIUM" "$@"
    echo "$2 <- $1"
}
shot "$EXPERIMENT_URL" "$REPO/docs/img/mlflow-runs-table.png" --until table
shot "$RUN_URL?$VIEW" "$REPO/docs/img/mlflow-run-overview.png"
shot "$RUN_URL/model-metrics?$VIEW" "$REPO/docs/img/mlflow-run-charts.png"
echo "run $RUN_ID; work folder $WORK"
