#!/usr/bin/env bash
# Check the operator files in contrib/ without installing them: no systemd as PID 1, no
# ringcorn binary, no `ringcorn` user needed. Takes about a second (plus the apt-get of
# --install). Exit status 0 if every check passes, 1 otherwise.
#
#   1. systemd-analyze verify on copies of contrib/ringcorn.service and ringcorn.socket, in
#      a temp dir, ExecStart's binary replaced by a dummy executable there; then again with
#      the drop-in contrib/ringcorn.service.d/per-core-sockets.conf beside them (verify
#      reads a unit's drop-in dir next to it). verify exits 0 even for an unknown key or
#      a value it cannot parse ("Unknown key ..., ignoring"), so any line it prints fails
#      the check. Lines taken as harmless: none. On Debian 12 (systemd 252) without
#      systemd as PID 1 it prints nothing for these units, as root, as nobody and with an
#      empty environment; the one line it printed there for the units as shipped was
#      "Command /usr/local/bin/ringcorn is not executable", which the dummy binary avoids.
#   2. That the unit's SystemCallFilter= allows io_uring_setup, io_uring_enter and
#      io_uring_register: each must be in its group (@system-service, nested groups
#      expanded; on systemd 252 they are, through @aio) or named on the line and known to
#      this systemd. Without them ringcorn cannot start under the unit.
#   3. logrotate -d -f on a copy of contrib/logrotate whose log path is rewritten into the
#      temp dir (the owner in `create` too, when there is no `ringcorn` user here): it must
#      print no "error:" line, create the new log 0640 and reach the postrotate script,
#      whose shell syntax is checked with sh -n (-d runs no script and touches no file).
#
# Usage: scripts/check_contrib.sh [--install]
#   --install   apt-get install systemd and logrotate first where missing (as root)
set -euo pipefail

die() { echo "check_contrib.sh: error: $*" >&2; exit 1; }
log() { echo "check_contrib.sh: $*" >&2; }

INSTALL=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --install) INSTALL=1; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1 (usage: scripts/check_contrib.sh [--install])" ;;
    esac
done

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
CONTRIB="$REPO/contrib"

missing_packages() {
    local pkgs=()
    command -v systemd-analyze >/dev/null 2>&1 || pkgs+=(systemd)
    command -v logrotate >/dev/null 2>&1 || [[ -x /usr/sbin/logrotate ]] || pkgs+=(logrotate)
    echo "${pkgs[*]:-}"
}
# shellcheck source=scripts/tools.sh
source "$SCRIPT_DIR/tools.sh"
install_missing
LOGROTATE="$(command -v logrotate || echo /usr/sbin/logrotate)"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# logrotate refuses a log whose directory is group- or world-writable, and systemd a unit
# file that is world-writable: keep the copies as a real install would have them.
chmod 0755 "$TMP"
umask 022
FAILED=0
fail() { echo "FAIL: $*"; FAILED=1; }
pass() { echo "ok:   $*"; }

# ---------------------------------------------------------------- 1. systemd-analyze verify
sd_version="$(systemd-analyze --version)"
sd_version="${sd_version%%$'\n'*}"
UNITS="$TMP/units"
mkdir "$UNITS"
printf '#!/bin/sh\nexit 0\n' > "$UNITS/ringcorn"
chmod 0755 "$UNITS/ringcorn"
cp "$CONTRIB/ringcorn.service" "$CONTRIB/ringcorn.socket" "$UNITS/"
DROPIN="$CONTRIB/ringcorn.service.d/per-core-sockets.conf"
[[ -f "$DROPIN" ]] || die "missing $DROPIN"
# The binary of every ExecStart (the prefixes systemd allows: ! + - @ :), in the unit and
# in the drop-in.
rewrite_exec() { sed -E -i "s#^(ExecStart=[-+!@:]*)/usr/local/bin/ringcorn( |\$)#\\1$UNITS/ringcorn\\2#" "$1"; }
rewrite_exec "$UNITS/ringcorn.service"
grep -q "^ExecStart=$UNITS/ringcorn " "$UNITS/ringcorn.service" \
    || die "ringcorn.service: no ExecStart=/usr/local/bin/ringcorn line to point at the dummy binary"

