"""Write the image folders of the CNN and transfer-learning examples, from scikit-learn's digits (no network).

    python examples/make_digit_folders.py            # writes examples/digit_folders/

``zero-to-four/``: every digit 0-4 (about 900 images), for the CNN example (cnn.yaml).
``five-to-nine/``: 20 images of each digit 5-9, the small new task of the transfer example (transfer.yaml).
Each digit is drawn 12x12 at a random place on a noisy 24x24 canvas, one subfolder per class.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_digits(root: Path, classes, *, per_class: int | None, seed: int) -> int:
    """PNG files under ``root/d<digit>/``; returns how many were written."""
    digits, rng, written = load_digits(), np.random.default_rng(seed), 0
    for c in classes:
        (root / f"d{c}").mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(digits.target == c)[:per_class]:
            canvas = rng.integers(0, 60, size=(24, 24)).astype("uint8")
            pixels = np.round(digits.images[i] * 255 / 16).astype("uint8")
            digit = np.asarray(Image.fromarray(pixels).resize((12, 12), Image.BILINEAR))
            y, x = rng.integers(0, 13, size=2)
            canvas[y : y + 12, x : x + 12] = np.maximum(canvas[y : y + 12, x : x + 12], digit)
            Image.fromarray(canvas).save(root / f"d{c}" / f"{i:04d}.png")
            written += 1
    return written


def main(out: Path) -> None:
    big = write_digits(out / "zero-to-four", range(5), per_class=None, seed=1)
    small = write_digits(out / "five-to-nine", range(5, 10), per_class=20, seed=2)
    print(f"{out}: {big} images of digits 0-4 in zero-to-four/, {small} of digits 5-9 in five-to-nine/")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "digit_folders")
