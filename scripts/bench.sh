#!/usr/bin/env bash
# Benchmark ringcorn `hello` against nginx and the io_uring ceiling, side by side, and write
# the report to BENCHMARKS.md (generated: overwritten entirely).
#
# Method: every server runs with one worker pinned to CPU 0 (--cpus-server); wrk runs pinned to
# CPU 1 (--cpus-load). All servers stay up on their own ports for the whole run, but only one is
# under load at a time. Runs alternate: for each round, for each server, for each mode
# (unpipelined, pipelined 16 deep). Per run we record wrk's requests/s, request count, latency
# p50/p99, errors, the server's CPU time (utime+stime from /proc/PID/stat of the server
# process and its descendants) over the run, divided by the requests served, and how busy each
# core was (/proc/stat), so that other work on the machine during a run shows in the report.
#
# Usage: scripts/bench.sh [--quick] [--rounds N] [--duration S] [--out FILE]
#                         [--servers ringcorn,nginx,ceiling] [--cpus-server LIST] [--cpus-load LIST]
#                         [--connections N] [--depth N] [--warmup S]
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --rounds N            rounds of alternating runs (default 3)
  --duration S          seconds per wrk run (default 10)
  --quick               1 round of 3 s (and 1 s warm-up)
  --warmup S            unrecorded warm-up run per server and mode before round 1 (default 2; 0 = none)
  --out FILE            report path (default BENCHMARKS.md at the repository root)
  --servers LIST        comma-separated subset of ringcorn,nginx,ceiling (default all three)
  --cpus-server LIST    taskset CPU list for the servers (default 0)
  --cpus-load LIST      taskset CPU list for wrk (default 1)
  --connections N       wrk connections (default 64)
  --depth N             pipeline depth for the pipelined mode (default 16)
Raw wrk outputs and server logs of the last run are kept in target/bench/.
EOF
}

die() { echo "bench.sh: error: $*" >&2; exit 1; }
log() { echo "bench.sh: $*" >&2; }

# ---------------------------------------------------------------- options
ROUNDS=3
DURATION=10
WARMUP=2
OUT=""
SERVERS="ringcorn,nginx,ceiling"
CPUS_SERVER=0
CPUS_LOAD=1
CONNECTIONS=64
DEPTH=16
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rounds) ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
        --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
        --warmup) WARMUP="${2:?--warmup needs a value}"; shift 2 ;;
        --quick) ROUNDS=1; DURATION=3; WARMUP=1; shift ;;
        --out) OUT="${2:?--out needs a value}"; shift 2 ;;
        --servers) SERVERS="${2:?--servers needs a value}"; shift 2 ;;
        --cpus-server) CPUS_SERVER="${2:?--cpus-server needs a value}"; shift 2 ;;
        --cpus-load) CPUS_LOAD="${2:?--cpus-load needs a value}"; shift 2 ;;
        --connections) CONNECTIONS="${2:?--connections needs a value}"; shift 2 ;;
        --depth) DEPTH="${2:?--depth needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
for v in ROUNDS DURATION WARMUP CONNECTIONS DEPTH; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "--${v,,} must be a non-negative integer, got '${!v}'"
done
(( ROUNDS >= 1 && DURATION >= 1 && CONNECTIONS >= 1 && DEPTH >= 1 )) \
    || die "--rounds, --duration, --connections and --depth must be at least 1"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
SHARED="$(cd "$REPO/.." && pwd)/shared"
[[ -n "$OUT" ]] || OUT="$REPO/BENCHMARKS.md"
cd "$REPO"

