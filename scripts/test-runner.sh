#!/usr/bin/env bash
# cargo's runner for this repository (.cargo/config.toml). A test binary (target/*/deps/,
# not a criterion bench) runs twice: with RINGCORN_BACKEND=auto (io_uring where the machine
# has it) and with RINGCORN_BACKEND=epoll, so that `cargo test` runs the whole suite on both
# backends; it fails if either run fails. With RINGCORN_BACKEND already set it runs once, on
# that backend. Anything else (the server under `cargo run`, examples) runs as it is.
set -uo pipefail
bin="$1"
case "$bin" in
    */target/*/deps/*) ;;
    *) exec "$@" ;;
esac
for arg in "$@"; do
    [[ "$arg" == --bench ]] && exec "$@"
done
[[ -n "${RINGCORN_BACKEND:-}" ]] && exec "$@"
name="$(basename "$bin")"
echo "test-runner: ${name%-*} with --backend auto" >&2
RINGCORN_BACKEND=auto "$@" || exit
echo "test-runner: ${name%-*} with --backend epoll" >&2
RINGCORN_BACKEND=epoll "$@"
