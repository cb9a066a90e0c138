"""Built-in tables that need no network: palmerpenguins and scikit-learn's sets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd


@dataclass(frozen=True)
class Builtin:
    target: str
    describe: str
    load: Callable[[], pd.DataFrame]


def _penguins() -> pd.DataFrame:
    from palmerpenguins import load_penguins

    return load_penguins()


def _sklearn(loader_name: str, class_names: bool) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)(as_frame=True)
        frame = bunch.frame.copy()
        if class_names:
            names = list(bunch.target_names)
            frame["target"] = [str(names[int(i)]) for i in frame["target"]]
        return frame

    return load


BUILTINS: dict[str, Builtin] = {
    "penguins": Builtin("species", "Palmer penguins: 344 birds, 3 species, size and island", _penguins),
    "iris": Builtin("target", "Iris flowers: 150 rows, 3 species, 4 measurements", _sklearn("load_iris", True)),
    "wine": Builtin("target", "Wine cultivars: 178 rows, 3 classes, 13 chemical measurements", _sklearn("load_wine", True)),
    "breast_cancer": Builtin(
        "target", "Breast cancer: 569 tumours, malignant or benign, 30 measurements", _sklearn("load_breast_cancer", True)
    ),
    "diabetes": Builtin(
        "target", "Diabetes progression: 442 patients, regression on 10 measurements", _sklearn("load_diabetes", False)
    ),
}

# Image sets: the pictures themselves come from dlw.data.images (scikit-learn's 8x8 digits).
IMAGE_BUILTINS: dict[str, str] = {"digits": "Handwritten digits: 1,797 grey 8x8 images, 10 classes (scikit-learn)"}
