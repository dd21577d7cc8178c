#!/usr/bin/env bash
# Run a command against a throwaway Redis on loopback, as production's Celery broker:
#     tools/redis-throwaway.sh .venv/bin/python -m pytest -m celery_worker
# starts redis-server on a free 127.0.0.1 port with no persistence (--save "" --appendonly no)
# and its pidfile in a temporary folder, exports CELERY_BROKER_URL and CURATECT_TEST_BROKER_URL
# (redis://127.0.0.1:PORT/0) to the command, and stops the server and deletes the folder when the
# command ends, however it ends.
# Needs Debian's redis-server (apt-get install redis-server; `make test-redis` does it).
# Used by `make test-redis` and .ci/run.
set -euo pipefail

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARG...]   (COMMAND runs with CELERY_BROKER_URL set to the Redis)" >&2
    exit 2
fi

REDIS_SERVER=$(command -v redis-server || true)
if [ -z "$REDIS_SERVER" ]; then
    echo "error: redis-server not found: apt-get install redis-server (make test-redis installs it)" >&2
    exit 1
fi
REDIS_CLI=$(command -v redis-cli || true)

REDIS_DIR=$(mktemp -d /tmp/curatect-redis.XXXXXX)
stop_redis() {
    local pid
    if [ -f "$REDIS_DIR/redis.pid" ]; then
        pid=$(cat "$REDIS_DIR/redis.pid")
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$REDIS_DIR"
}
trap stop_redis EXIT
# bash runs the EXIT trap on `exit`, not on every signal.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

port_free() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Another process may take the free port between the probe and the bind: try a few.
started=0
for _ in 1 2 3 4 5; do
    REDIS_PORT=$(port_free)
    # --protected-mode yes + loopback only: nothing off this machine reaches it.
    if "$REDIS_SERVER" --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes \
        --save "" --appendonly no --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" \
        --logfile "$REDIS_DIR/redis.log" >/dev/null; then
        for _ in $(seq 1 100); do
            if [ -n "$REDIS_CLI" ]; then
                [ "$("$REDIS_CLI" -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && started=1 && break
            else
                (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT") 2>/dev/null && started=1 && break
            fi
            sleep 0.05
        done
    fi
    [ "$started" -eq 1 ] && break
    stop_redis
    REDIS_DIR=$(mktemp -d /tmp/curatect-redis.XXXXXX)
done
if [ "$started" -ne 1 ]; then
    echo "error: redis-server did not start on 127.0.0.1; its log:" >&2
    cat "$REDIS_DIR/redis.log" >&2 2>/dev/null || true
    exit 1
fi

export CELERY_BROKER_URL="redis://127.0.0.1:${REDIS_PORT}/0"
export CURATECT_TEST_BROKER_URL="$CELERY_BROKER_URL"
echo ">> throwaway Redis on 127.0.0.1:${REDIS_PORT}: $("$REDIS_SERVER" --version | cut -d' ' -f1-3)"

# Not exec: the EXIT trap must outlive the command to stop the server.
"$@"
