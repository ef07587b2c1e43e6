"""Values returned by :class:`~dynamic_rlhf.model.DynamicRLHFModel`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LearnOutcome:
    """Result of learning one example, measured before its update.

    Attributes
    ----------
    pairs:
        Comparisons learned (a ranking of K counts its K(K-1)/2 implied pairs).
    loss:
        Sum of the comparisons' negative log-likelihoods under head 0 before
        the update (Bradley--Terry for strict pairs, Davidson for ties).
    correct:
        Strict comparisons whose preferred completion head 0 scored higher.
    skipped:
        Comparisons of identical completions, counted and not learned.
    """

    pairs: int
    loss: float
    correct: int
    skipped: int


def learn_outcomes(pairs: int, losses: list[float], correct: list[int], skipped: list[int]) -> list[LearnOutcome]:
    """Return ``LearnOutcome(pairs, loss, hit, skip)`` for each ``(loss, hit, skip)``, in order.

    Equal to calling the class, at about half the cost: the frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``, and here the slot
    descriptors are set directly.
    """
    new = object.__new__
    set_pairs, set_loss = LearnOutcome.pairs.__set__, LearnOutcome.loss.__set__  # type: ignore[attr-defined, misc]
    set_correct, set_skipped = LearnOutcome.correct.__set__, LearnOutcome.skipped.__set__  # type: ignore[attr-defined, misc]
    outcomes = []
    for loss, hit, skip in zip(losses, correct, skipped):
        outcome = new(LearnOutcome)
        set_pairs(outcome, pairs)
        set_loss(outcome, loss)
        set_correct(outcome, hit)
        set_skipped(outcome, skip)
        outcomes.append(outcome)
    return outcomes


@dataclass(frozen=True, slots=True)
class EpochStats:
    """Progressive figures of one pass over the replay buffer.

    ``accuracy`` and ``mean_margin`` (mean of r(chosen) - r(rejected))
    cover strict comparisons only; ``mean_loss`` covers all comparisons.
    """

    epoch: int
    pairs: int
    mean_loss: float
    accuracy: float
    mean_margin: float


@dataclass(frozen=True, slots=True)
class RewardScore:
    """Reward of one completion: head 0's reward and the bootstrap heads' spread.

    ``reward`` is the reward of head 0, the model fitted to every comparison
    with unit weight; the bootstrap heads' mean estimates the same quantity.
    ``std`` is the population standard deviation over the bootstrap heads
    (0.0 without heads).
    """

    reward: float
    std: float


@dataclass(frozen=True, slots=True)
class ModelStats:
    """Live metrics of a model.

    The progressive figures come from predictions made before each update of
    the stream learned with ``learn_one``/``add_preferences`` (extra epochs
    of ``optimise_reward`` are excluded, since they revisit seen data).
    """

    model_id: str
    version: int
    examples_seen: int
    pairs_trained: int
    skipped_identical: int
    progressive_loss: float
    progressive_accuracy: float
    recent_loss: float
    recent_accuracy: float
    mean_margin: float
    weight_norm: float
    reward_mean: float
    reward_std: float
    reward_length_correlation: float
    annotators: int
    n_heads: int
    dim: int
