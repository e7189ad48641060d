#!/usr/bin/env bash
# Before/after check of a change: two ringcorn binaries side by side, alternating (A B, then
# B A, ...), one worker pinned to CPU 0, wrk -t1 -c64 pinned to CPU 1; unpipelined and pipelined
# 16 deep. Prints each round and, of server CPU µs per request (utime+stime from /proc over
# the run, divided by the requests wrk counted), each side's median and the median of the
# rounds' new/old ratios: each round's pair ran back to back, so the paired ratio is the
# figure that drift on a shared machine disturbs least.
#
# Usage: scripts/compare.sh OLD_BINARY NEW_BINARY [--rounds N] [--seconds S] [--app APP]
#          [--path PATH] [--old-flags "FLAGS"] [--new-flags "FLAGS"] [--scrape-every S]
# --path: what wrk asks for (default /; e.g. --app bytes --path /16384 for a 16 KiB body).
# The flags are added to each side's command line (the same binary twice compares an option
# off and on: --new-flags "--metrics 127.0.0.1:0"). --scrape-every S: while wrk runs, one
# Python process on CPU 1 scrapes /metrics every S seconds on a side started with --metrics
# (the master's CPU is the server's: it counts).
# Build the old one from a worktree, e.g.:
#   git worktree add /tmp/old COMMIT && CARGO_TARGET_DIR=/tmp/old-target cargo build --release \
#     --manifest-path /tmp/old/Cargo.toml
#   scripts/compare.sh /tmp/old-target/release/ringcorn target/release/ringcorn
set -euo pipefail

die() { echo "compare.sh: error: $*" >&2; exit 1; }
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

[[ $# -ge 2 ]] || die "usage: scripts/compare.sh OLD_BINARY NEW_BINARY [--rounds N] [--seconds S] [--app APP] [--path PATH] [--old-flags F] [--new-flags F] [--scrape-every S]"
OLD="$1"; NEW="$2"; shift 2
ROUNDS=5; SECS=5; APP=hello; URL_PATH=/; OLD_FLAGS=""; NEW_FLAGS=""; SCRAPE=
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --seconds) SECS="$2"; shift 2 ;;
        --app) APP="$2"; shift 2 ;;
        --path) URL_PATH="$2"; shift 2 ;;
        --old-flags) OLD_FLAGS="$2"; shift 2 ;;
        --new-flags) NEW_FLAGS="$2"; shift 2 ;;
        --scrape-every) SCRAPE="$2"; shift 2 ;;
        *) die "unknown option: $1" ;;
    esac
done
for b in "$OLD" "$NEW"; do [[ -x "$b" ]] || die "$b is not an executable"; done
command -v wrk >/dev/null || die "wrk is missing: apt-get install -y wrk"
(( $(nproc) >= 2 )) || die "needs 2 CPUs (server on 0, wrk on 1)"

TICK="$(getconf CLK_TCK)"
WORK="$(mktemp -d)"
SERVER=""
SCRAPER=""
cleanup() {
    [[ -n "$SCRAPER" ]] && kill "$SCRAPER" 2>/dev/null
    [[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# one BINARY PIPELINED FLAGS: prints "requests/s cpu_us_per_request".
one() {
    rm -f "$WORK/log"
    local flags=()
    read -r -a flags <<<"$3"
    taskset -c 0 "$1" --workers 1 --cpus 0 --bind 127.0.0.1:0 "${flags[@]}" "$APP" 2>"$WORK/log" &
    SERVER=$!
    local _
    for _ in $(seq 200); do grep -q "Listening at" "$WORK/log" 2>/dev/null && break; sleep 0.05; done
    local addr
    addr="$(grep -o 'http://127.0.0.1:[0-9]*' "$WORK/log" | head -1)"
    [[ -n "$addr" ]] || die "$1 did not start: $(cat "$WORK/log")"
    local metrics
    metrics="$(grep -o 'Metrics at: http://[0-9.:]*/metrics' "$WORK/log" | head -1)"
    if [[ -n "$SCRAPE" && -n "$metrics" ]]; then
        metrics="${metrics#Metrics at: }"
        curl -sf -o /dev/null "$metrics" || die "$metrics does not answer"
        # One scraper process for the whole run, as Prometheus is (not a process per scrape).
        taskset -c 1 python3 - "$metrics" "$SCRAPE" <<'PY' &
import socket, sys, time
host, port = sys.argv[1].split("//")[1].split("/")[0].rsplit(":", 1)
while True:
    time.sleep(float(sys.argv[2]))
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        while s.recv(65536):
            pass
PY
        SCRAPER=$!
    fi
    local script=()
    [[ "$2" == 1 ]] && script=(-s "$SCRIPT_DIR/pipeline.lua")
    local a b out rps
    a="$(awk '{ print $14 + $15 }' "/proc/$SERVER/stat")"
    out="$(taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "${script[@]}" "$addr$URL_PATH")"
    b="$(awk '{ print $14 + $15 }' "/proc/$SERVER/stat")"
    if [[ -n "$SCRAPER" ]]; then kill "$SCRAPER"; wait "$SCRAPER" 2>/dev/null || true; SCRAPER=""; fi
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    awk -v r="$rps" -v a="$a" -v b="$b" -v hz="$TICK" -v s="$SECS" \
        'BEGIN { printf "%.0f %.3f\n", r, (b - a) / hz * 1e6 / (r * s) }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for pipe in 0 1; do
    olds=""; news=""; ratios=""
    for round in $(seq "$ROUNDS"); do
        # Which side runs first alternates (A B, B A, ...): a run right after another can be
        # slower (TIME_WAIT sockets, the machine's drift), and that must not fall on one side.
        if (( round % 2 )); then
            o="$(one "$OLD" "$pipe" "$OLD_FLAGS")"; n="$(one "$NEW" "$pipe" "$NEW_FLAGS")"
        else
            n="$(one "$NEW" "$pipe" "$NEW_FLAGS")"; o="$(one "$OLD" "$pipe" "$OLD_FLAGS")"
        fi
        echo "pipelined=$pipe round $round: old $o  new $n   (requests/s, CPU µs/request)"
        olds+="${o#* }"$'\n'; news+="${n#* }"$'\n'
        ratios+="$(awk -v o="${o#* }" -v n="${n#* }" 'BEGIN { printf "%.4f", n / o }')"$'\n'
    done
    om="$(median <<<"${olds%$'\n'}")"; nm="$(median <<<"${news%$'\n'}")"
    rm_="$(median <<<"${ratios%$'\n'}")"
    awk -v o="$om" -v n="$nm" -v q="$rm_" -v p="$pipe" -v r="$ROUNDS" 'BEGIN {
        printf "pipelined=%s: median CPU µs/request old %.3f new %.3f; median of the paired new/old ratios %.3f (%d rounds)\n", p, o, n, q, r
    }'
done
