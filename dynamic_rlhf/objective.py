r"""The per-example objective and its gradient with respect to rewards.

For an example with completions :math:`c_1..c_n`, comparisons :math:`P`
(each with weight :math:`\pi_p`) and head weights :math:`h_k`, head
:math:`k` minimises

.. math::

    L_k = h_k \Big[\sum_{p \in P} \pi_p \big(\ell_p(r_{a_p} - r_{b_p})
          + \beta [p \text{ both bad}] (\operatorname{sp}(r_{a_p}) + \operatorname{sp}(r_{b_p}))
          + \tfrac{\gamma}{2} (r_{a_p} + r_{b_p})^2\big)\Big]

where :math:`\ell_p` is Bradley--Terry for strict and Davidson for tied
comparisons (see :mod:`dynamic_rlhf.losses`). For a ranking learned with
Plackett--Luce, the :math:`\ell_p` terms are replaced by the Plackett--Luce
loss of the ranking. The gradient with respect to the weights is
:math:`\sum_i (\partial L_k / \partial r_i) x_i`, so the model only needs
the coefficients :math:`\partial L_k / \partial r_i` returned here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from dynamic_rlhf.feedback import STRICT, TIE_BAD
from dynamic_rlhf.losses import bradley_terry, davidson_tie, plackett_luce, push_down

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Structure:
    """Comparison layout of an example as dense arrays."""

    first: NDArray[np.int64]
    second: NDArray[np.int64]
    strict: NDArray[np.bool_]
    all_strict: bool
    single_strict: bool
    no_strict: bool
    any_bad: bool
    bad: NDArray[np.bool_]
    margins: FloatArray
    weights: FloatArray
    incidence: FloatArray  # (P, n): +1 at first, -1 at second
    both: FloatArray  # (P, n): +1 at first and at second
    first_onehot: FloatArray
    second_onehot: FloatArray
    ranking: NDArray[np.int64] | None


@lru_cache(maxsize=4096)
def build_structure(n: int, pairs: tuple[tuple[int, int, int, float, float], ...], ranking: tuple[int, ...] | None) -> Structure:
    """Return the arrays of a comparison layout (cached: most layouts repeat)."""
    first = np.array([p[0] for p in pairs], dtype=np.int64)
    second = np.array([p[1] for p in pairs], dtype=np.int64)
    kinds = np.array([p[2] for p in pairs], dtype=np.int64)
    rows = np.arange(len(pairs))
    first_onehot = np.zeros((len(pairs), n))
    first_onehot[rows, first] = 1.0
    second_onehot = np.zeros((len(pairs), n))
    second_onehot[rows, second] = 1.0
    return Structure(
        first=first,
        second=second,
        strict=kinds == STRICT,
        all_strict=bool((kinds == STRICT).all()),
        single_strict=n == 2 and len(pairs) == 1 and pairs[0][:3] == (0, 1, STRICT) and ranking is None,
        no_strict=not bool((kinds == STRICT).any()),
        any_bad=bool((kinds == TIE_BAD).any()),
        bad=kinds == TIE_BAD,
        margins=np.array([p[3] for p in pairs], dtype=np.float64),
        weights=np.array([p[4] for p in pairs], dtype=np.float64),
        incidence=first_onehot - second_onehot,
        both=first_onehot + second_onehot,
        first_onehot=first_onehot,
        second_onehot=second_onehot,
        ranking=None if ranking is None else np.array(ranking, dtype=np.int64),
    )


def _single_strict(rewards: FloatArray, structure: Structure,
                   head_weights: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    # The common case, one strict pair of two completions, in fewer numpy calls.
    d = rewards[:, :1] - rewards[:, 1:]
    loss, grad = bradley_terry(d, structure.margins)
    grad *= structure.weights[0] * head_weights[:, None]
    coefficients = np.concatenate((grad, -grad), axis=1)
    return loss[:, 0] * (structure.weights[0] * head_weights), coefficients, d, loss


@dataclass(frozen=True)
class ObjectiveParams:
    """The loss settings taken from :class:`~dynamic_rlhf.config.ModelConfig`."""

    tie_nu: float
    tie_bad_strength: float
    centring: float


def comparison_terms(rewards: FloatArray, structure: Structure, nu: float) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return (reward differences, per-pair likelihood loss, d loss / d difference), each (H, P)."""
    d = rewards @ structure.incidence.T
    if structure.all_strict:
        loss, grad = bradley_terry(d, structure.margins)
        return d, loss, grad
    if structure.no_strict:
        loss, grad = davidson_tie(d, nu)
        return d, loss, grad

    bt_loss, bt_grad = bradley_terry(d, structure.margins)
    tie_loss, tie_grad = davidson_tie(d, nu)
    return d, np.where(structure.strict, bt_loss, tie_loss), np.where(structure.strict, bt_grad, tie_grad)


def example_objective(rewards: FloatArray, structure: Structure, params: ObjectiveParams,
                      head_weights: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Return the per-head objective, d objective / d rewards, and the pair terms.

    *rewards* is ``(H, n)``; the results are ``L`` of shape ``(H,)``, the
    coefficients ``(H, n)``, and the unweighted differences and likelihood
    losses ``(H, P)`` used for the progressive metrics.
    """
    if structure.single_strict and params.centring == 0.0:
        return _single_strict(rewards, structure, head_weights)

    weights = structure.weights
    d, pair_loss, pair_grad = comparison_terms(rewards, structure, params.tie_nu)

    # Likelihood: pairwise terms, or Plackett-Luce for a ranking.
    if structure.ranking is None:
        loss = pair_loss @ weights
        coefficients = (pair_grad * weights) @ structure.incidence
    else:
        loss, ranked_grad = plackett_luce(rewards[:, structure.ranking])
        coefficients = np.zeros_like(rewards)
        coefficients[:, structure.ranking] = ranked_grad

    # "Both bad" ties: push both rewards below zero.
    if params.tie_bad_strength > 0.0 and structure.any_bad:
        bad_weights = weights * structure.bad
        for onehot in (structure.first_onehot, structure.second_onehot):
            value, grad = push_down(rewards @ onehot.T, params.tie_bad_strength)
            loss = loss + value @ bad_weights
            coefficients = coefficients + (grad * bad_weights) @ onehot

    # Reward centring: keep each compared pair's reward sum near zero.
    if params.centring > 0.0:
        total = rewards @ structure.both.T
        loss = loss + 0.5 * params.centring * (total * total) @ weights
        coefficients = coefficients + (params.centring * total * weights) @ structure.both

    return loss * head_weights, coefficients * head_weights[:, None], d, pair_loss
