#!/usr/bin/env bash
# Fuzzes the GTP-U and PFCP parsers (nfv/fuzz, cargo-fuzz + libFuzzer) for SECONDS per target.
#
#   scripts/fuzz.sh 60
#
# Installs cargo-fuzz when missing. libFuzzer needs nightly-only flags; RUSTC_BOOTSTRAP=1 lets
# the stable toolchain accept them. Each target starts from nfv/fuzz/seeds/<target> (messages
# built by scapy and pycrate) and keeps what it learns in target/fuzz-corpus/<target>; a crash
# is written to nfv/fuzz/artifacts/<target>. The script fails when cargo-fuzz cannot be
# installed, a target does not build, a fuzzer exits with an error, or a crash was found. The
# targets are built once and then run side by side (one core each).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:?usage: scripts/fuzz.sh SECONDS}
TARGETS=(pfcp_message gtpu_packet)
FUZZ_TARGET=${CARGO_TARGET_DIR:-target}/fuzz

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
echo "==> building the fuzz targets" >&2
cargo fuzz build --fuzz-dir nfv/fuzz --target-dir "$FUZZ_TARGET"

pids=()
for target in "${TARGETS[@]}"; do
  echo "==> fuzzing $target for ${SECS}s" >&2
  mkdir -p "target/fuzz-corpus/$target"
  cargo fuzz run --fuzz-dir nfv/fuzz --target-dir "$FUZZ_TARGET" "$target" \
    "target/fuzz-corpus/$target" "nfv/fuzz/seeds/$target" \
    -- -max_total_time="$SECS" -rss_limit_mb=2048 -print_final_stats=1 \
    >"target/fuzz-$target.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!TARGETS[@]}"; do
  target=${TARGETS[$i]}
  if wait "${pids[$i]}"; then
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units)' "target/fuzz-$target.log" | sed "s/^/$target: /" || true
  else
    echo "==> fuzzing $target failed:" >&2
    tail -40 "target/fuzz-$target.log" >&2
    failed=1
  fi
done
if find nfv/fuzz/artifacts -type f 2>/dev/null | grep -q .; then
  echo "==> fuzzing found crashes: nfv/fuzz/artifacts" >&2
  failed=1
fi
exit "$failed"
