#!/usr/bin/env bash
# Diagnose the normal client during the slow-read attack: one ringcorn (one worker on CPU 0),
# slowhttptest -X with 400 slow readers of /1048576 on CPU 1, and a curl to /13 every 200 ms
# (2 s timeout), for SECONDS. Prints each probe slower than 200 ms or failed, with its start
# time (ms since the epoch), and the worker thread's state every 50 ms to WORK/states.log
# (state, utime, stime ticks, wchan; its kernel stack when it sleeps, as root).
#
# Usage: scripts/slowread_probe.sh [--seconds S] [--work DIR] [APP ARGS...]   (default: bytes)
#   scripts/slowread_probe.sh bytes
#   scripts/slowread_probe.sh static --root /srv/files      (needs a file named 1048576 and 13)
# Needs slowhttptest and curl (apt-get install -y slowhttptest curl); build first with
# cargo build --release.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/tools.sh
source "$here/tools.sh"
SECS=12; WORK=$(mktemp -d)
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) SECS="$2"; shift 2 ;;
        --work) WORK="$2"; mkdir -p "$WORK"; shift 2 ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || set -- bytes
for tool in slowhttptest curl; do
    command -v "$tool" >/dev/null || { echo "slowread_probe.sh: $tool is missing: apt-get install -y $tool" >&2; exit 1; }
done
bin="$(target_dir "$here/../Cargo.toml")/release/ringcorn"
[[ -x "$bin" ]] || { echo "slowread_probe.sh: build first: cargo build --release" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
taskset -c 0 "$bin" --workers 1 --cpus 0 --bind "127.0.0.1:$port" --send-timeout 90 "$@" 2>"$WORK/server.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/13" && break; sleep 0.1; done
worker=$(ls "/proc/$server/task" | sort -n | tail -1)
(
    while kill -0 "$server" 2>/dev/null; do
        st=$(awk '{print $3, $14, $15}' "/proc/$server/task/$worker/stat" 2>/dev/null || true)
        echo "$(date +%s%3N) $st $(cat "/proc/$server/task/$worker/wchan" 2>/dev/null || true) $( { tr '\n' '|' < "/proc/$server/task/$worker/stack"; } 2>/dev/null || true)"
        sleep 0.05
    done
) > "$WORK/states.log" &
taskset -c 1 slowhttptest -X -c 400 -r 200 -w 512 -y 1024 -n 5 -z 32 -k 3 -l "$SECS" -p 3 \
    -o "$WORK/slowhttptest" -u "http://127.0.0.1:$port/1048576" >/dev/null 2>&1 &
attack=$!
probes=0; failed=0
while kill -0 "$attack" 2>/dev/null; do
    start=$(date +%s%3N)
    r=$(taskset -c 1 curl -s -o /dev/null --max-time 2 -w '%{http_code} %{time_connect} %{time_total}' "http://127.0.0.1:$port/13" || true)
    probes=$((probes + 1))
    read -r code connect total <<< "$r"
    if [[ "$code" != 200 ]]; then
        failed=$((failed + 1)); echo "start=$start FAILED: code $code, connected in ${connect}s, gave up after ${total}s"
    elif awk -v t="$total" 'BEGIN { exit !(t > 0.2) }'; then
        echo "start=$start slow: ${total}s"
    fi
    sleep 0.2
done
echo "probes $probes, failed $failed; worker states in $WORK/states.log"
