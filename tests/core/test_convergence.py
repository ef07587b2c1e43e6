"""Convergence on a synthetic stream with a known linear preference function."""

from __future__ import annotations

import pytest

from dynamic_rlhf import DynamicRLHFModel, ModelConfig
from dynamic_rlhf.synthetic import SyntheticPreferences


@pytest.fixture(scope="module")
def stream() -> tuple[SyntheticPreferences, list, list]:
    generator = SyntheticPreferences(seed=0)
    return generator, generator.examples(20_000), generator.examples(4_000)


def held_out_accuracy(model: DynamicRLHFModel, generator: SyntheticPreferences, test: list) -> float:
    picks = [model.predict_proba_one(e.prompt, e.chosen, e.rejected) > 0.5 for e in test]
    return generator.expected_accuracy(test, picks)


@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(ngram_max=1)], ids=["default", "unigrams"])
def test_model_comes_within_two_points_of_bayes_accuracy(stream, config: ModelConfig) -> None:
    # Measured after 20,000 pairs: 0.7228 (default, with bigrams) and 0.7233 (unigrams)
    # against a Bayes-optimal 0.7343.
    generator, train, test = stream
    model = DynamicRLHFModel(config)

    model.learn_many(train)

    bayes = generator.bayes_accuracy(test)
    accuracy = held_out_accuracy(model, generator, test)
    assert bayes == pytest.approx(0.734, abs=0.01)
    assert accuracy > bayes - 0.02
    assert model.stats().progressive_accuracy > bayes - 0.04
    assert model.stats().recent_accuracy > 0.70
