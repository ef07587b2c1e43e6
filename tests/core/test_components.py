"""Building blocks: config checks, bootstrap draws, running moments, optimiser."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dynamic_rlhf import ConfigError, ModelConfig, bootstrap
from dynamic_rlhf.bootstrap import poisson_weights
from dynamic_rlhf.optim import LazyAdaGrad
from dynamic_rlhf.results import LearnOutcome, learn_outcomes
from dynamic_rlhf.running import ProgressiveMetrics, RunningMoments


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"dim": 8}, "dim"), ({"ngram_max": 3}, "ngram_max"), ({"n_heads": -1}, "n_heads"),
     ({"learning_rate": 0.0}, "learning_rate"), ({"l2": -1e-3}, "l2"), ({"tie_nu": 0.0}, "tie_nu"),
     ({"ranking_loss": "listnet"}, "ranking_loss"), ({"annotator_min_weight": 1.5}, "annotator_min_weight"),
     ({"annotator_confidence": 0.5}, "annotator_confidence"), ({"learning_rate": 1.0, "l2": 2.0}, "l2"),
     ({"adagrad_delta": 1e-40}, "adagrad_delta"), ({"adagrad_delta": 0.0}, "adagrad_delta")],
)
def test_config_rejects_invalid_value(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ModelConfig(**kwargs)

    assert caught.value.field == field


def test_config_dict_round_trip() -> None:
    config = ModelConfig(dim=2**12, n_heads=3, ranking_loss="pairs")

    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown_field"):
        ModelConfig.from_dict({"unknown_field": 1})


def test_poisson_draws_are_deterministic_with_unit_mean() -> None:
    draws = np.concatenate([poisson_weights(f"event-{i}", 20) for i in range(5_000)])

    assert poisson_weights("event-7", 20).tolist() == poisson_weights("event-7", 20).tolist()
    assert poisson_weights("event-7", 4).tolist() == poisson_weights("event-7", 20)[:4].tolist()
    assert draws.mean() == pytest.approx(1.0, abs=0.02)
    assert draws.var() == pytest.approx(1.0, abs=0.05)
    assert (draws == 0).mean() == pytest.approx(math.exp(-1), abs=0.01)
    assert poisson_weights("event-7", 0).size == 0


def test_running_moments_match_numpy_within_window() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 3.0, 500)
    y = 0.5 * x + rng.normal(0.0, 1.0, 500)
    moments = RunningMoments(window=1_000)

    for a, b in zip(x, y):
        moments.update(float(a), float(b))

    assert moments.mean_x == pytest.approx(x.mean())
    assert moments.var_x == pytest.approx(x.var())
    assert moments.cov_xy == pytest.approx(np.cov(x, y, bias=True)[0, 1])
    assert moments.correlation() == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert moments.slope_x_on_y() == pytest.approx(np.cov(x, y, bias=True)[0, 1] / y.var())


def test_running_moments_forget_beyond_window() -> None:
    moments = RunningMoments(window=50)

    for _ in range(1_000):
        moments.update(0.0, 0.0)
    for _ in range(500):
        moments.update(10.0, 0.0)

    assert moments.mean_x == pytest.approx(10.0, abs=1e-3)


def test_progressive_metrics_accumulate() -> None:
    metrics = ProgressiveMetrics(window=10)

    metrics.update(pairs=2, loss_sum=1.0, strict=1, correct=1, margin_sum=0.5)
    metrics.update(pairs=1, loss_sum=2.0, strict=1, correct=0, margin_sum=-1.0)

    assert metrics.loss == pytest.approx(1.0)
    assert metrics.accuracy == 0.5
    assert metrics.mean_margin == pytest.approx(-0.25)


def test_lazy_decay_matches_dense_decay() -> None:
    optimiser = LazyAdaGrad(heads=1, dim=8, learning_rate=0.1, l2=0.5)
    dense = np.zeros(8)
    accumulators = np.zeros(8)
    rng = np.random.default_rng(4)

    for _ in range(30):
        coordinates = np.unique(rng.integers(0, 8, 3))
        gradient = rng.normal(size=(len(coordinates), 1)).astype(np.float32)
        # An identity block gives bucket j the coefficient of column j as its gradient.
        n = len(coordinates)
        optimiser.step(coordinates, np.eye(n, dtype=np.float32).ravel(), n, gradient.T.astype(np.float64))
        dense *= 1.0 - 0.1 * 0.5
        accumulators[coordinates] += gradient[:, 0].astype(np.float64) ** 2
        dense[coordinates] -= 0.1 * gradient[:, 0] / (np.sqrt(accumulators[coordinates]) + 1e-8)

    np.testing.assert_allclose(optimiser.current(np.arange(8))[:, 0], dense, rtol=1e-4, atol=1e-6)


def test_copied_hash_state_gives_block_zero_digest() -> None:
    for example_id in ["", "a", "event-1", "é🙂" * 50, "x" * 300]:
        assert bootstrap._digest_block_zero(example_id) == bootstrap._digest(example_id, 0)


def test_optimiser_rows_follow_first_update() -> None:
    optimiser = LazyAdaGrad(heads=2, dim=16, learning_rate=0.1, l2=0.0)
    block = np.ones(2, dtype=np.float32)
    coefficients = np.full((2, 1), 0.5)

    optimiser.step(np.array([5, 2]), block, 1, coefficients)
    optimiser.step(np.array([2, 7]), block, 1, coefficients)

    assert optimiser.n_rows == 3
    assert optimiser.rows[[5, 2, 7]].tolist() == [1, 2, 3]
    assert optimiser.touched().tolist() == [2, 5, 7]
    weights, accumulators = optimiser.stored(np.array([2, 3, 5, 7]))
    assert accumulators[:, 0].tolist() == [0.5, 0.0, 0.25, 0.25]
    assert weights[1].tolist() == [0.0, 0.0]
    assert weights[2].tolist() == weights[3].tolist() == [np.float32(-0.1)] * 2


def test_learn_outcomes_equal_constructed() -> None:
    built = learn_outcomes(1, [0.5, 0.25], [1, 0], [0, 2])

    assert built == [LearnOutcome(1, 0.5, 1, 0), LearnOutcome(1, 0.25, 0, 2)]
    assert [hash(outcome) for outcome in built] == [hash(LearnOutcome(1, 0.5, 1, 0)), hash(LearnOutcome(1, 0.25, 0, 2))]
    assert repr(built[1]) == "LearnOutcome(pairs=1, loss=0.25, correct=0, skipped=2)"
    with pytest.raises(AttributeError):
        built[0].loss = 1.0  # type: ignore[misc]
