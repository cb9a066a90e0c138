"""Training across devices and hosts with Keras's own ``keras.distribution`` (JAX backend).

``train.distribute`` picks the strategy:

- ``none``: one device, as Keras does by default.
- ``data_parallel``: ``keras.distribution.DataParallel`` over every JAX device; each batch is
  split across them and the weights are replicated.
- ``auto`` (default): ``data_parallel`` when JAX sees more than one device, else ``none``.

Across hosts, the same program runs on each host with the standard variables set
(``JAX_COORDINATOR_ADDRESS``, plus ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` unless a
cluster manager such as SLURM or Open MPI provides them): ``jax.distributed.initialize()`` is
then called before anything else touches JAX, and ``DataParallel`` spans every host's devices.

>>> from dlw.distribute import multihost_settings
>>> multihost_settings({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"})
{'coordinator_address': '10.0.0.1:1234', 'num_processes': 2, 'process_id': 0}
>>> multihost_settings({}) is None
True
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

from dlw._backend import choose_backend
from dlw.config import Config
from dlw.console import Console
from dlw.errors import ConfigError
from dlw.models import MODEL_KINDS

COORDINATOR = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES = "JAX_NUM_PROCESSES"
PROCESS_ID = "JAX_PROCESS_ID"

_STATE = {"initialized": False}


def multihost_settings(env: Mapping[str, str] | None = None) -> dict | None:
    """The arguments for ``jax.distributed.initialize`` from the environment; None on a single host.

    ``JAX_COORDINATOR_ADDRESS`` (read by JAX itself) switches multi-host on. The process count
    and this process's id come from ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` when set;
    otherwise JAX detects them from the cluster manager (SLURM, Open MPI, Kubernetes).
    """
    env = os.environ if env is None else env
    address = env.get(COORDINATOR, "").strip()
    count, pid = env.get(NUM_PROCESSES, "").strip(), env.get(PROCESS_ID, "").strip()
    if not address:
        if count or pid:
            set_ = NUM_PROCESSES if count else PROCESS_ID
            raise ConfigError(f"{set_} is set but {COORDINATOR} is not; set it to HOST:PORT of process 0 on every host")
        return None
    if ":" not in address:
        raise ConfigError(f"{COORDINATOR}={address!r}: expected HOST:PORT of process 0, e.g. 10.0.0.1:1234")
    settings: dict = {"coordinator_address": address}
    for name, key, value in ((NUM_PROCESSES, "num_processes", count), (PROCESS_ID, "process_id", pid)):
        if value:
            try:
                settings[key] = int(value)
            except ValueError:
                raise ConfigError(f"{name}={value!r}: expected a whole number") from None
    if "num_processes" in settings and "process_id" in settings and not 0 <= settings["process_id"] < settings["num_processes"]:
        raise ConfigError(f"{PROCESS_ID}={settings['process_id']} must be between 0 and {NUM_PROCESSES}-1 ({settings['num_processes'] - 1})")
    return settings


def initialize_multihost(console: Console, env: Mapping[str, str] | None = None) -> dict | None:
    """Call ``jax.distributed.initialize`` once per process when the JAX variables say so."""
    settings = multihost_settings(env)
    if settings is None or _STATE["initialized"]:
        return settings
    import jax

    jax.distributed.initialize(**settings)
    _STATE["initialized"] = True
    console.say(
        f"    multi-host: process {jax.process_index()} of {jax.process_count()} "
        f"(coordinator {settings['coordinator_address']}); {jax.device_count()} device(s) in all"
    )
    return settings


def choose_backend_for(config: Config) -> str:
    """``choose_backend``, except that data-parallel training needs JAX (Keras distributes on JAX only)."""
    if config.train.distribute == "data_parallel" and "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "jax")
        if os.environ["KERAS_BACKEND"] != "jax":
            # refused before keras loads another backend: TensorFlow's threads, once started, could abort the exit (SIGABRT)
            raise needs_jax_error(os.environ["KERAS_BACKEND"])
    return choose_backend(MODEL_KINDS[config.model.kind].convolutional)


def needs_jax_error(backend: str) -> ConfigError:
    """The one-line error for ``train.distribute: data_parallel`` on a backend other than JAX."""
    return ConfigError(
        f"key 'train.distribute': data_parallel needs the JAX backend, but this process runs Keras on {backend}; "
        "unset KERAS_BACKEND (or set it to jax), or use train.distribute: none"
    )


def apply_distribution(config: Config, console: Console) -> dict:
    """Set Keras's global distribution for ``train.distribute``; return what was chosen.

    Call it before the model is built (variables get their layout when created), and again
    after ``keras.backend.clear_session()``, which forgets it. The result, e.g.
    ``{"strategy": "data_parallel", "devices": ["cpu:0", "cpu:1"], "processes": 1}``, goes
    into ``run.json``.
    """
    from dlw._backend import import_keras, start_jax_devices_yielding

    wanted = config.train.distribute
    keras = import_keras()
    backend = keras.backend.backend()
    if backend != "jax":
        if wanted == "data_parallel":
            raise needs_jax_error(backend)
        return {"strategy": "none", "devices": 1, "note": f"distribution is only on JAX (backend {backend})"}
    initialize_multihost(console)
    start_jax_devices_yielding()  # the baselines beside the network get the cores first
    import jax

    devices = keras.distribution.list_devices()
    processes = jax.process_count()
    strategy = "data_parallel" if wanted == "data_parallel" or (wanted == "auto" and len(devices) > 1) else "none"
    batch = config.train.batch_size
    if strategy == "data_parallel" and batch % len(devices):
        if wanted == "data_parallel":
            raise ConfigError(
                f"key 'train.batch_size': {batch} rows cannot be split evenly over {len(devices)} devices; "
                f"use a multiple of {len(devices)}, e.g. {len(devices) * max(1, round(batch / len(devices)))}"
            )
        console.say(f"    distribution: none (batch {batch} does not split evenly over {len(devices)} devices)")
        strategy = "none"
    if strategy == "none":
        keras.distribution.set_distribution(None)
        return {"strategy": "none", "devices": 1, "processes": processes}
    # On several hosts dlw gives each process its own rows (for_devices), so Keras must not shard again.
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=processes == 1))
    hosts = f" on {processes} hosts" if processes > 1 else ""
    console.say(f"    distribution: data parallel over {len(devices)} device(s){hosts} ({', '.join(devices[:8])}{', ...' if len(devices) > 8 else ''})")
    return {"strategy": "data_parallel", "devices": len(devices), "device_names": list(devices), "processes": processes}


def for_devices(prepared, config: Config, distribution: dict):
    """The ``(prepared, config)`` that ``fit`` gets under ``distribution``.

    Every batch must split evenly over the devices, so the train and validation rows are cut
    to a multiple of the device count (at most devices - 1 rows dropped, the same ones on every
    run); the model is measured afterwards on all rows, on one device. On several hosts each
    process trains on its own share of the rows with its share of the batch.
    """
    if distribution.get("strategy") != "data_parallel":
        return prepared, config
    import numpy as np

    if prepared.streamed:
        raise ConfigError(
            "key 'train.distribute': data_parallel needs the data in memory, but these images are streamed from disk; "
            "raise data.cache_mb so the decoded images fit, or use train.distribute: none"
        )
    devices, processes = distribution["devices"], distribution.get("processes", 1)
    local = devices // processes
    keep = {}
    for split in ("train", "validation"):
        n = prepared.count(split)
        if processes > 1:
            import jax

            rows = np.arange(n)[jax.process_index() :: processes][: n // processes]
        else:
            rows = np.arange(n)
        keep[split] = rows[: len(rows) - len(rows) % local]
    if processes > 1:
        config = config.model_copy(deep=True)
        config.train.batch_size = config.train.batch_size // processes
    return prepared.with_rows(keep), config


def release(distribution: dict) -> None:
    """After ``fit``: back to one device, so measuring and predicting take any number of rows."""
    if distribution.get("strategy") == "data_parallel":
        reset_distribution()


def reset_distribution() -> None:
    """Back to one device (for a process that trains several configs)."""
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() == "jax":
            keras.distribution.set_distribution(None)
