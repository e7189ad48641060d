#!/usr/bin/env bash
# What `--metrics` costs the server: CPU per request with metrics off and on, measured by
# scripts/compare.sh with the same binary on both sides (one worker on CPU 0, wrk -t1 -c64 on
# CPU 1, keep-alive GET / unpipelined and pipelined 16 deep; off and on back to back, which
# goes first alternating by round; the figure is the median of the rounds' on/off ratios,
# shown with their spread: on a shared 2-core machine one run's CPU time moves by several
# percent). On: --metrics 127.0.0.1:0, scraped every second meanwhile by one process on CPU 1
# as a demanding Prometheus would (the master's CPU counts), or never with --no-scrape (what
# counting and publishing cost the worker alone). Then what one scrape costs the master: its
# thread's CPU time over 200 scrapes in a row.
# Then the same in instructions, which do not drift with the machine's load: the whole
# server (every thread) under callgrind on the epoll backend (valgrind cannot run io_uring;
# the metrics code is the same on both), counters zeroed once warm and dumped when wrk ends,
# instructions ÷ requests; user space only (the kernel's share of the CPU, most of it, is
# not counted, and metrics add no system call on the request path).
#
# Usage: scripts/metrics_cost.sh [--rounds N] [--seconds S] [--no-scrape] [--out FILE]
# Writes a Markdown table to FILE (default benchmarks/metrics.md).
set -euo pipefail

die() { echo "metrics_cost.sh: error: $*" >&2; exit 1; }
log() { echo "metrics_cost.sh: $*" >&2; }

ROUNDS=9
SECS=4
SCRAPE=1
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
OUT="$REPO/benchmarks/metrics.md"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --seconds) SECS="$2"; shift 2 ;;
        --no-scrape) SCRAPE=0; shift ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1" ;;
    esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ && "$SECS" =~ ^[1-9][0-9]*$ ]] || die "--rounds and --seconds take positive numbers"
for tool in wrk curl python3 valgrind callgrind_control; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: apt-get install -y wrk curl python3 valgrind"
done
# shellcheck source=scripts/tools.sh
. "$SCRIPT_DIR/tools.sh"

