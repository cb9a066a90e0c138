"""How fast are 32x32 PNGs decoded: serially, by ``decode_many`` and through an ``ImageStream``?

Writes N small random-ish RGB PNGs to a temporary folder, then measures decoded
images per second of: one process decoding them in a loop (the reference),
``dlw.data.images.decode_many`` with 2 workers, and one epoch of an
``ImageStream`` (workers 2, batch 64) read the way ``model.fit`` reads it (Keras's
PyDataset adapter). The worker pool is started before timing (its start-up is
printed separately). The goal is >= 2,000 images/s on 2 cores.

    python bench/decode_speed.py [--images 4000] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from dlw.workers import shutdown_pools  # noqa: E402


def write_pngs(folder: Path, n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 120, 32)[None, :, None]
    paths = []
    for i in range(n):
        pixels = np.clip(rng.integers(0, 100, (32, 32, 3)) + ramp + (i % 7) * 10, 0, 255).astype(np.uint8)
        path = folder / f"{i:05d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


def rate(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-stream", action="store_true", help="skip the ImageStream row (no keras installed)")
    args = parser.parse_args()

    from dlw.data import images as img

    size = (32, 32)
    with tempfile.TemporaryDirectory(prefix="dlw-decode-") as tmp:
        paths = write_pngs(Path(tmp), args.images)
        n = len(paths)
        start = time.perf_counter()
        img.worker_pool(args.workers)
        pool_start = time.perf_counter() - start

        def serial():
            for path in paths:
                img.decode(path, size, 3)

        def many():
            img.decode_many(paths, size, 3, workers=args.workers)

        results = [
            ("serial decode (1 process, reference)", rate(serial, n, args.repeats)),
            (f"decode_many (workers {args.workers})", rate(many, n, args.repeats)),
        ]
        if not args.no_stream:
            from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

            from dlw.data.image_stream import ImageStream

            stream = ImageStream(paths, np.arange(n) % 2, size, 3, args.batch, shuffle=True, seed=0, workers=args.workers)

            def streamed():  # one epoch, as model.fit reads it
                adapter = PyDatasetAdapter(stream, shuffle=False)
                adapter.on_epoch_begin()
                count = sum(len(batch[0]) for batch in adapter.get_numpy_iterator())
                adapter.on_epoch_end()
                assert count == n, count

            results.append((f"ImageStream epoch (workers {args.workers}, batch {args.batch})", rate(streamed, n, args.repeats)))
    print(f"{n} PNGs 32x32 RGB, {os.cpu_count()} cores visible, {len(os.sched_getaffinity(0))} usable; "
          f"worker pool start-up {pool_start:.2f} s (once per process)")
    width = max(len(name) for name, _ in results)
    print(f"{'':{width}}  images/s  vs serial")
    for name, value in results:
        print(f"{name:{width}}  {value:8,.0f}  {value / results[0][1]:8.2f}x")
    shutdown_pools()


if __name__ == "__main__":
    main()
