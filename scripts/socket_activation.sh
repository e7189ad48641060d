#!/usr/bin/env bash
# Socket activation on 2 workers: a passed socket WITH SO_REUSEPORT (systemd's ReusePort=yes:
# ringcorn opens a socket per worker beside it) against one WITHOUT (every worker accepts on
# the one passed socket). The socket is passed as systemd passes it (LISTEN_PID, LISTEN_FDS,
# fd 3) by a small launcher, so that both variants can be measured in one run, alternating
# (A B A B ...), median of the rounds.
#
# Two loads, wrk with 1 thread: keep-alive (64 connections, accepted once) and a new
# connection per request (`Connection: close`, where accepting is the work). Per variant:
# requests/s, server CPU per request (utime+stime of the whole process over the run), and
# how evenly the two workers shared the work (each worker thread's CPU time; 50/50 is even).
#
# Usage: scripts/socket_activation.sh [--rounds N] [--seconds S] [--out FILE] [--install]
# Writes a Markdown table to FILE (default benchmarks/socket_activation.md).
set -euo pipefail

die() { echo "socket_activation.sh: error: $*" >&2; exit 1; }
log() { echo "socket_activation.sh: $*" >&2; }

ROUNDS=3
SECONDS_PER_RUN=5
INSTALL=0
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
OUT="$REPO/benchmarks/socket_activation.md"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --seconds) SECONDS_PER_RUN="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --install) INSTALL=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1" ;;
    esac
done
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "--rounds takes a positive number"
[[ "$SECONDS_PER_RUN" =~ ^[1-9][0-9]*$ ]] || die "--seconds takes a positive number"

missing_packages() {
    local pkgs=()
    command -v wrk >/dev/null 2>&1 || pkgs+=(wrk)
    command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
    echo "${pkgs[*]:-}"
}
# shellcheck source=scripts/tools.sh
. "$SCRIPT_DIR/tools.sh"
install_missing

log "building the release binary"
(cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
BIN="$(target_dir "$REPO/Cargo.toml")/release/ringcorn"
TICK="$(getconf CLK_TCK)"
WORK="$(mktemp -d)"
SERVER=""
cleanup() { [[ -n "$SERVER" ]] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# launch VARIANT: start ringcorn on a passed socket; sets SERVER and PORT.
launch() {
    rm -f "$WORK/server.log" "$WORK/server.log.port"
    python3 - "$1" "$BIN" "$WORK/server.log" <<'PY' &
import os, socket, sys
variant, binary, logfile = sys.argv[1:4]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
if variant == "reuseport":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", 0))
s.listen(2048)
with open(logfile + ".port", "w") as f:
    f.write(str(s.getsockname()[1]))
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.dup2(fd, 2)
env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS="1", LISTEN_FDNAMES="http")
os.execve(binary, [binary, "--workers", "2", "--cpus", "0,1", "hello"], env)
PY
    SERVER=$!
    local _
    for _ in $(seq 100); do
        grep -q "Using app" "$WORK/server.log" 2>/dev/null && break
        sleep 0.05
    done
    grep -q "Using app" "$WORK/server.log" 2>/dev/null || die "the server did not start: $(cat "$WORK/server.log" 2>/dev/null)"
    grep -q "Socket activation" "$WORK/server.log" || die "the server did not take the passed socket: $(cat "$WORK/server.log")"
    PORT="$(cat "$WORK/server.log.port")"
}

# cpu_ticks PID [THREAD_NAME]: utime+stime of the process, or of its thread with that name.
cpu_ticks() {
    if [[ -z "${2:-}" ]]; then
        awk '{ print $14 + $15 }' "/proc/$1/stat"
        return
    fi
    local t
    for t in /proc/"$1"/task/*; do
        if [[ "$(cat "$t/comm")" == "$2" ]]; then
            awk '{ print $14 + $15 }' "$t/stat"
            return
        fi
    done
    echo 0
}

# run VARIANT LOAD: one measurement; prints "rps cpu_us_per_req share_w0_percent".
run() {
    launch "$1"
    local header=()
    [[ "$2" == "close" ]] && header=(-H "Connection: close")
    local p0 w0 w1 p1 w0e w1e out rps
    p0="$(cpu_ticks "$SERVER")"; w0="$(cpu_ticks "$SERVER" ringcorn-w0)"; w1="$(cpu_ticks "$SERVER" ringcorn-w1)"
    out="$(wrk -t1 -c64 -d"${SECONDS_PER_RUN}s" "${header[@]}" "http://127.0.0.1:$PORT/")"
    p1="$(cpu_ticks "$SERVER")"; w0e="$(cpu_ticks "$SERVER" ringcorn-w0)"; w1e="$(cpu_ticks "$SERVER" ringcorn-w1)"
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
    rps="$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")"
    local total
    total="$(awk -v r="$rps" -v s="$SECONDS_PER_RUN" 'BEGIN { printf "%d", r * s }')"
    awk -v r="$rps" -v a="$p0" -v b="$p1" -v n="$total" -v hz="$TICK" \
        -v x0="$w0" -v x1="$w0e" -v y0="$w1" -v y1="$w1e" 'BEGIN {
            cpu = (b - a) / hz * 1e6 / (n > 0 ? n : 1)
            w = (x1 - x0) + (y1 - y0)
            printf "%.0f %.2f %.0f\n", r, cpu, (w > 0 ? 100 * (x1 - x0) / w : 0)
        }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A RESULTS
for load in keepalive close; do
    for round in $(seq "$ROUNDS"); do
        for variant in reuseport shared; do
            r="$(run "$variant" "$load")"
            log "$load round $round $variant: $r (req/s, CPU µs/req, worker 0 share %)"
            RESULTS["$load $variant"]+="$r"$'\n'
        done
    done
done

mkdir -p "$(dirname "$OUT")"
{
    echo "# Socket activation: per-worker sockets (ReusePort=yes) or one shared socket"
    echo
    machine_meta "$(date +%s)" | awk -F'\t' '{ printf "- %s: %s\n", $1, $2 }'
    echo "- command: scripts/socket_activation.sh --rounds $ROUNDS --seconds $SECONDS_PER_RUN"
    echo "- 2 workers (CPUs 0,1), the socket passed as systemd passes it; wrk -t1 -c64 unpinned;"
    echo "  medians of $ROUNDS alternating rounds; worker 0 share: its part of the two workers' CPU time"
    echo
    echo "| load | passed socket | requests/s | server CPU µs/request | worker 0 share |"
    echo "|---|---|---:|---:|---:|"
    for load in keepalive close; do
        for variant in reuseport shared; do
            rows="${RESULTS["$load $variant"]}"
            rps="$(awk 'NF { print $1 }' <<<"$rows" | median)"
            cpu="$(awk 'NF { print $2 }' <<<"$rows" | median)"
            share="$(awk 'NF { print $3 }' <<<"$rows" | median)"
            name="SO_REUSEPORT (per-worker sockets)"
            [[ "$variant" == shared ]] && name="no SO_REUSEPORT (shared)"
            label="keep-alive"
            [[ "$load" == close ]] && label="new connection per request"
            echo "| $label | $name | $rps | $cpu | $share % |"
        done
    done
} >"$OUT"
log "wrote $OUT"
cat "$OUT"
