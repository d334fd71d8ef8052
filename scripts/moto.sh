#!/usr/bin/env bash
# Installs moto's S3-compatible server (PyPI package `moto[server]`) into the project-local,
# git-ignored virtualenv target/s3env if it is not there yet, and prints the absolute path of its
# `moto_server` launcher on stdout. The storage tests (host/storage/tests/s3.rs) start and stop
# their own instances on free loopback ports.
#
#   scripts/moto.sh            # install if missing, print the launcher path
#
# MOTO_VERSION (default below) picks the version; PYTHON the base interpreter (default python3).
# Progress and errors go to stderr; only the path goes to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${MOTO_VERSION:-5.2.5}
dir=$PWD/target/s3env
launcher=$dir/bin/moto_server

if [[ ! -x $launcher ]]; then
    echo "installing moto[server]==$version into $dir" >&2
    "${PYTHON:-python3}" -m venv "$dir" >&2
    "$dir/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$version" >&2
fi
if [[ ! -x $launcher ]]; then
    echo "moto installed but $launcher is missing" >&2
    exit 1
fi
echo "$launcher"
