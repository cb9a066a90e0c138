"""How fast does dlw train its CNN on a CPU, next to a plain eager PyTorch loop?

Every engine trains the same network on the same data in its own fresh process (a Keras
backend is fixed per process), one warm-up epoch and then ``--epochs`` timed epochs; an
engine's speed is the training images per second of its median timed epoch, and of its
median over the repeats. Engines run interleaved, repeat after repeat, so drift of the
machine touches all of them alike.

The network is dlw's ``build_cnn(conv_filters=(32, 64), dense_layers=(64,), dropout=0.3,
batch_norm=False)`` on uint8 32x32x3 images of 10 classes (12,800 synthetic images, fixed
seed), batch 64, Adam 1e-3: Rescaling(1/255) - Conv(32, 3, same) - ReLU - MaxPool(2) -
Conv(64, 3, same) - ReLU - MaxPool(2) - GlobalAveragePooling - Dense(64, relu) -
Dropout(0.3) - Dense(10, softmax). The PyTorch reference is the same network written by hand,
fed float tensors made once up front (the /255 scaling inside the loop, as a typical user
loop does), ``torch.set_num_threads(os.cpu_count())``.

    python bench/cnn_speed.py                 # dlw and the PyTorch loop, plus extra rows
    python bench/cnn_speed.py --quick         # fewer images, epochs and repeats
    python bench/cnn_speed.py --engines dlw,torch --repeats 3 --epochs 3
    python bench/cnn_speed.py --cnn default   # dlw's default CNN (batch norm, 32-64-128, dense 128)

Engines (``--engines``, comma-separated; ``all`` for every one):

    torch          the reference: eager PyTorch loop
    dlw            dlw's own path, no KERAS_BACKEND set: choose_backend(images=True), build_cnn,
                   compile_model, model.fit(x_uint8, y, batch_size, epochs, shuffle=True)
    keras-jax      the same with KERAS_BACKEND=jax (dlw's choice before the TF default)
    jax-onednn     keras-jax with XLA_FLAGS=--xla_cpu_use_onednn=true ...
    jax-xnn        keras-jax with XLA_FLAGS=--xla_cpu_use_xnnpack=true
    tf-intra2-inter1 / tf-intra1-inter2 / tf-intra1-inter1
                   Keras on TensorFlow with tf.config.threading set
    tf-dataset     Keras on TensorFlow fed a tf.data pipeline (cached, shuffled, prefetched)
                   instead of numpy arrays
    tf-b128        Keras on TensorFlow, batch 128
    tf-nchw        Keras on TensorFlow, data_format channels_first
    tf-after-jax   Keras on TensorFlow in a process that imported jax (and ran an op) first
    torch-b128     the PyTorch loop at batch 128 (the ratio always uses ``torch`` at batch 64)

PyTorch is for this benchmark only; dlw does not depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

ARCH = {
    "small": dict(conv_filters=(32, 64), dense_layers=(64,), dropout=0.3, batch_norm=False),
    "default": dict(conv_filters=(32, 64, 128), dense_layers=(128,), dropout=0.3, batch_norm=True),
}

ENGINES = {
    # name: (kind, environment overrides, options)
    "torch": ("torch", {}, {}),
    "dlw": ("keras", {}, {"dlw_path": True}),
    "keras-jax": ("keras", {"KERAS_BACKEND": "jax"}, {}),
    "jax-onednn": (
        "keras",
        {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true"},
        {},
    ),
    "jax-xnn": ("keras", {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_cpu_use_xnnpack=true"}, {}),
    "tf-intra2-inter1": ("keras", {"KERAS_BACKEND": "tensorflow"}, {"threads": (2, 1)}),
    "tf-intra1-inter2": ("keras", {"KERAS_BACKEND": "tensorflow"}, {"threads": (1, 2)}),
    "tf-intra1-inter1": ("keras", {"KERAS_BACKEND": "tensorflow"}, {"threads": (1, 1)}),
    "tf-dataset": ("keras", {"KERAS_BACKEND": "tensorflow"}, {"dataset": True}),
    "tf-b128": ("keras", {"KERAS_BACKEND": "tensorflow"}, {"batch": 128}),
    "tf-nchw": ("keras", {"KERAS_BACKEND": "tensorflow"}, {"channels_first": True}),
    "tf-after-jax": ("keras", {"KERAS_BACKEND": "tensorflow"}, {"jax_first": True}),
    "torch-b128": ("torch", {}, {"batch": 128}),
}
DEFAULT_ENGINES = ["torch", "dlw", "keras-jax", "tf-intra1-inter1", "tf-dataset", "tf-b128"]


def make_data(n: int, seed: int = 0):
    """Synthetic uint8 images whose class shifts one colour channel's brightness: learnable, not trivial."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, size=n).astype("int64")
    x = rng.integers(0, 200, size=(n, 32, 32, 3), dtype=np.uint8)
    x[np.arange(n), :, :, y % 3] += (y * 5).astype(np.uint8)[:, None, None]
    return x, y


