# shellcheck shell=bash
# Sourced by bench.sh and lifecycle.sh.

# target_dir MANIFEST: the directory cargo builds that crate into (CARGO_TARGET_DIR or a
# config's build.target-dir when set, else its target/).
target_dir() {
    cargo metadata --format-version 1 --no-deps --manifest-path "$1" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# install_missing: install what `missing_packages` (defined by the caller,
# printing the Debian packages still missing) names, with --install (INSTALL=1, as root), or
# stop and say which apt-get command would. Uses the caller's `die` and `log`.
install_missing() {
    local missing
    missing="$(missing_packages)"
    [[ -n "$missing" ]] || return 0
    if (( ! INSTALL )); then
        die "missing tools; install them with: apt-get update && apt-get install -y $missing (or rerun with --install as root)"
    fi
    (( EUID == 0 )) || die "--install needs root; run: sudo apt-get update && sudo apt-get install -y $missing"
    log "installing: $missing"
    apt-get update >&2 || die "apt-get update failed"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y $missing >&2 || die "apt-get install failed"
    missing="$(missing_packages)"
    [[ -z "$missing" ]] || die "still missing after the install: $missing"
}

# machine_meta START_EPOCH: the report's date, commit and machine facts as `key<TAB>value`
# lines. The reports these scripts write (BENCHMARKS.md, benchmarks/) do not count as changes
# to what was measured.
machine_meta() {
    local commit
    commit="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "none (no commit yet)")"
    [[ -n "$(git -C "$REPO" status --porcelain --untracked-files=no -- . ':!BENCHMARKS.md' ':!benchmarks' 2>/dev/null)" ]] \
        && commit="$commit (with uncommitted changes)"
    printf 'date\t%s\n' "$(date -u -d "@$1" '+%Y-%m-%d %H:%M:%S UTC')"
    printf 'commit\t%s\n' "$commit"
    printf 'cpu\t%s\n' "$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    printf 'cores\t%s\n' "$(nproc --all)"
    printf 'memory\t%s\n' "$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    printf 'kernel\t%s\n' "$(uname -r)"
    # shellcheck disable=SC1091
    printf 'os\t%s\n' "$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}")"
}
