#!/usr/bin/env bash
# The project's test command (README "Test"): runs the whole suite against SQLite and a
# throw-away PostgreSQL cluster that this script starts on 127.0.0.1 and removes afterwards.
# On a fresh Debian machine it installs what it needs: PostgreSQL from apt (as root, or with sudo)
# the SMTP server aiosmtpd and openapi-spec-validator from PyPI, and Chromium with chromedriver
# from apt.
# Extra arguments go to the test runner, e.g. `scripts/test.sh agents`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

pg_bin_dir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

if [ -z "$(pg_bin_dir)" ]; then
  log "installing PostgreSQL (Debian package postgresql)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
PG_BIN="$(pg_bin_dir)"

# The e-mail tests deliver to a real SMTP server on loopback (Python's aiosmtpd).
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  log "installing aiosmtpd (PyPI) for the SMTP server of the e-mail tests"
  python3 -m pip install --quiet --disable-pip-version-check aiosmtpd \
    || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-aiosmtpd >/dev/null; }
fi

# The API contract test validates the OpenAPI document with openapi-spec-validator (PyPI).
if ! python3 -c 'import openapi_spec_validator' 2>/dev/null; then
  log "installing openapi-spec-validator (PyPI) for the API contract test"
  python3 -m pip install --quiet --disable-pip-version-check openapi-spec-validator \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages openapi-spec-validator \
    || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-openapi-spec-validator >/dev/null; }
fi

# The console's browser tests drive real Chromium through chromedriver.
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  log "installing Chromium and chromedriver (Debian packages chromium, chromium-driver) for the console's browser tests"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi

# PostgreSQL refuses to run as root: run the cluster as the `postgres` user in that case.
PG_USER="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  PG_USER=postgres
fi
as_pg() {
  if [ "$PG_USER" = "$(id -un)" ]; then "$@"; else runuser -u "$PG_USER" -- "$@"; fi
}

PG_DIR="$(mktemp -d /tmp/switchboard-pg.XXXXXX)"
chown "$PG_USER" "$PG_DIR"
PG_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

stop_cluster() {
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PG_DIR"
}
trap stop_cluster EXIT

log "starting a throw-away PostgreSQL cluster on 127.0.0.1:$PG_PORT"
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U switchboard --auth=trust -E UTF8 --no-sync >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -o \
  "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  start >/dev/null

export TEST_POSTGRES_URL="postgres://switchboard@127.0.0.1:$PG_PORT/postgres"

log "running the test suite (SQLite and PostgreSQL)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast -- "$@"
fi
