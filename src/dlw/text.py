"""Free-text columns as hashed bags of word and character n-grams.

A text value (a review, a title) becomes the ids of its word n-grams and character
n-grams (within word boundaries) hashed into ``buckets`` each (scikit-learn's
``HashingVectorizer``: MurmurHash3, the same ids on every machine and in every process),
word ids first, character ids after them, with a weight per id: ``1 + log(count)``.
The network learns an embedding per bucket and averages them (``dlw.models.text_bag``);
the linear baseline gets the same ids as a TF-IDF matrix and boosting a TruncatedSVD of
it (``text_matrix``, ``dlw.data.tables.TablePrepared``), so the verdict compares like
with like.

The settings are plain JSON in ``schema.json`` (no vocabulary, no pickle)::

    {"word_ngrams": [1, 2], "char_ngrams": [3, 5], "buckets": 32768,
     "lowercase": true, "length": 412}

``length`` is the most ids a row keeps (learned from the train rows, at most
``data.text.max_ngrams``); a longer text keeps its word n-grams, then its most frequent
character n-grams.

>>> import pandas as pd
>>> settings = fit_text_encoding(pd.Series(["good tea", "bad coffee, very bad"]), {"buckets": 64})
>>> ids, weights = text_bag(pd.Series(["good coffee", None]), settings)
>>> ids.shape == weights.shape == (2, settings["length"]), float(weights[1].sum())
(True, 0.0)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_TEXT = {"word_ngrams": [1, 2], "char_ngrams": [3, 5], "buckets": 32768, "lowercase": True, "max_ngrams": 1024}


def hashed_counts(values: pd.Series, settings: dict):
    """A sparse ``(n, n_ids(settings))`` matrix of n-gram counts: word buckets, then character buckets."""
    from scipy import sparse
    from sklearn.feature_extraction.text import HashingVectorizer

    text = values.fillna("").astype(str).tolist()
    blocks = []
    common = dict(n_features=settings["buckets"], alternate_sign=False, norm=None, lowercase=settings["lowercase"], dtype=np.float32)
    if settings.get("word_ngrams"):
        words = HashingVectorizer(analyzer="word", ngram_range=tuple(settings["word_ngrams"]), token_pattern=r"(?u)\b\w+\b", **common)
        blocks.append(words.transform(text))
    if settings.get("char_ngrams"):
        chars = HashingVectorizer(analyzer="char_wb", ngram_range=tuple(settings["char_ngrams"]), **common)
        blocks.append(chars.transform(text))
    return sparse.hstack(blocks).tocsr()


def n_ids(settings: dict) -> int:
    """How many distinct ids the settings hash into (the width of the embedding table)."""
    return settings["buckets"] * (bool(settings.get("word_ngrams")) + bool(settings.get("char_ngrams")))


def fit_text_encoding(train: pd.Series, options: dict | None = None) -> dict:
    """The settings of a text column, with ``length`` learned from the train rows.

    ``options`` overrides ``DEFAULT_TEXT`` (the config's ``data.text``). Raises ValueError
    when no train value holds a word (the caller names the column).
    """
    settings = {**DEFAULT_TEXT, **(options or {})}
    counts = hashed_counts(train, settings)
    per_row = np.diff(counts.indptr)
    if not per_row.any():
        raise ValueError("every value is empty")
    settings["length"] = int(min(settings.pop("max_ngrams"), per_row.max()))
    return settings


def text_bag(values: pd.Series, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(ids int32, weights float32)``, each ``(n, length)``: a row's n-gram ids, padded with weight 0."""
    counts = hashed_counts(values.reset_index(drop=True), settings)
    length = settings["length"]
    ids = np.zeros((counts.shape[0], length), dtype="int32")
    weights = np.zeros((counts.shape[0], length), dtype="float32")
    word_ids = settings["buckets"] if settings.get("word_ngrams") else 0
    for row in range(counts.shape[0]):
        start, end = counts.indptr[row], counts.indptr[row + 1]
        cols, n = counts.indices[start:end], counts.data[start:end]
        if len(cols) > length:  # keep word n-grams, then the most frequent character n-grams
            keep = np.lexsort((-n, cols >= word_ids))[:length]
            cols, n = cols[keep], n[keep]
        ids[row, : len(cols)] = cols
        weights[row, : len(cols)] = 1.0 + np.log(n)
    return ids, weights


def text_matrix(ids: np.ndarray, weights: np.ndarray, width: int):
    """The bag of one text column as a sparse ``(n, width)`` matrix of weights (what the baselines read)."""
    from scipy import sparse

    n, length = ids.shape
    rows = np.repeat(np.arange(n), length)
    matrix = sparse.csr_matrix((weights.reshape(-1).astype("float64"), (rows, ids.reshape(-1))), shape=(n, width))
    matrix.eliminate_zeros()
    return matrix


class TextBaselineFeatures:
    """The text columns as the baselines read them, fitted on the train rows only.

    ``tfidf``: each column's bag (the network's own ids and weights) with inverse document
    frequencies from the train rows, rows scaled to unit length, for the linear model.
    ``svd``: a TruncatedSVD of those TF-IDF columns (at most ``components``), for
    boosting, which cannot split 65,000 sparse columns well.
    """

    def __init__(self, train_inputs: dict, width: int, *, components: int = 64, seed: int = 0):
        from scipy import sparse
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfTransformer

        self.width = width
        bags = self._bags(train_inputs)
        self.idf = [TfidfTransformer().fit(bag) for bag in bags]
        train = sparse.hstack([t.transform(b) for t, b in zip(self.idf, bags)]).tocsr()
        n_components = max(1, min(components, train.shape[0] - 1, train.shape[1] - 1))
        self.reducer = TruncatedSVD(n_components=n_components, random_state=seed).fit(train)

    def _bags(self, inputs: dict) -> list:
        ids, weights = inputs["text_ids"], inputs["text_weights"]
        return [text_matrix(ids[:, c], weights[:, c], self.width) for c in range(ids.shape[1])]

    def tfidf(self, inputs: dict):
        """A sparse ``(n, columns * width)`` TF-IDF matrix."""
        from scipy import sparse

        return sparse.hstack([t.transform(b) for t, b in zip(self.idf, self._bags(inputs))]).tocsr()

    def svd(self, inputs: dict) -> np.ndarray:
        """A dense ``(n, components)`` matrix: the TF-IDF rows projected on the train rows' top components."""
        return self.reducer.transform(self.tfidf(inputs))
