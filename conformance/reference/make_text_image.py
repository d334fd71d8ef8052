#!/usr/bin/env python3
"""Render a line of black text on a white canvas and save it as PNG.

Usage:
    make_text_image.py TEXT OUT.png [--size 48] [--margin 20]

The font is Pillow's built-in default font at the requested pixel size
(`ImageFont.load_default(size=...)`, the bundled Aileron Regular when Pillow
has FreeType), so nothing is downloaded. The canvas is the tight ink bounding
box of the text plus `--margin` pixels of white on every side; the image is
8-bit RGB. Output is deterministic for a given Pillow version.
"""

from __future__ import annotations

import argparse
import sys

from PIL import Image, ImageDraw, ImageFont


def render(text: str, size: int, margin: int) -> Image.Image:
    font = ImageFont.load_default(size=size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1), "white"))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    width = (right - left) + 2 * margin
    height = (bottom - top) + 2 * margin
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    # Shift so that the ink bounding box starts exactly at (margin, margin).
    draw.text((margin - left, margin - top), text, font=font, fill=(0, 0, 0))
    return img


def main() -> int:
    ap = argparse.ArgumentParser(description="render black text on white (PNG)")
    ap.add_argument("text")
    ap.add_argument("out", help="output .png path")
    ap.add_argument("--size", type=int, default=48, help="font size in pixels (default 48)")
    ap.add_argument("--margin", type=int, default=20, help="white margin in pixels (default 20)")
    args = ap.parse_args()
    if args.size <= 0 or args.margin < 0:
        ap.error("--size must be > 0 and --margin >= 0")
    img = render(args.text, args.size, args.margin)
    img.save(args.out, format="PNG", optimize=True)
    print(f"{args.out}: {img.width}x{img.height}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
