#!/usr/bin/env bash
# Runs every test of the project from a clean machine: installs what is missing (the
# wasm32-wasip2 target, Debian packages, the Python venv, Azurite, moto, cargo-fuzz), checks
# formatting and lints on the host and guest workspaces, runs the host workspace's unit,
# integration, conformance and doc tests, the guest workspace's own tests (on the host target),
# fuzzes the PFCP and GTP-U parsers for a bounded time, and runs the benchmarks in quick mode so
# they never rot. Ends with a table of how long each phase took and one closing line that
# counts every test.
#
#   scripts/test.sh                 # everything (what CI runs)
#
# One set of compiled dependencies serves the tests, the quick benchmarks and the host lints:
# the test build runs through clippy-driver (so linting costs no second compilation), and the
# quick benchmarks are built with the same `dev` profile as the tests (`--profile dev`; the
# dependencies are optimised there, see Cargo.toml). Real figures come from `cargo bench`
# (release), as the README says.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# Phase timing: `phase NAME` starts a phase (and ends the previous one); the table is printed at
# the end, and also when a step fails, so a slow or failing phase is visible either way.
PHASE_NAMES=()
PHASE_SECS=()
PHASE_NAME=""
PHASE_START=0
RUN_START=$SECONDS
end_phase() {
  if [ -n "$PHASE_NAME" ]; then
    PHASE_NAMES+=("$PHASE_NAME")
    PHASE_SECS+=($((SECONDS - PHASE_START)))
    PHASE_NAME=""
  fi
}
phase() {
  end_phase
  PHASE_NAME=$1
  PHASE_START=$SECONDS
  say "$1"
}
phase_table() {
  end_phase
  printf '\n%-56s %8s\n' "phase" "seconds"
  local i
  for i in "${!PHASE_NAMES[@]}"; do
    printf '%-56s %8d\n' "${PHASE_NAMES[$i]}" "${PHASE_SECS[$i]}"
  done
  printf '%-56s %8d\n' "total" $((SECONDS - RUN_START))
}
on_exit() {
  local rc=$?
  [ "$rc" = 0 ] || { phase_table; printf '\nscripts/test.sh failed (exit %s) in phase above\n' "$rc"; }
}
trap on_exit EXIT

mkdir -p target
LOGS=target/ci-logs
# Where cargo builds (CARGO_TARGET_DIR when set, as .ci/run does to keep compiled dependencies
# between runs) and where the guest plugins are built (the build script's default, or
# OUTPOST_GUEST_TARGET_DIR).
TARGET=${CARGO_TARGET_DIR:-target}
GUEST_TARGET=${OUTPOST_GUEST_TARGET_DIR:-target/guest}
rm -rf "$LOGS"
mkdir -p "$LOGS"

# --- installs ------------------------------------------------------------------------------------
phase "installs: toolchain, packages, services"
# What the machine has, so a failure for lack of disk or memory can be told from a real one.
echo "machine: $(nproc) cores"
free -h | sed -n '1,2p'
df -h . /tmp | sed 1d

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  say "installing the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy

# cargo-fuzz compiles for about a minute: build it in the background while the network-bound
# installs below run. It goes where `cargo install` puts tools, so a machine keeps it.
FUZZ_INSTALL_PID=""
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz in the background (log: $LOGS/cargo-fuzz-install.log)"
  cargo install cargo-fuzz --locked >"$LOGS/cargo-fuzz-install.log" 2>&1 &
  FUZZ_INSTALL_PID=$!
fi

