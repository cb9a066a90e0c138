"""Choosing the Keras backend; the only module that knows backends exist.

Keras fixes its backend when it is first imported, so the choice is made here,
before any ``import keras`` in dlw. A user's own ``KERAS_BACKEND`` always wins.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading

DEFAULT_BACKEND = "jax"


def ensure_backend(default: str = DEFAULT_BACKEND) -> str:
    """Set ``KERAS_BACKEND`` to ``default`` unless the user chose one; return it."""
    os.environ.setdefault("KERAS_BACKEND", default)
    # JAX grabs most of a GPU's memory by default, which starves other processes.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    # TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) is not for dlw's users.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keep_compiled_programs()
    keep_freed_memory()
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. tf.function retracing notes
    backend = os.environ["KERAS_BACKEND"]
    if backend == "tensorflow" and "tensorflow" not in sys.modules and importlib.util.find_spec("tensorflow"):
        _import_quietly("tensorflow")
    return backend


COMPILATION_CACHE_BYTES = 1 << 30
# glibc's malloc: the heap's free top is never given back to the system (M_TRIM_THRESHOLD at its
# largest), grows 64 MiB at a time (M_TOP_PAD) and serves large blocks too (M_MMAP_MAX 0: no block
# is mapped on its own, to be unmapped when freed); on up to 4 cores, one arena for every thread
# (M_ARENA_MAX), so that no thread's heap is unmapped and faulted in again.
MALLOC_SETTINGS = {-1: 2**31 - 1, -2: 64 << 20, -4: 0}
FEW_CORES_MALLOC_SETTINGS = {-8: 1}


def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse instead of returning it to the system; whether it took.

    XLA on a CPU allocates each step's buffers afresh, and boosting (fitted alongside) its
    histograms; with glibc's defaults the freed heap top is given back and every page faults
    in again. On nycflights13's 336,776 rows: 27 million page faults and 55-61 s of system time
    in a 158-166 s `dlw train`; with the heap kept, 152 s, 41 s of system time and a peak of 1.2
    GB instead of 1.4, the same weights. Buffers above glibc's mmap threshold (at most 32 MiB,
    and 128 KiB once the trim threshold is set) were still mapped afresh at every step: 31.9
    million faults and 120 s of system time in a 346 s run; served from the heap as well, 0.55
    million, 7.7 s and 289 s, the same peak and rmse (bench/RESULTS.md). Linux with glibc only,
    and never when the user tuned malloc (``MALLOC_*`` or ``GLIBC_TUNABLES`` in the environment).
    """
    import ctypes

    if not sys.platform.startswith("linux") or any(k.startswith("MALLOC_") or k == "GLIBC_TUNABLES" for k in os.environ):
        return False
    settings = {**MALLOC_SETTINGS, **(FEW_CORES_MALLOC_SETTINGS if (os.cpu_count() or 1) <= 4 else {})}
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on (find_library would run ldconfig every call)
        return all(libc.mallopt(option, value) == 1 for option, value in settings.items())
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False


def keep_compiled_programs() -> None:
    """Let JAX keep what XLA compiles on disk, so that the next run of the same shapes skips compiling.

    Compiling is about half of a small table's whole ``dlw run`` (penguins: 21 s the first time,
    10 s after; bench/RESULTS.md). A user's own ``JAX_COMPILATION_CACHE_DIR`` wins; set it empty
    to keep nothing. Every compile is kept, however short (a small network's are all under JAX's
    1 s default), in at most 1 GiB, least recently used first out. Takes effect only before
    jax is imported.
    """
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        folder = compilation_cache_folder()
        if folder is None:
            return
        os.environ["JAX_COMPILATION_CACHE_DIR"] = folder
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    if importlib.util.find_spec("filelock") is not None:  # JAX needs it to evict old entries
        os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(COMPILATION_CACHE_BYTES))


def compilation_cache_folder() -> str | None:
    """``~/.cache/dlw/jax/<jaxlib version>-<CPU fingerprint>``, created; None where it cannot be written.

    One folder per jaxlib and CPU instruction set: programs compiled for one host's CPU
    features are never offered to another's (a home folder shared across machines), nor to
    another jaxlib, whose loader may not reject them cleanly.
    """
    import hashlib
    import platform
    from importlib import metadata
    from pathlib import Path

    try:
        version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None
    cpu = {}
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()[:40]  # the first processor's block
        cpu = {key.strip(): value.strip() for key, value in (line.split(":", 1) for line in lines if ":" in line)}
    # On CPUs with the Gather Data Sampling flaw, LLVM tunes code with +prefer-no-gather, which
    # jaxlib's loader then takes for a missing CPU feature: every cached program is refused, with
    # an error line each (jax-ml/jax#38445). There the cache would cost, not save.
    if "gds" in cpu.get("bugs", "").split():
        return None
    flags = cpu.get("flags", platform.processor())
    fingerprint = hashlib.sha256(f"{platform.machine()} {flags}".encode()).hexdigest()[:12]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = root / "dlw" / "jax" / f"{version}-{fingerprint}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder) if os.access(folder, os.W_OK) else None


def _import_quietly(name: str) -> None:
    """Import ``name`` with file descriptor 2 pointed at /dev/null.

    TensorFlow 2.21 logs "oneDNN custom operations are on" through absl before
    TF_CPP_MIN_LOG_LEVEL applies, twice, straight to fd 2; Python-level errors
    still surface as exceptions.
    """
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        importlib.import_module(name)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def backend_for(images: bool) -> str:
    """The backend dlw prefers for a model: JAX, except convolutional models on a CPU.

    On a CPU, TensorFlow's oneDNN convolutions train dlw's CNN about 4x faster
    than XLA's (bench/cnn_speed.py); JAX is faster for dense networks and on GPUs.
    Used only when the user set no ``KERAS_BACKEND`` and keras is not yet imported.
    """
    if not images or _has_accelerator() or importlib.util.find_spec("tensorflow") is None:
        return DEFAULT_BACKEND
    return "tensorflow"


