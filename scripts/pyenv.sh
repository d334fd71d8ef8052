#!/usr/bin/env bash
# Create (idempotently) the Python virtualenv used by the model fetcher's
# `light` part and by the reference scripts in conformance/reference/
# (silero-vad's own code included, for the VAD reference).
#
#   PY=$(scripts/pyenv.sh | tail -1)     # absolute path of the venv's python
#
# The venv lives at target/pyenv (relative to the repository root), or at
# OUTPOST_PYENV when set (.ci/run keeps it in its cache between runs). All pip
# chatter goes to stderr; stdout carries only the interpreter path (last line).
# A stamp file records the installed package set; when it matches, nothing is
# reinstalled. Set PYTHON to choose the base interpreter (default: python3).
#
# Top-level packages are pinned as the project needs them; the transitive
# dependencies are pinned too (to what resolved when the pins were chosen) so
# that the reference outputs (OCR boxes/text, VAD probabilities) do not drift
# when, e.g., a new opencv-python changes its resize kernels.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV=${OUTPOST_PYENV:-target/pyenv}
BASE_PY=${PYTHON:-python3}

PACKAGES=(
    onnx==1.23.2
    numpy==2.4.6
    onnxruntime==1.31.1
    rapidocr-onnxruntime==1.4.4
    pillow==13.0.0
    scapy==2.8.0
    pycrate==0.8.1
)
# Transitive dependencies of the above, pinned for reproducibility.
CONSTRAINTS=(
    ml_dtypes==0.6.0
    opencv-python==5.0.0.93
    protobuf==7.36.2
    pyclipper==1.4.0
    shapely==2.2.0
    six==1.17.0
    typing_extensions==4.16.0
    flatbuffers==25.12.19
    packaging==26.3
    PyYAML==6.0.3
    tqdm==4.70.1
)
# Installed with --no-deps, after the rest: silero-vad (the VAD reference is the package's own
# get_speech_timestamps) and torch, which its code imports. PyPI's torch for Linux x86_64 is a
# CUDA build; its full dependency set adds triton, cuSOLVER, CUDA Python bindings and more
# (measured: 2.8 GB download, 5.3 GB installed, 92 s). Here it gets only the NVIDIA libraries
# that torch/lib/*.so link against (readelf -d: NEEDED), without which `import torch` fails,
# and its pure-Python requirements (measured: 2.3 GB download, 4.0 GB installed, 68 s). Nothing
# runs on a GPU: the reference calls torch on the CPU only. The stamp below covers this list,
# and the import check at the end proves the set is complete.
NO_DEPS=(
    silero-vad==6.2.3
    torch==2.15.0
    nvidia-cuda-runtime==13.2.86
    nvidia-cuda-cupti==13.2.86
    nvidia-cuda-nvrtc==13.2.86
    nvidia-nvjitlink==13.5.37
    nvidia-cublas==13.4.1.3
    nvidia-cudnn-cu13==9.26.0.51
    nvidia-cufft==12.2.0.57
    nvidia-cufile==1.17.1.22
    nvidia-cusparse==12.7.10.12
    nvidia-cusparselt-cu13==0.8.1
    nvidia-nccl-cu13==2.30.7
    nvidia-nvshmem-cu13==3.7.2
    filelock==4.3.2
    fsspec==2026.9.0
    jinja2==3.1.6
    markupsafe==3.0.4
    mpmath==1.3.0
    networkx==3.6.1
    sympy==1.14.0
)

log() { echo "pyenv: $*" >&2; }

if ! command -v "$BASE_PY" >/dev/null 2>&1; then
    log "error: '$BASE_PY' not found; install python3 (Debian: apt-get install -y python3 python3-venv)"
    exit 1
fi

STAMP="$VENV/.outpost-packages"
WANT="$("$BASE_PY" -c 'import sys; print("python %d.%d" % sys.version_info[:2])')
${PACKAGES[*]}
constraints: ${CONSTRAINTS[*]}
no-deps: ${NO_DEPS[*]}"

case $VENV in /*) PY="$VENV/bin/python" ;; *) PY="$PWD/$VENV/bin/python" ;; esac

if [[ -x "$PY" && -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$WANT" ]] && "$PY" -c 'import sys' 2>/dev/null; then
    log "up to date ($VENV)"
    echo "$PY"
    exit 0
fi

VER_CHECK='import sys; print("python %d.%d" % sys.version_info[:2])'
if [[ ! -x "$PY" ]] || [[ "$("$PY" -c "$VER_CHECK" 2>/dev/null)" != "$(head -1 <<<"$WANT")" ]]; then
    log "creating virtualenv at $VENV"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    if ! "$BASE_PY" -m venv "$VENV" >&2; then
        log "error: '$BASE_PY -m venv' failed; on Debian install the venv module: apt-get install -y python3-venv"
        rm -rf "$VENV"
        exit 1
    fi
fi

rm -f "$STAMP"
CONSTRAINTS_FILE="$VENV/constraints.txt"
printf '%s\n' "${CONSTRAINTS[@]}" >"$CONSTRAINTS_FILE"

log "installing: ${PACKAGES[*]}"
if ! "$PY" -m pip install --disable-pip-version-check -q \
        -c "$CONSTRAINTS_FILE" "${PACKAGES[@]}" >&2; then
    log "error: pip install failed (is the package index reachable?)"
    exit 1
fi

log "installing without dependencies: ${NO_DEPS[*]}"
if ! "$PY" -m pip install --disable-pip-version-check -q --no-deps "${NO_DEPS[@]}" >&2; then
    log "error: pip install failed (is the package index reachable?)"
    exit 1
fi

# Sanity check: every module the reference scripts import must load.
"$PY" -c 'import onnx, numpy, onnxruntime, rapidocr_onnxruntime, PIL, scapy, pycrate_mobile.TS29244_PFCP, pycrate_mobile.TS29281_GTPU, torch, silero_vad' >&2

printf '%s' "$WANT" >"$STAMP"
log "ready ($VENV)"
echo "$PY"