# ---------------------------------------------------------------- workers (one engine per process)


def worker_torch(args, options) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    arch = ARCH[args.cnn]
    x, y = make_data(args.images)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float().contiguous()  # NCHW float, made once
    yt = torch.from_numpy(y)
    layers: list = []
    channels = 3
    size = 32
    for filters in arch["conv_filters"]:
        layers.append(nn.Conv2d(channels, filters, 3, padding=1, bias=not arch["batch_norm"]))
        if arch["batch_norm"]:
            # Keras' BatchNormalization: momentum 0.99 (PyTorch counts 1 - that), epsilon 1e-3
            layers.append(nn.BatchNorm2d(filters, eps=1e-3, momentum=0.01))
        layers.append(nn.ReLU())
        if size >= 4:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        channels = filters
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for units in arch["dense_layers"]:
        layers += [nn.Linear(channels, units), nn.ReLU()]
        if arch["dropout"] > 0:
            layers.append(nn.Dropout(arch["dropout"]))
        channels = units
    layers.append(nn.Linear(channels, 10))  # softmax is inside the cross-entropy
    model = nn.Sequential(*layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    batch = options.get("batch", 64)
    times, losses = [], []
    for epoch in range(1 + args.epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(xt))
        total, correct = 0.0, 0
        for i in range(0, len(xt), batch):
            idx = order[i : i + batch]
            xb = xt[idx] / 255.0
            yb = yt[idx]
            optimizer.zero_grad()
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
            correct += int((out.argmax(1) == yb).sum())
        times.append(time.perf_counter() - start)
        losses.append(total / len(xt))
    return {"epoch_seconds": times, "loss": losses, "accuracy": correct / len(xt), "batch": batch,
            "threads": torch.get_num_threads(), "backend": "torch " + torch.__version__}


def worker_keras(args, options) -> dict:
    if options.get("jax_first"):
        import jax.numpy as jnp

        float(jnp.ones(3).sum())
    if options.get("dlw_path"):
        assert "KERAS_BACKEND" not in os.environ, "the dlw engine must run with no KERAS_BACKEND"
    from dlw._backend import choose_backend, set_seed

    backend = choose_backend(images=True)
    import keras

    if options.get("threads"):
        import tensorflow as tf

        intra, inter = options["threads"]
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    import numpy as np

    from dlw.config import TrainConfig
    from dlw.models.cnn import build_cnn
    from dlw.objectives import choose_objective
    from dlw.train import compile_model

    set_seed(42)
    x, y = make_data(args.images)
    batch = options.get("batch", 64)
    if options.get("channels_first"):
        keras.config.set_image_data_format("channels_first")
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        shape = (3, 32, 32)
    else:
        shape = (32, 32, 3)
    objective = choose_objective("multiclass", 10, "auto", "auto")
    model = build_cnn(shape, objective, **ARCH[args.cnn])
    train = TrainConfig(epochs=1 + args.epochs, batch_size=batch, optimizer="adam", learning_rate=1e-3, early_stopping=False)
    compile_model(model, objective, train)

    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    if options.get("dataset"):
        import tensorflow as tf

        data = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .cache()
            .shuffle(len(x), seed=0, reshuffle_each_iteration=True)
            .batch(batch)
            .prefetch(tf.data.AUTOTUNE)
        )
        fitted = model.fit(data, epochs=train.epochs, verbose=0, callbacks=[Clock()])
    else:
        # what dlw.train.fit calls, less the validation split and the early stopping
        fitted = model.fit(x, y, epochs=train.epochs, batch_size=train.batch_size, shuffle=True, verbose=0, callbacks=[Clock()])
    info = {"epoch_seconds": times, "loss": [float(v) for v in fitted.history["loss"]],
            "accuracy": float(fitted.history["accuracy"][-1]), "batch": batch, "backend": backend + " " + _version(backend)}
    if backend == "tensorflow":
        import tensorflow as tf

        info["threads"] = [tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads()]
        info["jax_imported"] = "jax" in sys.modules
    return info


