#!/usr/bin/env bash
# Installs Message DB 1.3.1 (npm package @eventide/message-db) into the local
# Postgres, so the benchmark can compare the ledger against it. Idempotent:
# npm runs only when the package is missing from the cache directory, and the
# package's own database/install.sh runs only when the database lacks
# message_store.write_message. Ends by printing the database name and the
# Message DB version it reports.
#
#   MESSAGE_DB_DIR   npm cache dir (default ~/.cache/license-ledger/message-db)
#   MESSAGE_DB_NAME  target database (default message_db_bench)
#   PGHOST / PGPORT  server (default 127.0.0.1 / 5432); connects as postgres
#
# Callers of the Message DB functions need message_store on their search_path
# (the function bodies name messages, acquire_lock, ... unqualified), e.g.
# PGOPTIONS='-c search_path=message_store,public'.
set -euo pipefail

readonly package_version=1.3.1
dir="${MESSAGE_DB_DIR:-$HOME/.cache/license-ledger/message-db}"
database="${MESSAGE_DB_NAME:-message_db_bench}"
export PGHOST="${PGHOST:-127.0.0.1}"
export PGPORT="${PGPORT:-5432}"
export PGUSER=postgres
unset PGDATABASE

package="$dir/node_modules/@eventide/message-db"
install_sh="$package/database/install.sh"

# install.sh splices the name into shell and SQL unquoted.
if [[ ! "$database" =~ ^[a-z_][a-z0-9_]*$ ]]; then
  echo "message_db.sh: MESSAGE_DB_NAME must match [a-z_][a-z0-9_]*: $database" >&2
  exit 1
fi

# 1. The package, in the cache dir.
if [[ ! -f "$install_sh" ]] ||
  ! grep -q "\"version\": \"$package_version\"" "$package/package.json"; then
  echo "Installing @eventide/message-db@$package_version into $dir" >&2
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-audit --no-fund --prefer-offline \
    --loglevel=error "@eventide/message-db@$package_version" >&2
fi

# 2. The database. install.sh creates the role (tolerates an existing one),
# then runs createdb unless CREATE_DATABASE=off, then creates the schema,
# table, functions, indexes, views and grants. A second run fails (createdb,
# then ADD PRIMARY KEY on the existing table), hence the checks here.
query() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

has_db=$(query postgres "SELECT 1 FROM pg_database WHERE datname = '$database'")
has_fn=""
has_table=""
if [[ -n "$has_db" ]]; then
  has_fn=$(query "$database" "SELECT 1 FROM pg_proc p JOIN pg_namespace n
    ON n.oid = p.pronamespace
    WHERE n.nspname = 'message_store' AND p.proname = 'write_message' LIMIT 1")
  has_table=$(query "$database" "SELECT to_regclass('message_store.messages') IS NOT NULL")
fi

if [[ -z "$has_fn" ]]; then
  if [[ "$has_table" == t ]]; then
    echo "message_db.sh: $database holds a partial Message DB install;" \
      "drop it (dropdb -h $PGHOST -U postgres $database) and rerun" >&2
    exit 1
  fi
  create_database=on
  [[ -n "$has_db" ]] && create_database=off
  DATABASE_NAME="$database" CREATE_DATABASE="$create_database" \
    bash "$install_sh" >&2
fi

# 3. Report. The npm 1.3.1 package's SQL (message_store_version() and
# database/VERSION.txt) reports 1.3.0; both numbers are printed.
version=$(query "$database" "SELECT message_store.message_store_version()")
echo "$database Message DB $version (npm @eventide/message-db@$package_version)"
