#!/usr/bin/env python3
"""Native VAD reference: silero_vad.onnx over a 16 kHz mono s16le WAV file.

Usage (with the venv python from scripts/pyenv.sh; needs numpy + onnxruntime):
    vad_reference.py AUDIO.wav [--model PATH]
        -> {"sample_rate": 16000, "chunk_samples": 512, "context_samples": 64,
            "num_samples": N, "probabilities": [p0, p1, ...],
            "segments": [{"start_sample": s, "end_sample": e}, ...]}

--model defaults to target/models/vad/silero_vad.onnx in this repository
(written by scripts/fetch-models.py --only vad).

This mirrors silero-vad 6.2.3 (silero_vad/utils_vad.py: OnnxWrapper,
get_speech_timestamps, get_speech_timestamps_from_probs) for 16 kHz audio,
without importing it (the package pulls in torch). Everything a port must do
is spelled out below.

Model I/O (silero_vad.onnx, opset 16)
-------------------------------------
  inputs   "input"  float32 [1, 576]      = 64 context samples + 512 new ones
           "state"  float32 [2, 1, 128]   recurrent state, zeros at the start
           "sr"     int64   []  (scalar)  16000
  outputs  "output" float32 [1, 1]        speech probability of the chunk
           "stateN" float32 [2, 1, 128]   state to feed to the next call
ONNX Runtime session: CPU provider, intra_op_num_threads = 1,
inter_op_num_threads = 1 (as silero's OnnxWrapper sets them).

Framing (get_speech_timestamps -> OnnxWrapper.__call__)
------------------------------------------------------
 1. Samples: s16 -> float32 as s / 32768.0 (what torchaudio's loader yields).
 2. Reset: state = zeros[2,1,128]; context = zeros[64].
 3. For start = 0, 512, 1024, ... while start < num_samples:
      chunk = samples[start : start + 512]; if shorter than 512 (only the
      last one), right-pad it with 0.0 up to 512.
      x = context ++ chunk                      (576 samples)
      (output, stateN) = model(input=x[None, :], state=state, sr=16000)
      prob[i] = output[0, 0]; state = stateN
      context = x[-64:]  (= the last 64 samples of this chunk, padding included)
    So there are ceil(num_samples / 512) probabilities; prob[i] covers
    samples [512*i, 512*i + 512).

Segments (get_speech_timestamps_from_probs with the defaults)
------------------------------------------------------------
See speech_segments() below; all the constants are derived in f64 exactly as
silero does (16 kHz): threshold 0.5, neg_threshold = max(0.5 - 0.15, 0.01) =
0.35, min_speech_samples = 4000.0, min_silence_samples = 1600.0,
speech_pad_samples = 480.0, max_speech_samples = +inf (so the max-speech
branch never fires with the defaults), min_silence_samples_at_max_speech =
1568.0. Probabilities are compared as f64 values of the f32 model outputs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import wave
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "target" / "models" / "vad" / "silero_vad.onnx"

SAMPLE_RATE = 16000
CHUNK = 512  # samples per model call at 16 kHz
CONTEXT = 64  # samples of the previous call prepended to each chunk


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


def speech_probabilities(samples, model_path: str) -> list[float]:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, sess_options=opts,
                                providers=["CPUExecutionProvider"])

    state = np.zeros((2, 1, 128), dtype=np.float32)
    context = np.zeros(CONTEXT, dtype=np.float32)
    sr = np.array(SAMPLE_RATE, dtype=np.int64)  # 0-d (scalar) tensor
    probs = []
    n = len(samples)
    for start in range(0, n, CHUNK):
        chunk = samples[start:start + CHUNK]
        if len(chunk) < CHUNK:
            chunk = np.concatenate([chunk, np.zeros(CHUNK - len(chunk), dtype=np.float32)])
        x = np.concatenate([context, chunk]).astype(np.float32)[np.newaxis, :]
        out, state = sess.run(["output", "stateN"], {"input": x, "state": state, "sr": sr})
        probs.append(float(out[0, 0]))
        context = x[0, -CONTEXT:]
    return probs


def speech_segments(
    probs: list[float],
    num_samples: int,
    threshold: float = 0.5,
    min_speech_duration_ms: int = 250,
    max_speech_duration_s: float = math.inf,
    min_silence_duration_ms: int = 100,
    speech_pad_ms: int = 30,
    neg_threshold: float | None = None,
    min_silence_at_max_speech: int = 98,
    use_max_poss_sil_at_max_speech: bool = True,
) -> list[dict]:
    """Port of silero's get_speech_timestamps_from_probs (16 kHz, samples out).

    Step 0 (constants, all f64):
        window = 512
        min_speech  = 16000 * min_speech_duration_ms / 1000      (4000.0)
        pad         = 16000 * speech_pad_ms / 1000               (480.0)
        max_speech  = 16000 * max_speech_duration_s - window - 2 * pad  (+inf)
        min_silence = 16000 * min_silence_duration_ms / 1000     (1600.0)
        min_sil_max = 16000 * min_silence_at_max_speech / 1000   (1568.0)
        neg_threshold defaults to max(threshold - 0.15, 0.01)     (0.35)
    State: triggered = false; current = {} (may hold "start"/"end");
        temp_end = prev_end = next_start = 0; possible_ends = [].
        "x is set" below means x != 0 (silero tests integers for truthiness).

    Step 1, for each chunk i with probability p, cur = 512 * i:
      a. if p >= threshold and temp_end is set:
             sil = cur - temp_end
             if sil > min_sil_max: possible_ends.append((temp_end, sil))
             temp_end = 0
             if next_start < prev_end: next_start = cur
      b. if p >= threshold and not triggered:
             triggered = true; current.start = cur; continue with next chunk
      c. if triggered and cur - current.start > max_speech:  (never with defaults)
             if use_max_poss_sil_at_max_speech and possible_ends:
                 (prev_end, dur) = the entry of possible_ends with the largest
                                   dur (first one on ties)
                 current.end = prev_end; emit current; current = {}
                 next_start = prev_end + dur
                 if next_start < prev_end + cur: current.start = next_start
                 else: triggered = false
                 prev_end = next_start = temp_end = 0; possible_ends = []
             elif prev_end is set:
                 current.end = prev_end; emit current; current = {}
                 if next_start < prev_end: triggered = false
                 else: current.start = next_start
                 prev_end = next_start = temp_end = 0; possible_ends = []
             else:
                 current.end = cur; emit current; current = {}
                 prev_end = next_start = temp_end = 0; triggered = false
                 possible_ends = []; continue with next chunk
      d. if p < neg_threshold and triggered:
             if temp_end is not set: temp_end = cur
             sil_now = cur - temp_end
             if not use_max_poss_sil_at_max_speech and sil_now > min_sil_max:
                 prev_end = temp_end
             if sil_now < min_silence: continue with next chunk
             current.end = temp_end
             if current.end - current.start > min_speech: emit current
             current = {}; prev_end = next_start = temp_end = 0
             triggered = false; possible_ends = []
      (probabilities in [neg_threshold, threshold) change nothing by
       themselves: they neither start speech nor count as silence.)
    Step 2: if current is non-empty (it then has a start) and
        num_samples - current.start > min_speech:
            current.end = num_samples; emit current.
        (num_samples is the real length, not the padded one.)
    Step 3, padding, for each emitted segment k in order (n segments):
        if k == 0: start = int(max(0, start - pad))
        if k != n - 1:
            gap = seg[k+1].start - seg[k].end   (integers; seg[k+1].start is
                                                 still unpadded here)
            if gap < 2 * pad:
                seg[k].end += gap // 2
                seg[k+1].start = int(max(0, seg[k+1].start - gap // 2))
            else:
                seg[k].end = int(min(num_samples, seg[k].end + pad))
                seg[k+1].start = int(max(0, seg[k+1].start - pad))
        else:
            seg[k].end = int(min(num_samples, seg[k].end + pad))
        (int() truncates toward zero; values here are non-negative.)
    """
    sampling_rate = SAMPLE_RATE
    window = CHUNK
    min_speech_samples = sampling_rate * min_speech_duration_ms / 1000
    speech_pad_samples = sampling_rate * speech_pad_ms / 1000
    max_speech_samples = (sampling_rate * max_speech_duration_s - window
                          - 2 * speech_pad_samples)
    min_silence_samples = sampling_rate * min_silence_duration_ms / 1000
    min_silence_samples_at_max_speech = sampling_rate * min_silence_at_max_speech / 1000
    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)

    triggered = False
    segments: list[dict] = []
    current: dict = {}
    temp_end = 0
    prev_end = 0
    next_start = 0
    possible_ends: list[tuple[int, int]] = []

    for i, p in enumerate(probs):
        cur = window * i

        # (a) speech is back after a tentative end: remember that silence
        if p >= threshold and temp_end:
            silence = cur - temp_end
            if silence > min_silence_samples_at_max_speech:
                possible_ends.append((temp_end, silence))
            temp_end = 0
            if next_start < prev_end:
                next_start = cur

        # (b) speech starts
        if p >= threshold and not triggered:
            triggered = True
            current["start"] = cur
            continue

        # (c) segment grew past max_speech (unreachable with the defaults)
        if triggered and cur - current["start"] > max_speech_samples:
            if use_max_poss_sil_at_max_speech and possible_ends:
                best = possible_ends[0]
                for cand in possible_ends[1:]:
                    if cand[1] > best[1]:
                        best = cand
                prev_end, dur = best
                current["end"] = prev_end
                segments.append(current)
                current = {}
                next_start = prev_end + dur
                if next_start < prev_end + cur:
                    current["start"] = next_start
                else:
                    triggered = False
                prev_end = next_start = temp_end = 0
                possible_ends = []
            elif prev_end:
                current["end"] = prev_end
                segments.append(current)
                current = {}
                if next_start < prev_end:
                    triggered = False
                else:
                    current["start"] = next_start
                prev_end = next_start = temp_end = 0
                possible_ends = []
            else:
                current["end"] = cur
                segments.append(current)
                current = {}
                prev_end = next_start = temp_end = 0
                triggered = False
                possible_ends = []
                continue

        # (d) silence while in speech
        if p < neg_threshold and triggered:
            if not temp_end:
                temp_end = cur
            silence_now = cur - temp_end
            if not use_max_poss_sil_at_max_speech and silence_now > min_silence_samples_at_max_speech:
                prev_end = temp_end
            if silence_now < min_silence_samples:
                continue
            current["end"] = temp_end
            if current["end"] - current["start"] > min_speech_samples:
                segments.append(current)
            current = {}
            prev_end = next_start = temp_end = 0
            triggered = False
            possible_ends = []
            continue

    # Step 2: speech still open at the end of the audio
    if current and num_samples - current["start"] > min_speech_samples:
        current["end"] = num_samples
        segments.append(current)

    # Step 3: padding
    n = len(segments)
    for k, seg in enumerate(segments):
        if k == 0:
            seg["start"] = int(max(0, seg["start"] - speech_pad_samples))
        if k != n - 1:
            gap = segments[k + 1]["start"] - seg["end"]
            if gap < 2 * speech_pad_samples:
                seg["end"] += int(gap // 2)
                segments[k + 1]["start"] = int(max(0, segments[k + 1]["start"] - gap // 2))
            else:
                seg["end"] = int(min(num_samples, seg["end"] + speech_pad_samples))
                segments[k + 1]["start"] = int(max(0, segments[k + 1]["start"] - speech_pad_samples))
        else:
            seg["end"] = int(min(num_samples, seg["end"] + speech_pad_samples))

    return [{"start_sample": int(s["start"]), "end_sample": int(s["end"])} for s in segments]


def main() -> int:
    ap = argparse.ArgumentParser(description="silero VAD reference output as JSON")
    ap.add_argument("audio", help="16 kHz mono 16-bit PCM WAV")
    ap.add_argument("--model", default=str(DEFAULT_MODEL),
                    help="silero_vad.onnx (default: target/models/vad/silero_vad.onnx)")
    args = ap.parse_args()

    if not Path(args.model).is_file():
        raise SystemExit(
            f"model not found: {args.model} (run: python3 scripts/fetch-models.py --only vad)"
        )
    samples = read_wav_s16_mono_16k(args.audio)
    probs = speech_probabilities(samples, args.model)
    out = {
        "sample_rate": SAMPLE_RATE,
        "chunk_samples": CHUNK,
        "context_samples": CONTEXT,
        "num_samples": int(len(samples)),
        "probabilities": probs,
        "segments": speech_segments(probs, int(len(samples))),
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
