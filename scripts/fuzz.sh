#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time (FUZZ_SECONDS each, default 60).
# Not part of CI: run it by hand after changing a parser or validator. A crash leaves its
# input in fuzz/artifacts/<target>/; turn it into a regression test in the crate's own
# tests, then fix it. Needs cargo-fuzz (installed here if missing). The toolchain is
# stable; RUSTC_BOOTSTRAP lets cargo-fuzz pass libFuzzer's nightly-only flags.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=(${FUZZ_TARGETS:-cron duration job_json worker_json})
for t in "${targets[@]}"; do
    echo "== fuzzing $t for ${seconds}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time="$seconds" -max_len=4096
done
echo "no crashes in ${#targets[@]} targets"
