"""Synthetic preference events drawn from a hidden reward, for the demo and the tests.

The hidden reward of a completion is the sum of fixed word weights (helpful words
positive, harmful words negative, filler words zero) divided by the square root of
the word count, plus a bonus when the completion mentions the prompt's topic.
Honest annotators choose by the Bradley-Terry probability
``P(a > b) = sigmoid(BETA * (r(a) - r(b)))``; noisy annotators choose at random and
adversarial annotators choose the opposite of the honest choice. A learner that
recovers the hidden reward reaches the Bayes-optimal accuracy given by
`bayes_optimal_choice` on held-out pairs.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

BETA: Final = 3.0
TOPIC_BONUS: Final = 0.5
TIE_THRESHOLD: Final = 0.05
START_TIME: Final = datetime(2026, 1, 1, tzinfo=UTC)

HELPFUL_WORDS: Final = (
    "clear", "accurate", "specific", "polite", "concise", "correct", "steps", "example",
    "sources", "safe", "thanks", "explained", "checked", "precise", "honest", "useful",
)
HARMFUL_WORDS: Final = (
    "rude", "wrong", "vague", "unsafe", "insult", "spam", "rambling", "lie",
    "guess", "whatever", "stupid", "dangerous", "nonsense", "ignore", "boring", "confusing",
)
FILLER_WORDS: Final = (
    "the", "a", "is", "it", "and", "this", "that", "so", "then", "here", "you", "we",
    "can", "will", "with", "about", "for", "on", "of", "to",
)
TOPICS: Final = (
    "taxes", "gardening", "python", "cooking", "travel", "sleep", "chess", "weather",
    "budgeting", "running", "painting", "history",
)
PROMPT_TEMPLATES: Final = (
    "Explain {topic} to a beginner.",
    "Give me three tips about {topic}.",
    "What should I know about {topic}?",
    "Write a short answer about {topic}.",
)

AnnotatorKind = Literal["honest", "noisy", "adversarial"]
Kind = Literal["pair", "ranking", "ratings"]
DEFAULT_KINDS: Final[Mapping[str, float]] = {"pair": 0.8, "ranking": 0.1, "ratings": 0.1}


def _word_weight(word: str) -> float:
    # A fixed magnitude in [0.5, 1.5) per word, taken from a hash so it never depends on a seed.
    magnitude = 0.5 + int(hashlib.sha256(word.encode()).hexdigest()[:8], 16) / 2**32
    if word in HELPFUL_WORDS:
        return magnitude
    if word in HARMFUL_WORDS:
        return -magnitude
    return 0.0


WORD_WEIGHTS: Final[dict[str, float]] = {w: _word_weight(w) for w in HELPFUL_WORDS + HARMFUL_WORDS + FILLER_WORDS}


def true_reward(prompt: str, completion: str) -> float:
    """Return the hidden reward of `completion` for `prompt` (0.0 for an empty completion)."""
    words = completion.lower().replace(".", " ").split()
    if not words:
        return 0.0

    reward = sum(WORD_WEIGHTS.get(word, 0.0) for word in words) / math.sqrt(len(words))
    topic = _topic_of(prompt)
    if topic is not None and topic in words:
        reward += TOPIC_BONUS
    return reward


def true_preference_probability(prompt: str, first: str, second: str) -> float:
    """Return the honest annotators' probability of preferring `first` to `second`."""
    gap = BETA * (true_reward(prompt, first) - true_reward(prompt, second))
    return 1.0 / (1.0 + math.exp(-gap))


def bayes_optimal_choice(prompt: str, first: str, second: str) -> int:
    """Return 0 when `first` has the higher hidden reward, else 1 (the Bayes-optimal choice)."""
    return 0 if true_reward(prompt, first) >= true_reward(prompt, second) else 1


def annotator_kinds(
    n_annotators: int, noisy_annotator_share: float, adversarial_annotator_share: float
) -> dict[str, AnnotatorKind]:
    """Return the hidden kind of each annotator id, noisy ones first, then adversarial ones."""
    n_noisy = round(n_annotators * noisy_annotator_share)
    n_adversarial = round(n_annotators * adversarial_annotator_share)
    kinds: dict[str, AnnotatorKind] = {}
    for i in range(n_annotators):
        kind: AnnotatorKind = "noisy" if i < n_noisy else "adversarial" if i < n_noisy + n_adversarial else "honest"
        kinds[f"ann-{i:02d}"] = kind
    return kinds


