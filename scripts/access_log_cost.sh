#!/usr/bin/env bash
# What the access log costs: server CPU per request with the log off and on (to a file),
# for ringcorn (`--access-logfile`, the default combined format) and for nginx
# (`access_log FILE combined buffer=64k flush=100ms`), one worker on CPU 0, wrk -t1 -c64 on
# CPU 1, the four runs alternating in each round (off and on back to back, which goes first
# alternating by round); medians over the rounds of each run and of each round's on-minus-off
# difference. Target: ringcorn's added CPU per request no more than nginx's.
#
# Usage: scripts/access_log_cost.sh [--rounds N] [--seconds S] [--out FILE] [--install]
# Writes a Markdown table to FILE (default benchmarks/access_log.md).
set -euo pipefail

die() { echo "access_log_cost.sh: error: $*" >&2; exit 1; }
log() { echo "access_log_cost.sh: $*" >&2; }

ROUNDS=5
SECS=5
INSTALL=0
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
OUT="$REPO/benchmarks/access_log.md"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --seconds) SECS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --install) INSTALL=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1" ;;
    esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ && "$SECS" =~ ^[1-9][0-9]*$ ]] || die "--rounds and --seconds take positive numbers"
(( $(nproc) >= 2 )) || die "needs 2 CPUs (server on 0, wrk on 1)"

missing_packages() {
    local pkgs=()
    command -v wrk >/dev/null 2>&1 || pkgs+=(wrk)
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || pkgs+=(nginx-light)
    echo "${pkgs[*]:-}"
}
# shellcheck source=scripts/tools.sh
. "$SCRIPT_DIR/tools.sh"
install_missing
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

log "building the release binary"
(cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
BIN="$(target_dir "$REPO/Cargo.toml")/release/ringcorn"
TICK="$(getconf CLK_TCK)"
WORK="$(mktemp -d)"
SERVER=""
cleanup() { [[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME LOG(on|off): starts the server on a free port; sets SERVER and PORT.
start() {
    rm -f "$WORK/access.log" "$WORK/server.log"
    PORT="$(free_port)"
    case "$1" in
        ringcorn)
            local extra=()
            [[ "$2" == on ]] && extra=(--access-logfile "$WORK/access.log")
            taskset -c 0 "$BIN" --workers 1 --cpus 0 --bind "127.0.0.1:$PORT" "${extra[@]}" hello \
                2>"$WORK/server.log" &
            ;;
        nginx)
            local access="access_log off;"
            [[ "$2" == on ]] && access="access_log $WORK/access.log combined buffer=64k flush=100ms;"
            cat >"$WORK/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $WORK/server.log warn;
pid $WORK/nginx.pid;
events { worker_connections 4096; }
http {
    $access
    server {
        listen 127.0.0.1:$PORT;
        location / { default_type text/plain; return 200 "Hello, World!"; }
    }
}
EOF
            taskset -c 0 "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" 2>>"$WORK/server.log" &
            ;;
    esac
    SERVER=$!
    local _
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && return 0
        sleep 0.05
    done
    die "$1 did not start: $(cat "$WORK/server.log")"
}

# run NAME LOG: prints the server CPU µs per request.
run() {
    start "$1" "$2"
    local a b out rps
    a="$(awk '{ print $14 + $15 }' "/proc/$SERVER/stat")"
    out="$(taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "http://127.0.0.1:$PORT/")"
    b="$(awk '{ print $14 + $15 }' "/proc/$SERVER/stat")"
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
    if [[ "$2" == on ]] && [[ ! -s "$WORK/access.log" ]]; then
        die "$1 wrote no access log"
    fi
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    awk -v r="$rps" -v a="$a" -v b="$b" -v hz="$TICK" -v s="$SECS" \
        'BEGIN { printf "%.3f\n", (b - a) / hz * 1e6 / (r * s) }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A ALL
for round in $(seq "$ROUNDS"); do
    for name in ringcorn nginx; do
        # Which runs first alternates: the second run of a pair can be slower.
        if (( round % 2 )); then
            off="$(run "$name" off)"; on="$(run "$name" on)"
        else
            on="$(run "$name" on)"; off="$(run "$name" off)"
        fi
        log "round $round $name: off $off, on $on µs/request"
        ALL["$name off"]+="$off"$'\n'
        ALL["$name on"]+="$on"$'\n'
        ALL["$name added"]+="$(awk -v a="$off" -v b="$on" 'BEGIN { printf "%.3f", b - a }')"$'\n'
    done
done

mkdir -p "$(dirname "$OUT")"
{
    echo "# Access log cost: server CPU per request, log off and on"
    echo
    machine_meta "$(date +%s)" | awk -F'\t' '{ printf "- %s: %s\n", $1, $2 }'
    echo "- command: scripts/access_log_cost.sh --rounds $ROUNDS --seconds $SECS"
    echo "- 1 worker on CPU 0, wrk -t1 -c64 -d${SECS}s on CPU 1, keep-alive GET /; medians of $ROUNDS rounds"
    echo "- ringcorn: --access-logfile FILE (combined); nginx: access_log FILE combined buffer=64k flush=100ms"
    echo
    echo "| server | log off µs/req | log on µs/req | added µs/req (median of rounds) |"
    echo "|---|---:|---:|---:|"
    for name in ringcorn nginx; do
        printf '| %s | %s | %s | %s |\n' "$name" \
            "$(median <<<"${ALL["$name off"]%$'\n'}")" \
            "$(median <<<"${ALL["$name on"]%$'\n'}")" \
            "$(median <<<"${ALL["$name added"]%$'\n'}")"
    done
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
