#!/usr/bin/env bash
# Benchmark ringcorn against its peers and regenerate BENCHMARKS.md and its charts
# (benchmarks/*.svg): everything there is generated, overwritten entirely.
#
# Peers: ringcorn (`hello` and `json` apps; `ringcorn-process` is `hello` with
# `--worker-class process`; `ringcorn-epoll` is `hello` with `--backend epoll`, the fallback
# where io_uring is blocked; `ringcorn-static` is `ringcorn static --root DIR`, the built-in
# static-file app, in the size sweep and the slow-read attack only), nginx (`return 200`, and
# static files), ceiling (the project's bare io_uring loop, no HTTP parsing), hyper-peer (hyper
# 1.x on tokio), uring-peer (tokio-uring with httparse), gunicorn (sync worker, trivial WSGI app).
# The last four come from benches/peers/ and a virtualenv under target/bench/venv; this script
# builds and installs them.
#
# Sections (--sections):
#   throughput  requests/s and server CPU µs/request with wrk at 1, 64, 256, 1024 connections,
#               unpipelined and pipelined 16 deep, every peer; then peak RSS (VmHWM) under load
#   latency     p50/p99/p99.9/max at a fixed rate (open-loop `loadgen`, 20k req/s, 64 connections)
#   memory      server RSS growth per idle keep-alive connection, 10,000 held (`holdconns`)
#   sizes       response size sweep 13 B, 4 KiB, 64 KiB, 1 MiB, 16 MiB (ringcorn `bytes`,
#               ringcorn-static and nginx serving the same files, hyper-peer, uring-peer): requests/s,
#               server CPU µs/request and its ratio to nginx's
#   tls         TLS (ringcorn --certfile, nginx ssl; the same ECDSA P-256 certificate): keep-alive
#               requests over TLS (wrk), full and resumed handshakes (openssl s_time -new/-reuse),
#               memory per idle TLS connection (scripts/tls_hold.py)
#   slowread    the slow-read attack (`slowhttptest -X`): 400 connections reading a 1 MiB response
#               slowly; server RSS before and at peak, RSS per slow reader, and a normal client's
#               probes (curl every 200 ms) throughout (ringcorn `bytes`, ringcorn-static, nginx)
#   scaling     1, 2, 4, ... workers over --scale-cpus
#   callgrind   instructions per request through the sans-IO connection (valgrind)
#   criterion   `cargo bench --bench http` summary (full mode only unless named)
#
# Method: servers are pinned (one worker on --cpus-server), the load generator on --cpus-load.
# Within each round every peer is measured in turn (A B C ... A B C ...), so slow drift of the
# machine hits all of them alike; tables show the median over rounds with (min–max). Server CPU
# time comes from /proc/PID/stat (process and descendants), core load from /proc/stat: runs during
# which other work used the measured cores are flagged in the report.
#
# Usage: scripts/bench.sh [--quick] [--install] [options]
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options (defaults of the full mode; --quick changes those marked *):
  --quick               1 round, 1 s runs, 64 connections only, scaling pipelined only, a
                        10 s slow-read attack with 100 connections, no criterion: every peer and
                        section in a few minutes (figures are indicative only)
  --install             apt-get install the missing tools first (as root), then run
  --rounds N            * rounds of alternating runs (3; quick 1)
  --duration S          * seconds per wrk run, throughput and scaling (4; quick 1)
  --size-duration S     * seconds per wrk run of the size sweep (3; quick 1)
  --size-large-connections N
                        wrk connections of the size sweep at 16 MiB (16; 64 at the other sizes):
                        at 64, a run of a few seconds finishes only a handful of 16 MiB responses
                        per connection, and the ones still in flight when wrk stops (CPU spent,
                        no request counted) skew CPU per request
  --size-focus-rounds N * rounds at 1 MiB, the size of issue 11's target, for ringcorn bytes,
                        ringcorn static and nginx (9; quick 1): past --rounds, those three
                        alternate alone there, since one server's 1 MiB figure moves by a
                        third between rounds and 3 rounds' median moves with it
  --warmup S            * unrecorded wrk warm-up per peer and mode before round 1 (1; quick 0)
  --connections LIST    * wrk connection counts (1,64,256,1024; quick 64)
  --depth N             pipeline depth (16)
  --peers LIST          subset of ringcorn,ringcorn-process,ringcorn-json,ringcorn-epoll,ringcorn-static,
                        nginx,ceiling,hyper-peer,uring-peer,gunicorn
  --sections LIST       * subset of throughput,latency,memory,sizes,slowread,tls,scaling,callgrind,criterion
                        (all; quick: all but criterion)
  --criterion           add the criterion section (also in --quick)
  --cpus-server LIST    taskset CPU list of the one-worker servers (0)
  --cpus-load LIST      taskset CPU list of the load generators (1); wrk gets one thread per CPU
  --scale-cpus LIST     CPUs the scaling section spreads workers over (all CPUs: 0-(nproc-1));
                        worker counts 1, 2, 4, ... up to their number
  --scale-connections N * wrk connections in the scaling section (256; quick 64)
  --gunicorn-max-connections N
                        gunicorn runs only at connection counts up to N (64): its sync worker
                        serves one connection at a time, more only queue in its backlog
  --latency-rate R      loadgen requests/s (20000)
  --gunicorn-rate R     loadgen requests/s for gunicorn (500): see the report's latency section
  --latency-connections C  loadgen connections (64)
  --latency-duration S  * loadgen seconds (5, after 1 s of warm-up; quick 1, no warm-up)
  --hold N              idle keep-alive connections held in the memory section (10000)
  --slow-connections N  * slow readers of the slow-read attack (400; quick 100)
  --slow-duration S     * seconds of the slow-read attack (30; quick 10)
  --slow-rate R         new slow-read connections per second (200): all are open after N/R s
  --slow-send-timeout S the send timeout of ringcorn (--send-timeout) and nginx (send_timeout)
                        in the slow-read section (the attack's duration + 60 s): longer than the
                        attack, so it measures memory, not timeouts
  --callgrind-requests N  requests per callgrind run (100000)
  --no-build            use the binaries already built (development)
  --force               measure even if the machine is busy (figures will be skewed)
  --out FILE            report path (BENCHMARKS.md at the repository root; charts go to
                        benchmarks/ next to it)
Raw outputs and server logs of the last run are kept in target/bench/raw/.
EOF
}

DIED=0
die() { echo "bench.sh: error: $*" >&2; DIED=1; exit 1; }
log() { echo "bench.sh: $*" >&2; }

# ---------------------------------------------------------------- options
QUICK=0
for a in "$@"; do [[ "$a" == --quick ]] && QUICK=1; done
if (( QUICK )); then
    ROUNDS=1; DURATION=1; SIZE_DURATION=1; WARMUP=0; CONNECTIONS="64"; SCALE_CONNS=64; SIZE_FOCUS_ROUNDS=1
    SCALE_MODES="pipelined"; LAT_DURATION=1; LAT_WARMUP=0; SLOW_CONNS=100; SLOW_DURATION=10
    SECTIONS="throughput,latency,memory,sizes,slowread,tls,scaling,callgrind"
    TLS_DURATION=2; TLS_HOLD=1000
else
    ROUNDS=3; DURATION=4; SIZE_DURATION=3; WARMUP=1; CONNECTIONS="1,64,256,1024"; SCALE_CONNS=256
    SIZE_FOCUS_ROUNDS=9
    SCALE_MODES="plain pipelined"; LAT_DURATION=5; LAT_WARMUP=1; SLOW_CONNS=400; SLOW_DURATION=30
    SECTIONS="throughput,latency,memory,sizes,slowread,tls,scaling,callgrind,criterion"
    TLS_DURATION=5; TLS_HOLD=10000