IFS=',' read -r -a SERVER_LIST <<< "$SERVERS"
[[ ${#SERVER_LIST[@]} -ge 1 ]] || die "--servers is empty"
for s in "${SERVER_LIST[@]}"; do
    case "$s" in ringcorn|nginx|ceiling) ;; *) die "unknown server '$s' (known: ringcorn, nginx, ceiling)" ;; esac
done
want() { [[ ",$SERVERS," == *",$1,"* ]]; }

# ---------------------------------------------------------------- tools
need() {  # need CMD HOW-TO-INSTALL
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found; install it with: $2"
}
need wrk "apt-get install -y wrk"
need taskset "apt-get install -y util-linux"
need python3 "apt-get install -y python3"
need curl "apt-get install -y curl"
need timeout "apt-get install -y coreutils"
need pgrep "apt-get install -y procps"
want nginx && need nginx "apt-get install -y nginx-light"
if want ringcorn || want ceiling; then
    need cargo "https://rustup.rs (curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh)"
fi
CLK_TCK="$(getconf CLK_TCK)"

NOTES=()   # free-text notes for the report
if want ceiling && [[ ! -f "$SHARED/ceiling/Cargo.toml" ]]; then
    log "no ceiling at $SHARED/ceiling: skipping it"
    NOTES+=("The ceiling was skipped: \`$SHARED/ceiling\` was not found.")
    SERVERS="$(tr ',' '\n' <<< "$SERVERS" | { grep -vx ceiling || true; } | paste -sd, -)"
    IFS=',' read -r -a SERVER_LIST <<< "$SERVERS"
    [[ ${#SERVER_LIST[@]} -ge 1 && -n "$SERVERS" ]] || die "no server left to measure"
fi

# ---------------------------------------------------------------- work dirs and cleanup
RAW="$REPO/target/bench"          # raw wrk outputs and server logs of the last run
rm -rf "$RAW"
mkdir -p "$RAW"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/ringcorn-bench.XXXXXX")"
chmod 755 "$TMP"                  # nginx workers may run as nobody
declare -A PID=() PORT=() RESTARTS=()

descendants() {  # PID -> PID and all its descendants, one per line
    local p="$1" c
    echo "$p"
    for c in $(pgrep -P "$p" 2>/dev/null || true); do descendants "$c"; done
}

stop_server() {  # NAME: TERM the server and its descendants, KILL what is left after 5 s
    local name="$1" pid="${PID[$1]:-}" pids i
    [[ -n "$pid" ]] || return 0
    pids="$(descendants "$pid" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for (( i = 0; i < 50; i++ )); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PID[$name]=""
}

cleanup() {
    local rc=$? s
    trap - EXIT INT TERM
    for s in "${!PID[@]}"; do stop_server "$s"; done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- build
START_TIME=$(date +%s)
LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"   # other work on the machine skews the figures
if want ringcorn; then
    log "building ringcorn (cargo build --release)"
    cargo build --release >&2 || die "cargo build --release failed"
    [[ -x target/release/ringcorn ]] || die "target/release/ringcorn not found after the build"
fi
if want ceiling; then
    # /work/shared is read-only: build a copy (its own [workspace], so it stays out of ours).
    log "building the ceiling from a copy of $SHARED/ceiling"
    CEIL_SRC="$REPO/target/ceiling-src"
    mkdir -p "$CEIL_SRC"
    find "$CEIL_SRC" -mindepth 1 -maxdepth 1 ! -name target ! -name Cargo.lock -exec rm -rf {} +
    (cd "$SHARED/ceiling" && tar cf - --exclude=./target .) | (cd "$CEIL_SRC" && tar xf -)
    cargo build --release --manifest-path "$CEIL_SRC/Cargo.toml" >&2 || die "building the ceiling failed"
    CEILING_BIN="$CEIL_SRC/target/release/ceiling"
    [[ -x "$CEILING_BIN" ]] || die "$CEILING_BIN not found after the build"
fi

# ---------------------------------------------------------------- servers
free_ports() {  # N -> N distinct free TCP ports on 127.0.0.1
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
read -r -a ports <<< "$(free_ports "${#SERVER_LIST[@]}")"
for i in "${!SERVER_LIST[@]}"; do PORT[${SERVER_LIST[$i]}]="${ports[$i]}"; RESTARTS[${SERVER_LIST[$i]}]=0; done

server_cmd() {  # NAME -> the command line that starts it (one word per line)
    local port="${PORT[$1]}"
    case "$1" in
        ringcorn) printf '%s\n' taskset -c "$CPUS_SERVER" "$REPO/target/release/ringcorn" --workers 1 \
                      --cpus "$CPUS_SERVER" --bind "127.0.0.1:$port" --log-level warning hello ;;
        nginx) printf '%s\n' taskset -c "$CPUS_SERVER" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" \
                   -e "$TMP/nginx/error.log" ;;
        ceiling) printf '%s\n' taskset -c "$CPUS_SERVER" "$CEILING_BIN" "$port" 1 ;;
    esac
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_server() {  # NAME: start it in the background, wait (10 s at most) until its port accepts
    local name="$1" port="${PORT[$1]}" pid i cmd
    if [[ "$name" == nginx ]]; then
        mkdir -p "$TMP/nginx"
        sed -e "s|@DIR@|$TMP/nginx|g" -e "s|@PORT@|$port|g" "$SCRIPT_DIR/nginx.conf.template" \
            > "$TMP/nginx/nginx.conf"
    fi
    port_open "$port" && die "port $port is already taken (before starting $name)"
    mapfile -t cmd < <(server_cmd "$name")
    "${cmd[@]}" >>"$RAW/$name.log" 2>&1 &
    pid=$!
    PID[$name]=$pid
    for (( i = 0; i < 100; i++ )); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$RAW/$name.log" >&2 || true
            die "$name exited during start-up (log: $RAW/$name.log)"
        fi
        port_open "$port" && break
        sleep 0.1
    done
    port_open "$port" || { tail -n 20 "$RAW/$name.log" >&2; die "$name did not accept on 127.0.0.1:$port within 10 s"; }
    log "$name is up on 127.0.0.1:$port (pid $pid)"
}

alive() { [[ -n "${PID[$1]:-}" ]] && kill -0 "${PID[$1]}" 2>/dev/null; }

cpu_ticks() {  # NAME -> utime+stime (clock ticks) summed over the server process and its descendants
    local p stat rest total=0 f
    for p in $(descendants "${PID[$1]}"); do
        stat="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        rest="${stat##*) }"             # drop "pid (comm) ": comm may contain spaces
        read -r -a f <<< "$rest"        # f[0] is field 3 (state): utime is field 14, stime 15
        total=$(( total + f[11] + f[12] ))
    done
    echo "$total"
}

check_response() {  # NAME: one GET; keep the response head in the raw dir, note a wrong answer
    local name="$1" out body status
    out="$RAW/$name.response.txt"
    curl -s -i --max-time 5 "http://127.0.0.1:${PORT[$name]}/" > "$out" || true
    status="$(head -n 1 "$out" | tr -d '\r')"
    body="$(sed '1,/^\r\{0,1\}$/d' "$out")"
    if [[ "$status" != "HTTP/1.1 200 OK" || "$body" != "Hello, World!" ]]; then
        log "warning: $name answered '$status' with body '$body'"
        NOTES+=("**$name answered a plain GET wrongly**: status \`$status\`, body \`$body\`.")
    fi
}

for s in "${SERVER_LIST[@]}"; do start_server "$s"; check_response "$s"; done

# ---------------------------------------------------------------- runs
MODES=(plain pipelined)
wrk_cmd() {  # NAME MODE SECONDS -> the wrk command line (one word per line)
    printf '%s\n' taskset -c "$CPUS_LOAD" wrk -t1 "-c$CONNECTIONS" "-d${3}s" --latency
    [[ "$2" == pipelined ]] && printf '%s\n' -s "$SCRIPT_DIR/pipeline.lua"
    printf '%s\n' "http://127.0.0.1:${PORT[$1]}/"
}

TSV="$RAW/runs.tsv"
printf 'round\tserver\tmode\tticks_before\tticks_after\twrk_rc\talive_after\trestarts\traw\n' > "$TSV"
export PIPELINE_DEPTH="$DEPTH"

run_one() {  # ROUND NAME MODE SECONDS -> appends a row to the TSV (round 0 = warm-up, not kept)
    local round="$1" name="$2" mode="$3" secs="$4" raw before after rc=0 alive_after=1 cmd
    if ! alive "$name"; then
        log "$name is not running (died?): restarting it"
        RESTARTS[$name]=$(( RESTARTS[$name] + 1 ))
        stop_server "$name"
        start_server "$name"
    fi
    raw="$RAW/r${round}-${name}-${mode}.txt"
    mapfile -t cmd < <(wrk_cmd "$name" "$mode" "$secs")
    grep '^cpu[0-9]' /proc/stat > "${raw%.txt}.procstat-before"   # per-core busy time, to see
    before="$(cpu_ticks "$name")"                                  # other work on the cores
    timeout $(( secs + 30 )) "${cmd[@]}" > "$raw" 2>&1 || rc=$?
    after="$(cpu_ticks "$name")"
    grep '^cpu[0-9]' /proc/stat > "${raw%.txt}.procstat-after"
    alive "$name" || alive_after=0
    if (( rc != 0 || alive_after == 0 )); then
        log "warning: $name $mode round $round: wrk exit $rc, server alive: $alive_after"
    fi
    (( round == 0 )) && return 0
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$mode" "$before" "$after" \
        "$rc" "$alive_after" "${RESTARTS[$name]}" "$(basename "$raw")" >> "$TSV"
    log "round $round $name $mode: $(grep -h 'Requests/sec' "$raw" | tr -s ' ' || echo 'no Requests/sec'), $(( after - before )) ticks"
}

if (( WARMUP > 0 )); then
    log "warm-up: ${WARMUP} s per server and mode (not recorded)"
    for s in "${SERVER_LIST[@]}"; do for m in "${MODES[@]}"; do run_one 0 "$s" "$m" "$WARMUP"; done; done
fi
for (( r = 1; r <= ROUNDS; r++ )); do
    for s in "${SERVER_LIST[@]}"; do
        for m in "${MODES[@]}"; do run_one "$r" "$s" "$m" "$DURATION"; done
    done
done

# ---------------------------------------------------------------- report
ELAPSED=$(( $(date +%s) - START_TIME ))
[[ -f "$TMP/nginx/error.log" ]] && cp "$TMP/nginx/error.log" "$RAW/nginx.error.log"
for s in "${SERVER_LIST[@]}"; do   # anything a server logged (warnings and worse) goes in the report
    for f in "$RAW/$s.log" "$RAW/$s.error.log"; do
        [[ -s "$f" ]] || continue
        NOTES+=("$s logged $(grep -c . "$f") line(s) to \`target/bench/$(basename "$f")\`; the last: \`$(grep . "$f" | tail -n 1 | tr -d '\`' | cut -c1-200)\`")
    done
done
META="$RAW/meta.tsv"
{
    commit="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "none (no commit yet)")"
    [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ]] && commit="$commit (with uncommitted changes)"
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'commit\t%s\n' "$commit"
    printf 'cpu\t%s\n' "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    printf 'cores\t%s\n' "$(nproc --all)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'loadavg\t%s\n' "$LOADAVG"
    printf 'wrk\t%s\n' "$(wrk -v 2>&1 | head -n 1 | sed 's/ Copyright.*//')"
    want nginx && printf 'nginx\t%s\n' "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    want ringcorn && printf 'ringcorn\t%s\n' "$("$REPO/target/release/ringcorn" --version 2>/dev/null | head -n 1 || echo '?')"
    command -v rustc >/dev/null && printf 'rustc\t%s\n' "$(rustc --version)"
    printf 'clk_tck\t%s\n' "$CLK_TCK"
    printf 'rounds\t%s\n' "$ROUNDS"
    printf 'duration\t%s\n' "$DURATION"
    printf 'warmup\t%s\n' "$WARMUP"
    printf 'connections\t%s\n' "$CONNECTIONS"
    printf 'depth\t%s\n' "$DEPTH"
    printf 'cpus_server\t%s\n' "$CPUS_SERVER"
    printf 'cpus_load\t%s\n' "$CPUS_LOAD"
    printf 'servers\t%s\n' "$SERVERS"
    printf 'elapsed\t%s\n' "$ELAPSED"
    for s in "${SERVER_LIST[@]}"; do
        printf 'cmd_%s\t%s\n' "$s" "$(server_cmd "$s" | sed "s|^$REPO/||; s|^$TMP/|\$TMP/|; s|^${PORT[$s]}\$|PORT|; s|:${PORT[$s]}\$|:PORT|" | paste -sd' ')"
        printf 'response_%s\t%s\n' "$s" "$(head -n 1 "$RAW/$s.response.txt" | tr -d '\r')"
        printf 'response_bytes_%s\t%s\n' "$s" "$(wc -c < "$RAW/$s.response.txt")"
    done
    printf 'wrk_plain\t%s\n' "$(wrk_cmd "${SERVER_LIST[0]}" plain "$DURATION" | sed "s|^$REPO/||" | paste -sd' ' | sed 's|:[0-9]*/$|:PORT/|')"
    printf 'wrk_pipelined\t%s\n' "$(wrk_cmd "${SERVER_LIST[0]}" pipelined "$DURATION" | sed "s|^$REPO/||" | paste -sd' ' | sed 's|:[0-9]*/$|:PORT/|')"
    [[ "$CPUS_SERVER" != 0 ]] && want ceiling && NOTES+=("The ceiling pins its thread to CPU 0 itself, whatever \`--cpus-server\` says.")
    for n in "${NOTES[@]+"${NOTES[@]}"}"; do printf 'note\t%s\n' "$n"; done
} > "$META"

python3 "$SCRIPT_DIR/report.py" --meta "$META" --runs "$TSV" --raw "$RAW" --out "$OUT"
log "done in ${ELAPSED} s: report written to $OUT (raw outputs in $RAW)"