# Real services and tools the tests run against (started by the tests themselves, on loopback
# or in network namespaces they create).
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
MISSING=()
need() { # need COMMAND-OR-PATH PACKAGE WHY
  if command -v "$1" >/dev/null 2>&1 || [ -e "$1" ]; then return; fi
  echo "missing: $2 ($3)"
  MISSING+=("$2")
}
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
need ip iproute2 "network namespaces for the SD-WAN and data-plane tests"
if [ ${#MISSING[@]} -gt 0 ]; then
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  say "installing ${MISSING[*]}"
  $SUDO apt-get update -qq
  # One apt transaction for all of them: dpkg's triggers run once.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${MISSING[@]}" >/dev/null
fi

# Azurite (npm), moto (its own venv) and the reference venv are independent: install them side
# by side, each into target/, and wait for all three.
scripts/azurite.sh >"$LOGS/azurite.log" 2>&1 &
AZURITE_PID=$!
scripts/moto.sh >"$LOGS/moto.log" 2>&1 &
MOTO_PID=$!
scripts/pyenv.sh >"$LOGS/pyenv.log" 2>&1 &
PYENV_PID=$!
python3 scripts/fetch-models.py >"$LOGS/models.log" 2>&1 || { cat "$LOGS/models.log"; exit 1; }
wait "$AZURITE_PID" || { cat "$LOGS/azurite.log"; echo "installing Azurite failed"; exit 1; }
wait "$MOTO_PID" || { cat "$LOGS/moto.log"; echo "installing moto failed"; exit 1; }
wait "$PYENV_PID" || { cat "$LOGS/pyenv.log"; echo "creating the Python venv failed"; exit 1; }
PY=$(tail -1 "$LOGS/pyenv.log")
"$PY" scripts/fetch-models.py --only light >>"$LOGS/models.log" 2>&1 || { cat "$LOGS/models.log"; exit 1; }
"$PY" conformance/reference/make_type_models.py target/models >/dev/null
export OUTPOST_PY="$PY"
tail -3 "$LOGS/models.log"

# --- format --------------------------------------------------------------------------------------
phase "format"
cargo fmt --all --check
cargo fmt --all --check --manifest-path plugins/Cargo.toml

# --- build + host lints --------------------------------------------------------------------------
# The test build of the workspace members goes through clippy-driver with `-D warnings`: the
# lints run on every target that is compiled (libraries, binaries, tests, examples, and the
# benches below), and no separate `cargo clippy` pass compiles everything a second time in check
# mode. This is what `cargo clippy` itself does (RUSTC_WORKSPACE_WRAPPER + CLIPPY_ARGS), with
# code generation kept.
CLIPPY_DRIVER=$(rustup which clippy-driver)
export RUSTC_WORKSPACE_WRAPPER="$CLIPPY_DRIVER"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

phase "build: tests and quick benchmarks (host lints included)"
# A link that the machine cannot afford (the linker killed for memory, a full disk) fails the
# build, not a test: say what the machine had and try once more with one job.
build_tests() { cargo test --workspace --locked --no-run && cargo bench --workspace --locked --profile dev --no-run; }
if ! build_tests; then
  say "building failed; the machine now has:"
  free -h | sed -n '1,2p'; df -h . /tmp | sed 1d
  say "building again with one job"
  CARGO_BUILD_JOBS=1 build_tests
fi

phase "lint: guests (wasm32-wasip2)"
# The guest workspace is linted as it ships (wasm32-wasip2, release, the target dir the build
# script uses). Its test targets are linted natively below, where they compile and run.
(
  unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
  cargo clippy --manifest-path plugins/Cargo.toml --target wasm32-wasip2 --workspace --release \
    --target-dir "$GUEST_TARGET" --locked -- -D warnings
)

# --- tests ---------------------------------------------------------------------------------------
phase "tests: host workspace"
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$LOGS/test-host.log"

phase "tests: guest workspace (native, all targets linted)"
# The plugins' pure logic (tiering policy with its property test, OCR and VAD pipelines) is
# plain Rust; its tests run on the host target (wit-bindgen's imports are stubs there), built
# through clippy-driver like the host's, which lints the guests' test targets too.
cargo test --manifest-path plugins/Cargo.toml --workspace --locked --no-fail-fast --target-dir "$TARGET/guest-native" \
  2>&1 | tee "$LOGS/test-guest.log"

# --- fuzzing -------------------------------------------------------------------------------------
phase "fuzz: PFCP and GTP-U parsers (30 s each)"
if [ -n "$FUZZ_INSTALL_PID" ]; then
  wait "$FUZZ_INSTALL_PID" || { tail -30 "$LOGS/cargo-fuzz-install.log"; echo "installing cargo-fuzz failed"; exit 1; }
fi
(
  unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
  scripts/fuzz.sh 30
) >"$LOGS/fuzz.log" 2>&1 || { tail -60 "$LOGS/fuzz.log"; echo "fuzzing failed (log: $LOGS/fuzz.log)"; exit 1; }
grep -E ': (Done [0-9]+ runs|stat::number_of_executed_units)' "$LOGS/fuzz.log"

# --- benchmarks ----------------------------------------------------------------------------------
# Quick mode, dev profile: they must build and run; their figures are not asserted and, built
# without optimisation of our own crates, are not the README's (run `cargo bench` for those).
# `--workspace --bench NAME` rather than `-p PACKAGE`: the features stay unified as in the
# build above, so no dependency is compiled again with another feature set.
bench() { # bench PACKAGE BENCH FILTER [ARGS...]
  local pkg=$1 name=$2 filter=$3; shift 3
  phase "bench: $pkg/$name"
  cargo bench --workspace --bench "$name" --locked --profile dev -- --quick "$@" >"$LOGS/bench-$name.log" 2>&1 || {
    tail -50 "$LOGS/bench-$name.log"; echo "benchmark $pkg/$name failed"; exit 1; }
  grep -E "$filter" "$LOGS/bench-$name.log" || true
}
for name in runtime operations update sdwan; do
  bench outpost-runtime "$name" '^ratios|^  ' --noplot
done
bench outpost-conformance inference '^(ocr/|ratios|  )'
bench outpost-conformance upf '^(upf|ratios|  )'
bench outpost-dataplane ports '^ratios|^  ' --noplot
bench outpost-keys stream 'ratio|MB/s' --noplot
bench outpost-sdwan failover '^cut|ratio'
bench outpost-storage sync '^ratios|^  '
bench outpost-update fetch 'ratio' --noplot

phase_table
# One closing line with the totals of every test binary and doc-test run above, host and guest.
cat "$LOGS/test-host.log" "$LOGS/test-guest.log" |
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
       END { printf "tests: %d passed, %d failed\n", p, f }'