fi
TLS_CLIENTS=4          # openssl s_time processes at once on the load CPU
ALL_PEERS="ringcorn,ringcorn-process,ringcorn-json,ringcorn-epoll,ringcorn-static,nginx,ceiling,hyper-peer,uring-peer,gunicorn"
ALL_SECTIONS="throughput,latency,memory,sizes,slowread,tls,scaling,callgrind,criterion"
PEERS="$ALL_PEERS"
DEPTH=16
CPUS_SERVER=0
CPUS_LOAD=1
SCALE_CPUS="0-$(( $(nproc) - 1 ))"
GUNICORN_MAX_CONNS=64
LAT_RATE=20000
GUNICORN_RATE=500
LAT_CONNS=64
HOLD=10000
SIZE_CONNS=64          # wrk connections of the size sweep ...
SIZE_LARGE_CONNS=16    # ... and at 16 MiB
SLOW_RATE=200
SLOW_SEND_TIMEOUT=""   # empty: the attack's duration + 60 s
IDLE_SETTLE=3   # seconds held connections stay idle before the server's RSS is read
CG_N=100000
INSTALL=0
BUILD=1
FORCE=0
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) shift ;;
        --install) INSTALL=1; shift ;;
        --rounds) ROUNDS="${2:?--rounds needs a value}"; shift 2 ;;
        --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
        --size-duration) SIZE_DURATION="${2:?--size-duration needs a value}"; shift 2 ;;
        --size-large-connections) SIZE_LARGE_CONNS="${2:?needs a value}"; shift 2 ;;
        --size-focus-rounds) SIZE_FOCUS_ROUNDS="${2:?needs a value}"; shift 2 ;;
        --warmup) WARMUP="${2:?--warmup needs a value}"; shift 2 ;;
        --connections) CONNECTIONS="${2:?--connections needs a value}"; shift 2 ;;
        --depth) DEPTH="${2:?--depth needs a value}"; shift 2 ;;
        --peers) PEERS="${2:?--peers needs a value}"; shift 2 ;;
        --sections) SECTIONS="${2:?--sections needs a value}"; shift 2 ;;
        --criterion) SECTIONS="$SECTIONS,criterion"; shift ;;
        --cpus-server) CPUS_SERVER="${2:?--cpus-server needs a value}"; shift 2 ;;
        --cpus-load) CPUS_LOAD="${2:?--cpus-load needs a value}"; shift 2 ;;
        --scale-cpus) SCALE_CPUS="${2:?--scale-cpus needs a value}"; shift 2 ;;
        --scale-connections) SCALE_CONNS="${2:?--scale-connections needs a value}"; shift 2 ;;
        --gunicorn-max-connections) GUNICORN_MAX_CONNS="${2:?needs a value}"; shift 2 ;;
        --latency-rate) LAT_RATE="${2:?--latency-rate needs a value}"; shift 2 ;;
        --gunicorn-rate) GUNICORN_RATE="${2:?--gunicorn-rate needs a value}"; shift 2 ;;
        --latency-connections) LAT_CONNS="${2:?needs a value}"; shift 2 ;;
        --latency-duration) LAT_DURATION="${2:?needs a value}"; shift 2 ;;
        --hold) HOLD="${2:?--hold needs a value}"; shift 2 ;;
        --slow-connections) SLOW_CONNS="${2:?--slow-connections needs a value}"; shift 2 ;;
        --slow-duration) SLOW_DURATION="${2:?--slow-duration needs a value}"; shift 2 ;;
        --slow-rate) SLOW_RATE="${2:?--slow-rate needs a value}"; shift 2 ;;
        --slow-send-timeout) SLOW_SEND_TIMEOUT="${2:?--slow-send-timeout needs a value}"; shift 2 ;;
        --callgrind-requests) CG_N="${2:?needs a value}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --force) FORCE=1; shift ;;
        --out) OUT="${2:?--out needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
