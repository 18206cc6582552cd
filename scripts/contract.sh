#!/usr/bin/env bash
# The contract check: schemathesis (PyPI, pinned below) with all its checks
# against the OpenAPI document the service serves, on a dev instance with
# its own Postgres schema, JetStream stream and Redis prefix. Fails on any
# 5xx, undocumented status, schema violation or rejected valid request.
#
#   bash scripts/contract.sh            (CONTRACT_SECONDS=120 by default)
#
# Needs the local services (deploy/local/services.sh). The schemathesis venv
# lives under ${XDG_CACHE_HOME:-$HOME/.cache}/license-ledger and is reused
# while the pin is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

PIN="schemathesis==4.32.5"
SECONDS_BUDGET=${CONTRACT_SECONDS:-120}
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/license-ledger/schemathesis-venv
if ! "$VENV/bin/pip" freeze 2>/dev/null | grep -qx "$PIN"; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "$PIN"
fi

cargo build --locked -q --bin licensed --bin licensectl

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ID="contract_$(date +%s)_$$"
STREAM="CONTRACT_${ID^^}"
PORT=$(free_port)
METRICS_PORT=$(free_port)
WORK=$(mktemp -d)
psql -h 127.0.0.1 -U postgres -d test -qc "CREATE SCHEMA $ID"

cleanup() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -d test -qc "SET client_min_messages = warning; DROP SCHEMA IF EXISTS $ID CASCADE" || true
  # Delete the test's JetStream stream over the NATS protocol (no CLI needed).
  { printf 'CONNECT {"verbose":false}\r\nPUB $JS.API.STREAM.DELETE.%s 0\r\n\r\nPING\r\n' "$STREAM" >/dev/tcp/127.0.0.1/4222; } 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A dev instance (dev token issuer, local signing key), rate limits out of the way.
(
  cd "$WORK"
  DATABASE_SCHEMA="$ID" NATS_STREAM="$STREAM" NATS_SUBJECT_PREFIX="contract.$ID" \
  REDIS_PREFIX="$ID:" LISTEN_ADDR="127.0.0.1:$PORT" METRICS_ADDR="127.0.0.1:$METRICS_PORT" \
  RATE_LIMIT_PER_MINUTE=100000000 LOG_FORMAT=json \
    exec "$OLDPWD/target/debug/licensed" all --dev
) >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/api/v1/health" >/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log"; echo "contract: the service did not start" >&2; exit 1; }
  sleep 0.2
done
TOKEN=$(cd "$WORK" && "$OLDPWD/target/debug/licensectl" dev-token --admin --vendor --sub contract-admin --ttl-secs 7200 | tail -1)

echo "contract: schemathesis, all checks, ${SECONDS_BUDGET}s, against http://127.0.0.1:$PORT"
status=0
# From the scratch directory: schemathesis keeps its cache in the working directory.
(cd "$WORK" && "$VENV/bin/schemathesis" run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
  --checks all --max-time "$SECONDS_BUDGET" --workers 1 --seed "${CONTRACT_SEED:-1}" \
  -H "Authorization: Bearer $TOKEN" \
  --report junit --report-dir "$WORK/report") || status=$?
if [ "$status" != 0 ]; then
  echo "contract: FAILED (schemathesis exit $status); server log tail:" >&2
  tail -20 "$WORK/server.log" >&2
fi
exit "$status"
