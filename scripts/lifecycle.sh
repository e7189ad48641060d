#!/usr/bin/env bash
# Lifecycle under load: show that ringcorn loses no request while it reloads, scales, upgrades
# its binary or replaces workers under a steady load, and show the loss its design avoids
# (scripts/naive_reuseport.py, a server whose workers own their sockets). Writes
# benchmarks/lifecycle.md (overwritten entirely) and prints it.
#
# For each event x workers (2, 4) x worker class (thread, process) a fresh server is started,
# pinned with taskset to the server CPU (--cpus CPU: all its workers share that one CPU), and
# loaded from the load CPU for --duration seconds, first by wrk (closed loop, 64 connections,
# one thread), then by loadgen (open loop, --rate requests/s over --connections connections,
# at most one request in flight per connection, latency from each request's scheduled time),
# one after the other, each on a server of its own with the same event in the middle:
#   steady       no event: the p99 every other row of the same config is compared with
#   hup          SIGHUP (reload: new workers, then the old ones drain) every second
#   ttin-ttou    SIGTTIN, SIGTTOU alternating every second, TTIN first (never below the start)
#   usr2         binary upgrade: the server runs from a copy of target/release/ringcorn in a
#                temp dir; that file is replaced by a second copy, USR2, wait for the new pid
#                in the pidfile and the old master's exit; then the first copy is put back and
#                USR2 again. The master is followed through the pidfile.
#   recycle      --max-requests 1000 for the whole run (no signal)
#   kill-worker  SIGKILL of one worker process every 2 s (process class only)
# plus the baseline: naive_reuseport.py with the same workers, steady and with SIGHUP every
# second. Signals start 1 s into the load and stop 2 s before its end (loadgen's first second
# is warm-up, so its figures cover every event and what follows it).
#
# Every event is checked to have happened (new worker pids/thread ids after a HUP, one worker
# more or fewer after TTIN/TTOU, a new master after USR2, the killed worker replaced), and the
# server to be alive and answering afterwards; a run where it did not is failed.
# A failed request is any request wrk or loadgen counts as an error. Exit status: 0 if every
# ringcorn run lost nothing and every event took effect, 1 otherwise (the baseline rows are
# expected to lose requests and do not count). kill-worker is the one exception, by necessity:
# the requests in flight on the killed worker's connections at the moment of the SIGKILL are
# lost; that run passes if its only errors are resets/read/write errors, at most one per
# connection per kill, and no connect error, timeout or non-2xx.
#
# Usage: scripts/lifecycle.sh [--quick] [--install] [options]
# (shellcheck: the event functions are called by name, "ev_$event", and cleanup by the trap)
# shellcheck disable=SC2317
set -eEuo pipefail

usage() {
    sed -n '2,/^set -e/p' "$0" | sed '$d' | grep -v '^# (\?shellcheck' | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options (defaults of the full mode; --quick changes those marked *):
  --quick             4 s runs, 2 workers only: about 2.5 minutes (figures indicative only)
  --install           apt-get install the missing tools first (as root), then run
  --duration S        * seconds of load per run (12; quick 4; at least 4)
  --workers LIST      * worker counts (2,4; quick 2)
  --classes LIST      worker classes (thread,process)
  --events LIST       subset of steady,hup,ttin-ttou,usr2,recycle,kill-worker (all)
  --no-baseline       skip the naive_reuseport.py rows
  --rate R            loadgen requests/s (10000)
  --connections C     wrk and loadgen connections (64)
  --cpu-server N      the CPU of the server, all its workers (0)
  --cpu-load N        the CPU of wrk and loadgen (1)
  --no-build          use the binaries already built
  --force             run even if the machine stays busy (other work on these CPUs skews
                      latencies): the full mode otherwise waits up to 1 min for a quiet machine
                      before the first run (--quick only warns); before each run it waits up to
                      10 s, and a row is marked when the machine was still busy
  --out FILE          report path (benchmarks/lifecycle.md)
Raw outputs and server logs of the last run are kept in target/lifecycle/raw/.
EOF
}

die() { echo "lifecycle.sh: error: $*" >&2; exit 1; }
log() { echo "lifecycle.sh: $*" >&2; }

# ---------------------------------------------------------------- options
QUICK=0
for a in "$@"; do [[ "$a" == --quick ]] && QUICK=1; done
if (( QUICK )); then DURATION=4; WORKERS_LIST="2"; else DURATION=12; WORKERS_LIST="2,4"; fi
ALL_EVENTS="steady,hup,ttin-ttou,usr2,recycle,kill-worker"
EVENTS="$ALL_EVENTS"
CLASSES="thread,process"
BASELINE=1
RATE=10000
CONNS=64
CPU_SERVER=0
CPU_LOAD=1
INSTALL=0
BUILD=1
FORCE=0
OUT=""
MAX_REQUESTS=1000
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) shift ;;
        --install) INSTALL=1; shift ;;
        --duration) DURATION="${2:?--duration needs a value}"; shift 2 ;;
        --workers) WORKERS_LIST="${2:?--workers needs a value}"; shift 2 ;;
        --classes) CLASSES="${2:?--classes needs a value}"; shift 2 ;;
        --events) EVENTS="${2:?--events needs a value}"; shift 2 ;;
        --no-baseline) BASELINE=0; shift ;;
        --rate) RATE="${2:?--rate needs a value}"; shift 2 ;;
        --connections) CONNS="${2:?--connections needs a value}"; shift 2 ;;
        --cpu-server) CPU_SERVER="${2:?--cpu-server needs a value}"; shift 2 ;;
        --cpu-load) CPU_LOAD="${2:?--cpu-load needs a value}"; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --force) FORCE=1; shift ;;
        --out) OUT="${2:?--out needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
