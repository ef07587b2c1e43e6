r"""Per-coordinate AdaGrad with decoupled L2 decay applied lazily.

One step :math:`t` with sparse gradient :math:`g` on the touched
coordinates :math:`u` does, for every head at once:

.. math::

    w \leftarrow (1 - \eta\lambda) \, w, \quad
    G_u \leftarrow G_u + g_u^2, \quad
    w_u \leftarrow w_u - \eta \, g_u / (\sqrt{G_u} + \delta)

The decay touches every coordinate, so it is kept lazy: the stored weights
are :math:`\tilde w = w / s_t` with the scalar :math:`s_t = (1 - \eta\lambda)^t`.
Decaying all weights is then the O(1) update :math:`s_t = s_{t-1}(1 - \eta\lambda)`,
reading a weight is :math:`w_u = s_t \tilde w_u`, and the gradient step
writes :math:`\tilde w_u \leftarrow \tilde w_u - \eta g_u / ((\sqrt{G_u} + \delta) s_t)`.
One update therefore costs O(touched coordinates x heads), and the result
equals dense decay up to float32 rounding. When :math:`s_t` falls below
1e-20 the scale is folded into the stored weights (one pass over the rows in use, about
once every :math:`46 / (\eta\lambda)` steps).

AdaGrad rather than Adam: rare hashed n-grams keep a large step until they
have been seen often, AdaGrad has regret guarantees for online convex
losses, and it keeps one accumulator per weight. Adam's two moment
estimates decay at every step for every coordinate, so they cannot be
updated lazily without changing the result.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dynamic_rlhf import kernels

Float32Array = NDArray[np.float32]


class LazyAdaGrad:
    """Weights, AdaGrad accumulators and the decay scale of ``heads`` linear models.

    The weights and accumulators live in one ``(dim, 2, heads)`` float32 table, so
    those of all heads of one bucket are 72 adjacent bytes (with 9 heads) and an
    update touches one or two cache lines per bucket. A bucket gets the next free row
    of the table when it is first updated, and ``rows[bucket]`` stores that row plus one
    (0 for a bucket never updated). The used rows are therefore contiguous, and the
    table's memory pages beyond them are never written. So apart from the 4-byte row
    map per bucket, a model's resident memory grows with the buckets it has updated
    rather than with ``dim``. The loops themselves are in :mod:`dynamic_rlhf.kernels`.
    """

    def __init__(self, heads: int, dim: int, learning_rate: float, l2: float, delta: float = 1e-8) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        # Rounded to float32, like every operand of the float32 step.
        self.delta = float(np.float32(delta))
        self.decay = 1.0 - learning_rate * l2
        self.scale = 1.0
        self.table = np.zeros((dim, 2, heads), dtype=np.float32)
        self.rows = np.zeros(dim, dtype=np.int32)
        self.n_rows = 0

    @property
    def heads(self) -> int:
        return int(self.table.shape[2])

    def stored(self, coordinates: NDArray[np.int64]) -> tuple[Float32Array, Float32Array]:
        """Return the ``(len(coordinates), heads)`` stored weights and accumulators (zero for buckets never updated)."""
        rows = self.rows[coordinates].astype(np.int64) - 1
        updated = rows >= 0
        if updated.all():
            # One gather of whole rows (weights and accumulators are adjacent), then two copies.
            block = self.table.take(rows, axis=0)
            return (np.ascontiguousarray(block[:, kernels.WEIGHT]),
                    np.ascontiguousarray(block[:, kernels.ACCUMULATOR]))
        weights = np.zeros((len(coordinates), self.heads), dtype=np.float32)
        accumulators = np.zeros((len(coordinates), self.heads), dtype=np.float32)
        weights[updated] = self.table[rows[updated], kernels.WEIGHT]
        accumulators[updated] = self.table[rows[updated], kernels.ACCUMULATOR]
        return weights, accumulators

    def load(self, coordinates: NDArray[np.int64], weights: Float32Array, accumulators: Float32Array) -> None:
        """Store the weights and accumulators of buckets never updated so far, in the order given."""
        rows = np.arange(self.n_rows, self.n_rows + len(coordinates))
        self.table[rows, kernels.WEIGHT] = weights
        self.table[rows, kernels.ACCUMULATOR] = accumulators
        self.rows[coordinates] = rows + 1
        self.n_rows += len(coordinates)

    def current(self, coordinates: NDArray[np.int64]) -> Float32Array:
        """Return the ``(len(coordinates), heads)`` current weights, decay included."""
        stored, _ = self.stored(coordinates)
        return stored * np.float32(self.scale) if self.scale != 1.0 else stored

    def rewards(self, coordinates: NDArray[np.int64], block: Float32Array, columns: int) -> NDArray[np.float64]:
        """Return the ``(columns, heads)`` rewards of a row-major ``(buckets, columns)`` block."""
        out = np.empty((columns, self.heads))
        kernels.block_rewards(coordinates, block.reshape(-1), columns, self.rows, self.table, self.scale, out)
        return out

    def step(self, coordinates: NDArray[np.int64], block: Float32Array, columns: int,
             coefficients: NDArray[np.float64]) -> None:
        """Decay every weight once, then take an AdaGrad step on unique *coordinates*.

        The gradient of head ``k`` at bucket ``j`` is ``sum_c block[j, c] * coefficients[k, c]``.
        """
        self.scale *= self.decay
        gradient = np.empty((len(coordinates), self.heads), dtype=np.float32)
        kernels.block_gradient(block.reshape(-1), columns, np.ascontiguousarray(coefficients, dtype=np.float64), gradient)
        step = float(np.float32(self.learning_rate / self.scale))
        self.n_rows = kernels.adagrad_rows(coordinates, gradient, self.rows, self.table, self.n_rows, step, self.delta)
        self.fold_if_small()

    def fold_if_small(self) -> None:
        """Fold the decay scale into the stored weights once it nears float underflow."""
        if self.scale < kernels.MIN_SCALE:
            kernels.fold_scale(self.table, self.n_rows, self.scale)
            self.scale = 1.0

    def weight_norm(self, head: int = 0) -> float:
        """Return the Euclidean norm of one head's current weights, decay included.

        It reads only the rows in use, in bucket order, and gives the same bits as the
        norm of ``current(touched())[:, head]``.
        """
        rows = self.rows[self.touched()].astype(np.int64) - 1
        column = self.table[rows, kernels.WEIGHT, head]
        if self.scale != 1.0:
            column = column * np.float32(self.scale)
        return float(np.linalg.norm(column.astype(np.float64)))

    def touched(self) -> NDArray[np.int64]:
        """Return the coordinates updated at least once, ascending."""
        return np.flatnonzero(self.rows).astype(np.int64)
