#!/usr/bin/env python3
"""VAD reference: silero-vad's own code (the PyPI package, pinned in scripts/pyenv.sh) over a
16 kHz mono s16le WAV file.

Usage (with the venv python from scripts/pyenv.sh):
    vad_reference.py AUDIO.wav
        -> {"sample_rate": 16000, "chunk_samples": 512, "num_samples": N,
            "silero_vad_version": "6.2.3", "model_sha256": "...",
            "probabilities": [p0, p1, ...],
            "segments": [{"start_sample": s, "end_sample": e}, ...]}

Nothing here re-implements silero: the model is the package's ONNX export loaded by the
package's loader (`load_silero_vad(onnx=True)`: its OnnxWrapper on ONNX Runtime, CPU, one
thread), and the segments come from the package's `get_speech_timestamps` with its defaults
(threshold 0.5, min_speech_duration_ms 250, min_silence_duration_ms 100, speech_pad_ms 30),
in samples. The probabilities are the ones `get_speech_timestamps` itself computes: the model
is handed to it inside a wrapper that records what each call returns, so they come from the
package's own framing (512-sample chunks, the last one zero-padded, 64 samples of context).

The only step of ours is reading the WAV file (silero's read_audio needs torchaudio or
torchcodec, which the venv leaves out): s16 samples become float32 s / 32768, what
torchaudio's loader yields. `model_sha256` names the ONNX file the package loaded, so a test can
check that the plugin ran the same network.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import wave
from importlib import resources

SAMPLE_RATE = 16000


def read_wav_s16_mono_16k(path: str):
    import numpy as np

    with wave.open(path, "rb") as w:
        if w.getnchannels() != 1:
            raise SystemExit(f"{path}: expected mono, got {w.getnchannels()} channels")
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: expected 16-bit samples, got {8 * w.getsampwidth()}-bit")
        if w.getframerate() != SAMPLE_RATE:
            raise SystemExit(f"{path}: expected {SAMPLE_RATE} Hz, got {w.getframerate()} Hz")
        if w.getcomptype() != "NONE":
            raise SystemExit(f"{path}: compressed WAV is not supported")
        raw = w.readframes(w.getnframes())
    s16 = np.frombuffer(raw, dtype="<i2")
    return s16.astype(np.float32) / np.float32(32768.0)


class Recording:
    """The package's model, recording the speech probability of every call."""

    def __init__(self, model) -> None:
        self.model = model
        self.probabilities: list[float] = []

    def reset_states(self) -> None:
        self.model.reset_states()
        self.probabilities = []

    def __call__(self, chunk, sampling_rate: int):
        out = self.model(chunk, sampling_rate)
        self.probabilities.append(float(out.item()))
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description="silero VAD reference output as JSON")
    ap.add_argument("audio", help="16 kHz mono 16-bit PCM WAV")
    args = ap.parse_args()

    import silero_vad
    import torch

    samples = read_wav_s16_mono_16k(args.audio)
    model = Recording(silero_vad.load_silero_vad(onnx=True))
    segments = silero_vad.get_speech_timestamps(
        torch.from_numpy(samples), model, sampling_rate=SAMPLE_RATE
    )
    # The file load_silero_vad(onnx=True) opens.
    onnx = resources.files("silero_vad.data").joinpath("silero_vad.onnx").read_bytes()
    out = {
        "sample_rate": SAMPLE_RATE,
        "chunk_samples": 512,
        "num_samples": int(len(samples)),
        "silero_vad_version": silero_vad.__version__,
        "model_sha256": hashlib.sha256(onnx).hexdigest(),
        "probabilities": model.probabilities,
        "segments": [
            {"start_sample": int(s["start"]), "end_sample": int(s["end"])} for s in segments
        ],
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