verify() { # LABEL: verify the units in $UNITS, any output is a failure
    local out
    out="$(cd "$UNITS" && systemd-analyze verify "$UNITS/ringcorn.service" "$UNITS/ringcorn.socket" 2>&1)" \
        || { fail "systemd-analyze verify ($1) exited $?:"; printf '%s\n' "$out" | sed 's/^/      /'; return; }
    if [[ -n "$out" ]]; then
        fail "systemd-analyze verify ($1) printed:"
        printf '%s\n' "$out" | sed 's/^/      /'
    else
        pass "systemd-analyze verify ($1): nothing printed ($sd_version)"
    fi
}
verify "ringcorn.service, ringcorn.socket"
mkdir "$UNITS/ringcorn.service.d"
cp "$DROPIN" "$UNITS/ringcorn.service.d/"
rewrite_exec "$UNITS/ringcorn.service.d/per-core-sockets.conf"
grep -q "^ExecStart=!$UNITS/ringcorn " "$UNITS/ringcorn.service.d/per-core-sockets.conf" \
    || die "per-core-sockets.conf: no ExecStart=!/usr/local/bin/ringcorn line to point at the dummy binary"
verify "with ringcorn.service.d/per-core-sockets.conf"

# ---------------------------------------------------------------- 2. io_uring in the filter
expand_group() { # GROUP: every syscall in it, nested groups expanded
    local x
    systemd-analyze syscall-filter "$1" | tail -n +2 | sed -e 's/^ *//' -e '/^#/d' -e '/^$/d' |
        while read -r x; do
            if [[ "$x" == @* ]]; then expand_group "$x"; else echo "$x"; fi
        done
}
group="$(sed -n 's/^SystemCallFilter=\(@[a-z-]*\).*/\1/p' "$CONTRIB/ringcorn.service")"
[[ -n "$group" ]] || die "ringcorn.service: no SystemCallFilter=@GROUP line"
allowed="$(expand_group "$group" | sort -u)"
known="$(systemd-analyze syscall-filter 2>/dev/null)"   # every group: a name in none is unknown here
for call in io_uring_setup io_uring_enter io_uring_register; do
    if grep -qx "$call" <<< "$allowed"; then
        pass "$group allows $call"
    elif grep -Eq "^SystemCallFilter=.*[[:space:]]$call([[:space:]]|\$)" "$CONTRIB/ringcorn.service" \
            && grep -qx "[[:space:]]*$call" <<< "$known"; then
        pass "$group lacks $call; the unit names it (a syscall this systemd knows)"
    else
        fail "$call: neither in $group nor named in SystemCallFilter= (io_uring would be refused)"
    fi
done

# ---------------------------------------------------------------- 3. logrotate
LOGS="$TMP/log"
mkdir "$LOGS"
echo "2026-01-01T00:00:00Z  INFO Starting ringcorn" > "$LOGS/error.log"
CONF="$TMP/logrotate.conf"
if getent passwd ringcorn >/dev/null; then owner=ringcorn; else owner="$(id -un)"; fi
if getent group adm >/dev/null; then group=adm; else group="$(id -gn)"; fi
sed -e "s#^/var/log/ringcorn/#$LOGS/#" -e "s#create 0640 ringcorn adm#create 0640 $owner $group#" \
    "$CONTRIB/logrotate" > "$CONF"
grep -q "^$LOGS/\*\.log {" "$CONF" || die "contrib/logrotate: no '/var/log/ringcorn/*.log {' stanza"
grep -q "create 0640 $owner $group" "$CONF" || die "contrib/logrotate: no 'create 0640 ringcorn adm' line"
chmod 0644 "$CONF"
out="$("$LOGROTATE" -d -f -s "$TMP/logrotate.state" "$CONF" 2>&1)" && rc=0 || rc=$?
problems="$(grep -E '^error:' <<< "$out" || true)"
if (( rc != 0 )) || [[ -n "$problems" ]]; then
    fail "logrotate -d exited $rc:"
    printf '%s\n' "${problems:-$out}" | sed 's/^/      /'
else
    version="$("$LOGROTATE" --version 2>&1)"
    pass "logrotate -d: no error (${version%%$'\n'*})"
fi
for want in "renaming $LOGS/error.log to $LOGS/error.log.1" \
            "creating new $LOGS/error.log mode = 0640" \
            "running postrotate script"; do
    if grep -qF "$want" <<< "$out"; then pass "logrotate -d: $want"; else fail "logrotate -d did not say: $want"; fi
done
script="$(sed -n '/^[[:space:]]*postrotate$/,/^[[:space:]]*endscript$/p' "$CONTRIB/logrotate" | sed '1d;$d')"
[[ -n "$script" ]] || fail "contrib/logrotate: empty postrotate script"
if err="$(sh -n -c "$script" 2>&1)"; then
    pass "postrotate script: sh -n"
else
    fail "postrotate script: sh -n: $err"
fi

if (( FAILED )); then
    log "contrib/ checks FAILED"
    exit 1
fi
log "contrib/ checks passed"
