"""Analytic gradients against central finite differences, and the compiled steps against the numpy objective."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dynamic_rlhf import DynamicRLHFModel, ModelConfig, PreferenceExample, RankingExample, RatingExample
from dynamic_rlhf.feedback import STRICT, TIE, TIE_BAD, expand
from dynamic_rlhf.losses import bradley_terry, davidson_tie, davidson_tie_probability, plackett_luce, sigmoid
from dynamic_rlhf.bootstrap import poisson_draws
from dynamic_rlhf.objective import ObjectiveParams, build_structure, example_objective
from dynamic_rlhf.results import LearnOutcome

STEP = 1e-6


def numeric_derivative(function, x: np.ndarray) -> np.ndarray:
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += STEP
        down[index] -= STEP
        grad[index] = (function(up).sum() - function(down).sum()) / (2 * STEP)
    return grad


@pytest.mark.parametrize("margin", [0.0, 0.7])
def test_bradley_terry_gradient(margin: float) -> None:
    d = np.linspace(-30.0, 30.0, 13)

    _, analytic = bradley_terry(d, margin)

    numeric = numeric_derivative(lambda x: bradley_terry(x, margin)[0], d)
    np.testing.assert_allclose(analytic, numeric, atol=1e-7)


@pytest.mark.parametrize("nu", [0.1, 1.0, 5.0])
def test_davidson_tie_gradient(nu: float) -> None:
    d = np.linspace(-40.0, 40.0, 17)

    _, analytic = davidson_tie(d, nu)

    numeric = numeric_derivative(lambda x: davidson_tie(x, nu)[0], d)
    np.testing.assert_allclose(analytic, numeric, atol=1e-7)


def test_davidson_probabilities_sum_to_one() -> None:
    d = np.linspace(-5.0, 5.0, 11)
    nu = 1.3
    denominator = np.exp(d / 2) + np.exp(-d / 2) + nu

    tie = davidson_tie_probability(d, nu)

    np.testing.assert_allclose(tie, nu / denominator, rtol=1e-12)
    np.testing.assert_allclose(tie + np.exp(d / 2) / denominator + np.exp(-d / 2) / denominator, 1.0, rtol=1e-12)


def test_plackett_luce_gradient() -> None:
    rewards = np.random.default_rng(3).normal(size=(4, 5)) * 3

    loss, analytic = plackett_luce(rewards)

    numeric = numeric_derivative(lambda x: plackett_luce(x)[0], rewards)
    np.testing.assert_allclose(analytic, numeric, atol=1e-6)
    assert loss.shape == (4,)


def test_plackett_luce_with_two_items_is_bradley_terry() -> None:
    rewards = np.array([[1.3, -0.4], [-2.0, 0.5]])

    loss, _ = plackett_luce(rewards)

    expected, _ = bradley_terry(rewards[:, 0] - rewards[:, 1], 0.0)
    np.testing.assert_allclose(loss, expected, rtol=1e-12)


def test_sigmoid_is_stable_at_extremes() -> None:
    values = sigmoid(np.array([-1000.0, 0.0, 1000.0]))

    assert values.tolist() == [0.0, 0.5, 1.0]


MIXED_PAIRS = ((0, 1, STRICT, 0.3, 0.5), (1, 2, TIE, 0.0, 0.25), (0, 2, TIE_BAD, 0.0, 0.25))


@pytest.mark.parametrize("ranking", [None, (0, 1, 2)])
def test_example_objective_gradient(ranking: tuple[int, ...] | None) -> None:
    structure = build_structure(3, MIXED_PAIRS, ranking)
    params = ObjectiveParams(tie_nu=0.8, tie_bad_strength=0.5, centring=0.2)
    head_weights = np.array([1.0, 0.0, 2.0])
    rewards = np.random.default_rng(5).normal(size=(3, 3))

    _, analytic, _, _ = example_objective(rewards, structure, params, head_weights)

    numeric = numeric_derivative(lambda r: example_objective(r, structure, params, head_weights)[0], rewards)
    np.testing.assert_allclose(analytic, numeric, atol=1e-6)


@pytest.mark.parametrize(
    "example",
    [
        PreferenceExample("Plan a trip", "Visit the old town, then the museum.", "Stay home.", margin=0.2),
        PreferenceExample("Plan a trip", "Go north.", "Go south.", label="tie"),
        PreferenceExample("Plan a trip", "Nothing.", "Maybe nothing.", label="tie_bad"),
        RankingExample("Plan a trip", ["Book trains early.", "Take a bus.", "Walk."]),
        RatingExample("Plan a trip", ["Book trains early.", "Take a bus.", "Walk."], [4.0, 4.0, 1.0]),
    ],
)
def test_model_weight_gradient_matches_finite_differences(example) -> None:
    config = ModelConfig(dim=2**12, n_heads=2, centring=0.1, rating_margin_scale=0.2)
    model = DynamicRLHFModel(config)
    model.learn_one(PreferenceExample("Plan a trip", "Take trains and see the old town.", "No idea."))
    judgement = expand(example, ranking_loss=config.ranking_loss, rating_margin_scale=config.rating_margin_scale)
    coordinates, block = model.featuriser.featurise_examples([judgement.prompt_text], [judgement.texts]).example(0)
    structure = build_structure(len(judgement.texts), judgement.pairs, judgement.ranking)
    params = ObjectiveParams(config.tie_nu, config.tie_bad_strength, config.centring)
    head_weights = np.array([1.0, 2.0, 0.0])
    weights = model.optimiser.current(coordinates).astype(np.float64)
    features = block.astype(np.float64)

    def objective(w: np.ndarray) -> np.ndarray:
        return example_objective((features.T @ w).T, structure, params, head_weights)[0]

    _, coefficients, _, _ = example_objective((features.T @ weights).T, structure, params, head_weights)
    analytic = features @ coefficients.T

    numeric = numeric_derivative(objective, weights)
    np.testing.assert_allclose(analytic, numeric, atol=1e-6)


def test_single_pair_fast_path_gradient() -> None:
    structure = build_structure(2, ((0, 1, STRICT, 0.4, 1.0),), None)
    params = ObjectiveParams(tie_nu=1.0, tie_bad_strength=0.5, centring=0.0)
    head_weights = np.array([1.0, 3.0, 0.0, 0.5])
    rewards = np.random.default_rng(9).normal(size=(4, 2)) * 2

    loss, analytic, differences, pair_loss = example_objective(rewards, structure, params, head_weights)

    assert structure.single_strict
    numeric = numeric_derivative(lambda r: example_objective(r, structure, params, head_weights)[0], rewards)
    np.testing.assert_allclose(analytic, numeric, atol=1e-6)
    np.testing.assert_allclose(differences[:, 0], rewards[:, 0] - rewards[:, 1])
    np.testing.assert_allclose(loss, head_weights * pair_loss[:, 0])


def reference_learn(model: DynamicRLHFModel, example) -> LearnOutcome:
    """Learn *example* with the numpy objective of ``dynamic_rlhf.objective`` and ``LazyAdaGrad.step``."""
    config = model.config
    judgement = model._expand(example)
    n = len(judgement.texts)
    features = model.featuriser.featurise_examples([judgement.prompt_text], [judgement.texts])
    coordinates, block = features.example(0)
    rewards = model.optimiser.rewards(coordinates, block, n)  # (completions, heads)
    structure = build_structure(n, judgement.pairs, judgement.ranking)
    label_weight = judgement.weight * model.annotators.weight(judgement.annotator_id)
    head_weights = np.array([label_weight] + [label_weight * draw
                                              for draw in poisson_draws(judgement.example_id, config.n_heads)])
    params = ObjectiveParams(config.tie_nu, config.tie_bad_strength, config.centring)
    _, coefficients, differences, pair_loss = example_objective(rewards.T, structure, params, head_weights)

    strict_differences = differences[0][structure.strict].tolist()
    loss = float(pair_loss[0].sum())
    correct = sum(1 for d in strict_differences if d > 0.0)
    model.metrics.update(len(judgement.pairs), loss, len(strict_differences), correct, sum(strict_differences))
    for d in strict_differences:
        model.annotators.observe(judgement.annotator_id, 0.5 * (1.0 + math.tanh(0.5 * d)))
    for reward, count in zip(rewards[:, 0].tolist(), features.n_tokens.tolist()):
        model.moments.update(reward, math.log1p(count))
    model.optimiser.step(coordinates, block, n, coefficients)
    return LearnOutcome(len(judgement.pairs), loss, correct, judgement.skipped)


def every_kind_of_example() -> list:
    texts = ["Book trains early.", "Take a bus.", "Walk.", "Visit the old town, then the museum.", "Stay home.", ""]
    examples = []
    for i in range(24):
        a, b, c = texts[i % 6], texts[(i + 2) % 6], texts[(i + 4) % 6]
        common = {"annotator_id": ["ann-a", "ann-b", None][i % 3], "example_id": f"e-{i}", "weight": [1.0, 0.5][i % 2]}
        examples += [
            PreferenceExample("Plan a trip", a, b, margin=0.2 * (i % 2), **common),
            PreferenceExample("Plan a trip", b, c, label=["tie", "tie_bad"][i % 2], **common),
            RankingExample("Plan a trip", [a, b, c, b], **common),
            RatingExample("Plan a trip", [a, b, c], ratings=[i % 3, 1.0, 2.0], **common),
        ]
    return examples


@pytest.mark.parametrize("settings", [{}, {"centring": 0.1, "ranking_loss": "pairs", "rating_margin_scale": 0.3}])
def test_compiled_steps_match_numpy_objective(settings: dict) -> None:
    # Every kind of example, learned by the compiled loop and by the numpy objective, gives the same model.
    config = ModelConfig(dim=2**12, n_heads=3, tie_bad_strength=0.5, **settings)
    compiled, reference = DynamicRLHFModel(config), DynamicRLHFModel(config)
    examples = every_kind_of_example()

    for example in examples:
        outcome = compiled.learn_one(example)
        expected = reference_learn(reference, example)

        assert (outcome.pairs, outcome.correct, outcome.skipped) == (expected.pairs, expected.correct, expected.skipped)
        assert outcome.loss == pytest.approx(expected.loss, rel=1e-9)
    assert compiled.metrics.to_state() == pytest.approx(reference.metrics.to_state(), rel=1e-9)
    assert compiled.moments.to_state() == pytest.approx(reference.moments.to_state(), rel=1e-9)
    assert compiled.annotators.to_state() == reference.annotators.to_state()
    coordinates = reference.optimiser.touched()
    np.testing.assert_array_equal(compiled.optimiser.touched(), coordinates)
    np.testing.assert_allclose(compiled.optimiser.current(coordinates), reference.optimiser.current(coordinates),
                               rtol=1e-5, atol=1e-8)
    assert np.abs(reference.optimiser.current(coordinates)).max() > 0.01
