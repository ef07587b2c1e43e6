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
1e-20 the scale is folded into the stored weights (one O(dim) pass, about
once every :math:`46 / (\eta\lambda)` steps).

AdaGrad rather than Adam: rare hashed n-grams keep a large step until they
have been seen often, AdaGrad has regret guarantees for online convex
losses, and it keeps one accumulator per weight. Adam's two moment
estimates decay at every step for every coordinate, so they cannot be
updated lazily without changing the result.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from dynamic_rlhf import kernels

Float32Array = NDArray[np.float32]


class LazyAdaGrad:
    """Weights, AdaGrad accumulators and the decay scale of ``heads`` linear models.

    Both arrays are coordinate-major, shape ``(dim, heads)``, and are views
    of one ``(dim, 2, heads)`` table: the weights and accumulators of all
    heads of one bucket are 72 adjacent bytes (with 9 heads), so an update
    touches one or two cache lines per bucket. The loops themselves are in
    :mod:`dynamic_rlhf.kernels`.
    """

    def __init__(self, heads: int, dim: int, learning_rate: float, l2: float, delta: float = 1e-8) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        # Rounded to float32, like every operand of the float32 step.
        self.delta = float(np.float32(delta))
        self.decay = 1.0 - learning_rate * l2
        self.scale = 1.0
        # One table, so the weights and accumulators of a bucket share cache lines;
        # the two arrays below are views of it.
        self.table = np.zeros((dim, 2, heads), dtype=np.float32)
        self.stored_weights = self.table[:, kernels.WEIGHT, :]
        self.accumulators = self.table[:, kernels.ACCUMULATOR, :]
        self.touched_mask = np.zeros(dim, dtype=np.bool_)

    @property
    def heads(self) -> int:
        return int(self.stored_weights.shape[1])

    def current(self, coordinates: NDArray[np.int64]) -> Float32Array:
        """Return the ``(len(coordinates), heads)`` current weights, decay included."""
        # Fancy indexing of the strided view; its take(axis=0) is several times slower.
        stored = self.stored_weights[coordinates]
        return stored * np.float32(self.scale) if self.scale != 1.0 else stored

    def rewards(self, coordinates: NDArray[np.int64], block: Float32Array, columns: int) -> NDArray[np.float64]:
        """Return the ``(columns, heads)`` rewards of a row-major ``(buckets, columns)`` block."""
        out = np.empty((columns, self.heads))
        kernels.block_rewards(coordinates, block.reshape(-1), columns, self.table, self.scale, out)
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
        kernels.adagrad_rows(coordinates, gradient, self.table, self.touched_mask, step, self.delta)
        self.fold_if_small()

    def fold_if_small(self) -> None:
        """Fold the decay scale into the stored weights once it nears float underflow."""
        if self.scale < kernels.MIN_SCALE:
            kernels.fold_scale(self.table, self.scale)
            self.scale = 1.0

    def weight_norm(self, head: int = 0) -> float:
        """Return the Euclidean norm of one head's current weights, decay included.

        Only touched rows can be non-zero, so it reads those: a pass over the whole
        column reads every page of the table, which costs milliseconds for a new model.
        """
        column = self.table[self.touched(), kernels.WEIGHT, head].astype(np.float64)
        return math.sqrt(float(column @ column)) * self.scale

    def touched(self) -> NDArray[np.int64]:
        """Return the coordinates updated at least once, ascending."""
        return np.flatnonzero(self.touched_mask).astype(np.int64)
