"""Hyperparameters of :class:`~dynamic_rlhf.model.DynamicRLHFModel`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from dynamic_rlhf.errors import ConfigError
from dynamic_rlhf.feedback import RankingLoss


MIN_ADAGRAD_DELTA = 1e-30
"""Smallest accepted ``adagrad_delta``."""


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Immutable model settings; every field is stored in the model state.

    Attributes
    ----------
    dim:
        Hash buckets per head (16 to 2**28).
    ngram_max:
        1 for unigrams, 2 for unigrams and bigrams.
    max_tokens:
        Tokens beyond this count in one text are ignored.
    n_heads:
        Bootstrap heads besides head 0 (0 disables the uncertainty estimate).
    learning_rate:
        AdaGrad base step size.
    l2:
        Decoupled L2 decay per update (weights shrink by ``1 - learning_rate * l2``).
    adagrad_delta:
        AdaGrad's delta (at least 1e-30), added to the root of the squared-gradient sum; larger values damp first steps.
        Values near 1 or above keep the first steps of rare hashed n-grams, which are mostly
        noise, small (see docs/reward-model.md).
    tie_nu:
        Davidson tie parameter; P(tie | equal rewards) = nu / (2 + nu).
    tie_bad_strength:
        Weight of the push-down term of "both bad" ties.
    centring:
        Weight of the reward-centring term ``(r_a + r_b)^2 / 2`` (0 disables it).
    rating_margin_scale:
        Margin per rating point in pairs built from ratings.
    ranking_loss:
        ``"plackett_luce"`` or ``"pairs"`` for ranking examples.
    annotator_min_weight, annotator_prior_agree, annotator_prior_disagree,
    annotator_full_weight_reliability, annotator_confidence:
        See :mod:`dynamic_rlhf.annotators`.
    stats_window:
        Effective window of the running reward and length statistics.
    metrics_window:
        Effective window of the ``recent_*`` progressive metrics.
    replay_buffer_size:
        Examples kept by ``add_preferences`` for ``optimise_reward``.
    name_memory:
        Recent completions kept to name features in ``top_features``.
    """

    dim: int = 2**20
    ngram_max: int = 2
    max_tokens: int = 4096
    n_heads: int = 8
    learning_rate: float = 0.03
    l2: float = 1e-5
    adagrad_delta: float = 2.0
    tie_nu: float = 1.0
    tie_bad_strength: float = 0.5
    centring: float = 0.0
    rating_margin_scale: float = 0.0
    ranking_loss: RankingLoss = "plackett_luce"
    annotator_min_weight: float = 0.25
    annotator_prior_agree: float = 7.0
    annotator_prior_disagree: float = 3.0
    annotator_full_weight_reliability: float = 0.7
    annotator_confidence: float = 0.7
    stats_window: float = 10_000.0
    metrics_window: float = 1_000.0
    replay_buffer_size: int = 10_000
    name_memory: int = 1_000

    def __post_init__(self) -> None:
        _check_int("dim", self.dim, 16, 2**28)
        _check_int("ngram_max", self.ngram_max, 1, 2)
        _check_int("max_tokens", self.max_tokens, 1, 10**7)
        _check_int("n_heads", self.n_heads, 0, 256)
        _check_int("replay_buffer_size", self.replay_buffer_size, 0, 10**8)
        _check_int("name_memory", self.name_memory, 0, 10**7)
        _check_float("learning_rate", self.learning_rate, low=0.0, low_open=True)
        _check_float("l2", self.l2, low=0.0)
        # A smaller delta rounds to zero in float32, and a zero gradient would then divide 0 by 0.
        _check_float("adagrad_delta", self.adagrad_delta, low=MIN_ADAGRAD_DELTA)
        _check_float("tie_nu", self.tie_nu, low=0.0, low_open=True)
        _check_float("tie_bad_strength", self.tie_bad_strength, low=0.0)
        _check_float("centring", self.centring, low=0.0)
        _check_float("rating_margin_scale", self.rating_margin_scale, low=0.0)
        _check_float("annotator_min_weight", self.annotator_min_weight, low=0.0, high=1.0)
        _check_float("annotator_prior_agree", self.annotator_prior_agree, low=0.0, low_open=True)
        _check_float("annotator_prior_disagree", self.annotator_prior_disagree, low=0.0, low_open=True)
        _check_float("annotator_full_weight_reliability", self.annotator_full_weight_reliability, low=0.5, high=1.0, low_open=True)
        _check_float("annotator_confidence", self.annotator_confidence, low=0.5, high=1.0, low_open=True)
        _check_float("stats_window", self.stats_window, low=1.0)
        _check_float("metrics_window", self.metrics_window, low=1.0)
        if self.learning_rate * self.l2 >= 1.0:
            raise ConfigError("l2", self.l2, f"learning_rate * l2 < 1 (learning_rate is {self.learning_rate})")
        if self.ranking_loss not in ("plackett_luce", "pairs"):
            raise ConfigError("ranking_loss", self.ranking_loss, "'plackett_luce' or 'pairs'")

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a plain dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build a config from :meth:`to_dict` output; unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(key, values[key], "a ModelConfig field: " + ", ".join(sorted(known)))
        return cls(**values)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(name, value, f"an integer in [{low}, {high}]")


def _check_float(name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False) -> None:
    valid = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if valid:
        valid = (value > low if low_open else value >= low) and value <= high
    if not valid:
        bound = "(" if low_open else "["
        raise ConfigError(name, value, f"a finite number in {bound}{low}, {high}]")