for v in DURATION RATE CONNS CPU_SERVER CPU_LOAD; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer, got '${!v}'"
done
(( DURATION >= 4 && DURATION <= 600 )) || die "--duration must be between 4 and 600 seconds"
(( RATE >= 1 && CONNS >= 1 && CONNS <= 10000 )) || die "--rate must be at least 1, --connections 1 to 10000"
(( CPU_SERVER != CPU_LOAD )) || log "warning: server and load share CPU $CPU_SERVER: latencies will be skewed"
in_list() { [[ ",$2," == *",$1,"* ]]; }   # WORD LIST
[[ "$WORKERS_LIST" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--workers must be a comma-separated list of numbers"
IFS=',' read -r -a WORKERS <<< "$WORKERS_LIST"
for w in "${WORKERS[@]}"; do (( w >= 1 && w <= 64 )) || die "--workers: every count must be 1 to 64"; done
IFS=',' read -r -a CLASS_LIST <<< "$CLASSES"
for c in "${CLASS_LIST[@]}"; do in_list "$c" "thread,process" || die "unknown worker class '$c' (thread, process)"; done
IFS=',' read -r -a EVENT_LIST <<< "$EVENTS"
for e in "${EVENT_LIST[@]}"; do in_list "$e" "$ALL_EVENTS" || die "unknown event '$e' (known: $ALL_EVENTS)"; done
in_list steady "$EVENTS" || log "warning: no steady runs: the p99 ratios will be missing"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
[[ -n "$OUT" ]] || OUT="$REPO/benchmarks/lifecycle.md"
PEERS_DIR="$REPO/benches/peers"
NAIVE="$SCRIPT_DIR/naive_reuseport.py"
cd "$REPO"
(( CPU_SERVER < $(nproc) && CPU_LOAD < $(nproc) )) || die "--cpu-server and --cpu-load must be below $(nproc) (CPUs this process may use)"

# ---------------------------------------------------------------- tools
declare -A APT=( [wrk]=wrk [taskset]=util-linux [setsid]=util-linux [curl]=curl [pgrep]=procps
                 [timeout]=coreutils [python3]=python3 )
missing_packages() {
    local t pkgs=()
    for t in wrk taskset setsid curl pgrep timeout python3; do
        command -v "$t" >/dev/null 2>&1 || in_list "${APT[$t]}" "$(IFS=,; echo "${pkgs[*]:-}")" || pkgs+=("${APT[$t]}")
    done
    echo "${pkgs[*]:-}"
}
# shellcheck source=scripts/tools.sh
source "$SCRIPT_DIR/tools.sh"
# Wherever cargo builds (CARGO_TARGET_DIR, a config's build.target-dir), not target/.
BIN="$(target_dir "$REPO/Cargo.toml")/release/ringcorn"
LOADGEN="$(target_dir "$PEERS_DIR/Cargo.toml")/release/loadgen"
install_missing
command -v cargo >/dev/null 2>&1 || (( ! BUILD )) || die "cargo not found: install Rust from https://rustup.rs"
[[ -n "${EPOCHREALTIME:-}" ]] || die "bash 5 or later is needed (EPOCHREALTIME)"

# ---------------------------------------------------------------- work dirs and cleanup
RAW="$REPO/target/lifecycle/raw"
rm -rf "$RAW"
mkdir -p "$RAW"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/ringcorn-lifecycle.XXXXXX")"
PGIDS=()     # process groups of the servers (each started with setsid), killed on exit
BG_PIDS=()   # load generators, killed on exit

kill_group() {  # PGID: TERM the group (CONT first: a stopped process ignores TERM), KILL after 10 s
    local g="$1" i
    pgrep -g "$g" >/dev/null 2>&1 || return 0
    kill -CONT -- "-$g" 2>/dev/null || true
    kill -TERM -- "-$g" 2>/dev/null || true
    for (( i = 0; i < 100; i++ )); do
        pgrep -g "$g" >/dev/null 2>&1 || return 0
        sleep 0.1
    done
    kill -KILL -- "-$g" 2>/dev/null || true
    return 1
}
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${BG_PIDS[@]+"${BG_PIDS[@]}"}"; do kill -KILL "$p" 2>/dev/null || true; done
    for p in "${PGIDS[@]+"${PGIDS[@]}"}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "error: line $LINENO: $BASH_COMMAND failed"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

START_TIME=$(date +%s)

# ---------------------------------------------------------------- build
if (( BUILD )); then
    log "building ringcorn: cargo build --release"
    cargo build --release >&2 || die "cargo build --release failed"
    log "building loadgen: cargo build --release --bin loadgen (in benches/peers)"
    (cd "$PEERS_DIR" && cargo build --release --bin loadgen >&2) || die "building benches/peers loadgen failed"
fi
[[ -x "$BIN" ]] || die "$BIN not found (build it: cargo build --release)"
[[ -x "$LOADGEN" ]] || die "$LOADGEN not found (build it: cd benches/peers && cargo build --release --bin loadgen)"
"$LOADGEN" --help | grep -q -- --max-in-flight || die "$LOADGEN is too old (no --max-in-flight): rebuild it"
[[ -f "$NAIVE" ]] || die "$NAIVE not found"
# Two copies of the binary, as two builds of the same tree would be: every run starts from a
# copy of A; the usr2 runs upgrade to B and back to A. Later rebuilds of target/ do not matter.
cp "$BIN" "$TMP/ringcorn.A"
cp "$BIN" "$TMP/ringcorn.B"
HELP="$("$TMP/ringcorn.A" --help 2>&1 || true)"
has_opt() { grep -q -- "$1[ =]" <<< "$HELP"; }
RINGCORN_VERSION="$("$TMP/ringcorn.A" --version 2>/dev/null | head -n 1 || echo '?')"
FEATURES=()
for o in --pid --worker-class --max-requests; do has_opt "$o" && FEATURES+=("$o") || FEATURES+=("(no $o)"); done
log "binary: $RINGCORN_VERSION; options: ${FEATURES[*]}"
BUILD_DONE=$(date +%s)

# ---------------------------------------------------------------- quiet machine?
busy_share() {  # SECONDS -> share (0..1) of all CPUs busy over that many seconds
    local a b
    a="$(head -n 1 /proc/stat)"; sleep "$1"; b="$(head -n 1 /proc/stat)"
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x); split(b, y)
        # cpu user nice system idle iowait irq softirq steal
        busy = (y[2] + y[3] + y[4] + y[7] + y[8] + y[9]) - (x[2] + x[3] + x[4] + x[7] + x[8] + x[9])
        total = busy + (y[5] + y[6]) - (x[5] + x[6])
        printf "%.2f", (total > 0 ? busy / total : 0) }'
}
QUIET_LIMIT=0.15
RUN_QUIET_TRIES=$(( QUICK ? 0 : 20 ))   # before each run: wait up to 10 s for a quiet 0.5 s
is_busy() { awk -v b="$1" -v l="$QUIET_LIMIT" 'BEGIN { exit !(b > l) }'; }
BUSY="$(busy_share 2)"
if is_busy "$BUSY"; then
    if (( FORCE || QUICK )); then
        log "warning: the machine is busy (${BUSY} of all CPUs over 2 s): latencies will be skewed"
    else
        log "the machine is busy (${BUSY} of all CPUs over 2 s): waiting up to 1 min for it to calm down"
        for (( i = 0; i < 12; i++ )); do BUSY="$(busy_share 5)"; is_busy "$BUSY" || break; done
        is_busy "$BUSY" && die "the machine stays busy (${BUSY} of all CPUs; $(uptime)): rerun when it is idle, or pass --force"
    fi
