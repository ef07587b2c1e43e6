"""Batch reference: scikit-learn logistic regression on hashed difference features.

The features come from the core's featuriser (hashed unigrams and bigrams of each
completion plus its prompt-overlap and length features), so the batch model and the
online model see the same inputs. Every pair enters twice, as (x, 1) and
(-x, 0) with x = f(chosen) - f(rejected), and the model has no intercept, so its decision
is antisymmetric like a Bradley-Terry reward difference. Cross-validation folds keep both
rows of a pair together (GroupKFold).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from benchmarks._data import PairRecord

# A featuriser maps (prompt, completion) to hashed feature indices and their values.
TextFeaturiser = Callable[[str, str], tuple[Sequence[int], Sequence[float]]]

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
FOLDS = 5


@dataclass(frozen=True, slots=True)
class CrossValidation:
    """Mean and standard deviation of fold accuracy for each C, and the best C."""

    accuracy_by_c: dict[float, tuple[float, float]]
    best_c: float

    @property
    def best_accuracy(self) -> float:
        return self.accuracy_by_c[self.best_c][0]


def difference_matrix(
    pairs: Sequence[PairRecord], featurise: TextFeaturiser, dimension: int
) -> sp.csr_matrix:
    """Build the sparse matrix whose row i is f(chosen_i) - f(rejected_i)."""
    rows: list[int] = []
    columns: list[int] = []
    values: list[float] = []
    for row, pair in enumerate(pairs):
        for text, sign in ((pair.chosen, 1.0), (pair.rejected, -1.0)):
            indices, weights = featurise(pair.prompt, text)
            rows.extend([row] * len(indices))
            columns.extend(indices)
            values.extend(sign * float(weight) for weight in weights)

    # Duplicate (row, column) entries are summed by the CSR conversion.
    matrix = sp.coo_matrix((values, (rows, columns)), shape=(len(pairs), dimension))
    return matrix.tocsr()


def drop_empty_columns(differences: sp.csr_matrix) -> sp.csr_matrix:
    """Keep only the columns that hold a value, which speeds up the solver on 2**20 hashes.

    The fitted weights of an empty column are zero, so dropping it changes no prediction.
    """
    used = np.unique(differences.indices)
    return differences[:, used].tocsr()


def pairwise_accuracy(weights: NDArray[np.float64], differences: sp.csr_matrix) -> float:
    """Return the share of pairs whose reward difference w . x is strictly positive."""
    margins = differences @ weights
    return float(np.mean(margins > 0.0))


def fit_symmetric(differences: sp.csr_matrix, c: float) -> NDArray[np.float64]:
    """Fit an intercept-free logistic regression on the rows (x, 1) and (-x, 0)."""
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    stacked = sp.vstack([differences, -differences]).tocsr()
    count = differences.shape[0]
    labels = np.concatenate([np.ones(count, dtype=np.int8), np.zeros(count, dtype=np.int8)])

    model = LogisticRegression(C=c, fit_intercept=False, solver="liblinear", max_iter=1000)
    model.fit(stacked, labels)
    return np.asarray(model.coef_[0], dtype=np.float64)


def cross_validate(
    differences: sp.csr_matrix, seed: int, c_grid: Sequence[float] = C_GRID
) -> CrossValidation:
    """Run a shuffled GroupKFold over the pairs for each C and pick the most accurate C.

    Only the training rows are doubled. A test pair is scored once, on its chosen-minus-
    rejected row, because the model's accuracy on (-x, 0) equals its accuracy on (x, 1).
    """
    from sklearn.model_selection import GroupKFold  # noqa: PLC0415

    count = differences.shape[0]
    groups = np.arange(count)
    splitter = GroupKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    folds = list(splitter.split(np.zeros(count), groups=groups))

    accuracy_by_c: dict[float, tuple[float, float]] = {}
    for c in c_grid:
        scores = []
        for train_rows, test_rows in folds:
            weights = fit_symmetric(differences[train_rows], c)
            scores.append(pairwise_accuracy(weights, differences[test_rows]))
        accuracy_by_c[c] = (float(np.mean(scores)), float(np.std(scores)))

    best_c = max(accuracy_by_c, key=lambda c: accuracy_by_c[c][0])
    return CrossValidation(accuracy_by_c, best_c)


def split_indices(count: int, seed: int, test_share: float = 0.2) -> tuple[list[int], list[int]]:
    """Shuffle ``range(count)`` with ``seed`` and cut it into (train, test) index lists."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    cut = count - round(count * test_share)
    return order[:cut], order[cut:]
