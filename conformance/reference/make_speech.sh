#!/usr/bin/env bash
# Synthesize speech to a 16 kHz mono 16-bit PCM WAV with 1 s of digital
# silence before and after the utterance.
#
#   make_speech.sh OUT.wav "TEXT"
#
# Needs espeak-ng (Debian: apt-get install -y espeak-ng; this script does not
# install it) and python3 (stdlib only: no sox, no numpy). Environment:
#   ESPEAK_VOICE  espeak-ng voice (default: en-us)
#   ESPEAK_SPEED  words per minute (default: espeak-ng's own, 175)
#   PYTHON        interpreter for the resampling step (default: python3)
#
# espeak-ng writes 22050 Hz audio; it is resampled to 16000 Hz with a
# windowed-sinc low-pass interpolator (Hann window, 32 taps per side at the
# input rate, cutoff 0.95 x the output Nyquist), rounded and clipped to s16.
# The result is deterministic for a given espeak-ng build.
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 OUT.wav \"TEXT\"" >&2
    exit 2
fi
OUT=$1
TEXT=$2

if ! command -v espeak-ng >/dev/null 2>&1; then
    echo "make_speech: espeak-ng not found (Debian: apt-get install -y espeak-ng)" >&2
    exit 1
fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

args=(-v "${ESPEAK_VOICE:-en-us}" -w "$TMP/raw.wav")
if [[ -n "${ESPEAK_SPEED:-}" ]]; then
    args+=(-s "$ESPEAK_SPEED")
fi
espeak-ng "${args[@]}" -- "$TEXT"

"${PYTHON:-python3}" - "$TMP/raw.wav" "$OUT" <<'EOF'
import math
import struct
import sys
import wave

SRC, DST = sys.argv[1], sys.argv[2]
OUT_RATE = 16000
PAD_SECONDS = 1

with wave.open(SRC, "rb") as w:
    rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
    raw = w.readframes(w.getnframes())
if width != 2:
    sys.exit(f"make_speech: espeak-ng produced {8 * width}-bit audio, expected 16-bit")
samples = list(struct.unpack(f"<{len(raw) // 2}h", raw))
if channels > 1:  # average the channels (espeak-ng writes mono anyway)
    samples = [sum(samples[i:i + channels]) / channels
               for i in range(0, len(samples), channels)]


def resample(x, src_rate, dst_rate, taps=32):
    if src_rate == dst_rate:
        return [float(v) for v in x]
    step = src_rate / dst_rate
    # low-pass cutoff in cycles per input sample
    fc = 0.5 * min(1.0, dst_rate / src_rate) * 0.95
    n_out = int(len(x) * dst_rate // src_rate)
    out = []
    for n in range(n_out):
        t = n * step
        base = math.floor(t)
        acc = 0.0
        for k in range(base - taps + 1, base + taps + 1):
            if k < 0 or k >= len(x):
                continue
            d = t - k
            if d == 0.0:
                s = 2.0 * fc
            else:
                s = math.sin(2.0 * math.pi * fc * d) / (math.pi * d)
            win = 0.5 * (1.0 + math.cos(math.pi * d / taps)) if abs(d) < taps else 0.0
            acc += x[k] * s * win
        out.append(acc)
    return out


y = resample(samples, rate, OUT_RATE)
pcm = [max(-32768, min(32767, int(round(v)))) for v in y]
pad = [0] * (OUT_RATE * PAD_SECONDS)
pcm = pad + pcm + pad

with wave.open(DST, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(OUT_RATE)
    w.writeframes(struct.pack(f"<{len(pcm)}h", *pcm))
print(f"make_speech: {DST}: {len(pcm)} samples at {OUT_RATE} Hz "
      f"({len(pcm) / OUT_RATE:.2f} s, source {rate} Hz)", file=sys.stderr)
EOF
