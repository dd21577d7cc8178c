#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL cluster on loopback:
#     tools/pg-throwaway.sh .venv/bin/python -m pytest
# starts a fresh cluster on a free 127.0.0.1 port in a temporary folder, creates the role and
# database `curatect` (with CREATEDB, for pytest-django's test database), exports DATABASE_URL to
# the command, and stops and deletes the cluster when the command ends, however it ends.
# Needs the PostgreSQL server binaries (Debian: apt-get install postgresql; `make test-pg` does it).
# Used by `make test-pg` and .ci/run.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]   (COMMAND runs with DATABASE_URL set)" >&2
    exit 2
fi

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
    echo "error: PostgreSQL server binaries not found under /usr/lib/postgresql: apt-get install postgresql" >&2
    exit 1
fi

as_postgres() {
    # PostgreSQL refuses to run as root; as another user, run it as ourselves.
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

PG_DIR=$(mktemp -d /tmp/curatect-pg.XXXXXX)
stop_postgres() {
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
        as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
}
trap stop_postgres EXIT
# bash runs the EXIT trap on `exit`, not on every signal.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
PG_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$PG_DIR"; fi
chmod 700 "$PG_DIR"
# Local socket: trust (only the cluster's owner can reach the 0700 folder); TCP: passwords.
printf '%s\n' "$PG_PASSWORD" >"$PG_DIR/pw"
if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$PG_DIR/pw"; fi
as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --pwfile="$PG_DIR/pw" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 ||
    { cat "$PG_DIR/initdb.log" >&2; exit 1; }
# fsync off: a throwaway cluster needs speed, not durability.
as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null || { cat "$PG_DIR/server.log" >&2; exit 1; }
as_postgres "$PG_BIN/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -q -d postgres \
    -c "CREATE ROLE curatect LOGIN CREATEDB PASSWORD '$PG_PASSWORD'" \
    -c "CREATE DATABASE curatect OWNER curatect"
export DATABASE_URL="postgres://curatect:${PG_PASSWORD}@127.0.0.1:${PG_PORT}/curatect"
# Prove the URL the command gets works over TCP with the password before handing it out.
"$PG_BIN/psql" "$DATABASE_URL" -v ON_ERROR_STOP=1 -qAtc \
    "SELECT '>> throwaway PostgreSQL on 127.0.0.1:${PG_PORT}: ' || version()"

# Not exec: the EXIT trap must outlive the command to delete the cluster.
"$@"
