r"""Per-coordinate AdaGrad with decoupled L2 decay applied lazily.

One step :math:`t` with sparse gradient :math:`g` on the touched
coordinates :math:`u` does, for every head at once:

.. math::

    w \leftarrow (1 - \eta\lambda) \, w, \quad
    G_u \leftarrow G_u + g_u^2, \quad
    w_u \leftarrow w_u - \eta \, g_u / (\sqrt{G_u} + \epsilon)

The decay touches every coordinate, so it is kept lazy: the stored weights
are :math:`\tilde w = w / s_t` with the scalar :math:`s_t = (1 - \eta\lambda)^t`.
Decaying all weights is then the O(1) update :math:`s_t = s_{t-1}(1 - \eta\lambda)`,
reading a weight is :math:`w_u = s_t \tilde w_u`, and the gradient step
writes :math:`\tilde w_u \leftarrow \tilde w_u - \eta g_u / ((\sqrt{G_u} + \epsilon) s_t)`.
One update therefore costs O(touched coordinates x heads), and the result
equals dense decay up to float32 rounding. When :math:`s_t` falls below
1e-20 the scale is folded into the stored weights (one O(dim) pass, about
once every :math:`46 / (\eta\lambda)` steps).

AdaGrad rather than Adam: rare hashed n-grams keep a large step until they
have been seen often, AdaGrad has regret guarantees for online convex
losses, and it keeps one accumulator per weight, while Adam's two moment
estimates decay at every step for every coordinate and cannot be updated
lazily without changing the result.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Float32Array = NDArray[np.float32]
_MIN_SCALE = 1e-20


class LazyAdaGrad:
    """Weights, AdaGrad accumulators and the decay scale of ``heads`` linear models.

    Arrays are coordinate-major, shape ``(dim, heads)``: the heads of one
    bucket share a cache line, so gathering and scattering the touched
    buckets of all heads costs one memory access per bucket.
    """

    def __init__(self, heads: int, dim: int, learning_rate: float, l2: float, epsilon: float = 1e-8) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        self.epsilon = epsilon
        self.decay = 1.0 - learning_rate * l2
        self.scale = 1.0
        self.scaled_weights = np.zeros((dim, heads), dtype=np.float32)
        self.accumulators = np.zeros((dim, heads), dtype=np.float32)
        self.touched_mask = np.zeros(dim, dtype=np.bool_)

    def current(self, coordinates: NDArray[np.int64]) -> Float32Array:
        """Return the ``(len(coordinates), heads)`` weights, decay included."""
        block = self.scaled_weights[coordinates]
        if self.scale != 1.0:
            block *= np.float32(self.scale)
        return block

    def step(self, coordinates: NDArray[np.int64], gradient: Float32Array) -> None:
        """Decay every weight once, then take an AdaGrad step on *coordinates* (unique)."""
        self.scale *= self.decay
        accumulators = self.accumulators[coordinates]
        accumulators += gradient * gradient
        self.accumulators[coordinates] = accumulators

        delta = gradient / (np.sqrt(accumulators) + np.float32(self.epsilon))
        delta *= np.float32(self.learning_rate / self.scale)
        self.scaled_weights[coordinates] -= delta
        self.touched_mask[coordinates] = True

        if self.scale < _MIN_SCALE:
            self.scaled_weights *= np.float32(self.scale)
            self.scale = 1.0

    def touched(self) -> NDArray[np.int64]:
        """Return the coordinates updated at least once, ascending."""
        return np.flatnonzero(self.touched_mask).astype(np.int64)
