#!/usr/bin/env bash
# Fuzzes the GTP-U and PFCP parsers (nfv/fuzz, cargo-fuzz + libFuzzer) for SECONDS per target.
#
#   scripts/fuzz.sh 60
#
# Installs cargo-fuzz when missing. libFuzzer needs nightly-only flags; RUSTC_BOOTSTRAP=1 lets
# the stable toolchain accept them. Each target starts from nfv/fuzz/seeds/<target> (messages
# built by scapy and pycrate) and keeps what it learns in target/fuzz-corpus/<target>; a crash
# is written to nfv/fuzz/artifacts/<target> and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:?usage: scripts/fuzz.sh SECONDS}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
for target in pfcp_message gtpu_packet; do
  echo "==> fuzzing $target for ${SECS}s" >&2
  mkdir -p "target/fuzz-corpus/$target"
  cargo fuzz run --fuzz-dir nfv/fuzz --target-dir target/fuzz "$target" \
    "target/fuzz-corpus/$target" "nfv/fuzz/seeds/$target" \
    -- -max_total_time="$SECS" -rss_limit_mb=2048 -print_final_stats=1
done
