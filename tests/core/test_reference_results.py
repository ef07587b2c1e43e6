"""Pinned digests of whole learning runs: state bytes, outcomes, scores and stats.

The digests were recorded with the numpy featuriser and the scalar pair loop, and the
compiled featuriser and the head-vectorised pair loop must reproduce them bit for bit.
Every example uses IEEE arithmetic plus the C library's ``exp``, ``log``, ``log1p`` and
``tanh``. So the digests hold on x86-64 Linux with glibc, where they were recorded. A
change on that platform means the learner's results changed, and a model saved before
it would no longer replay to the same bytes.

The "mixed" digest was recorded again when rankings, ratings and centred examples moved
from the numpy objective to the compiled loop. On that stream, learned one example at a
time, the two gave the same outcomes, and weights within 4e-19 of each other.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Sequence

import pytest

from dynamic_rlhf import DynamicRLHFModel, ModelConfig, PreferenceExample, RankingExample, RatingExample
from dynamic_rlhf.feedback import Example
from dynamic_rlhf.results import LearnOutcome
from dynamic_rlhf.synthetic import SyntheticPreferences

WORDS = ["the", "Launch", "is", "on", "time", "déjà", "vu", "naïve", "日本語", "x_1", "42", "Human:", "Assistant:",
         "🙂", "don't", "--", "...", "A" * 40]
SEPARATORS = [" ", " ", "", ",", "\n", "\t", "!", "?"]
PROBES = [("the launch", ["is on time", "", "déjà vu 日本語"]), ("", ["x_1 42"])]

EXPECTED = {
    "synthetic": "657909188340c1335e0696f5cc6b9600fb0011300dd69a86cc0c6669eb3048d0",
    "mixed": "ae56c3a813ddb2a8e1e9ff8a8a8eecf1c36121cc1798e68cdd93e4a60275bc55",
    "small": "0e05036b81deb4ae7b249648a0a6e9d6b4682749443fa07ade9158c41adfecb2",
}


def random_text(rng: random.Random, words: int) -> str:
    return "".join(rng.choice(WORDS) + rng.choice(SEPARATORS) for _ in range(words))


def mixed_examples(seed: int, n: int) -> list[Example]:
    """Return strict pairs with margins, ties, both-bad ties, identical pairs, rankings and ratings.

    Prompts run up to 400 words and some are chats. One completion in five draws
    5,000 words, beyond the default ``max_tokens``.
    """
    rng = random.Random(seed)
    prompts = [random_text(rng, rng.randint(0, 400)) for _ in range(40)]
    examples: list[Example] = []
    for i in range(n):
        prompt: object = rng.choice(prompts)
        if rng.random() < 0.1:
            prompt = [{"role": "system", "content": random_text(rng, 5)}, {"role": "user", "content": prompt}]
        a = random_text(rng, rng.choice([0, 3, 20, 60, 5000]))
        b = random_text(rng, rng.randint(0, 40))
        kind = rng.random()
        common = {"annotator_id": rng.choice([None, "ann-a", "ann-b", "ann-c"]),
                  "weight": rng.choice([1.0, 0.5, 2.0]), "example_id": rng.choice([None, f"m-{i}"])}
        if kind < 0.7:
            label = rng.choice(["chosen", "chosen", "chosen", "tie", "tie_bad"])
            examples.append(PreferenceExample(prompt, a, b, label=label, margin=rng.choice([0.0, 0.0, 0.5]), **common))
        elif kind < 0.8:
            examples.append(PreferenceExample(prompt, a, a, **common))
        elif kind < 0.9:
            examples.append(RankingExample(prompt, [a, b, random_text(rng, 7), b], **common))
        else:
            completions = [a, b, random_text(rng, 4)]
            ratings = [rng.choice([1, 2, 3]) for _ in range(3)]
            examples.append(RatingExample(prompt, completions, ratings=ratings, **common))
    return examples


def run_digest(model: DynamicRLHFModel, outcomes: Sequence[LearnOutcome]) -> str:
    digest = hashlib.sha256(model.to_bytes())
    for outcome in outcomes:
        digest.update(struct.pack("<idii", outcome.pairs, outcome.loss, outcome.correct, outcome.skipped))
    for prompt, completions in PROBES:
        for score in model.score(prompt, completions):
            digest.update(struct.pack("<dd", score.reward, score.std))
    stats = model.stats()
    digest.update(repr((stats.progressive_loss, stats.progressive_accuracy, stats.recent_loss, stats.recent_accuracy,
                        stats.mean_margin, stats.weight_norm, stats.reward_mean, stats.reward_std,
                        stats.reward_length_correlation)).encode())
    return digest.hexdigest()


def run_stream(name: str) -> str:
    if name == "synthetic":
        model = DynamicRLHFModel()
        outcomes = model.learn_many(SyntheticPreferences(seed=5).examples(4000))
    elif name == "mixed":
        model = DynamicRLHFModel()
        examples = mixed_examples(seed=7, n=600)
        outcomes = model.learn_many(examples[:450]) + [model.learn_one(e) for e in examples[450:]]
    else:
        # A strong decay folds the scale into the weights several times.
        model = DynamicRLHFModel(ModelConfig(dim=2**12, n_heads=3, max_tokens=9, ngram_max=1, l2=5.0))
        outcomes = model.learn_many(mixed_examples(seed=8, n=300))
    return run_digest(model, outcomes)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stream_digest_is_pinned(name: str) -> None:
    assert run_stream(name) == EXPECTED[name]