def synthetic_preference_events(
    n: int,
    *,
    seed: int,
    model_id: str = "default",
    n_annotators: int = 8,
    noisy_annotator_share: float = 0.25,
    adversarial_annotator_share: float = 0.125,
    kinds: Mapping[str, float] = DEFAULT_KINDS,
) -> Iterator[dict[str, Any]]:
    """Yield `n` preference events (``preference_event`` schema) labelled by simulated annotators.

    The same arguments give the same events. Event ids are ``syn-<seed>-<index>``.
    """
    rng = random.Random(seed)
    annotators = annotator_kinds(n_annotators, noisy_annotator_share, adversarial_annotator_share)
    annotator_ids = list(annotators)
    kind_names = list(kinds)
    kind_weights = [kinds[name] for name in kind_names]

    for index in range(n):
        prompt, topic = _prompt(rng)
        annotator_id = rng.choice(annotator_ids)
        behaviour = annotators[annotator_id]
        kind = rng.choices(kind_names, weights=kind_weights)[0]

        event: dict[str, Any] = {
            "event_id": f"syn-{seed}-{index}",
            "model_id": model_id,
            "prompt": prompt,
            "annotator_id": annotator_id,
            "tags": ["synthetic", topic],
            "created_at": (START_TIME + timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if kind == "pair":
            event.update(_pair(rng, prompt, topic, behaviour))
        elif kind == "ranking":
            event.update(_ranking(rng, prompt, topic, behaviour))
        else:
            event.update(_ratings(rng, prompt, topic, behaviour))
        yield event


def synthetic_candidate_sets(
    n: int, *, seed: int, model_id: str = "default", n_completions: int = 4
) -> Iterator[dict[str, Any]]:
    """Yield `n` candidate sets (``candidate_set`` schema) with `n_completions` completions each."""
    rng = random.Random(seed)
    for index in range(n):
        prompt, topic = _prompt(rng)
        yield {
            "request_id": f"syn-cand-{seed}-{index}",
            "model_id": model_id,
            "prompt": prompt,
            "completions": [synthetic_completion(rng, topic) for _ in range(n_completions)],
            "source": "synthetic",
            "tags": ["synthetic", topic],
        }


def synthetic_completion(rng: random.Random, topic: str) -> str:
    """Draw a completion of 4 to 14 words mixing helpful, harmful and filler words."""
    length = rng.randint(4, 14)
    pools = (HELPFUL_WORDS, HARMFUL_WORDS, FILLER_WORDS, (topic,))
    words = [rng.choice(rng.choices(pools, weights=(0.25, 0.25, 0.45, 0.05))[0]) for _ in range(length)]
    return " ".join(words).capitalize() + "."


def _prompt(rng: random.Random) -> tuple[str, str]:
    topic = rng.choice(TOPICS)
    return rng.choice(PROMPT_TEMPLATES).format(topic=topic), topic


def _topic_of(prompt: str) -> str | None:
    lowered = prompt.lower()
    return next((topic for topic in TOPICS if topic in lowered), None)


def _prefers_first(rng: random.Random, prompt: str, first: str, second: str, behaviour: AnnotatorKind) -> bool:
    if behaviour == "noisy":
        return rng.random() < 0.5
    honest = rng.random() < true_preference_probability(prompt, first, second)
    return honest if behaviour == "honest" else not honest


def _pair(rng: random.Random, prompt: str, topic: str, behaviour: AnnotatorKind) -> dict[str, Any]:
    first, second = synthetic_completion(rng, topic), synthetic_completion(rng, topic)
    gap = true_reward(prompt, first) - true_reward(prompt, second)

    if behaviour == "honest" and abs(gap) < TIE_THRESHOLD:
        both_bad = true_reward(prompt, first) < 0 and true_reward(prompt, second) < 0
        return {"kind": "tie_bad" if both_bad else "tie", "chosen": first, "rejected": second}

    if _prefers_first(rng, prompt, first, second, behaviour):
        return {"kind": "pair", "chosen": first, "rejected": second}
    return {"kind": "pair", "chosen": second, "rejected": first}


def _ranking(rng: random.Random, prompt: str, topic: str, behaviour: AnnotatorKind) -> dict[str, Any]:
    completions = [synthetic_completion(rng, topic) for _ in range(rng.randint(3, 4))]

    # Sorting by reward plus Gumbel noise samples a Plackett-Luce ranking with scale BETA.
    def noisy_key(completion: str) -> float:
        gumbel = -math.log(-math.log(rng.random() or 1e-12))
        if behaviour == "noisy":
            return gumbel
        score = BETA * true_reward(prompt, completion) + gumbel
        return -score if behaviour == "adversarial" else score

    keyed = [(noisy_key(c), c) for c in completions]
    keyed.sort(key=lambda item: item[0], reverse=True)
    return {"kind": "ranking", "completions": [c for _, c in keyed]}


def _ratings(rng: random.Random, prompt: str, topic: str, behaviour: AnnotatorKind) -> dict[str, Any]:
    completions = [synthetic_completion(rng, topic) for _ in range(rng.randint(2, 4))]
    ratings = []
    for completion in completions:
        if behaviour == "noisy":
            score = rng.uniform(1.0, 5.0)
        else:
            reward = true_reward(prompt, completion)
            score = 3.0 + (reward if behaviour == "honest" else -reward) + rng.gauss(0.0, 0.3)
        ratings.append(round(min(5.0, max(1.0, score)), 1))
    return {"kind": "ratings", "completions": completions, "ratings": ratings}