def _has_accelerator() -> bool:
    # Without importing jax (slow): a CUDA plugin for jax and an NVIDIA device node.
    plugin = any(importlib.util.find_spec(name) for name in ("jax_cuda13_plugin", "jax_cuda12_plugin"))
    return plugin and os.path.exists("/dev/nvidiactl")


def choose_backend(images: bool) -> str:
    """Fix the backend for this process before keras is imported; return the one in force."""
    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    return ensure_backend(backend_for(images))


@contextlib.contextmanager
def tensorflow_unseen():
    """Within this block, Keras treats TensorFlow as not installed, unless this process already imported it.

    Keras checks ``tf.available`` when seeding and when saving a model, which
    imports TensorFlow (1.5-2 s) into a JAX process that never uses it. Scoped to
    dlw's own calls, so a user's own TensorFlow work is untouched.
    """
    try:
        from keras.src.utils import module_utils
    except ImportError:  # a future Keras moved it: pay the import
        yield
        return
    lazy = module_utils.tensorflow
    hide = "tensorflow" not in sys.modules and os.environ.get("KERAS_BACKEND") != "tensorflow" and lazy._available is None
    if hide:
        lazy._available = False
    try:
        yield
    finally:
        if hide:
            lazy._available = None


def set_seed(seed: int) -> None:
    """``keras.utils.set_random_seed``, without importing TensorFlow under another backend."""
    import keras

    with tensorflow_unseen():
        keras.utils.set_random_seed(seed)
def tensorflow_for_summaries():
    """TensorFlow for writing TensorBoard summaries, imported without its start-up chatter; returns the module.

    Keras's ``TensorBoard`` callback writes through ``tf.summary`` on every backend. Under
    another backend TensorFlow is kept off the GPUs, which that backend trains on.
    """
    import keras

    if "tensorflow" not in sys.modules:
        _import_quietly("tensorflow")
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        try:
            tf.config.set_visible_devices([], "GPU")
        except (RuntimeError, ValueError):  # devices already initialised by the user's own TensorFlow work
            pass
    return tf


# How much nicer than the rest of the process JAX's CPU threads run (Linux): the baselines fitted beside
# the network (dlw.baselines) take their cores first, and the network the rest. On nycflights13's
# 336,776 rows, boosting fitted in 111 s instead of 136 s beside it (bench/RESULTS.md, stop 35).
JAX_THREADS_NICENESS = 5


def start_jax_devices_yielding() -> None:
    """Start JAX's devices from a thread ``JAX_THREADS_NICENESS`` nicer than this one, so their thread pools inherit it.

    Call it where Keras runs on JAX (``dlw.distribute.apply_distribution`` decides that), after
    ``jax.distributed.initialize``, which must come before the devices start. On Linux only (whose
    niceness is per thread), and only the first time: JAX starts its devices once per process. The
    calling thread keeps its own priority.
    """
    if not sys.platform.startswith("linux"):
        return
    import jax

    def start() -> None:
        me = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, me, os.getpriority(os.PRIO_PROCESS, me) + JAX_THREADS_NICENESS)
        with contextlib.suppress(Exception):  # the caller's own first use of the devices reports the error
            jax.devices()

    starter = threading.Thread(target=start, name="dlw-jax-devices")
    starter.start()
    starter.join()


def import_keras():
    """Import keras with dlw's backend choice applied and return the module."""
    ensure_backend()
    import keras

    return keras


def inference_function(model):
    """A function from one batch of inputs to the model's outputs as NumPy arrays, compiled once per input shape.

    On JAX: ``jax.jit`` of the model's stateless call with its weights held fixed, about
    0.1 ms a call for a small network where ``predict_on_batch`` takes 0.35-0.9 ms (it
    moves the weights in and out of the model on every call). Elsewhere:
    ``predict_on_batch``. Inference only: the model's weights must not change afterwards.
    """
    import keras
    import numpy as np

    if keras.backend.backend() != "jax":
        return lambda inputs: keras.tree.map_structure(np.asarray, model.predict_on_batch(inputs))
    import jax
    import jax.numpy as jnp

    # Copies: Keras's own predict donates the weight buffers it is given, which would delete these.
    trainable = [jnp.array(v.value, copy=True) for v in model.trainable_variables]
    non_trainable = [jnp.array(v.value, copy=True) for v in model.non_trainable_variables]
    call = jax.jit(lambda weights, state, inputs: model.stateless_call(weights, state, inputs, training=False)[0])
    def infer(inputs):
        outputs = call(trainable, non_trainable, inputs)
        # A list of arrays (the serving model's two outputs) needs no general tree walk.
        return [np.asarray(o) for o in outputs] if isinstance(outputs, (list, tuple)) else np.asarray(outputs)

    return infer


def device_summary() -> list[str]:
    """Describe the devices the active backend computes on, e.g. ``['cpu:0']``."""
    keras = import_keras()
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [f"{d.platform}:{d.id}" for d in jax.devices()]
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices()]
    if backend == "torch":
        import torch

        return ["cuda:0"] if torch.cuda.is_available() else ["cpu"]
    return ["unknown"]
