r"""Seeded synthetic preference streams with a known reward function.

Completions are bags of words from a generated vocabulary. The hidden
reward is linear in unigram counts, :math:`r^*(c) = \sum_{t \in c} \theta_t`.
For a pair (a, b) the true preference follows Bradley--Terry,
:math:`p = \sigma(r^*(a) - r^*(b))`, and the annotator who labels it then
flips the label with their own flip rate :math:`\varepsilon`, so the label
picks "a" with probability :math:`q = (1 - \varepsilon) p + \varepsilon (1 - p)`.

Because :math:`q` is known for every generated pair, accuracies can be
computed in expectation over the label noise: a predictor that prefers the
labelled *chosen* completion is right with probability :math:`q`, and the
Bayes-optimal accuracy is :math:`\mathbb{E}[\max(q, 1 - q)]`.

>>> stream = SyntheticPreferences(seed=1)
>>> examples = stream.examples(3)
>>> [e.example_id for e in examples]
['syn-1-0', 'syn-1-1', 'syn-1-2']
>>> 0.5 < stream.bayes_accuracy(examples) <= 1.0
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dynamic_rlhf.feedback import PreferenceExample

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


@dataclass(frozen=True)
class Annotator:
    """A simulated annotator and the probability that they flip a label."""

    annotator_id: str
    flip_rate: float


class SyntheticPreferences:
    """A generator of :class:`PreferenceExample` values from a hidden linear reward.

    Parameters
    ----------
    seed:
        Seed of everything: vocabulary, true weights, texts and labels.
    vocab_size:
        Number of distinct words.
    weight_scale:
        Standard deviation of the true per-word weights.
    min_tokens, max_tokens:
        Length range of completions, in words.
    n_annotators:
        Annotators labelling the stream, chosen uniformly per pair.
    noisy_share, noisy_flip_rate:
        Share of annotators who flip labels, and their flip rate; the others
        never flip.
    """

    def __init__(self, seed: int = 0, vocab_size: int = 400, weight_scale: float = 0.4, min_tokens: int = 4,
                 max_tokens: int = 20, n_annotators: int = 10, noisy_share: float = 0.2, noisy_flip_rate: float = 0.35) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.vocabulary = self._make_vocabulary(vocab_size)
        self.weights = {word: float(w) for word, w in zip(self.vocabulary, self.rng.normal(0.0, weight_scale, vocab_size))}
        self.min_tokens = min_tokens
        self.max_tokens = max_tokens
        n_noisy = int(round(noisy_share * n_annotators))
        self.annotators = [
            Annotator(f"annotator-{i}", noisy_flip_rate if i < n_noisy else 0.0) for i in range(n_annotators)
        ]
        self._flip_rates = {a.annotator_id: a.flip_rate for a in self.annotators}
        self._count = 0

    def _make_vocabulary(self, size: int) -> list[str]:
        words: list[str] = []
        seen: set[str] = set()
        while len(words) < size:
            syllables = self.rng.integers(2, 4)
            word = "".join(self.rng.choice(list(_CONSONANTS)) + self.rng.choice(list(_VOWELS)) for _ in range(syllables))
            if word not in seen:
                seen.add(word)
                words.append(word)
        return words

    def true_reward(self, text: str) -> float:
        """Return the hidden reward of *text*: the sum of its words' weights."""
        return sum(self.weights.get(word, 0.0) for word in text.split())

    def _completion(self) -> str:
        length = int(self.rng.integers(self.min_tokens, self.max_tokens + 1))
        return " ".join([self.vocabulary[i] for i in self.rng.integers(0, len(self.vocabulary), size=length).tolist()])

    def examples(self, n: int, prefix: str = "syn") -> list[PreferenceExample]:
        """Return the next *n* labelled pairs; ids are ``"{prefix}-{seed}-{i}"``."""
        examples = []
        for _ in range(n):
            prompt = "Write about " + " ".join([self.vocabulary[i] for i in self.rng.integers(0, len(self.vocabulary), size=3).tolist()])
            a, b = self._completion(), self._completion()
            annotator = self.annotators[int(self.rng.integers(len(self.annotators)))]
            p_a = 1.0 / (1.0 + math.exp(-(self.true_reward(a) - self.true_reward(b))))
            q_a = (1.0 - annotator.flip_rate) * p_a + annotator.flip_rate * (1.0 - p_a)
            chosen, rejected = (a, b) if self.rng.random() < q_a else (b, a)
            examples.append(PreferenceExample(
                prompt, chosen, rejected, annotator_id=annotator.annotator_id,
                tags=("synthetic",), example_id=f"{prefix}-{self.seed}-{self._count}",
            ))
            self._count += 1
        return examples

    def label_probability(self, example: PreferenceExample) -> float:
        """Return q, the probability that the example's annotator labels *chosen* as better."""
        flip = self._flip_rates.get(example.annotator_id or "", 0.0)
        d = self.true_reward(str(example.chosen)) - self.true_reward(str(example.rejected))
        p = 1.0 / (1.0 + math.exp(-d))
        return (1.0 - flip) * p + flip * (1.0 - p)

    def bayes_accuracy(self, examples: Sequence[PreferenceExample]) -> float:
        """Return the expected accuracy of the true reward's predictions, E[max(q, 1 - q)]."""
        q = np.array([self.label_probability(e) for e in examples])
        return float(np.maximum(q, 1.0 - q).mean())

    def expected_accuracy(self, examples: Sequence[PreferenceExample], prefers_chosen: Sequence[bool]) -> float:
        """Return the expected accuracy of predictions (True = *chosen* is better) over label noise."""
        q = np.array([self.label_probability(e) for e in examples])
        picks = np.asarray(prefers_chosen, dtype=bool)
        return float(np.where(picks, q, 1.0 - q).mean())