def _version(backend: str) -> str:
    import importlib

    return importlib.import_module(backend).__version__


# ---------------------------------------------------------------- driver


def run_engine(name: str, args) -> dict:
    kind, env_extra, _ = ENGINES[name]
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "XLA_FLAGS")}
    env.update(env_extra)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    command = [sys.executable, __file__, "--worker", name, "--epochs", str(args.epochs), "--images", str(args.images), "--cnn", args.cnn]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"], "wall": wall}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result["load_before"] = load
    timed = result["epoch_seconds"][1:]  # the first epoch is the warm-up (tracing, compiling)
    result["images_per_s"] = args.images / statistics.median(timed)
    result["best_images_per_s"] = args.images / min(timed)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run, after one warm-up epoch")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each engine, interleaved")
    parser.add_argument("--images", type=int, default=12800)
    parser.add_argument("--cnn", choices=sorted(ARCH), default="small")
    parser.add_argument("--engines", default=",".join(DEFAULT_ENGINES))
    parser.add_argument("--quick", action="store_true", help="3,200 images, 2 timed epochs, dlw and torch only, 2 repeats")
    parser.add_argument("--json", help="also write every run's raw result here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, _, options = ENGINES[args.worker]
        result = (worker_torch if kind == "torch" else worker_keras)(args, options)
        print(json.dumps(result))
        return

    if args.quick:
        args.images, args.epochs, args.repeats = 3200, 2, 2
        if args.engines == ",".join(DEFAULT_ENGINES):
            args.engines = "torch,dlw"
    names = list(ENGINES) if args.engines == "all" else [e.strip() for e in args.engines.split(",") if e.strip()]
    for required in ("torch", "dlw"):
        if required not in names:
            names.insert(0, required)
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        sys.exit(f"unknown engines: {', '.join(unknown)}; choose from {', '.join(ENGINES)}")

    print(f"cnn {args.cnn} {ARCH[args.cnn]}, {args.images} images 32x32x3 uint8, 10 classes, "
          f"1 warm-up + {args.epochs} timed epochs, {args.repeats} repeats, {os.cpu_count()} cores", flush=True)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for repeat in range(args.repeats):
        for name in names:
            result = run_engine(name, args)
            runs[name].append(result)
            if "error" in result:
                print(f"  [{repeat + 1}] {name:18s} failed: {result['error'][0][:150]}", flush=True)
            else:
                epochs = " ".join(f"{s:.2f}" for s in result["epoch_seconds"])
                print(f"  [{repeat + 1}] {name:18s} {result['images_per_s']:8.0f} images/s   epochs (s): {epochs}   "
                      f"loss {result['loss'][-1]:.3f} acc {result['accuracy']:.3f}   load {result['load_before']:.1f}", flush=True)

    print()
    print("| engine | images/s (median of runs) | each run | best epoch | batch | backend |")
    print("| --- | ---: | --- | ---: | ---: | --- |")
    speed: dict[str, float] = {}
    best: dict[str, float] = {}
    for name in names:
        good = [r for r in runs[name] if "error" not in r]
        if not good:
            print(f"| {name} | failed | {runs[name][0]['error'][0][:80]} | | | |")
            continue
        speed[name] = statistics.median(r["images_per_s"] for r in good)
        best[name] = max(r["best_images_per_s"] for r in good)
        each = ", ".join(f"{r['images_per_s']:.0f}" for r in good)
        print(f"| {name} | {speed[name]:,.0f} | {each} | {best[name]:,.0f} | {good[0]['batch']} | {good[0]['backend']} |")
    print()
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    if "dlw" in speed and "torch" in speed:
        print(f"(fastest epochs only, less sensitive to other load on the machine: {best['dlw'] / best['torch']:.2f})")
        print(f"ratio dlw / PyTorch loop: {speed['dlw'] / speed['torch']:.2f}")
    else:
        print("ratio dlw / PyTorch loop: n/a (a run failed)")


if __name__ == "__main__":
    main()
