#!/usr/bin/env bash
# The test command: makes sure Postgres, Redis and NATS answer, then runs
# every test of the workspace against them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/local/services.sh
cargo test --workspace --locked "$@"
