r"""Per-comparison losses and their derivatives with respect to the rewards.

All functions are vectorised over heads: reward arguments have shape
``(H,)`` (one value per head) or ``(H, K)`` and the returned derivatives
have the same shape. With :math:`d = r_a - r_b`:

* strict preference, Bradley--Terry with margin :math:`m`:
  :math:`\ell = \log(1 + e^{-(d - m)})`,
  :math:`\partial \ell / \partial d = \sigma(d - m) - 1`;
* tie, Davidson (1970) with tie parameter :math:`\nu > 0`:
  :math:`\ell = \log(e^{d/2} + e^{-d/2} + \nu) - \log \nu`,
  :math:`\partial \ell / \partial d = \sinh(d/2) / (2\cosh(d/2) + \nu)`;
* "both bad" push-down with strength :math:`\beta`:
  :math:`\ell = \beta(\operatorname{softplus}(r_a) + \operatorname{softplus}(r_b))`;
* ranking, Plackett--Luce over rewards listed best first:
  :math:`\ell = \sum_{i<K-1} \big(\log \sum_{j \ge i} e^{r_j} - r_i\big)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def sigmoid(x: FloatArray) -> FloatArray:
    """Return the logistic function, computed without overflow."""
    return np.exp(-np.logaddexp(0.0, -x))


def bradley_terry(d: FloatArray, margin: float | FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the loss and d(loss)/d(d) of a strict preference ``a > b``."""
    z = d - margin
    loss = np.logaddexp(0.0, -z)
    # sigmoid(z) = exp(-loss), which saves a second log-sum-exp.
    return loss, np.exp(-loss) - 1.0


def bradley_terry_scalar(differences: Sequence[float], margin: float,
                         head_weights: Sequence[float]) -> tuple[list[float], float]:
    """Return ``head_weight * d(loss)/d(d)`` per head and head 0's loss, in plain floats.

    The same Bradley--Terry loss as :func:`bradley_terry`, for the common
    case of one pair: with about ten heads, scalar ``math`` calls cost less
    than the fixed overhead of the equivalent numpy calls.
    """
    gradients = []
    for d, weight in zip(differences, head_weights):
        z = d - margin
        # sigmoid(-z), computed on the side where the exponential cannot overflow.
        if z >= 0.0:
            e = math.exp(-z)
            tail = e / (1.0 + e)
        else:
            tail = 1.0 / (1.0 + math.exp(z))
        gradients.append(-tail * weight)
    z0 = differences[0] - margin
    loss = math.log1p(math.exp(-abs(z0))) + max(-z0, 0.0)
    return gradients, loss


def davidson_tie(d: FloatArray, nu: float) -> tuple[FloatArray, FloatArray]:
    """Return the loss and d(loss)/d(d) of a tie under Davidson's model.

    Written with ``a = |d| / 2`` so no exponential overflows:
    ``log(e^a + e^-a + nu) = a + log(1 + e^-2a + nu e^-a)``.
    """
    a = 0.5 * np.abs(d)
    e1 = np.exp(-a)
    e2 = e1 * e1
    denominator = 1.0 + e2 + nu * e1
    loss = a + np.log(denominator) - np.log(nu)
    grad = np.sign(d) * 0.5 * (1.0 - e2) / denominator
    return loss, grad


def davidson_tie_probability(d: FloatArray, nu: float) -> FloatArray:
    """Return P(tie) = nu / (e^{d/2} + e^{-d/2} + nu)."""
    loss, _ = davidson_tie(d, nu)
    return np.exp(-loss)


def push_down(r: FloatArray, strength: float) -> tuple[FloatArray, FloatArray]:
    """Return ``strength * softplus(r)`` and its derivative ``strength * sigmoid(r)``."""
    return strength * np.logaddexp(0.0, r), strength * sigmoid(r)


def plackett_luce(rewards: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Return the Plackett--Luce loss per head and d(loss)/d(rewards).

    *rewards* has shape ``(H, K)`` with the completions in ranked order, best
    first. The loss is a sum over the K - 1 choice stages; stage ``i`` picks
    completion ``i`` out of completions ``i..K-1``.
    """
    k = rewards.shape[1]

    # Log-partition of every stage: logsumexp over the suffix r[i:].
    suffix = np.logaddexp.accumulate(rewards[:, ::-1], axis=1)[:, ::-1]
    stages = suffix[:, : k - 1]
    loss = (stages - rewards[:, : k - 1]).sum(axis=1)

    # Stage i contributes softmax_i(j) for j >= i, minus 1 for the chosen j = i.
    probabilities = np.exp(rewards[:, None, :] - stages[:, :, None])
    probabilities *= np.triu(np.ones((k - 1, k)))[None, :, :]
    grad = probabilities.sum(axis=1)
    grad[:, : k - 1] -= 1.0
    return loss, grad
