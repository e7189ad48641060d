#!/usr/bin/env bash
# Fuzz one target, starting from the committed corpus, then minimise what was found back into it.
#
#   fuzz/run.sh [TARGET] [SECONDS]      # default: connection, 600 s; run from anywhere
#   fuzz/run.sh connection 0            # no fuzzing: only minimise corpus/ into corpus-min/
#
# Directories (under fuzz/), per target:
#   seeds/TARGET       hand-written seeds (python3 fuzz/make_seeds.py), committed
#   corpus-min/TARGET  the minimised corpus (`cargo fuzz cmin`), committed: where a run starts
#   corpus/TARGET      what libFuzzer writes while it runs; git-ignored, created here
#   artifacts/TARGET   findings (crashes, leaks, timeouts); git-ignored
#
# After the run, corpus/TARGET and corpus-min/TARGET are merged and minimised (`cargo fuzz
# cmin`) into corpus-min/TARGET: commit that directory, so the next run, on any clone, starts
# where this one ended. A finding stops the run (exit status non-zero) before the merge.
#
# cargo-fuzz needs nightly compiler flags: `cargo +nightly fuzz` when a nightly toolchain is
# installed, else the stable compiler with RUSTC_BOOTSTRAP=1. Extra libFuzzer flags can be
# passed in FUZZ_FLAGS (e.g. FUZZ_FLAGS="-jobs=4 -workers=4").
set -euo pipefail

target=${1:-connection}
seconds=${2:-600}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

if ! cargo fuzz --help >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 1
fi
toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi
fuzz() { cargo "${toolchain[@]}" fuzz "$@"; }

mkdir -p "corpus/$target" "corpus-min/$target"
inputs=("corpus-min/$target")
[ -d "seeds/$target" ] && inputs+=("seeds/$target")

if [ "$seconds" -gt 0 ]; then
    # The first directory is where libFuzzer adds new inputs; the others are only read.
    # shellcheck disable=SC2086
    fuzz run "$target" "corpus/$target" "${inputs[@]}" -- \
        -max_total_time="$seconds" -max_len=16384 -rss_limit_mb=2048 ${FUZZ_FLAGS:-}
fi

# Merge the run's corpus and the seeds into the committed one, then minimise it in place.
for dir in "corpus/$target" "seeds/$target"; do
    [ -d "$dir" ] && find "$dir" -maxdepth 1 -type f -exec cp -n -t "corpus-min/$target" {} +
done
before=$(find "corpus-min/$target" -type f | wc -l)
fuzz cmin "$target" "corpus-min/$target" -- -max_len=16384 -rss_limit_mb=2048
after=$(find "corpus-min/$target" -type f | wc -l)
echo "corpus-min/$target: $after inputs (minimised from $before); commit it"
