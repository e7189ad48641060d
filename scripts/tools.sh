# shellcheck shell=bash
# Sourced by bench.sh and lifecycle.sh: install what `missing_packages` (defined by the caller,
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
