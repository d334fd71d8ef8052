#!/usr/bin/env python3
"""Native OCR reference: run rapidocr_onnxruntime.RapidOCR on one image.

Usage (with the venv python from scripts/pyenv.sh):
    ocr_reference.py IMAGE [--threads N]
        -> {"lines": [{"text": str, "confidence": float,
                       "box": [[x, y], [x, y], [x, y], [x, y]]}, ...]}
    ocr_reference.py IMAGE --bench ITER [--threads N] [--warmup W]
        -> {"median_ms": float, "iterations": ITER, "min_ms", "max_ms",
            "warmup", "threads", "det_median_ms", "cls_median_ms", "rec_median_ms"}

RapidOCR runs with its default configuration (rapidocr_onnxruntime/config.yaml
of rapidocr-onnxruntime 1.4.4: PP-OCRv4 det + rec, mobile v2.0 cls, all
enabled); only the ONNX Runtime intra-op thread count is changed when
--threads is given (rapidocr applies it to det, cls and rec alike, and ignores
values outside 1..cpu_count). Lines are printed in rapidocr's own order
(boxes sorted top-to-bottom, then left-to-right for boxes whose top-left
corners are within 10 px vertically); lines with a recognition score below
text_score (0.5) are dropped by rapidocr. Box corners are in the original
image's pixel coordinates, clockwise from top-left.

--bench times the full `engine(IMAGE_PATH)` call (PNG decode + det + cls +
rec + post-processing) with time.perf_counter after W warm-up calls
(default 2) and prints the median over ITER timed calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def make_engine(threads: int | None):
    from rapidocr_onnxruntime import RapidOCR

    if threads is None:
        return RapidOCR()
    return RapidOCR(intra_op_num_threads=threads)


def run_once(engine, image: str) -> list[dict]:
    result, _elapse = engine(image)
    lines = []
    for box, text, score in result or []:
        lines.append(
            {
                "text": text,
                "confidence": float(score),
                "box": [[float(x), float(y)] for x, y in box],
            }
        )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description="rapidocr reference output as JSON")
    ap.add_argument("image")
    ap.add_argument("--threads", type=int, default=None,
                    help="ONNX Runtime intra-op threads (default: rapidocr's default)")
    ap.add_argument("--bench", type=int, default=None, metavar="ITER",
                    help="time ITER full calls and print the median instead")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up calls for --bench")
    args = ap.parse_args()

    engine = make_engine(args.threads)

    if args.bench is None:
        json.dump({"lines": run_once(engine, args.image)}, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0

    if args.bench < 1:
        ap.error("--bench needs ITER >= 1")
    for _ in range(max(args.warmup, 0)):
        engine(args.image)
    times_ms = []
    stages_ms: list[list[float]] = []
    for _ in range(args.bench):
        t0 = time.perf_counter()
        _result, elapse = engine(args.image)
        times_ms.append((time.perf_counter() - t0) * 1000.0)
        if elapse and len(elapse) == 3:
            stages_ms.append([e * 1000.0 for e in elapse])
    out = {
        "median_ms": statistics.median(times_ms),
        "iterations": args.bench,
        "min_ms": min(times_ms),
        "max_ms": max(times_ms),
        "warmup": max(args.warmup, 0),
        "threads": args.threads,
    }
    if len(stages_ms) == len(times_ms):
        # rapidocr's own per-stage timings (det includes its pre/post-processing;
        # cls and rec cover model run + decoding only), medians over ITER.
        for i, name in enumerate(("det", "cls", "rec")):
            out[f"{name}_median_ms"] = statistics.median(s[i] for s in stages_ms)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