[[ -n "$SLOW_SEND_TIMEOUT" ]] || SLOW_SEND_TIMEOUT=$(( ${SLOW_DURATION//[^0-9]/} + 60 ))
for v in ROUNDS DURATION SIZE_DURATION WARMUP DEPTH SCALE_CONNS GUNICORN_MAX_CONNS LAT_RATE \
         GUNICORN_RATE LAT_CONNS LAT_DURATION HOLD CG_N SIZE_LARGE_CONNS SLOW_CONNS SLOW_DURATION \
         SLOW_RATE SLOW_SEND_TIMEOUT SIZE_FOCUS_ROUNDS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, got '${!v}'"
done
(( ROUNDS >= 1 && DURATION >= 1 && SIZE_DURATION >= 1 && DEPTH >= 1 && SCALE_CONNS >= 1 \
   && LAT_RATE >= 1 && GUNICORN_RATE >= 1 && LAT_CONNS >= 1 && LAT_DURATION >= 1 && HOLD >= 1 \
   && CG_N >= 1 && SIZE_LARGE_CONNS >= 1 && SLOW_CONNS >= 1 && SLOW_DURATION >= 1 && SLOW_RATE >= 1 \
   && SLOW_SEND_TIMEOUT >= 1 )) || die "counts, rates and durations must be at least 1"
(( SLOW_CONNS <= 1000 )) || die "--slow-connections: slowhttptest waits on its sockets with select(), 1000 at most"
(( SLOW_SEND_TIMEOUT > SLOW_DURATION )) || log "warning: --slow-send-timeout $SLOW_SEND_TIMEOUT is not longer than the attack ($SLOW_DURATION s): the servers may drop the slow readers, and the section measures that, not memory"
(( GUNICORN_RATE <= LAT_CONNS * 9 )) || log "warning: --gunicorn-rate $GUNICORN_RATE over $LAT_CONNS connections: gunicorn closes every connection and loadgen reconnects one at most every 100 ms, so expect errors above about $(( LAT_CONNS * 9 ))/s"
[[ "$CONNECTIONS" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--connections must be a comma-separated list of numbers"
IFS=',' read -r -a CONN_LIST <<< "$CONNECTIONS"
for c in "${CONN_LIST[@]}"; do (( c >= 1 )) || die "--connections: every count must be at least 1"; done

in_list() { [[ ",$2," == *",$1,"* ]]; }   # WORD LIST
IFS=',' read -r -a PEER_LIST <<< "$PEERS"
[[ ${#PEER_LIST[@]} -ge 1 ]] || die "--peers is empty"
for p in "${PEER_LIST[@]}"; do in_list "$p" "$ALL_PEERS" || die "unknown peer '$p' (known: $ALL_PEERS)"; done
IFS=',' read -r -a SECTION_LIST <<< "$SECTIONS"
for s in "${SECTION_LIST[@]}"; do in_list "$s" "$ALL_SECTIONS" || die "unknown section '$s' (known: $ALL_SECTIONS)"; done
want() { in_list "$1" "$PEERS"; }
section() { in_list "$1" "$SECTIONS"; }
pick() {  # LIST-OF-PEERS -> those of them selected with --peers, in that order, space-separated
    local p out=()
    for p in $1; do want "$p" && out+=("$p"); done
    echo "${out[*]:-}"
}

expand_cpus() {  # "0,2-3" -> "0 2 3"
    local part lo hi out=()
    IFS=',' read -r -a parts <<< "$1"
    for part in "${parts[@]}"; do
        [[ "$part" =~ ^([0-9]+)(-([0-9]+))?$ ]] || die "bad CPU list '$1'"
        lo="${BASH_REMATCH[1]}"; hi="${BASH_REMATCH[3]:-$lo}"
        (( lo <= hi )) || die "bad CPU list '$1'"
        for (( c = lo; c <= hi; c++ )); do out+=("$c"); done
    done
    echo "${out[*]}"
}
read -r -a LOAD_CPUS <<< "$(expand_cpus "$CPUS_LOAD")"
read -r -a SERVER_CPUS <<< "$(expand_cpus "$CPUS_SERVER")"
read -r -a SCALE_CPU_LIST <<< "$(expand_cpus "$SCALE_CPUS")"
(( ${#SERVER_CPUS[@]} == 1 )) || die "--cpus-server names the one CPU of the one-worker servers (got '$CPUS_SERVER')"
LOAD_CPU1="${LOAD_CPUS[0]}"      # loadgen and holdconns are single-threaded
SCALE_WORKERS=()                 # 1, 2, 4, ... and the number of scale CPUs itself
for (( w = 1; w < ${#SCALE_CPU_LIST[@]}; w *= 2 )); do SCALE_WORKERS+=("$w"); done
SCALE_WORKERS+=("${#SCALE_CPU_LIST[@]}")
scale_cpus_for() { local w="$1"; echo "${SCALE_CPU_LIST[*]:0:$w}" | tr ' ' ','; }

SIZES=(13 4096 65536 1048576 16777216)
SIZE_LARGE=16777216    # sizes from this up are measured with SIZE_LARGE_CONNS connections
SIZE_FOCUS=1048576     # measured in SIZE_FOCUS_ROUNDS rounds by SIZE_FOCUS_PEERS
size_conns() { (( $1 >= SIZE_LARGE )) && echo "$SIZE_LARGE_CONNS" || echo "$SIZE_CONNS"; }
SLOW_SIZE=1048576      # what the slow readers ask for ...
SLOW_PROBE=/13         # ... and what the normal client does (13 bytes from every slow-read peer)
MODES=(plain pipelined)
TP_PEERS="$(pick "ringcorn ringcorn-process ringcorn-json ringcorn-epoll nginx ceiling hyper-peer uring-peer gunicorn")"
LAT_PEERS="$TP_PEERS"
MEM_PEERS="$(pick "ringcorn ringcorn-epoll nginx ceiling hyper-peer uring-peer")"
SIZE_PEERS="$(pick "ringcorn ringcorn-static ringcorn-epoll nginx hyper-peer uring-peer")"
SLOW_PEERS="$(pick "ringcorn ringcorn-static nginx")"
SIZE_FOCUS_PEERS="$(pick "ringcorn ringcorn-static nginx")"
TLS_PEERS="$(pick "ringcorn nginx")"
SCALE_PEERS="$(pick "ringcorn ringcorn-process ringcorn-epoll nginx ceiling hyper-peer uring-peer")"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source=scripts/tools.sh
source "$SCRIPT_DIR/tools.sh"
[[ -n "$OUT" ]] || OUT="$REPO/BENCHMARKS.md"
CHART_DIR="$(dirname "$OUT")/benchmarks"
PEERS_DIR="$REPO/benches/peers"
# Wherever cargo builds (CARGO_TARGET_DIR, a config's build.target-dir), not target/.
TARGET="$(target_dir "$REPO/Cargo.toml")" || true
[[ -n "$TARGET" ]] || die "cannot ask cargo where it builds (cargo metadata failed)"
PEERS_TARGET="$(target_dir "$PEERS_DIR/Cargo.toml")" || true
[[ -n "$PEERS_TARGET" ]] || die "cannot ask cargo where benches/peers builds (cargo metadata failed)"
BIN="$TARGET/release/ringcorn"
PEERS_BIN="$PEERS_TARGET/release"
VENV="$REPO/target/bench/venv"
cd "$REPO"

# ---------------------------------------------------------------- time estimate
# Seconds per run beyond its duration (start-up, /proc reads), per memory measurement, per
# callgrind run and per server start, measured on the 2-core machine of BENCHMARKS.md.
# A slow-read run adds a server start, its checks, the settling, slowhttptest's extra second and
# the stop (OV_SLOW); the size sweep's checks fetch every size twice per peer (OV_SIZE_CHECK).
OV_RUN=0.1; OV_MEM=2.2; OV_CG=0.5; OV_START=0.3; OV_CRITERION=90; OV_SLOW=3.5; OV_SIZE_CHECK=0.5
estimate() {  # ROUNDS DURATION SIZE_DURATION WARMUP "CONNS..." LAT_DURATION LAT_WARMUP CRITERION? SLOW_DURATION
    local rounds=$1 dur=$2 sdur=$3 warm=$4 conns=$5 ldur=$6 lwarm=$7 crit=$8 slowdur=$9 c p tp=0 n
    for c in $conns; do for p in $TP_PEERS; do
        [[ "$p" == gunicorn ]] && (( c > GUNICORN_MAX_CONNS )) && continue
        tp=$(( tp + 2 ))
    done; done
    n=$(wc -w <<< "$TP_PEERS")
    python3 - "$rounds" "$dur" "$sdur" "$warm" "$tp" "$n" "$ldur" "$lwarm" "$crit" \
        "$(wc -w <<< "$MEM_PEERS")" "$(wc -w <<< "$SIZE_PEERS")" "$(wc -w <<< "$SCALE_PEERS")" \
        "${#SCALE_WORKERS[@]}" "${#SIZES[@]}" "$(wc -w <<< "$SLOW_PEERS")" "$slowdur" "$SECTIONS" <<EOF
import sys
r, dur, sdur, warm, tp, n, ldur, lwarm, crit, nmem, nsize, nscale, nw, nsz, nslow, slowdur = map(int, sys.argv[1:17])
sec = sys.argv[17].split(",")
t = 5  # tool checks, the 2 s quietness check, the report (builds not counted)
if "throughput" in sec:
    t += r * tp * (dur + $OV_RUN) + (n * 2 * (warm + $OV_RUN) if warm else 0) + n * $OV_START
if "latency" in sec:
    t += r * n * (ldur + lwarm + $OV_RUN)
if "memory" in sec:
    t += r * nmem * $OV_MEM
if "sizes" in sec:
    t += r * nsz * nsize * (sdur + $OV_RUN) + nsize * ($OV_START + $OV_SIZE_CHECK) + 2
    t += max(0, $SIZE_FOCUS_ROUNDS - r) * $(wc -w <<< "$SIZE_FOCUS_PEERS") * (sdur + $OV_RUN)
if "slowread" in sec:
    t += r * nslow * (slowdur + $OV_SLOW)
if "scaling" in sec:
    t += r * nw * $(wc -w <<< "$SCALE_MODES") * nscale * (dur + $OV_RUN) + nw * nscale * $OV_START
if "callgrind" in sec:
    t += r * 4 * $OV_CG
if crit:
    t += $OV_CRITERION
print(round(t))
EOF
}
EST_THIS="$(estimate "$ROUNDS" "$DURATION" "$SIZE_DURATION" "$WARMUP" "${CONN_LIST[*]}" "$LAT_DURATION" "$LAT_WARMUP" "$(section criterion && echo 1 || echo 0)" "$SLOW_DURATION")"
EST_FULL="$(SECTIONS="$ALL_SECTIONS" SCALE_MODES="plain pipelined" SIZE_FOCUS_ROUNDS=9 estimate 3 4 3 1 "1 64 256 1024" 5 1 1 30)"
log "estimated measuring time: $EST_THIS s ($(( EST_THIS / 60 )) min $(( EST_THIS % 60 )) s), builds not counted; the full mode: about $(( EST_FULL / 60 )) min"

# ---------------------------------------------------------------- tools
declare -A APT=( [wrk]=wrk [nginx]=nginx-light [valgrind]=valgrind [gnuplot]=gnuplot-nox
                 [taskset]=util-linux [curl]=curl [pgrep]=procps [timeout]=coreutils [python3]=python3
                 [slowhttptest]=slowhttptest [ss]=iproute2 [openssl]=openssl )
tools_needed() {
    local t=(wrk taskset curl pgrep timeout python3 gnuplot)
    want nginx && t+=(nginx)
    { section callgrind; } && t+=(valgrind)
    { section slowread && [[ -n "$SLOW_PEERS" ]]; } && t+=(slowhttptest ss)
    { section tls && [[ -n "$TLS_PEERS" ]]; } && t+=(openssl)
    echo "${t[*]}"
}
missing_packages() {
    local t pkgs=()
    for t in $(tools_needed); do command -v "$t" >/dev/null 2>&1 || pkgs+=("${APT[$t]}"); done
    if want gunicorn && [[ ! -x "$VENV/bin/gunicorn" ]] && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        pkgs+=(python3-venv)
    fi
    echo "${pkgs[*]:-}"
}
install_missing
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust from https://rustup.rs"
CLK_TCK="$(getconf CLK_TCK)"

# Every server and holdconns inherit this: 10,000 held connections need more than 1024 files.
HARD_NOFILE="$(ulimit -Hn)"
[[ "$HARD_NOFILE" == unlimited ]] && HARD_NOFILE=1048576
ulimit -n "$HARD_NOFILE" 2>/dev/null || true
(( $(ulimit -n) > HOLD + 100 )) || log "warning: open-file limit $(ulimit -n) is too low to hold $HOLD connections"

# ---------------------------------------------------------------- work dirs and cleanup
RAW="$REPO/target/bench/raw"       # raw outputs and server logs of the last run
rm -rf "$RAW"
mkdir -p "$RAW"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/ringcorn-bench.XXXXXX")"
chmod 755 "$TMP"                   # nginx workers may run as nobody
declare -A PID=() I_PEER=() I_APP=() I_W=() I_CPUS=() I_PORT=() I_CMD=() RESTARTS=()
BG_PIDS=()                          # holdconns and the like, killed on exit
NOTES=()                            # free-text notes for the report

descendants() {  # PID -> PID and all its descendants, one per line
    local p="$1" c
    echo "$p"
    for c in $(pgrep -P "$p" 2>/dev/null || true); do descendants "$c"; done
}

stop_instance() {  # ID: TERM the server and its descendants, KILL what is left after 5 s
    local id="$1" pid="${PID[$1]:-}" pids i
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
    PID[$id]=""
}

cleanup() {
    local rc=$? cmd="$BASH_COMMAND" s p
    trap - EXIT INT TERM
    # set -e stopped the script: say where, or it ends without a word.
    (( rc == 0 || rc == 130 || rc == 143 || DIED )) || echo "bench.sh: error: stopped by a failing command (exit $rc): $cmd" >&2
    for p in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do kill -KILL "$p" 2>/dev/null || true; done
    for s in "${!PID[@]}"; do stop_instance "$s"; done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

START_TIME=$(date +%s)
UPTIME_START="$(uptime)"
LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"   # other work on the machine skews the figures
log "uptime: $UPTIME_START"

# ---------------------------------------------------------------- build
need_peers_crate() {
    [[ -n "$(pick "ceiling hyper-peer uring-peer")" ]] || section latency || section memory
}
if (( BUILD )); then
    log "building ringcorn: cargo build --release"
    cargo build --release >&2 || die "cargo build --release failed"
    if section callgrind; then
        log "building: cargo build --release --example callgrind_requests"
        cargo build --release --example callgrind_requests >&2 || die "building the callgrind_requests example failed"
    fi
    if need_peers_crate; then
        log "building the peers: cargo build --release --manifest-path benches/peers/Cargo.toml"
        cargo build --release --manifest-path "$PEERS_DIR/Cargo.toml" >&2 || die "building benches/peers failed"
    fi
    if section criterion; then
        log "building the criterion bench: cargo bench --bench http --no-run"
        cargo bench --bench http --no-run >&2 || die "building the criterion bench failed"
    fi
fi
[[ -x "$BIN" ]] || die "$BIN not found (build it: cargo build --release)"
section callgrind && { [[ -x "$TARGET/release/examples/callgrind_requests" ]] || die "$TARGET/release/examples/callgrind_requests not found"; }
for b in ceiling hyper-peer uring-peer; do
    want "$b" && { [[ -x "$PEERS_BIN/$b" ]] || die "$PEERS_BIN/$b not found (build benches/peers)"; }
done
section latency && { [[ -x "$PEERS_BIN/loadgen" ]] || die "$PEERS_BIN/loadgen not found (build benches/peers)"; }
section memory && { [[ -x "$PEERS_BIN/holdconns" ]] || die "$PEERS_BIN/holdconns not found (build benches/peers)"; }
if want gunicorn && [[ ! -x "$VENV/bin/gunicorn" ]]; then
    log "installing gunicorn: python3 -m venv target/bench/venv && pip install gunicorn"
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2 || die "python3 -m venv failed (apt-get install -y python3-venv)"
    "$VENV/bin/pip" install --quiet gunicorn >&2 || die "pip install gunicorn failed"
fi
BUILD_DONE=$(date +%s)

# ---------------------------------------------------------------- quiet machine?
busy_share() {  # SECONDS -> share (0..1) of all CPUs busy over that many seconds
    local a b
    a="$(head -n 1 /proc/stat)"; sleep "$1"; b="$(head -n 1 /proc/stat)"
    python3 - "$a" "$b" <<'EOF'
import sys
def parse(line):
    f = list(map(int, line.split()[1:9]))
    busy = f[0] + f[1] + f[2] + f[5] + f[6]
    return busy, busy + f[3] + f[4] + f[7]
(b0, t0), (b1, t1) = parse(sys.argv[1]), parse(sys.argv[2])
print(f"{(b1 - b0) / max(1, t1 - t0):.3f}")
EOF
}
QUIET_LIMIT=0.15
BUSY="$(busy_share 2)"
if python3 -c "import sys; sys.exit(0 if $BUSY > $QUIET_LIMIT else 1)"; then
    if (( QUICK || FORCE )); then
        log "warning: the machine is busy (${BUSY} of all CPUs over 2 s, before any load): figures will be skewed"
        NOTES+=("The machine was busy when the run started: $(python3 -c "print(round($BUSY*100))")% of all CPUs over 2 s before any load ($(cut -d' ' -f1-3 /proc/loadavg) load average).")
    else
        log "the machine is busy (${BUSY} of all CPUs over 2 s): waiting up to 2 min for it to calm down"
        for (( i = 0; i < 24; i++ )); do
            BUSY="$(busy_share 5)"
            python3 -c "import sys; sys.exit(0 if $BUSY > $QUIET_LIMIT else 1)" || break
        done
        python3 -c "import sys; sys.exit(0 if $BUSY > $QUIET_LIMIT else 1)" \
            && die "the machine stays busy (${BUSY} of all CPUs; uptime: $(uptime)): not measuring; rerun when it is idle, or pass --force"
    fi
fi
log "machine busy before the runs: ${BUSY} of all CPUs"

# ---------------------------------------------------------------- servers
free_port() {  # -> a free TCP port on 127.0.0.1
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

mkdir -p "$TMP/files" "$TMP/gunicorn"
# The static files nginx and ringcorn-static serve: the same bytes as the `bytes` app's answers.
for n in "${SIZES[@]}"; do head -c "$n" /dev/zero | tr '\0' 'x' > "$TMP/files/$n"; done
cat > "$TMP/gunicorn/app.py" <<'EOF'
# The gunicorn peer of scripts/bench.sh: the same hello-world answer as the others.
BODY = b"Hello, World!"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]


def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [BODY]
EOF

MEM_EXTRA=()   # extra ringcorn flags while holding connections (memory section)
TLS_ON=""      # set in the TLS section: the servers speak TLS with the run's certificate
SEND_TIMEOUT="" # the servers' send timeout in seconds (slowread section); empty: their default, 60 s
set_app_args() {  # APP -> sets the array APP_ARGS: the app and its own arguments for ringcorn
    APP_ARGS=("$1")
    [[ "$1" == static ]] && APP_ARGS+=(--root "$TMP/files")
    return 0
}
make_cmd() {  # PEER APP WORKERS CPUS PORT DIR -> sets the array CMD
    local peer="$1" app="$2" w="$3" cpus="$4" port="$5" dir="$6" extra=()
    case "$peer" in
        ringcorn|ringcorn-json|ringcorn-process|ringcorn-epoll|ringcorn-static)
            local class=thread backend=auto
            [[ "$peer" == ringcorn-process ]] && class=process
            [[ "$peer" == ringcorn-epoll ]] && backend=epoll
            [[ -n "$SEND_TIMEOUT" ]] && extra=(--send-timeout "$SEND_TIMEOUT")
            [[ -n "$TLS_ON" ]] && extra+=(--certfile "$TMP/tls/cert.pem" --keyfile "$TMP/tls/key.pem"
                                          --max-connections $(( TLS_HOLD + 1000 )))
            set_app_args "$app"
            CMD=(taskset -c "$cpus" "$BIN" --workers "$w" --cpus "$cpus" --backend "$backend"
                 --worker-class "$class" --bind "127.0.0.1:$port" --log-level warning
                 "${MEM_EXTRA[@]+"${MEM_EXTRA[@]}"}" "${extra[@]+"${extra[@]}"}" "${APP_ARGS[@]}") ;;
        nginx)
            CMD=(taskset -c "$cpus" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log") ;;
        ceiling)
            CMD=(taskset -c "$cpus" "$PEERS_BIN/ceiling" --port "$port" --workers "$w" --cpus "$cpus") ;;
        hyper-peer|uring-peer)
            CMD=(taskset -c "$cpus" "$PEERS_BIN/$peer" --port "$port" --workers "$w" --cpus "$cpus" --app "$app") ;;
        gunicorn)
            CMD=(taskset -c "$cpus" "$VENV/bin/gunicorn" -w "$w" --worker-class sync
                 -b "127.0.0.1:$port" --chdir "$TMP/gunicorn" --log-level warning app:application) ;;
        *) die "no command for peer $peer" ;;
    esac
}

if want ringcorn-static && { section sizes || section slowread; }; then
    # Before minutes of other sections: does this build have the static app (issue 11)?
    set_app_args static
    static_check="$("$BIN" --check-config --workers 1 "${APP_ARGS[@]}" 2>&1)" \
        || die "ringcorn-static needs \`ringcorn static --root DIR\`, which this build refuses: $(tr '\n' ' ' <<< "$static_check" | cut -c1-300)(leave the peer out with --peers)"
fi

printable() {  # ID -> its command line with the repository, temp dir and port made generic
    local id="$1"
    sed -e "s|$REPO/||g" -e "s|$TMP|\$TMP|g" -e "s|\\b${I_PORT[$id]}\\b|PORT|g" <<< "${I_CMD[$id]}"
}

start_instance() {  # ID PEER APP WORKERS CPUS: start it in the background, wait until it accepts
    local id="$1" peer="$2" app="$3" w="$4" cpus="$5" port pid i dir="$TMP/$1"
    I_PEER[$id]="$peer"; I_APP[$id]="$app"; I_W[$id]="$w"; I_CPUS[$id]="$cpus"
    RESTARTS[$id]="${RESTARTS[$id]:-0}"
    port="$(free_port)"
    I_PORT[$id]="$port"
    mkdir -p "$dir"
    if [[ "$peer" == nginx ]]; then
        sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$w|g" -e "s|@FILES@|$TMP/files|g" \
            -e "s|@SEND_TIMEOUT@|${SEND_TIMEOUT:-60}|g" "$SCRIPT_DIR/nginx.conf.template" > "$dir/nginx.conf"
        # The TLS section: the same server over TLS, with the run's certificate and a session
        # cache (tickets are on by default), as an edge node would have it.
        [[ -n "$TLS_ON" ]] && sed -i -e "s|listen 127.0.0.1:$port;|listen 127.0.0.1:$port ssl;\
        ssl_certificate $TMP/tls/cert.pem;\
        ssl_certificate_key $TMP/tls/key.pem;\
        ssl_protocols TLSv1.2 TLSv1.3;\
        ssl_session_cache shared:SSL:10m;|" "$dir/nginx.conf"
    fi
    port_open "$port" && die "port $port is already taken (before starting $id)"
    make_cmd "$peer" "$app" "$w" "$cpus" "$port" "$dir"
    I_CMD[$id]="${CMD[*]}"
    "${CMD[@]}" >>"$RAW/$id.log" 2>&1 &
    pid=$!
    PID[$id]=$pid
    for (( i = 0; i < 300; i++ )); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$RAW/$id.log" >&2 || true
            die "$id exited during start-up (log: $RAW/$id.log)"
        fi
        port_open "$port" && break
        sleep 0.05
    done
    port_open "$port" || { tail -n 20 "$RAW/$id.log" >&2; die "$id did not accept on 127.0.0.1:$port within 15 s"; }
    log "$id is up on 127.0.0.1:$port (pid $pid)"
}

alive() { [[ -n "${PID[$1]:-}" ]] && kill -0 "${PID[$1]}" 2>/dev/null; }

ensure_alive() {  # ID: restart it if it died
    local id="$1"
    alive "$id" && return 0
    log "$id is not running (died?): restarting it"
    NOTES+=("**$id died** and was restarted before a run (log: \`target/bench/raw/$id.log\`).")
    RESTARTS[$id]=$(( RESTARTS[$id] + 1 ))
    stop_instance "$id"
    start_instance "$id" "${I_PEER[$id]}" "${I_APP[$id]}" "${I_W[$id]}" "${I_CPUS[$id]}"
}

cpu_ticks() {  # ID -> utime+stime (clock ticks) summed over the server process and its descendants
    local p stat rest total=0 f
    for p in $(descendants "${PID[$1]}"); do
        stat="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        rest="${stat##*) }"             # drop "pid (comm) ": comm may contain spaces
        read -r -a f <<< "$rest"        # f[0] is field 3 (state): utime is field 14, stime 15
        total=$(( total + f[11] + f[12] ))
    done
    echo "$total"
}

mem_kb() {  # ID FIELD -> FIELD (VmRSS, VmHWM) in kB summed over the server and its descendants
    local p v total=0
    for p in $(descendants "${PID[$1]}"); do
        v="$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null)" || continue
        total=$(( total + ${v:-0} ))
    done
    echo "$total"
}

LOAD_MS=0
children_ms() {  # -> sets LOAD_MS: user+system CPU ms of this shell's reaped children so far.
    # Must run in this shell, not in $(...): bash's `times` reports the calling process.
    local u s t ms=0
    times > "$TMP/times"
    { read -r _ _; read -r u s; } < "$TMP/times"
    for t in "$u" "$s"; do
        [[ "$t" =~ ^([0-9]+)m([0-9]+)[.,]([0-9]{3})s$ ]] || { LOAD_MS=0; return 0; }
        ms=$(( ms + 10#${BASH_REMATCH[1]} * 60000 + 10#${BASH_REMATCH[2]} * 1000 + 10#${BASH_REMATCH[3]} ))
    done
    LOAD_MS=$ms
}

check_response() {  # ID PATH EXPECT-BODY|SIZE:N -> note a wrong answer; keep it in the raw dir
    local id="$1" path="$2" want="$3" out status body size
    out="$RAW/$id.response$(tr '/' '_' <<< "$path").txt"
    curl -s -i --max-time 10 "http://127.0.0.1:${I_PORT[$id]}$path" > "$out" || true
    status="$(head -n 1 "$out" | tr -d '\r')"
    if [[ "$want" == SIZE:* ]]; then
        size="$(curl -s -o /dev/null -w '%{size_download}' --max-time 10 "http://127.0.0.1:${I_PORT[$id]}$path" || echo '?')"
        [[ "$status" == "HTTP/1.1 200"* && "$size" == "${want#SIZE:}" ]] && return 0
        log "warning: $id GET $path answered '$status' with $size body bytes (want ${want#SIZE:})"
        NOTES+=("**$id answered \`GET $path\` wrongly**: status \`$status\`, $size body bytes (want ${want#SIZE:}).")
        return 0
    fi
    body="$(sed '1,/^\r\{0,1\}$/d' "$out")"
    [[ "$status" == "HTTP/1.1 200 OK" && "$body" == "$want" ]] && return 0
    log "warning: $id answered '$status' with body '$body'"
    NOTES+=("**$id answered a plain GET wrongly**: status \`$status\`, body \`$body\`.")
}

size_app_for() {  # PEER -> the app it serves in the size sweep and the slow-read attack
    case "$1" in nginx|ringcorn-static) echo static ;; *) echo bytes ;; esac
}
body_for() { [[ "$1" == json ]] && echo '{"message":"Hello, World!"}' || echo 'Hello, World!'; }
app_for() {  # PEER -> the app it serves in the hello-world sections
    case "$1" in ringcorn-json) echo json ;; *) echo hello ;; esac
}

# ---------------------------------------------------------------- wrk and loadgen runs
export PIPELINE_DEPTH="$DEPTH"
RUNS="$RAW/runs.tsv"
printf 'section\tround\tid\tpeer\tapp\tworkers\tcpus\tmode\tconns\tpath\tsecs\tticks_before\tticks_after\tload_ms\twrk_rc\talive_after\trestarts\traw\n' > "$RUNS"
LAT="$RAW/latency.tsv"
printf 'round\tid\tpeer\trate\tconns\tsecs\tticks_before\tticks_after\tload_ms\trc\talive_after\traw\n' > "$LAT"

wrk_cmd() {  # ID MODE CONNS PATH SECONDS -> sets the array CMD
    local threads=${#LOAD_CPUS[@]}
    (( threads > $3 )) && threads=$3
    CMD=(taskset -c "$CPUS_LOAD" wrk "-t$threads" "-c$3" "-d${5}s" --latency)
    [[ "$2" == pipelined ]] && CMD+=(-s "$SCRIPT_DIR/pipeline.lua")
    CMD+=("http://127.0.0.1:${I_PORT[$1]}$4")
}

snap() {  # STEM.procstat-WHEN -> that file (per-core busy time) and STEM.procs-WHEN: every
    # process's pid, parent, utime+stime+cutime+cstime (ticks) and last CPU, to find other work.
    local f="$1"
    grep '^cpu[0-9]' /proc/stat > "$f"
    # comm (field 2) may hold spaces and parentheses: the fields after its last ") " are fixed.
    # A process that ends between the glob and cat makes cat fail: not an error (pipefail).
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{
        n = match($0, /\) [^)]*$/); split(substr($0, n + 2), f, " ")
        print $1, f[2], f[12] + f[13] + f[14] + f[15], f[37] }' > "${f/.procstat-/.procs-}"
}

run_wrk() {  # SECTION ROUND ID MODE CONNS PATH SECONDS -> a row of runs.tsv (round 0: warm-up)
    local sec="$1" round="$2" id="$3" mode="$4" conns="$5" path="$6" secs="$7"
    local raw before after rc=0 alive_after=1 l0 l1
    ensure_alive "$id"
    mkdir -p "$RAW/$sec"
    raw="$sec/r${round}-${id}-${mode}-c${conns}$(tr '/' '_' <<< "$path").txt"
    wrk_cmd "$id" "$mode" "$conns" "$path" "$secs"
    snap "$RAW/${raw%.txt}.procstat-before"
    before="$(cpu_ticks "$id")"
    children_ms; l0=$LOAD_MS
    timeout $(( secs + 30 )) "${CMD[@]}" > "$RAW/$raw" 2>&1 || rc=$?
    children_ms; l1=$LOAD_MS
    after="$(cpu_ticks "$id")"
    snap "$RAW/${raw%.txt}.procstat-after"
    alive "$id" || alive_after=0
    (( rc != 0 || alive_after == 0 )) && log "warning: $id $mode c$conns round $round: wrk exit $rc, server alive: $alive_after"
    (( round == 0 )) && return 0
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sec" "$round" "$id" \
        "${I_PEER[$id]}" "${I_APP[$id]}" "${I_W[$id]}" "${I_CPUS[$id]}" "$mode" "$conns" "$path" "$secs" \
        "$before" "$after" "$(( l1 - l0 ))" "$rc" "$alive_after" "${RESTARTS[$id]}" "$raw" >> "$RUNS"
    log "$sec r$round $id $mode c$conns $path: $(grep -h 'Requests/sec' "$RAW/$raw" | tr -s ' ' || echo 'no Requests/sec'), $(( after - before )) ticks"
}

run_loadgen() {  # ROUND ID RATE -> a row of latency.tsv
    local round="$1" id="$2" rate="$3" raw before after rc=0 alive_after=1 l0 l1 cmd
    ensure_alive "$id"
    mkdir -p "$RAW/latency"
    raw="latency/r${round}-${id}.json"
    cmd=(taskset -c "$LOAD_CPU1" "$PEERS_BIN/loadgen" --url "http://127.0.0.1:${I_PORT[$id]}/"
         --rate "$rate" --connections "$LAT_CONNS" --duration "$LAT_DURATION")
    (( LAT_WARMUP > 0 )) && cmd+=(--warmup "$LAT_WARMUP")
    snap "$RAW/${raw%.json}.procstat-before"
    before="$(cpu_ticks "$id")"
    children_ms; l0=$LOAD_MS
    timeout $(( LAT_DURATION + LAT_WARMUP + 60 )) "${cmd[@]}" > "$RAW/$raw" 2> "$RAW/${raw%.json}.stderr" || rc=$?
    children_ms; l1=$LOAD_MS
    after="$(cpu_ticks "$id")"
    snap "$RAW/${raw%.json}.procstat-after"
    alive "$id" || alive_after=0
    (( rc != 0 || alive_after == 0 )) && log "warning: loadgen on $id round $round: exit $rc, server alive: $alive_after"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$id" "${I_PEER[$id]}" "$rate" \
        "$LAT_CONNS" "$LAT_DURATION" "$before" "$after" "$(( l1 - l0 ))" "$rc" "$alive_after" "$raw" >> "$LAT"
    log "latency r$round $id @ $rate/s: $(head -c 300 "$RAW/$raw" | tr -d '\n')"
}

SECTION_TIMES=()
section_done() { SECTION_TIMES+=("$1=$(( $(date +%s) - SECTION_START ))"); SECTION_START=$(date +%s); }
SECTION_START=$(date +%s)

# ---------------------------------------------------------------- 1+2. throughput, latency (same servers)
PEAK="$RAW/peak.tsv"
printf 'id\tpeer\tvmhwm_kb\tvmrss_kb\trestarts\n' > "$PEAK"
if section throughput || section latency; then
    for p in $TP_PEERS; do
        app="$(app_for "$p")"
        start_instance "tp-$p" "$p" "$app" 1 "$CPUS_SERVER"
        check_response "tp-$p" / "$(body_for "$app")"
    done
fi
if section throughput; then
    if (( WARMUP > 0 )); then
        log "warm-up: ${WARMUP} s per peer and mode (not recorded)"
        for p in $TP_PEERS; do for m in "${MODES[@]}"; do run_wrk throughput 0 "tp-$p" "$m" 64 / "$WARMUP"; done; done
    fi
    for (( r = 1; r <= ROUNDS; r++ )); do
        for c in "${CONN_LIST[@]}"; do
            for m in "${MODES[@]}"; do
                for p in $TP_PEERS; do
                    [[ "$p" == gunicorn ]] && (( c > GUNICORN_MAX_CONNS )) && continue
                    run_wrk throughput "$r" "tp-$p" "$m" "$c" / "$DURATION"
                done
            done
        done
    done
    section_done throughput
fi
if section latency; then
    for (( r = 1; r <= ROUNDS; r++ )); do
        for p in $LAT_PEERS; do
            rate="$LAT_RATE"
            [[ "$p" == gunicorn ]] && rate="$GUNICORN_RATE"
            run_loadgen "$r" "tp-$p" "$rate"
        done
    done
    section_done latency
fi
if section throughput || section latency; then
    for p in $TP_PEERS; do
        printf '%s\t%s\t%s\t%s\t%s\n' "tp-$p" "$p" "$(mem_kb "tp-$p" VmHWM)" "$(mem_kb "tp-$p" VmRSS)" \
            "${RESTARTS[tp-$p]}" >> "$PEAK"
        stop_instance "tp-$p"
    done
fi

# ---------------------------------------------------------------- 3. memory per idle connection
MEM="$RAW/memory.tsv"
printf 'round\tid\tpeer\tcount\theld\trss_before_kb\trss_after_kb\trc\talive_after\traw\n' > "$MEM"
if section memory; then
    mkdir -p "$RAW/memory"
    for (( r = 1; r <= ROUNDS; r++ )); do
        for p in $MEM_PEERS; do
            id="mem-$p-r$r"
            MEM_EXTRA=()
            [[ "$p" == ringcorn ]] && MEM_EXTRA=(--max-connections $(( HOLD + 1000 )))
            start_instance "$id" "$p" hello 1 "$CPUS_SERVER"
            MEM_EXTRA=()
            check_response "$id" / "Hello, World!"
            sleep 0.3
            before="$(mem_kb "$id" VmRSS)"
            raw="memory/r$r-$p.txt"
            taskset -c "$LOAD_CPU1" "$PEERS_BIN/holdconns" --addr "127.0.0.1:${I_PORT[$id]}" --count "$HOLD" \
                --hold-secs 300 > "$RAW/$raw" 2> "$RAW/${raw%.txt}.stderr" &
            hpid=$!
            BG_PIDS+=("$hpid")
            for (( i = 0; i < 1200; i++ )); do   # 120 s at most
                grep -q '^holding' "$RAW/$raw" 2>/dev/null && break
                kill -0 "$hpid" 2>/dev/null || break
                sleep 0.1
            done
            # Every peer gets the same idle period before its RSS is read: these are idle
            # keep-alive connections, and a server may release per-connection memory once a
            # connection has gone idle (ringcorn parks connections idle for 1 s).
            sleep "$IDLE_SETTLE"
            after="$(mem_kb "$id" VmRSS)"
            held="$(awk '/^holding/ { print $2; exit }' "$RAW/$raw")"
            alive_after=1; alive "$id" || alive_after=0
            hrc=0
            if kill -0 "$hpid" 2>/dev/null; then kill -TERM "$hpid" 2>/dev/null || true; wait "$hpid" 2>/dev/null || true
            else wait "$hpid" 2>/dev/null || hrc=$?; fi
            [[ -n "$held" ]] || log "warning: holdconns on $p never reported holding (exit $hrc): $(tail -n 3 "$RAW/${raw%.txt}.stderr" | tr '\n' ' ')"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$id" "$p" "$HOLD" "${held:-0}" "$before" \
                "$after" "$hrc" "$alive_after" "$raw" >> "$MEM"
            log "memory r$r $p: held ${held:-0}, VmRSS $before -> $after kB"
            stop_instance "$id"
        done
    done
    section_done memory
fi

# ---------------------------------------------------------------- 4. response size sweep
if section sizes && [[ -n "$SIZE_PEERS" ]]; then
    for p in $SIZE_PEERS; do
        start_instance "sz-$p" "$p" "$(size_app_for "$p")" 1 "$CPUS_SERVER"
        for n in "${SIZES[@]}"; do check_response "sz-$p" "/$n" "SIZE:$n"; done
    done
    for (( r = 1; r <= ROUNDS; r++ )); do
        for n in "${SIZES[@]}"; do
            for p in $SIZE_PEERS; do run_wrk sizes "$r" "sz-$p" plain "$(size_conns "$n")" "/$n" "$SIZE_DURATION"; done
        done
    done
    # More rounds where the target is, for the peers it compares.
    for (( r = ROUNDS + 1; r <= SIZE_FOCUS_ROUNDS; r++ )); do
        for p in $SIZE_FOCUS_PEERS; do
            run_wrk sizes "$r" "sz-$p" plain "$(size_conns "$SIZE_FOCUS")" "/$SIZE_FOCUS" "$SIZE_DURATION"
        done
    done
    for p in $SIZE_PEERS; do stop_instance "sz-$p"; done
    section_done sizes
fi

# ---------------------------------------------------------------- 4b. the slow-read attack
SLOW="$RAW/slowread.tsv"
printf 'round\tid\tpeer\tconns\tsecs\trate\tsend_timeout\trss_before_kb\trss_peak_kb\topen_peak\trss_after_kb\tsamples\tslow_rc\talive_after\traw\ttcp_mem_before_pages\ttcp_mem_peak_pages\tpage_size\n' > "$SLOW"
# The attack: every connection asks for the 1 MiB response 3 times (pipelined, -k 3), advertises
# a TCP window of 512-1024 bytes (-w, -y) and reads 32 bytes (-z) every 5 s (-n): it never gets
# far into the first response. -r connections per second: all are open after CONNS/RATE s.
slow_cmd() {  # PORT STEM -> sets the array CMD (the stats go to STEM.csv and STEM.html)
    CMD=(taskset -c "$LOAD_CPU1" slowhttptest -X -c "$SLOW_CONNS" -r "$SLOW_RATE" -w 512 -y 1024 -n 5 -z 32
         -k 3 -l "$SLOW_DURATION" -p 3 -g -o "$2" -u "http://127.0.0.1:$1/$SLOW_SIZE")
}
probe_cmd() {  # URL -> sets the array CMD: one request of the normal client
    CMD=(taskset -c "$LOAD_CPU1" curl -s -o /dev/null --max-time 2 -w '%{http_code} %{size_download} %{time_total}' "$1")
}
sleep_until() {  # DEADLINE (µs since the epoch, as ${EPOCHREALTIME//[^0-9]/})
    local left=$(( $1 - ${EPOCHREALTIME//[^0-9]/} ))
    (( left > 0 )) && sleep "$(( left / 1000000 )).$(printf '%06d' $(( left % 1000000 )))"
    return 0
}
slow_probe() {  # URL OUT STOPFILE T0: the normal client, one curl every 200 ms until STOPFILE exists.
    # Each line of OUT: ms since T0 (µs since the epoch), curl's exit, status, body bytes, seconds.
    local url="$1" out="$2" stop="$3" t0="$4" next now rc res
    next=${EPOCHREALTIME//[^0-9]/}
    probe_cmd "$url"
    while [[ ! -e "$stop" ]]; do
        now=${EPOCHREALTIME//[^0-9]/}
        rc=0
        res="$("${CMD[@]}" 2>/dev/null)" || rc=$?
        printf '%s %s %s\n' "$(( (now - t0) / 1000 ))" "$rc" "${res:-000 0 0}" >> "$out"
        next=$(( next + 200000 ))
        now=${EPOCHREALTIME//[^0-9]/}
        (( next < now )) && next=$now   # after a slow answer, the next request at once, not a burst
        sleep_until "$next"
    done
}
tcp_mem_pages() {  # the kernel's memory for all TCP sockets, in pages (/proc/net/sockstat)
    awk '$1 == "TCP:" { for (i = 2; i < NF; i++) if ($i == "mem") { print $(i + 1); exit } }' /proc/net/sockstat
}
bg_forget() {  # PID: drop it from BG_PIDS once reaped (its number may be reused)
    local p keep=()
    for p in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do [[ "$p" == "$1" ]] || keep+=("$p"); done
    BG_PIDS=("${keep[@]+"${keep[@]}"}")
}
if section slowread && [[ -n "$SLOW_PEERS" ]]; then
    mkdir -p "$RAW/slowread"
    # The same send timeout for both, longer than the attack: this measures memory, not timeouts.
    # ringcorn's --max-connections (10000 a worker) is far above --slow-connections (1000 at most).
    SEND_TIMEOUT="$SLOW_SEND_TIMEOUT"
    for (( r = 1; r <= ROUNDS; r++ )); do
        for p in $SLOW_PEERS; do
            # A fresh server per round: what an earlier attack left behind is no baseline.
            id="sr-$p-r$r"; stem="slowread/r$r-$p"
            start_instance "$id" "$p" "$(size_app_for "$p")" 1 "$CPUS_SERVER"
            port="${I_PORT[$id]}"
            check_response "$id" "/$SLOW_SIZE" "SIZE:$SLOW_SIZE"
            check_response "$id" "$SLOW_PROBE" "SIZE:${SLOW_PROBE#/}"
            sleep 0.3
            before="$(mem_kb "$id" VmRSS)"
            kbefore="$(tcp_mem_pages)"
            stop="$TMP/slow-stop-$id"
            rm -f "$stop"
            : > "$RAW/$stem.samples"; : > "$RAW/$stem.probes"
            t0=${EPOCHREALTIME//[^0-9]/}
            slow_cmd "$port" "$RAW/$stem"
            # Not under timeout(1): cleanup's KILL must reach slowhttptest itself (taskset execs it).
            "${CMD[@]}" > "$RAW/$stem.txt" 2>&1 &
            spid=$!
            BG_PIDS+=("$spid")
            slow_probe "http://127.0.0.1:$port$SLOW_PROBE" "$RAW/$stem.probes" "$stop" "$t0" &
            prpid=$!
            BG_PIDS+=("$prpid")
            # Every 0.5 s while the attack lasts: the server's RSS and its established connections.
            peak=0; open_peak=0; kpeak=0; nsamples=0; next=$t0; overdue=0
            while kill -0 "$spid" 2>/dev/null; do
                now=${EPOCHREALTIME//[^0-9]/}
                if (( now - t0 > (SLOW_DURATION + 30) * 1000000 )); then   # it should have ended
                    log "warning: slowhttptest on $p round $r still runs $(( SLOW_DURATION + 30 )) s on: killing it"
                    kill -KILL "$spid" 2>/dev/null || true
                    overdue=1
                    break
                fi
                rss="$(mem_kb "$id" VmRSS)"
                open="$({ ss -Htn state established "( sport = :$port )" 2>/dev/null || true; } | wc -l)"
                kmem="$(tcp_mem_pages)"
                printf '%s %s %s %s\n' "$(( (now - t0) / 1000 ))" "$rss" "$open" "$kmem" >> "$RAW/$stem.samples"
                (( rss > peak )) && peak=$rss
                (( kmem > kpeak )) && kpeak=$kmem
                (( open > open_peak )) && open_peak=$open
                nsamples=$(( nsamples + 1 ))
                next=$(( next + 500000 ))
                sleep_until "$next"
            done
            src=0; wait "$spid" || src=$?
            (( overdue )) && src=124
            bg_forget "$spid"
            touch "$stop"
            wait "$prpid" 2>/dev/null || true
            bg_forget "$prpid"
            sleep 1   # the attack's connections are closed: what does the server give back?
            after="$(mem_kb "$id" VmRSS)"
            alive_after=1; alive "$id" || alive_after=0
            (( src == 0 && alive_after == 1 )) || log "warning: slowhttptest on $p round $r: exit $src, server alive: $alive_after (output: $RAW/$stem.txt)"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$id" "$p" "$SLOW_CONNS" \
                "$SLOW_DURATION" "$SLOW_RATE" "$SLOW_SEND_TIMEOUT" "$before" "$peak" "$open_peak" "$after" \
                "$nsamples" "$src" "$alive_after" "$stem" "$kbefore" "$kpeak" "$(getconf PAGESIZE)" >> "$SLOW"
            log "slowread r$r $p: VmRSS $before -> peak $peak kB (after $after kB), kernel TCP memory $kbefore -> peak $kpeak pages, $open_peak connections open at most; probes: $(awk '$2 == 0 && $3 == 200 { ok++ } END { printf "%d of %d ok", ok, NR }' "$RAW/$stem.probes")"
            stop_instance "$id"
        done
    done
    SEND_TIMEOUT=""
    section_done slowread
fi

# ---------------------------------------------------------------- 4c. TLS
TLSF="$RAW/tls.tsv"
printf 'round\tid\tpeer\ttest\tcount\tsecs\tticks_before\tticks_after\trss_before_kb\trss_after_kb\trc\traw\n' > "$TLSF"
tls_row() {  # ROUND ID PEER TEST COUNT SECS TICKS_BEFORE TICKS_AFTER RSS_BEFORE RSS_AFTER RC RAW
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$TLSF"
}
if section tls && [[ -n "$TLS_PEERS" ]]; then
    mkdir -p "$RAW/tls" "$TMP/tls"
    # ECDSA P-256, the issue's certificate; both servers get the same one.
    openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/tls/key.pem" 2>/dev/null \
        && openssl req -new -x509 -key "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" -days 2 \
            -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null \
        || die "openssl cannot make the TLS section's certificate"
    TLS_ON=1
    for (( r = 1; r <= ROUNDS; r++ )); do
        for p in $TLS_PEERS; do
            id="tls-$p-r$r"
            start_instance "$id" "$p" hello 1 "$CPUS_SERVER"
            port="${I_PORT[$id]}"
            curl -sk --max-time 5 -o /dev/null "https://127.0.0.1:$port/" \
                || NOTES+=("**$id did not answer \`curl -k https://…/\`** before the TLS runs.")
            # Keep-alive requests over TLS.
            raw="tls/r$r-$p-keepalive.txt"; rc=0
            before="$(cpu_ticks "$id")"
            timeout $(( TLS_DURATION + 30 )) taskset -c "$CPUS_LOAD" wrk -t1 -c64 -d"${TLS_DURATION}s" \
                "https://127.0.0.1:$port/" > "$RAW/$raw" 2>&1 || rc=$?
            after="$(cpu_ticks "$id")"
            n="$(awk '/requests in/ { print $1 }' "$RAW/$raw")"
            tls_row "$r" "$id" "$p" keepalive "${n:-0}" "$TLS_DURATION" "$before" "$after" 0 0 "$rc" "$raw"
            # Handshakes: TLS_CLIENTS s_time loops at once, each a new connection per handshake,
            # full (-new) or resuming the session of its first (-reuse; TLS 1.3, then 1.2).
            for t in full resumed resumed12; do
                case "$t" in
                    full) flag=(-new) ;;
                    resumed) flag=(-reuse) ;;
                    resumed12) flag=(-reuse -tls1_2) ;;   # TLS 1.2: a session ID or ticket
                esac
                before="$(cpu_ticks "$id")"; spids=()
                for (( k = 1; k <= TLS_CLIENTS; k++ )); do
                    timeout $(( TLS_DURATION + 30 )) taskset -c "$CPUS_LOAD" openssl s_time \
                        -connect "127.0.0.1:$port" "${flag[@]}" -time "$TLS_DURATION" \
                        > "$RAW/tls/r$r-$p-$t-$k.txt" 2>&1 &
                    spids+=($!)
                done
                rc=0
                for sp in "${spids[@]}"; do wait "$sp" || rc=$?; done
                after="$(cpu_ticks "$id")"
                # "N connections in T real seconds, ..." once per process.
                n="$(cat "$RAW/tls/r$r-$p-$t-"*.txt | awk '/connections in .* real seconds/ { s += $1 } END { print s + 0 }')"
                tls_row "$r" "$id" "$p" "$t" "$n" "$TLS_DURATION" "$before" "$after" 0 0 "$rc" "tls/r$r-$p-$t-1.txt"
            done
            # Idle TLS connections: held after a handshake and one request each.
            raw="tls/r$r-$p-idle.txt"
            sleep 0.3
            before="$(mem_kb "$id" VmRSS)"
            taskset -c "$LOAD_CPU1" python3 "$SCRIPT_DIR/tls_hold.py" --port "$port" --count "$TLS_HOLD" \
                --hold-secs 300 > "$RAW/$raw" 2> "$RAW/${raw%.txt}.stderr" &
            hpid=$!
            BG_PIDS+=("$hpid")
            for (( i = 0; i < 1300; i++ )); do   # 130 s at most
                grep -q '^holding' "$RAW/$raw" 2>/dev/null && break
                kill -0 "$hpid" 2>/dev/null || break
                sleep 0.1
            done
            sleep "$IDLE_SETTLE"   # idle long enough to be parked, as in the memory section
            after="$(mem_kb "$id" VmRSS)"
            held="$(awk '/^holding/ { print $2; exit }' "$RAW/$raw")"
            kill -TERM "$hpid" 2>/dev/null || true
            wait "$hpid" 2>/dev/null || true
            bg_forget "$hpid"
            tls_row "$r" "$id" "$p" idle "${held:-0}" 0 0 0 "$before" "$after" 0 "$raw"
            log "tls r$r $p: keep-alive, handshakes and ${held:-0} idle connections (VmRSS $before -> $after kB)"
            stop_instance "$id"
        done
    done
    TLS_ON=""
    section_done tls
fi

# ---------------------------------------------------------------- 5. scaling with workers
if section scaling && [[ -n "$SCALE_PEERS" ]]; then
    for w in "${SCALE_WORKERS[@]}"; do
        for p in $SCALE_PEERS; do start_instance "sc$w-$p" "$p" hello "$w" "$(scale_cpus_for "$w")"; done
    done
    for (( r = 1; r <= ROUNDS; r++ )); do
        for w in "${SCALE_WORKERS[@]}"; do
            for m in $SCALE_MODES; do
                for p in $SCALE_PEERS; do run_wrk scaling "$r" "sc$w-$p" "$m" "$SCALE_CONNS" / "$DURATION"; done
            done
        done
    done
    for w in "${SCALE_WORKERS[@]}"; do for p in $SCALE_PEERS; do stop_instance "sc$w-$p"; done; done
    section_done scaling
fi

# ---------------------------------------------------------------- 6. instructions per request
CG="$RAW/callgrind.tsv"
printf 'round\tmode\trequests\tir\trc\n' > "$CG"
if section callgrind; then
    mkdir -p "$RAW/callgrind"
    for (( r = 1; r <= ROUNDS; r++ )); do
        for m in plain pipelined; do
            for n in 0 "$CG_N"; do
                out="$RAW/callgrind/r$r-$m-$n.out"
                args=("$n"); [[ "$m" == pipelined ]] && args+=(pipelined)
                rc=0
                valgrind --tool=callgrind --callgrind-out-file="$out" \
                    "$TARGET/release/examples/callgrind_requests" "${args[@]}" > "${out%.out}.log" 2>&1 || rc=$?
                ir="$(awk '/^summary:/ { print $2; exit }' "$out" 2>/dev/null || true)"
                printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$m" "$n" "${ir:-}" "$rc" >> "$CG"
                log "callgrind r$r $m N=$n: Ir ${ir:-?} (exit $rc)"
            done
        done
    done
    section_done callgrind
fi

# ---------------------------------------------------------------- 7. criterion
CRIT_CMD="cargo bench --bench http -- --warm-up-time 1 --measurement-time 2"
if section criterion; then
    log "criterion: taskset -c $CPUS_SERVER $CRIT_CMD"
    rc=0
    # shellcheck disable=SC2086
    taskset -c "$CPUS_SERVER" $CRIT_CMD > "$RAW/criterion.txt" 2>&1 || rc=$?
    (( rc == 0 )) || { log "warning: criterion exited $rc"; NOTES+=("**\`$CRIT_CMD\` exited $rc** (output: \`target/bench/raw/criterion.txt\`)."); }
    section_done criterion
fi

# ---------------------------------------------------------------- report
END_TIME=$(date +%s)
ELAPSED=$(( END_TIME - START_TIME ))
for f in "$RAW"/*.log; do   # anything a server logged (warnings and worse) goes in the report
    n="$(grep -cv '^listening on 127\.0\.0\.1:[0-9]*$' "$f" || true)"   # the peers' start-up line
    (( n > 0 )) || continue
    NOTES+=("$(basename "$f" .log) logged $n line(s) to \`target/bench/raw/$(basename "$f")\`; the last: \`$(grep -v '^listening on 127\.0\.0\.1:[0-9]*$' "$f" | tail -n 1 | tr -d '\`' | cut -c1-200)\`")
done
for d in "$TMP"/*/; do
    [[ -s "$d/error.log" ]] || continue
    id="$(basename "$d")"
    cp "$d/error.log" "$RAW/$id.error.log"
    NOTES+=("$id (nginx) logged $(grep -c . "$d/error.log") line(s) to \`target/bench/raw/$id.error.log\`; the last: \`$(grep . "$d/error.log" | tail -n 1 | tr -d '\`' | cut -c1-200)\`")
done

lock_version() {  # CRATE -> its version in benches/peers/Cargo.lock
    awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$PEERS_DIR/Cargo.lock" 2>/dev/null
}
META="$RAW/meta.tsv"
{
    machine_meta "$START_TIME"
    printf 'loadavg\t%s\n' "$LOADAVG"
    printf 'uptime\t%s\n' "$(sed 's/^ *//' <<< "$UPTIME_START")"
    printf 'busy_before\t%s\n' "$BUSY"
    printf 'quick\t%s\n' "$QUICK"
    printf 'wrk\t%s\n' "$(wrk -v 2>&1 | head -n 1 | sed 's/ Copyright.*//')"
    want nginx && printf 'nginx\t%s\n' "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    printf 'ringcorn\t%s\n' "$("$BIN" --version 2>/dev/null | head -n 1 || echo '?')"
    printf 'rustc\t%s\n' "$(rustc --version 2>/dev/null || echo '?')"
    printf 'hyper\t%s\n' "$(lock_version hyper)"
    printf 'tokio\t%s\n' "$(lock_version tokio)"
    printf 'tokio_uring\t%s\n' "$(lock_version tokio-uring)"
    printf 'io_uring\t%s\n' "$(lock_version io-uring)"
    want gunicorn && printf 'gunicorn\t%s\n' "$("$VENV/bin/gunicorn" --version 2>&1 | head -n 1) on $("$VENV/bin/python" --version 2>&1)"
    section callgrind && printf 'valgrind\t%s\n' "$(valgrind --version)"
    section slowread && [[ -n "$SLOW_PEERS" ]] && printf 'slowhttptest\t%s\n' \
        "$(dpkg-query -W -f '${Version}' slowhttptest 2>/dev/null || slowhttptest -h 2>&1 | grep -m1 -io 'version [^ ]*' || echo '?')"
    printf 'gnuplot\t%s\n' "$(gnuplot --version 2>/dev/null || echo '?')"
    printf 'clk_tck\t%s\n' "$CLK_TCK"
    printf 'bench_pid\t%s\n' "$$"
    printf 'rounds\t%s\n' "$ROUNDS"
    printf 'duration\t%s\n' "$DURATION"
    printf 'size_duration\t%s\n' "$SIZE_DURATION"
    printf 'warmup\t%s\n' "$WARMUP"
    printf 'connections\t%s\n' "$CONNECTIONS"
    printf 'depth\t%s\n' "$DEPTH"
    printf 'cpus_server\t%s\n' "$CPUS_SERVER"
    printf 'cpus_load\t%s\n' "$CPUS_LOAD"
    printf 'scale_cpus\t%s\n' "$SCALE_CPUS"
    printf 'scale_workers\t%s\n' "$(tr ' ' ',' <<< "${SCALE_WORKERS[*]}")"
    printf 'scale_connections\t%s\n' "$SCALE_CONNS"
    printf 'gunicorn_max_connections\t%s\n' "$GUNICORN_MAX_CONNS"
    printf 'latency_rate\t%s\n' "$LAT_RATE"
    printf 'gunicorn_rate\t%s\n' "$GUNICORN_RATE"
    printf 'latency_connections\t%s\n' "$LAT_CONNS"
    printf 'latency_duration\t%s\n' "$LAT_DURATION"
    printf 'latency_warmup\t%s\n' "$LAT_WARMUP"
    printf 'hold\t%s\n' "$HOLD"
    printf 'tls_duration\t%s\n' "$TLS_DURATION"
    printf 'tls_clients\t%s\n' "$TLS_CLIENTS"
    printf 'tls_hold\t%s\n' "$TLS_HOLD"
    printf 'idle_settle\t%s\n' "$IDLE_SETTLE"
    section tls && printf 'openssl\t%s\n' "$(openssl version 2>/dev/null || echo '?')"
    printf 'size_connections\t%s\n' "$SIZE_CONNS"
    printf 'size_large_connections\t%s\n' "$SIZE_LARGE_CONNS"
    printf 'size_large\t%s\n' "$SIZE_LARGE"
    printf 'size_focus\t%s\n' "$SIZE_FOCUS"
    printf 'size_focus_rounds\t%s\n' "$SIZE_FOCUS_ROUNDS"
    printf 'size_focus_peers\t%s\n' "$(tr ' ' ',' <<< "$SIZE_FOCUS_PEERS")"
    printf 'slow_connections\t%s\n' "$SLOW_CONNS"
    printf 'slow_duration\t%s\n' "$SLOW_DURATION"
    printf 'slow_rate\t%s\n' "$SLOW_RATE"
    printf 'slow_send_timeout\t%s\n' "$SLOW_SEND_TIMEOUT"
    printf 'slow_size\t%s\n' "$SLOW_SIZE"
    printf 'slow_probe\t%s\n' "$SLOW_PROBE"
    printf 'callgrind_requests\t%s\n' "$CG_N"
    printf 'peers\t%s\n' "$PEERS"
    printf 'sections\t%s\n' "$SECTIONS"
    printf 'sizes\t%s\n' "$(tr ' ' ',' <<< "${SIZES[*]}")"
    printf 'elapsed\t%s\n' "$ELAPSED"
    printf 'build_s\t%s\n' "$(( BUILD_DONE - START_TIME ))"
    printf 'measure_s\t%s\n' "$(( END_TIME - BUILD_DONE ))"
    printf 'estimate_s\t%s\n' "$EST_THIS"
    printf 'estimate_full_s\t%s\n' "$EST_FULL"
    for t in "${SECTION_TIMES[@]+"${SECTION_TIMES[@]}"}"; do printf 'section_s_%s\t%s\n' "${t%%=*}" "${t#*=}"; done
    for id in "${!I_CMD[@]}"; do
        printf 'cmd_%s\t%s\n' "$id" "$(printable "$id")"
    done
    for f in "$RAW"/*.response*.txt; do
        [[ -f "$f" ]] || continue
        printf 'response_%s\t%s\t%s\n' "$(basename "$f" .txt)" "$(head -n 1 "$f" | tr -d '\r')" "$(wc -c < "$f")"
    done
    for m in plain pipelined; do
        wrk_cmd_example=(taskset -c "$CPUS_LOAD" wrk "-t${#LOAD_CPUS[@]}" -cCONNS "-d${DURATION}s" --latency)
        [[ "$m" == pipelined ]] && wrk_cmd_example+=(-s scripts/pipeline.lua)
        printf 'wrk_%s\t%s%s http://127.0.0.1:PORT/\n' "$m" "$([[ "$m" == pipelined ]] && echo "PIPELINE_DEPTH=$DEPTH ")" "${wrk_cmd_example[*]}"
    done
    printf 'loadgen_cmd\ttaskset -c %s benches/peers/target/release/loadgen --url http://127.0.0.1:PORT/ --rate RATE --connections %s --duration %s%s\n' \
        "$LOAD_CPU1" "$LAT_CONNS" "$LAT_DURATION" "$( (( LAT_WARMUP > 0 )) && echo " --warmup $LAT_WARMUP")"
    printf 'holdconns_cmd\ttaskset -c %s benches/peers/target/release/holdconns --addr 127.0.0.1:PORT --count %s --hold-secs 300\n' "$LOAD_CPU1" "$HOLD"
    slow_cmd PORT "target/bench/raw/slowread/rROUND-PEER"
    printf 'slowhttptest_cmd\t%s\n' "$(sed "s|$REPO/||g" <<< "${CMD[*]}")"
    probe_cmd "http://127.0.0.1:PORT$SLOW_PROBE"
    printf 'probe_cmd\t%s\n' "$(for a in "${CMD[@]}"; do [[ "$a" == *[\ %]* ]] && a="'$a'"; printf '%s ' "$a"; done | sed 's/ $//')"
    printf 'callgrind_cmd\tvalgrind --tool=callgrind target/release/examples/callgrind_requests N [pipelined]\n'
    printf 'criterion_cmd\ttaskset -c %s %s\n' "$CPUS_SERVER" "$CRIT_CMD"
    for n in "${NOTES[@]+"${NOTES[@]}"}"; do printf 'note\t%s\n' "$n"; done
} > "$META"

mkdir -p "$CHART_DIR"
python3 "$SCRIPT_DIR/report.py" --raw "$RAW" --out "$OUT" --charts "$CHART_DIR"
log "done in ${ELAPSED} s (builds $(( BUILD_DONE - START_TIME )) s, measuring $(( END_TIME - BUILD_DONE )) s; estimated $EST_THIS s): report written to $OUT, charts to $CHART_DIR (raw outputs in $RAW)"