log "building the release binary"
(cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
BIN="$(target_dir "$REPO/Cargo.toml")/release/ringcorn"

scrape=()
(( SCRAPE )) && scrape=(--scrape-every 1)
log "compare.sh: metrics off (old) and on (new), $ROUNDS rounds of ${SECS}s"
COMPARE="$("$SCRIPT_DIR/compare.sh" "$BIN" "$BIN" --new-flags "--metrics 127.0.0.1:0" \
    "${scrape[@]}" --rounds "$ROUNDS" --seconds "$SECS")"
echo "$COMPARE" >&2

# The master's CPU per scrape: its own thread (the process's first), 200 scrapes in a row
# against a server that has served some requests.
TICK="$(getconf CLK_TCK)"
WORK="$(mktemp -d)"
SERVER=""
cleanup() { [[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
taskset -c 0 "$BIN" --workers 1 --cpus 0 --bind 127.0.0.1:0 --metrics 127.0.0.1:0 hello 2>"$WORK/log" &
SERVER=$!
for _ in $(seq 200); do grep -q "Metrics at" "$WORK/log" 2>/dev/null && break; sleep 0.05; done
ADDR="$(grep -o 'Listening at: http://127.0.0.1:[0-9]*' "$WORK/log" | head -1)"
METRICS="$(grep -o 'Metrics at: http://[0-9.:]*/metrics' "$WORK/log" | head -1)"
[[ -n "$ADDR" && -n "$METRICS" ]] || die "ringcorn did not start: $(cat "$WORK/log")"
ADDR="${ADDR#Listening at: }"; METRICS="${METRICS#Metrics at: }"
taskset -c 1 wrk -t1 -c64 -d1s "$ADDR/" >/dev/null
SCRAPES=200
ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER/task/$SERVER/stat"; }
a="$(ticks)"
taskset -c 1 python3 - "$METRICS" "$SCRAPES" <<'PY'
import socket, sys
host, port = sys.argv[1].split("//")[1].split("/")[0].rsplit(":", 1)
for _ in range(int(sys.argv[2])):
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        while s.recv(65536):
            pass
PY
b="$(ticks)"
bytes="$(curl -s "$METRICS" | wc -c)"
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
per_scrape="$(awk -v a="$a" -v b="$b" -v hz="$TICK" -v n="$SCRAPES" 'BEGIN { printf "%.0f", (b - a) / hz * 1e6 / n }')"
log "one scrape: ${per_scrape} µs of master CPU, ${bytes} bytes"

# callgrind_one PIPELINED FLAGS...: "requests instructions" of one server under callgrind.
callgrind_one() {
    local pipe="$1"; shift
    rm -f "$WORK"/cg.out* "$WORK/log"
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$BIN" --backend epoll \
        --workers 1 --cpus 0 --bind 127.0.0.1:0 "$@" hello 2>"$WORK/log" &
    SERVER=$!
    for _ in $(seq 600); do grep -q "Listening at" "$WORK/log" 2>/dev/null && break; sleep 0.05; done
    local addr metrics scraper=""
    addr="$(grep -o 'Listening at: http://127.0.0.1:[0-9]*' "$WORK/log" | head -1)"
    addr="${addr#Listening at: }"
    [[ -n "$addr" ]] || die "ringcorn did not start under valgrind: $(cat "$WORK/log")"
    metrics="$(grep -o 'Metrics at: http://[0-9.:]*/metrics' "$WORK/log" | head -1)"
    metrics="${metrics#Metrics at: }"
    wrk -t1 -c16 -d1s "$addr/" >/dev/null
    callgrind_control -z "$SERVER" >/dev/null
    if [[ -n "$metrics" ]]; then
        (while sleep 1; do curl -s -o /dev/null "$metrics"; done) &
        scraper=$!
    fi
    local script=() out
    [[ "$pipe" == 1 ]] && script=(-s "$SCRIPT_DIR/pipeline.lua")
    out="$(wrk -t1 -c16 -d6s "${script[@]}" "$addr/")"
    [[ -n "$scraper" ]] && { kill "$scraper"; wait "$scraper" 2>/dev/null || true; }
    callgrind_control -d "$SERVER" >/dev/null
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
    local dump
    dump="$(ls "$WORK"/cg.out.* 2>/dev/null | head -1)"
    [[ -n "$dump" ]] || die "callgrind wrote no dump"
    echo "$(awk '/requests in/ { print $1 }' <<<"$out") $(awk '/^(summary|totals):/ { print $2; exit }' "$dump")"
}

declare -A IR
for pipe in 0 1; do
    for m in off on; do
        flags=()
        [[ "$m" == on ]] && flags=(--metrics 127.0.0.1:0)
        read -r n ir <<<"$(callgrind_one "$pipe" "${flags[@]}")"
        IR["$pipe $m"]="$(awk -v i="$ir" -v n="$n" 'BEGIN { printf "%.1f", i / n }')"
        log "callgrind pipelined=$pipe metrics $m: $n requests, $ir instructions"
    done
done

# mode_row PIPELINED LABEL: a table row from compare.sh's rounds and summary.
mode_row() {
    local summary ratios
    summary="$(grep "^pipelined=$1: " <<<"$COMPARE")"
    ratios="$(grep "^pipelined=$1 round" <<<"$COMPARE" \
        | awk '{ printf "%.4f\n", $9 / $6 }' | sort -n)"
    awk -v label="$2" -v s="$summary" -v lo="$(head -1 <<<"$ratios")" -v hi="$(tail -1 <<<"$ratios")" 'BEGIN {
        split(s, f, " "); sub(/;$/, "", f[8])
        # pipelined=P: median CPU µs/request old X new Y; median of the paired new/old ratios Z (N rounds)
        printf "| %s | %s | %s | %s | %s–%s |\n", label, f[6], f[8], f[15], lo, hi
    }'
}

mkdir -p "$(dirname "$OUT")"
{
    echo "# Metrics cost: server CPU per request, --metrics off and on"
    echo
    machine_meta "$(date +%s)" | awk -F'\t' '{ printf "- %s: %s\n", $1, $2 }'
    echo "- command: scripts/metrics_cost.sh --rounds $ROUNDS --seconds $SECS$( ((SCRAPE)) || echo " --no-scrape")"
    if (( SCRAPE )); then
        echo "- on: --metrics 127.0.0.1:0, /metrics scraped every second from CPU 1 meanwhile (the master's CPU counts)"
    else
        echo "- on: --metrics 127.0.0.1:0, never scraped (the workers' counting and publishing alone)"
    fi
    echo "- 1 worker on CPU 0, wrk -t1 -c64 -d${SECS}s on CPU 1, keep-alive GET /; off and on back to back, the first alternating; medians of $ROUNDS rounds"
    echo
    echo "| mode | off µs/req | on µs/req | on ÷ off (median of the rounds' ratios) | ratio spread |"
    echo "|---|---:|---:|---:|---|"
    mode_row 0 unpipelined
    mode_row 1 "pipelined ×16"
    echo
    echo "One scrape (1 worker, $bytes bytes of text): $per_scrape µs of the master thread's CPU ($SCRAPES scrapes in a row, total ÷ $SCRAPES)."
    echo
    echo "Instructions per request, the whole server under callgrind (--backend epoll, wrk -t1 -c16 -d6s; on: scraped every second):"
    echo
    echo "| mode | off instr/req | on instr/req | on ÷ off |"
    echo "|---|---:|---:|---:|"
    for pipe in 0 1; do
        mode=unpipelined
        (( pipe )) && mode="pipelined ×16"
        awk -v m="$mode" -v a="${IR["$pipe off"]}" -v b="${IR["$pipe on"]}" \
            'BEGIN { printf "| %s | %s | %s | %.4f |\n", m, a, b, b / a }'
    done
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
