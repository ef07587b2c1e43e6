r"""Per-coordinate AdaGrad with lazily applied, decoupled L2 decay.

For a sparse gradient :math:`g` on the touched coordinates :math:`u`, one
step :math:`t` does, for every head row at once:

.. math::

    w_u \leftarrow w_u (1 - \eta\lambda)^{t - s_u}, \quad
    G_u \leftarrow G_u + g_u^2, \quad
    w_u \leftarrow w_u - \eta \, g_u / (\sqrt{G_u} + \epsilon), \quad
    s_u \leftarrow t

where :math:`s_u` is the step at which coordinate :math:`u` was last
touched. Because the decay is decoupled from the adaptive step (as in
AdamW), catching up :math:`t - s_u` missed decays at once gives exactly the
weights a dense implementation would hold, while each update costs
O(touched coordinates x heads).

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


class LazyAdaGrad:
    """Weights, AdaGrad accumulators and last-touched steps of ``heads`` linear models.

    Parameters
    ----------
    heads:
        Number of weight rows updated together.
    dim:
        Number of coordinates per row.
    learning_rate, l2, epsilon:
        :math:`\\eta`, :math:`\\lambda` and :math:`\\epsilon` above.
    """

    def __init__(self, heads: int, dim: int, learning_rate: float, l2: float, epsilon: float = 1e-8) -> None:
        self.learning_rate = learning_rate
        self.l2 = l2
        self.epsilon = epsilon
        self.weights = np.zeros((heads, dim), dtype=np.float32)
        self.accumulators = np.zeros((heads, dim), dtype=np.float32)
        self.last_step = np.zeros(dim, dtype=np.uint32)
        self.decay = np.float32(1.0 - learning_rate * l2)

    def current(self, coordinates: NDArray[np.int64], step: int) -> Float32Array:
        """Return the ``(heads, len(coordinates))`` weights as of *step*, decays applied.

        *coordinates* must be unique. The stored weights are left unchanged.
        """
        block = self.weights[:, coordinates]
        if self.l2 > 0.0:
            elapsed = (np.uint32(step) - self.last_step[coordinates]).astype(np.float32)
            block *= np.power(self.decay, elapsed)
        return block

    def step(self, coordinates: NDArray[np.int64], block: Float32Array, gradient: Float32Array, step: int) -> None:
        """Apply one AdaGrad step to *block* (from :meth:`current`) and store it."""
        accumulators = self.accumulators[:, coordinates] + gradient * gradient
        self.accumulators[:, coordinates] = accumulators
        block -= self.learning_rate * gradient / (np.sqrt(accumulators) + self.epsilon)
        self.weights[:, coordinates] = block
        self.last_step[coordinates] = step

    def touched(self) -> NDArray[np.int64]:
        """Return the coordinates updated at least once, ascending."""
        return np.flatnonzero(self.last_step).astype(np.int64)
