#!/usr/bin/env bash
# Makes sure PostgreSQL, Redis and NATS (with JetStream) answer on their
# default local ports (5432, 6379, 4222), and that a second NATS with the
# production per-component users and permissions (deploy/nats/permissions.conf)
# answers on 4223 (deploy/local/nats-secured.conf).
#
#   - a service that answers is left alone;
#   - a service that is installed but stopped is started;
#   - a service that is missing is installed from Debian packages (as root);
#   - then it waits until each answers, or fails naming the one that does not.
#
# Usage: bash deploy/local/services.sh
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # NAME PORT
  local i
  for i in $(seq 1 60); do
    port_open "$2" && { log "$1 answers on 127.0.0.1:$2"; return 0; }
    sleep 0.5
  done
  die "$1 does not answer on 127.0.0.1:$2 after 30 s (see its log under /var/log)"
}

APT_UPDATED=0
apt_install() { # PACKAGE...
  [ "$(id -u)" = 0 ] || die "$* missing and not running as root: install it (apt-get install $*) or rerun as root"
  command -v apt-get >/dev/null || die "$* missing and apt-get is not available"
  if [ "$APT_UPDATED" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || die "apt-get install $* failed"
}

ensure_postgres() {
  port_open 5432 && { log "postgres already answers"; return; }
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql postgresql-contrib
  fi
  local ver
  ver="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)"
  [ -n "$ver" ] || die "postgres is installed but has no cluster under /etc/postgresql"
  # Local development and CI use trust auth on loopback, like the reference machine.
  local hba="/etc/postgresql/$ver/main/pg_hba.conf"
  if [ -w "$hba" ] && ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
  fi
  log "starting postgres $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || die "pg_ctlcluster $ver main start failed"
  wait_port postgres 5432
  # The tests connect as root or postgres to database `test`.
  if command -v psql >/dev/null; then
    psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_roles where rolname='root'" postgres | grep -q 1 \
      || psql -h 127.0.0.1 -U postgres -qc "create role root superuser login" postgres || true
    psql -h 127.0.0.1 -U postgres -tAc "select 1 from pg_database where datname='test'" postgres | grep -q 1 \
      || psql -h 127.0.0.1 -U postgres -qc "create database test" postgres || true
  fi
}

ensure_redis() {
  port_open 6379 && { log "redis already answers"; return; }
  command -v redis-server >/dev/null || apt_install redis-server
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  log "starting redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || die "redis-server failed to start"
  wait_port redis 6379
}

ensure_nats() {
  port_open 4222 && { log "nats already answers"; return; }
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
  local bin
  bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
  mkdir -p /var/lib/nats-server 2>/dev/null || true
  log "starting nats with jetstream"
  start-stop-daemon --start --oknodo --background --exec "$bin" -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log \
    || die "nats-server failed to start"
  wait_port nats 4222
}

ensure_nats_secured() {
  port_open 4223 && { log "nats (per-component users) already answers"; return; }
  local bin conf
  bin="$(command -v nats-server || echo /usr/sbin/nats-server)"
  conf="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/nats-secured.conf"
  mkdir -p /var/lib/nats-server-secured 2>/dev/null || true
  log "starting nats with per-component users on 4223"
  local user
  for user in PUBLISHER SIGNER PROJECTOR BILLING API; do
    local var="LL_NATS_${user}_PASSWORD"
    export "$var=${!var:-dev-$(echo "$user" | tr 'A-Z' 'a-z')}"
  done
  start-stop-daemon --start --oknodo --background \
    --make-pidfile --pidfile /run/nats-server-secured.pid --exec "$bin" -- \
    -c "$conf" -l /var/log/nats-server-secured.log \
    || die "nats-server (per-component users) failed to start"
  wait_port "nats (per-component users)" 4223
}

# The web console's browser test (tests/e2e/console.rs): Debian's Chromium
# and the npm packages of tests/console (playwright-core, pinned by its
# lockfile), installed once.
ensure_console_test() {
  command -v chromium >/dev/null || apt_install chromium
  command -v npm >/dev/null || apt_install nodejs npm
  local dir
  dir="$(cd "$(dirname "$0")/../.." && pwd)/tests/console"
  if [ ! -d "$dir/node_modules/playwright-core" ]; then
    log "installing the console test's npm packages"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
      || die "npm ci in tests/console failed"
  fi
}

ensure_postgres
ensure_redis
ensure_nats
ensure_nats_secured
ensure_console_test
log "all services answer"