fi
log "machine busy before the runs: ${BUSY} of all CPUs"

# ---------------------------------------------------------------- helpers
# Time without forks (the event driver shares the machine with the server and the load).
now_us() { echo "${EPOCHREALTIME/./}"; }
T0=0
since_us() { local n="${EPOCHREALTIME/./}"; echo $(( n - T0 )); }   # microseconds since T0
sleep_until() {  # SECONDS since T0, whole or with one decimal (2, 2.9)
    local s="$1" target n left secs
    [[ "$s" == *.* ]] || s="$s.0"
    target=$(( T0 + ${s%.*} * 1000000 + ${s#*.} * 100000 ))
    n="${EPOCHREALTIME/./}"
    left=$(( target - n ))
    (( left > 0 )) || return 0
    printf -v secs '%d.%06d' $(( left / 1000000 )) $(( left % 1000000 ))
    sleep "$secs"
}
elapsed() { local u; u="$(since_us)"; printf '%d.%02d' $(( u / 1000000 )) $(( u % 1000000 / 10000 )); }
alive() {  # PID: running, and not a zombie
    local st=""
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 1
    read -r st < "/proc/$1/stat" 2>/dev/null || return 1
    st="${st##*) }"
    [[ "${st%% *}" != Z ]]
}

RUN_DIR=""; MASTER0=""; LAST_MASTER=""; PIDFILE=""; PGID=""; PORT=""; EVLOG=""; RUN_FAIL=()
note_fail() { RUN_FAIL+=("$*"); echo "$(elapsed) FAIL $*" >> "$EVLOG"; log "  FAIL: $*"; }
evlog() { echo "$(elapsed) $*" >> "$EVLOG"; }

master() {  # the current master's pid: the pidfile's, else the last one known
    local p=""
    [[ -n "$PIDFILE" && -s "$PIDFILE" ]] && p="$(tr -dc '0-9' < "$PIDFILE" 2>/dev/null || true)"
    echo "${p:-$LAST_MASTER}"
}
join() { tr '\n' ' ' <<< "$1" | sed 's/ *$//'; }   # lines -> one line
workers_of() {  # MASTER CLASS -> sorted worker ids: child pids (process), thread ids but the main one (thread)
    local m="$1"
    if [[ "$2" == process ]]; then
        pgrep -P "$m" 2>/dev/null | sort || true
    else
        find "/proc/$m/task" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | grep -vx "$m" | sort || true
    fi
}
count_lines() { if [[ -z "$1" ]]; then echo 0; else wc -l <<< "$1"; fi; }

SERVER_CMD=()
start_server() {  # KIND(ringcorn|naive) WORKERS CLASS EVENT: start, wait for Listening at; 0 if serving
    local kind="$1" w="$2" class="$3" event="$4" i url
    PIDFILE=""
    if [[ "$kind" == ringcorn ]]; then
        cp "$TMP/ringcorn.A" "$RUN_DIR/ringcorn"
        SERVER_CMD=(taskset -c "$CPU_SERVER" "$RUN_DIR/ringcorn" --workers "$w" --cpus "$CPU_SERVER" --bind 127.0.0.1:0)
        if has_opt --worker-class; then
            SERVER_CMD+=(--worker-class "$class")
        elif [[ "$class" != thread ]]; then
            note_fail "this binary has no --worker-class"; return 1
        fi
        if has_opt --pid; then
            PIDFILE="$RUN_DIR/ringcorn.pid"
            SERVER_CMD+=(--pid "$PIDFILE")
        elif [[ "$event" == usr2 ]]; then
            note_fail "this binary has no --pid (needed to follow a USR2 upgrade)"; return 1
        fi
        if [[ "$event" == recycle ]]; then
            has_opt --max-requests || { note_fail "this binary has no --max-requests"; return 1; }
            SERVER_CMD+=(--max-requests "$MAX_REQUESTS")
        fi
        SERVER_CMD+=(hello)
    else
        SERVER_CMD=(taskset -c "$CPU_SERVER" python3 "$NAIVE" --workers "$w" --bind 127.0.0.1:0)
    fi
    # setsid: a process group of its own (every descendant, new masters included, is killed
    # with it). Not a group leader in a script, so setsid execs in place: $! is the server.
    setsid "${SERVER_CMD[@]}" > "$RUN_DIR/server.out" 2> "$RUN_DIR/server.log" < /dev/null &
    MASTER0=$!
    LAST_MASTER=$MASTER0
    PGID=$MASTER0
    PGIDS+=("$PGID")
    url=""
    for (( i = 0; i < 200; i++ )); do   # 10 s at most
        url="$(grep -o 'Listening at: http://[^ ]*' "$RUN_DIR/server.log" 2>/dev/null | head -n 1 | sed 's/^Listening at: //' || true)"
        [[ -n "$url" ]] && break
        alive "$MASTER0" || break
        sleep 0.05
    done
    if [[ -z "$url" ]]; then
        note_fail "the server did not start: $(tail -n 2 "$RUN_DIR/server.log" | tr '\n' ' ' | cut -c1-300)"
        return 1
    fi
    PORT="${url##*:}"
    if [[ -n "$PIDFILE" ]]; then
        for (( i = 0; i < 100; i++ )); do [[ -s "$PIDFILE" ]] && break; sleep 0.05; done
        [[ -s "$PIDFILE" ]] || { note_fail "no pidfile $PIDFILE 5 s after Listening at"; return 1; }
        [[ "$(master)" == "$MASTER0" ]] || evlog "note: the pidfile says $(master), started $MASTER0"
        LAST_MASTER="$(master)"
    fi
    check_hello || { note_fail "GET / on the new server did not answer Hello, World!"; return 1; }
    evlog "started: ${SERVER_CMD[*]} (master $(master), port $PORT)"
    return 0
}
check_hello() { [[ "$(curl -s -m 3 "http://127.0.0.1:$PORT/" 2>/dev/null || true)" == "Hello, World!" ]]; }

stop_server() {  # TERM the master (it may have left the group) and the group, KILL after 10 s
    local m i
    m="$(master)"
    alive "$m" && kill -TERM "$m" 2>/dev/null
    if ! kill_group "$PGID"; then
        evlog "note: the server (group $PGID) was still running 10 s after TERM: killed"
        NOTES+=("$ID: the server was still running 10 s after SIGTERM, once the load had ended; it was killed.")
    fi
    for (( i = 0; i < 100; i++ )); do alive "$m" || break; sleep 0.1; done
    alive "$m" && kill -KILL "$m" 2>/dev/null
    wait "$MASTER0" 2>/dev/null || true
}

# ---------------------------------------------------------------- events
# Each event function runs while the load does (from T0), then returns; failures go to
# note_fail. An event that takes no visible effect fails the run: it proved nothing.
last_tick() { echo $(( DURATION - 2 )); }

ev_steady() {
    local m before after
    m="$(master)"; before="$(workers_of "$m" "$CLASS")"
    sleep_until "$(last_tick)"
    after="$(workers_of "$m" "$CLASS")"
    alive "$m" || { note_fail "the master $m died during a steady run"; return; }
    [[ "$before" == "$after" ]] || evlog "note: the workers changed during a steady run: [$(join "$before")] -> [$(join "$after")]"
}

ev_hup() {
    local t m before after changed
    for (( t = 1; t <= $(last_tick); t++ )); do
        sleep_until "$t"
        m="$(master)"
        alive "$m" || { note_fail "the master $m is gone before HUP #$t"; return; }
        before="$(workers_of "$m" "$CLASS")"
        kill -HUP "$m" 2>/dev/null || { note_fail "kill -HUP $m failed"; return; }
        evlog "HUP #$t -> $m (workers [$(join "$before")])"
        sleep_until "$t.9"
        alive "$m" || { note_fail "the master $m exited after HUP #$t"; return; }
        after="$(workers_of "$m" "$CLASS")"
        changed="$(comm -13 <(echo "$before") <(echo "$after") | grep -c . || true)"
        evlog "  after HUP #$t: workers [$(join "$after")] ($changed new)"
        (( changed > 0 )) || note_fail "HUP #$t took no visible effect: no new worker within 0.9 s ([$(join "$before")] -> [$(join "$after")])"
    done
}

ev_ttin_ttou() {
    local t m n0 n1 sig before after changed ttin=0 ttou=0 want t_last
    m="$(master)"
    n0="$(count_lines "$(workers_of "$m" "$CLASS")")"
    for (( t = 1; t <= $(last_tick); t++ )); do
        sleep_until "$t"
        alive "$m" || { note_fail "the master $m is gone before signal #$t"; return; }
        if (( t % 2 )); then sig=TTIN; else sig=TTOU; fi
        before="$(workers_of "$m" "$CLASS")"
        kill -"$sig" "$m" 2>/dev/null || { note_fail "kill -$sig $m failed"; return; }
        evlog "$sig #$t -> $m ($(count_lines "$before") workers: [$(join "$before")])"
        if [[ "$sig" == TTIN ]]; then
            ttin=$(( ttin + 1 ))
            # Before the next signal there must be at least n0 + TTINs - TTOUs workers: a new
            # one, or one retiring after a TTOU that the TTIN kept (a server may do either).
            want=$(( n0 + ttin - ttou ))
            while :; do
                after="$(workers_of "$m" "$CLASS")"
                n1="$(count_lines "$after")"
                (( n1 >= want )) && break
                (( $(since_us) < t * 1000000 + 900000 )) || break
                sleep 0.05
            done
            changed="$(comm -13 <(echo "$before") <(echo "$after") | grep -c . || true)"
            evlog "  after TTIN #$t: [$(join "$after")] ($changed new; at least $want wanted)"
            (( n1 >= want )) || note_fail "TTIN #$t: $n1 workers 0.9 s after it, expected at least $want ([$(join "$before")] -> [$(join "$after")])"
        else
            ttou=$(( ttou + 1 ))   # a retiring worker drains first: counted at the end
        fi
    done
    # As many workers as at the start plus TTINs minus TTOUs, once the retiring ones are gone.
    want=$(( n0 + ttin - ttou ))
    t_last="$(elapsed)"
    while :; do
        n1="$(count_lines "$(workers_of "$m" "$CLASS")")"
        (( n1 == want )) && break
        (( $(since_us) < ($(last_tick) + 8) * 1000000 )) || break
        sleep 0.1
    done
    alive "$m" || { note_fail "the master $m exited during the TTIN/TTOU run"; return; }
    evlog "after $ttin TTIN and $ttou TTOU: $n1 workers (expected $want; checked from $t_last s)"
    (( n1 == want )) || note_fail "after $ttin TTIN and $ttou TTOU from $n0 workers: $n1 workers 8 s after the last signal (expected $want)"
}

upgrade_to() {  # COPY(A|B) N: put the copy in place of the running binary, USR2, follow the pidfile
    local copy="$1" n="$2" old new i ino exe_ino
    old="$(master)"
    alive "$old" || { note_fail "the master $old is gone before USR2 #$n"; return 1; }
    cp "$TMP/ringcorn.$copy" "$RUN_DIR/ringcorn.next"
    mv -f "$RUN_DIR/ringcorn.next" "$RUN_DIR/ringcorn"   # a running binary cannot be overwritten, only replaced
    ino="$(stat -c %i "$RUN_DIR/ringcorn")"
    kill -USR2 "$old" 2>/dev/null || { note_fail "kill -USR2 $old failed"; return 1; }
    evlog "USR2 #$n -> $old (binary now copy $copy, inode $ino)"
    new=""
    for (( i = 0; i < 100; i++ )); do   # 5 s at most
        new="$(master)"
        [[ "$new" != "$old" ]] && alive "$new" && break
        new=""
        sleep 0.05
    done
    [[ -n "$new" ]] && LAST_MASTER="$new"
    [[ -n "$new" ]] || { note_fail "USR2 #$n: no new master pid in the pidfile within 5 s (it still says $(master); old master alive: $(alive "$old" && echo yes || echo no))"; return 1; }
    exe_ino="$(stat -L -c %i "/proc/$new/exe" 2>/dev/null || echo '?')"
    evlog "  USR2 #$n: new master $new (pidfile), running inode $exe_ino; pidfile.oldbin $( [[ -e "$PIDFILE.oldbin" ]] && echo present || echo absent)"
    [[ "$exe_ino" == "$ino" ]] || note_fail "USR2 #$n: the new master $new runs inode $exe_ino, not the replaced binary ($ino)"
    for (( i = 0; i < 200; i++ )); do   # 10 s at most
        alive "$old" || break
        sleep 0.05
    done
    if alive "$old"; then note_fail "USR2 #$n: the old master $old was still running 10 s after the new one ($new) was ready"; return 1; fi
    evlog "  USR2 #$n: old master $old exited; workers of $new: [$(join "$(workers_of "$new" "$CLASS")")]"
    return 0
}
ev_usr2() {
    sleep_until 1
    upgrade_to B 1 || return
    sleep_until "$(( DURATION / 2 ))"
    upgrade_to A 2 || return
    alive "$(master)" || note_fail "the master $(master) is gone after the upgrades"
}

ev_recycle() {
    local m before after changed
    m="$(master)"; before="$(workers_of "$m" "$CLASS")"
    sleep_until "$(last_tick)"
    alive "$m" || { note_fail "the master $m died during the recycle run"; return; }
    # Workers are replaced every few milliseconds here: a listing taken between a worker's
    # exit and its replacement's fork can come back empty; look again.
    for (( i = 0; i < 20; i++ )); do
        after="$(workers_of "$m" "$CLASS")"
        [[ -n "$after" ]] && break
        sleep 0.05
    done
    changed="$(comm -13 <(echo "$before") <(echo "$after") | grep -c . || true)"
    evlog "recycle: workers [$(join "$before")] -> [$(join "$after")] ($changed new)"
    (( changed > 0 )) || note_fail "no worker was replaced under --max-requests $MAX_REQUESTS"
}

KILLS=0
ev_kill_worker() {
    local t m ws victim n0 n1 i k=0
    for (( t = 1; t <= $(last_tick); t += 2 )); do
        sleep_until "$t"
        m="$(master)"
        alive "$m" || { note_fail "the master $m is gone before kill #$t"; return; }
        ws="$(workers_of "$m" process)"
        n0="$(count_lines "$ws")"
        (( n0 > 0 )) || { note_fail "no worker process (child of $m) to kill"; return; }
        victim="$(sed -n "$(( k % n0 + 1 ))p" <<< "$ws")"
        k=$(( k + 1 ))
        kill -KILL "$victim" 2>/dev/null || { note_fail "kill -KILL $victim failed"; continue; }
        KILLS=$(( KILLS + 1 ))
        evlog "KILL worker $victim of $m ([$(join "$ws")])"
        for (( i = 0; i < 36; i++ )); do   # 1.8 s at most: back to as many workers, without the victim
            ws="$(workers_of "$m" process)"
            n1="$(count_lines "$ws")"
            (( n1 == n0 )) && ! grep -qx "$victim" <<< "$ws" && break
            sleep 0.05
        done
        alive "$m" || { note_fail "the master $m exited after the SIGKILL of worker $victim"; return; }
        evlog "  after the kill: [$(join "$ws")]"
        if (( n1 != n0 )) || grep -qx "$victim" <<< "$ws"; then
            note_fail "worker $victim killed: not replaced within 1.8 s ([$(join "$ws")])"
        fi
    done
}

# ---------------------------------------------------------------- one run
# results.tsv: id server event workers class tool rc fails kills raw
RESULTS="$RAW/results.tsv"
WARNINGS="$RAW/warnings.tsv"   # run id, a line the server logged above info
: > "$WARNINGS"
printf 'id\tserver\tevent\tworkers\tclass\ttool\trc\tfails\tkills\tbusy\tdropped\traw\n' > "$RESULTS"
NOTES=()
WRK_CMD=(taskset -c "$CPU_LOAD" wrk -t1 "-c$CONNS" "-d${DURATION}s" --timeout 2s)
LOADGEN_CMD=(taskset -c "$CPU_LOAD" "$LOADGEN" --rate "$RATE" --connections "$CONNS" --max-in-flight 1
             --warmup 1 --duration "$(( DURATION - 1 ))" --timeout 2)
declare -A SERVER_CMDS=()

run_one() {  # SERVER(ringcorn|naive) EVENT WORKERS CLASS TOOL(wrk|loadgen)
    local server="$1" event="$2" w="$3" class="$4" tool="$5" lpid rc=0 raw m busy i
    ID="$server-$event-w$w-$class-$tool"
    CLASS="$class"
    RUN_DIR="$TMP/$ID"
    mkdir -p "$RUN_DIR"
    EVLOG="$RAW/$ID.events"
    : > "$EVLOG"
    RUN_FAIL=()
    KILLS=0
    T0="$(now_us)"
    raw="$ID.out"
    busy="$(busy_share 0.5)"   # other work on the machine just before the run
    for (( i = 0; i < RUN_QUIET_TRIES; i++ )); do is_busy "$busy" || break; busy="$(busy_share 0.5)"; done
    log "$ID$(is_busy "$busy" && echo " (machine busy before the run: $busy of all CPUs)")"
    if start_server "$server" "$w" "$class" "$event"; then
        SERVER_CMDS["$server $event $class"]="$(printf '%q ' "${SERVER_CMD[@]}" | sed "s|$TMP/[^/ ]*/|\$TMP/|g; s|$REPO/||g; s|--workers $w |--workers N |; s/ *$//")"
        T0="$(now_us)"
        if [[ "$tool" == wrk ]]; then
            timeout $(( DURATION + 20 )) "${WRK_CMD[@]}" "http://127.0.0.1:$PORT/" > "$RAW/$raw" 2> "$RAW/$ID.stderr" &
        else
            timeout $(( DURATION + 20 )) "${LOADGEN_CMD[@]}" --url "http://127.0.0.1:$PORT/" > "$RAW/$raw" 2> "$RAW/$ID.stderr" &
        fi
        lpid=$!
        BG_PIDS+=("$lpid")
        "ev_${event//-/_}" || true
        wait "$lpid" || rc=$?
        evlog "load ended (exit $rc)"
        (( rc == 0 )) || note_fail "$tool exited $rc: $(tail -n 2 "$RAW/$ID.stderr" | tr '\n' ' ' | cut -c1-200)"
        m="$(master)"
        if ! alive "$m"; then
            note_fail "the server (master $m) is not running after the load"
        elif ! check_hello; then
            note_fail "the server (master $m) does not answer GET / after the load"
        fi
        stop_server
    else
        rc=-1
        : > "$RAW/$raw"
    fi
    cp "$RUN_DIR/server.log" "$RAW/$ID.server.log" 2>/dev/null || true
    # Anything the server logged above info goes in the notes; the baseline's own count of
    # the queued connections it dropped goes in its row.
    local nlog dropped="" pat='( WARN | ERROR | CRITICAL |naive_reuseport\[)' expected='(dropped [0-9]+ queued|drain timeout)'
    { grep -E "$pat" "$RAW/$ID.server.log" 2>/dev/null || true; } | { grep -vE "$expected" || true; } \
        | while IFS= read -r line; do printf '%s\t%s\n' "$ID" "$line"; done >> "$WARNINGS"
    if [[ "$server" == naive && -f "$RAW/$ID.server.log" ]]; then
        dropped="$( (grep -oE 'dropped [0-9]+ queued' "$RAW/$ID.server.log" || true) | awk '{ s += $2 } END { print s + 0 }')"
        nlog="$(grep -c 'drain timeout' "$RAW/$ID.server.log" || true)"
        (( ${nlog:-0} == 0 )) || NOTES+=("$ID: $nlog naive_reuseport.py worker(s) reached the drain timeout with connections open (\`target/lifecycle/raw/$ID.server.log\`).")
    fi
    local fails
    fails="$(printf '%s; ' "${RUN_FAIL[@]+"${RUN_FAIL[@]}"}" | tr '\t' ' ')"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ID" "$server" "$event" "$w" "$class" "$tool" "$rc" \
        "${fails%; }" "$KILLS" "$busy" "$dropped" "$raw" >> "$RESULTS"
    if [[ "$tool" == wrk ]]; then
        log "  $(grep -E 'requests in|Socket errors|Non-2xx' "$RAW/$raw" 2>/dev/null | sed 's/^ *//' | tr '\n' ' ' || true)"
    else
        log "  $(head -c 400 "$RAW/$raw")"
    fi
}

# ---------------------------------------------------------------- the runs
PLAN=()
for w in "${WORKERS[@]}"; do
    for class in "${CLASS_LIST[@]}"; do
        for event in "${EVENT_LIST[@]}"; do
            [[ "$event" == kill-worker && "$class" != process ]] && continue
            PLAN+=("ringcorn $event $w $class")
        done
    done
    if (( BASELINE )); then
        in_list steady "$EVENTS" && PLAN+=("naive steady $w process")
        PLAN+=("naive hup $w process")
    fi
done
log "${#PLAN[@]} configurations x (wrk, loadgen), ${DURATION} s each: about $(( ${#PLAN[@]} * 2 * (DURATION + 1) )) s"
log "server on CPU $CPU_SERVER (every worker: --cpus $CPU_SERVER), load on CPU $CPU_LOAD"
for p in "${PLAN[@]}"; do
    read -r server event w class <<< "$p"
    for tool in wrk loadgen; do run_one "$server" "$event" "$w" "$class" "$tool"; done
done
END_TIME=$(date +%s)

# ---------------------------------------------------------------- report
META="$RAW/meta.tsv"
{
    machine_meta "$START_TIME"
    printf 'migrate_req\t%s\n' "$(sysctl -n net.ipv4.tcp_migrate_req 2>/dev/null || echo '?')"
    printf 'wrk\t%s\n' "$( { wrk -v 2>&1 || true; } | head -n 1 | sed 's/ Copyright.*//')"
    printf 'python\t%s\n' "$(python3 --version 2>&1)"
    printf 'ringcorn\t%s\n' "$RINGCORN_VERSION"
    printf 'features\t%s\n' "${FEATURES[*]}"
    printf 'quick\t%s\n' "$QUICK"
    printf 'busy_before\t%s\n' "$BUSY"
    printf 'quiet_limit\t%s\n' "$QUIET_LIMIT"
    printf 'loadavg_end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
    printf 'duration\t%s\n' "$DURATION"
    printf 'rate\t%s\n' "$RATE"
    printf 'connections\t%s\n' "$CONNS"
    printf 'cpu_server\t%s\n' "$CPU_SERVER"
    printf 'cpu_load\t%s\n' "$CPU_LOAD"
    printf 'max_requests\t%s\n' "$MAX_REQUESTS"
    printf 'elapsed\t%s\n' "$(( END_TIME - START_TIME ))"
    printf 'build_s\t%s\n' "$(( BUILD_DONE - START_TIME ))"
    printf 'wrk_cmd\t%s http://127.0.0.1:PORT/\n' "${WRK_CMD[*]}"
    printf 'loadgen_cmd\t%s --url http://127.0.0.1:PORT/\n' "${LOADGEN_CMD[*]/#$REPO\//}"
    for k in "${!SERVER_CMDS[@]}"; do printf 'server_cmd\t%s\t%s\n' "$k" "${SERVER_CMDS[$k]}"; done
    for n in "${NOTES[@]+"${NOTES[@]}"}"; do printf 'note\t%s\n' "$n"; done
} > "$META"

mkdir -p "$(dirname "$OUT")"
rc=0
python3 - "$RAW" "$OUT" <<'PYEOF' || rc=$?
import json, re, sys, traceback
from pathlib import Path

def crashed(*exc):  # a bug here: exit 3, not 1 (1 means: some ringcorn runs failed)
    traceback.print_exception(*exc)
    sys.stderr.flush()
    import os
    os._exit(3)
sys.excepthook = crashed

raw, out = Path(sys.argv[1]), Path(sys.argv[2])
meta, notes, server_cmds = {}, [], {}
for line in (raw / "meta.tsv").read_text().splitlines():
    k, _, v = line.partition("\t")
    if k == "note":
        notes.append(v)
    elif k == "server_cmd":
        key, _, cmd = v.partition("\t")
        server_cmds[key] = cmd.strip()
    else:
        meta[k] = v
lines = (raw / "results.tsv").read_text().splitlines()
hdr = lines[0].split("\t")
rows = [dict(zip(hdr, l.split("\t"))) for l in lines[1:]]

def wrk_figures(text):
    f = {}
    if m := re.search(r"(\d+) requests in", text):
        f["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    c, r, w, t = map(int, m.groups()) if m else (0, 0, 0, 0)
    f.update(connect=c, resets=None, read=r, write=w, timeouts=t, reconnects=None, p99=None)
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    f["non2xx"] = int(m.group(1)) if m else 0
    f["errors"] = c + r + w + t + f["non2xx"]
    return f

def loadgen_figures(text):
    for line in text.splitlines():
        if line.startswith("{"):
            j = json.loads(line)
            return dict(requests=j["sent"], connect=j["connect_errors"], resets=j["resets"],
                        read=j["read_errors"], write=j["write_errors"], timeouts=j["timeouts"],
                        non2xx=j["non_2xx"], reconnects=j["reconnects"], p99=j["p99_us"],
                        errors=j["errors"], completed=j["completed"])
    return {}

for r in rows:
    path = raw / r["raw"]
    text = path.read_text(errors="replace") if path.exists() else ""
    r["f"] = (wrk_figures(text) if r["tool"] == "wrk" else loadgen_figures(text)) if text.strip() else {}

steady = {(r["server"], r["workers"], r["class"]): r["f"].get("p99")
          for r in rows if r["event"] == "steady" and r["tool"] == "loadgen" and r["f"]}

failed_ringcorn = 0
for r in rows:
    f, fails = r["f"], r["fails"]
    problems = [fails] if fails else []
    if not f and not fails:
        problems.append("no figures from the load generator")
    lost = f.get("errors", 0) if f else 0
    if r["server"] == "naive":
        d = r.get("dropped") or "0"
        r["verdict"] = (f"baseline: lost {lost}; its workers dropped {d} queued connection(s)"
                        + ("; " + "; ".join(problems) if problems else ""))
        continue
    if r["event"] == "kill-worker" and f and not problems:
        kills, conns = int(r["kills"] or 0), int(meta["connections"])
        inflight = (f["resets"] or 0) + f["read"] + f["write"]
        others = f["connect"] + f["timeouts"] + f["non2xx"]
        if others == 0 and inflight <= kills * conns:
            r["verdict"] = (f"ok: {inflight} lost on the connections of the killed worker"
                            f"{'s' if kills != 1 else ''} ({kills} kill{'s' if kills != 1 else ''})"
                            if inflight else "ok")
        else:
            problems.append(f"{lost} requests failed ({others} connect/timeout/non-2xx; "
                            f"{inflight} resets/read/write, at most {kills * conns} allowed for {kills} kills)")
    elif lost:
        problems.append(f"{lost} requests failed")
    if problems:
        r["verdict"] = "**FAIL**: " + "; ".join(problems)
        failed_ringcorn += 1
    elif "verdict" not in r:
        r["verdict"] = "ok"

def cell(v, none="–"):
    return none if v is None else str(v)

def us(v):
    if v is None:
        return "–"
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.0f} µs"

o = []
w = o.append
q = " (quick mode: short runs, indicative only)" if meta["quick"] == "1" else ""
w("# Lifecycle under load")
w("")
w("Generated by `scripts/lifecycle.sh" + (" --quick" if meta["quick"] == "1" else "") + "`; do not edit by hand." + q)
w("")
w(f"- **Date**: {meta['date']}; **commit** {meta['commit']}; ringcorn binary: {meta['ringcorn']} "
  f"({meta['features']}).")
w(f"- **Machine**: {meta['cpu']}, {meta['cores']} CPUs, {meta['memory']}; Linux {meta['kernel']} "
  f"({meta['os']}); {meta['wrk']}; {meta['python']}; `net.ipv4.tcp_migrate_req` = {meta['migrate_req']}. "
  f"Busy before the runs: {float(meta['busy_before']):.0%} of all CPUs; load average at the end: {meta['loadavg_end']}.")
w(f"- **Pinning**: every server on CPU {meta['cpu_server']} (`taskset -c {meta['cpu_server']}`, and "
  f"`--cpus {meta['cpu_server']}`: all workers share that CPU), the load generators on CPU "
  f"{meta['cpu_load']}; wrk and loadgen run one after the other, each against a fresh server with the "
  "same event.")
w(f"- **Load**: {meta['duration']} s per run. wrk: `{meta['wrk_cmd']}` (closed loop, as fast as the "
  f"server answers). loadgen: `{meta['loadgen_cmd']}` (open loop, {meta['rate']} requests/s over "
  f"{meta['connections']} keep-alive connections, at most one request in flight per connection, as "
  "browsers and most HTTP/1.1 clients do; the first second is warm-up).")
w("- **Events** (signals start 1 s into the load, then every second, and stop 2 s before its end): "
  "`steady` none; `hup` SIGHUP every second; `ttin-ttou` SIGTTIN and SIGTTOU alternating every second, "
  "TTIN first; `usr2` the server runs from a copy of the binary in a temp dir, that file is replaced "
  "(`mv`) by a second copy of the same build, SIGUSR2, the new master is followed through the pidfile "
  "until the old one has exited, then the same back to the first copy; `recycle` "
  f"`--max-requests {meta['max_requests']}` for the whole run; `kill-worker` SIGKILL of one worker "
  "process every 2 s (process class only). Each event is checked to have taken effect (new worker "
  "pids or thread ids after HUP, one worker more or fewer after TTIN/TTOU, a new master running the "
  "replaced file after USR2, the killed worker replaced); the event log of every run is in "
  "`target/lifecycle/raw/*.events`.")
w("- **Server commands**:")
for k in sorted(server_cmds):
    w(f"  - {k}: `{server_cmds[k]}`")
w("")
w("## Results")
w("")
w("Errors are requests: *connect* could not get a connection (wrk: failed connects), *resets* "
  "ECONNRESET/EPIPE (loadgen only; wrk counts them as read or write errors), *read* EOF or a read "
  "error with a request written and unanswered, *write* other write errors, *timeouts* no answer "
  "within 2 s, *non-2xx* another status. *Reconnects* (loadgen) are new connections after a "
  "`Connection: close` answer or a server close with nothing outstanding: not errors. p99 is "
  "loadgen's, from each request's scheduled time, over the whole measured window (which contains "
  "every event); *ratio* is it over the steady p99 of the same server, workers and class (one run "
  "each: on a machine shared with other work, see †, a ratio far from 1 may be noise). *Requests*: "
  "wrk's answered requests, loadgen's requests sent in the measured window.")
w("")
w("| server | event | workers | class | tool | requests | connect | resets | read | write | timeouts | non-2xx | reconnects | p99 | steady p99 | ratio | verdict |")
w("|---|---|--:|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
for r in rows:
    f = r["f"]
    sp = steady.get((r["server"], r["workers"], r["class"]))
    p99 = f.get("p99") if f else None
    ratio = f"{p99 / sp:.2f}" if (p99 is not None and sp) else "–"
    server = "ringcorn" if r["server"] == "ringcorn" else "naive_reuseport.py"
    cls = r["class"] if r["server"] == "ringcorn" else "process"
    if f:
        figs = [cell(f.get("requests")), cell(f["connect"]), cell(f["resets"]), cell(f["read"]),
                cell(f["write"]), cell(f["timeouts"]), cell(f["non2xx"]), cell(f["reconnects"]),
                us(p99), us(sp) if r["tool"] == "loadgen" else "–", ratio if r["tool"] == "loadgen" else "–"]
    else:
        figs = ["–"] * 11
    busy = float(r.get("busy") or 0) > float(meta["quiet_limit"])
    w(f"| {server} | {r['event']} | {r['workers']} | {cls} | {r['tool']}{' †' if busy else ''} | "
      + " | ".join(figs) + f" | {r['verdict']} |")
busy_rows = [r for r in rows if float(r.get("busy") or 0) > float(meta["quiet_limit"])]
if busy_rows:
    w("")
    w(f"† Other work used the machine just before this run (over {float(meta['quiet_limit']):.0%} of all "
      "CPUs in the 0.5 s before it: " + ", ".join(f"{r['id']} {float(r['busy']):.0%}" for r in busy_rows)
      + "); its latencies are likely skewed, its error counts are not.")
w("")
total = sum(1 for r in rows if r["server"] == "ringcorn")
w(f"**{total - failed_ringcorn} of {total} ringcorn runs passed**" +
  (f"; {failed_ringcorn} failed (see the verdicts and `target/lifecycle/raw/`)." if failed_ringcorn else "."))
w("")
w("A ringcorn run passes when the load generator counted no failed request, every event took effect "
  "and the server still answered afterwards. `kill-worker` is the one exception: the requests on "
  "the killed worker's connections (in flight at the SIGKILL, or written before the kernel has "
  "closed the dead worker's sockets) cannot be answered by anyone, so resets/read/write errors up to "
  "one per connection per kill are allowed there, but no connect error, timeout or non-2xx (the "
  "listening socket, owned by the master, and its accept queue must survive, and the replacement "
  "must take over).")
w("")
w("The baseline, `scripts/naive_reuseport.py`, gives each worker process its own `SO_REUSEPORT` "
  "socket and on SIGHUP replaces the workers one by one, each old worker closing its socket, which "
  "resets the connections queued in its accept queue; it drains its established connections as "
  "well as ringcorn does (`Connection: close` on the next answer), so what it loses is what the "
  "accept queues held (each worker logs how many connections its accept queue held when it "
  "closed it: *dropped* in the verdict). Its losses come from the connections made during its "
  "reloads: the reconnects after each drained worker's `Connection: close`; wrk reconnects at once "
  "and sends at once, loadgen (one request every connections/rate seconds per connection) less so.")
groups = {}
for line in (raw / "warnings.tsv").read_text(errors="replace").splitlines():
    rid, _, text = line.partition("\t")
    text = re.sub(r"^\S+Z\s+", "", text.strip())          # the timestamp
    key = re.sub(r"\d+(\.\d+)?", "N", text)               # pids, counts, durations
    g = groups.setdefault(key, {"runs": [], "n": 0, "example": text})
    g["n"] += 1
    if rid not in g["runs"]:
        g["runs"].append(rid)
for g in groups.values():
    ex = g["example"].replace("`", "'")[:200]
    runs = g["runs"]
    where = ", ".join(runs) if len(runs) <= 3 else f"{len(runs)} runs ({', '.join(runs[:2])}, ...)"
    notes.append(f"Logged {g['n']} time(s), in {where}: `{ex}` (server logs: `target/lifecycle/raw/*.server.log`).")
if notes:
    w("")
    w("## Notes")
    w("")
    for n in notes:
        w(f"- {n}")
w("")
w(f"Run in {meta['elapsed']} s (builds {meta['build_s']} s).")
out.write_text("\n".join(o) + "\n")
print("\n".join(o))
sys.exit(1 if failed_ringcorn else 0)
PYEOF
(( rc <= 1 )) || die "writing the report failed (raw outputs in $RAW)"
log "report written to $OUT (raw outputs in $RAW)"
(( rc == 0 )) || log "some ringcorn runs failed (see the verdicts)"
exit "$rc"
