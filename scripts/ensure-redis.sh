#!/usr/bin/env bash
# Make sure a Redis answers PING on REDIS_HOST:REDIS_PORT (default 127.0.0.1:6379).
#
# If one already answers, do nothing (never touch a running server). Otherwise
# install redis-server via apt if it is missing, start a throwaway, non-persistent
# daemon bound to REDIS_HOST, and wait (at most REDIS_WAIT seconds) until it answers.
#
# Environment:
#   REDIS_HOST  (127.0.0.1)   REDIS_PORT (6379)   REDIS_WAIT (20 seconds)
#   REDIS_DIR   working dir + log for a started server
#               (default: ${TMPDIR:-/tmp}/deskbridge-redis-$REDIS_PORT)
# Stop a server this script started:  redis-cli -p $REDIS_PORT shutdown nosave
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
host="${REDIS_HOST:-127.0.0.1}"
port="${REDIS_PORT:-6379}"
wait_s="${REDIS_WAIT:-20}"
dir="${REDIS_DIR:-${TMPDIR:-/tmp}/deskbridge-redis-${port}}"

die() { printf 'ensure-redis: %s\n' "$*" >&2; exit 1; }

ping_ok() {
    local reply
    if command -v redis-cli >/dev/null 2>&1; then
        reply="$(timeout 3 redis-cli -h "$host" -p "$port" ping 2>/dev/null)" || return 1
    else
        # No redis-cli: speak RESP over bash's /dev/tcp.
        reply="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "PING\r\n" >&3 && head -c 7 <&3' \
            "$host" "$port" 2>/dev/null)" || return 1
        reply="${reply#+}"
    fi
    [[ "${reply%$'\r'}" == PONG ]]
}

if ping_ok; then
    exit 0
fi

"$here/ensure-apt.sh" redis-server=redis-server redis-cli=redis-tools

mkdir -p "$dir"
log="$dir/redis.log"
echo "ensure-redis: no Redis on $host:$port; starting one (log: $log)" >&2
redis-server --daemonize yes --bind "$host" --port "$port" \
    --save "" --appendonly no --dir "$dir" \
    --logfile "$log" --pidfile "$dir/redis.pid" \
    || die "redis-server failed to start on $host:$port (see $log)"

deadline=$((SECONDS + wait_s))
until ping_ok; do
    if (( SECONDS >= deadline )); then
        tail -n 20 "$log" >&2 2>/dev/null || true
        die "Redis on $host:$port did not answer PING within ${wait_s}s (log: $log)"
    fi
    sleep 0.2
done
echo "ensure-redis: Redis is up on $host:$port" >&2
