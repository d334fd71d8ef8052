#!/usr/bin/env bash
# Installs the Azure Blob Storage emulator Azurite (npm package `azurite`) into the project-local,
# git-ignored directory target/azurite if it is not there yet, and prints the absolute path of its
# `azurite-blob` launcher on stdout. The storage tests (host/storage/tests) run it to find the
# emulator; they start and stop their own instances on free loopback ports.
#
#   scripts/azurite.sh            # install if missing, print the launcher path
#
# AZURITE_VERSION (default below) picks the npm version. Needs node and npm (Debian packages
# `nodejs` and `npm`). Progress and errors go to stderr; only the path goes to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${AZURITE_VERSION:-3.37.0}
dir=$PWD/target/azurite
launcher=$dir/node_modules/.bin/azurite-blob

if [[ ! -x $launcher ]]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "npm is not installed: run \`apt-get install -y nodejs npm\`, then rerun $0" >&2
        exit 1
    fi
    echo "installing azurite@$version into $dir" >&2
    mkdir -p "$dir"
    # A private package.json keeps npm from walking up into other projects.
    [[ -f $dir/package.json ]] || echo '{"name":"outpost-azurite","private":true}' >"$dir/package.json"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "azurite@$version" >&2
fi
if [[ ! -x $launcher ]]; then
    echo "azurite installed but $launcher is missing" >&2
    exit 1
fi
echo "$launcher"
