"""Streaming images from disk in batches, for sets larger than ``data.cache_mb``.

``ImageStream`` is a ``keras.utils.PyDataset``. Keras prefetches batches in
``workers`` threads; each batch is decoded in dlw's shared pool of worker
processes (``dlw.data.images.worker_pool``, started by "forkserver", kept
across epochs), so Keras never forks a process that runs JAX or TensorFlow.
A file that fails to decode here becomes a blank image, counted in ``failures``.
"""

from __future__ import annotations

import math
import threading
import warnings
from concurrent.futures.process import BrokenProcessPool

import keras
import numpy as np

from dlw.data import images as img

# Fewer images than this per task are not worth a trip to a worker process.
_MIN_PER_TASK = 16


class ImageStream(keras.utils.PyDataset):
    """Batches of decoded uint8 images (and labels) read from ``paths``; reshuffled each epoch when ``shuffle``.

    ``workers`` is both the number of Keras prefetch threads and, with
    ``use_multiprocessing``, the number of decoding processes.
    """

    def __init__(
        self,
        paths,
        labels: np.ndarray | None,
        size: tuple[int, int],
        channels: int,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        workers: int = 1,
        use_multiprocessing: bool = True,
        max_queue_size: int = 10,
    ):
        workers = max(1, int(workers))
        # Keras itself only runs threads; the processes are dlw's (see the module docstring).
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
        self.paths = [str(p) for p in paths]
        self.labels = None if labels is None else np.asarray(labels)
        if self.labels is not None and len(self.labels) != len(self.paths):
            raise ValueError(f"ImageStream: {len(self.paths)} paths but {len(self.labels)} labels")
        self.size = (int(size[0]), int(size[1]))
        self.channels = int(channels)
        self.batch_size = max(1, int(batch_size))
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.processes = workers if use_multiprocessing and workers > 1 else 0
        self.failures: dict[str, str] = {}
        self._lock = threading.Lock()
        self._epoch = 0
        self._order = self._make_order()

    def _make_order(self) -> np.ndarray:
        n = len(self.paths)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self._epoch]).permutation(n)

    def __len__(self) -> int:
        return math.ceil(len(self.paths) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range (0-{len(self) - 1})")
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        x = self._decode([self.paths[i] for i in rows])
        return x if self.labels is None else (x, self.labels[rows])

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._epoch += 1
            self._order = self._make_order()

    def _decode(self, paths: list[str]) -> np.ndarray:
        tasks = min(self.processes, len(paths) // _MIN_PER_TASK)
        if tasks >= 2:
            try:
                pool = img.worker_pool(self.processes)
                step = math.ceil(len(paths) / tasks)
                futures = [
                    pool.submit(img._decode_chunk, paths[s : s + step], self.size, self.channels)
                    for s in range(0, len(paths), step)
                ]
                parts = [f.result() for f in futures]
                x = np.concatenate([part for part, _ in parts])
                failed = [(k * step + i, reason) for k, (_, fails) in enumerate(parts) for i, reason in fails]
            except BrokenProcessPool:  # a worker crashed: decode this batch here
                img.drop_worker_pool(self.processes)
                x, failed = img._decode_chunk(paths, self.size, self.channels)
        else:
            x, failed = img._decode_chunk(paths, self.size, self.channels)
        if failed:
            self._note([(paths[i], reason) for i, reason in failed])
        return x

    def _note(self, failed: list[tuple[str, str]]) -> None:
        with self._lock:
            first = not self.failures
            self.failures.update(failed)
        if first:
            path, reason = failed[0]
            warnings.warn(
                f"{path}: cannot be decoded ({reason}); fed to the model as a blank image (ImageStream.failures lists all)",
                RuntimeWarning,
                stacklevel=2,
            )

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
