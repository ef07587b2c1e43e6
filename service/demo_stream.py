"""Synthetic feedback events for the demo and the tests, drawn from the core's hidden reward.

The hidden world comes from `dynamic_rlhf.synthetic.SyntheticPreferences`: a generated
vocabulary with true per-word weights, and the true reward of a completion is the
sum of its words' weights. `world_seed` fixes that world, and `seed` fixes the
sampled prompts, completions and labels, so preference events and candidate sets
drawn with different seeds share one hidden reward.

Each annotator has a flip rate: honest annotators (0.0) label by the Bradley-Terry
probability ``p = sigmoid(r(a) - r(b))``, noisy annotators flip that label with
probability `NOISY_FLIP_RATE`, and adversarial annotators always flip it. Next to the
pairs of the core stream, this module also emits ties, rankings and ratings.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from dynamic_rlhf.synthetic import SyntheticPreferences

NOISY_FLIP_RATE: Final = 0.35
# A smaller vocabulary and larger weights than the core's defaults, so that a model trained on
# 3,000 demo events orders about 87% of held-out pairs like the true reward (measured with seeds 3 and 7).
WORLD_VOCAB_SIZE: Final = 100
WORLD_WEIGHT_SCALE: Final = 0.8
TIE_THRESHOLD: Final = 0.05
START_TIME: Final = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_KINDS: Final[Mapping[str, float]] = {"pair": 0.8, "ranking": 0.1, "ratings": 0.1}


@functools.lru_cache(maxsize=8)
def hidden_world(world_seed: int = 0) -> SyntheticPreferences:
    """Return the hidden world (vocabulary and true word weights) of `world_seed`.

    Only its vocabulary, weights and `true_reward` are used, never its random state,
    so sharing the cached instance is safe.
    """
    return SyntheticPreferences(seed=world_seed, vocab_size=WORLD_VOCAB_SIZE, weight_scale=WORLD_WEIGHT_SCALE)


def true_reward(prompt: str, completion: str, *, world_seed: int = 0) -> float:
    """Return the hidden reward of `completion` (0.0 when empty); the hidden reward ignores `prompt`."""
    return hidden_world(world_seed).true_reward(completion)


def true_preference_probability(prompt: str, first: str, second: str, *, world_seed: int = 0) -> float:
    """Return the Bradley-Terry probability that an honest annotator prefers `first`."""
    gap = true_reward(prompt, first, world_seed=world_seed) - true_reward(prompt, second, world_seed=world_seed)
    return 1.0 / (1.0 + math.exp(-gap))


def bayes_optimal_choice(prompt: str, first: str, second: str, *, world_seed: int = 0) -> int:
    """Return 0 when `first` has the higher true reward, else 1: the Bayes-optimal prediction."""
    first_reward = true_reward(prompt, first, world_seed=world_seed)
    second_reward = true_reward(prompt, second, world_seed=world_seed)
    return 0 if first_reward >= second_reward else 1


def annotator_flip_rates(
    n_annotators: int, noisy_annotator_share: float, adversarial_annotator_share: float
) -> dict[str, float]:
    """Return each annotator id's flip rate: noisy annotators first, then adversarial ones, then honest ones."""
    n_noisy = round(n_annotators * noisy_annotator_share)
    n_adversarial = round(n_annotators * adversarial_annotator_share)
    rates = {}
    for i in range(n_annotators):
        if i < n_noisy:
            rates[f"annotator-{i}"] = NOISY_FLIP_RATE
        elif i < n_noisy + n_adversarial:
            rates[f"annotator-{i}"] = 1.0
        else:
            rates[f"annotator-{i}"] = 0.0
    return rates


def synthetic_preference_events(
    n: int,
    *,
    seed: int,
    model_id: str = "default",
    n_annotators: int = 10,
    noisy_annotator_share: float = 0.2,
    adversarial_annotator_share: float = 0.1,
    kinds: Mapping[str, float] = DEFAULT_KINDS,
    world_seed: int = 0,
) -> Iterator[dict[str, Any]]:
    """Yield `n` preference events (``preference_event`` schema) labelled by simulated annotators.

    The same arguments give the same events. Event ids are ``syn-<seed>-<index>``.
    `kinds` weights the event kinds ``pair``, ``ranking`` and ``ratings``. Honest
    annotators label a pair with a true reward gap below `TIE_THRESHOLD` as ``tie``,
    or as ``tie_bad`` when both rewards are negative.
    """
    rng = random.Random(seed)
    world = hidden_world(world_seed)
    flip_rates = annotator_flip_rates(n_annotators, noisy_annotator_share, adversarial_annotator_share)
    annotator_ids = list(flip_rates)
    kind_names = list(kinds)
    kind_weights = [kinds[name] for name in kind_names]

    for index in range(n):
        annotator_id = rng.choice(annotator_ids)
        flip_rate = flip_rates[annotator_id]
        kind = rng.choices(kind_names, weights=kind_weights)[0]

        event: dict[str, Any] = {
            "event_id": f"syn-{seed}-{index}",
            "model_id": model_id,
            "prompt": _prompt(rng, world),
            "annotator_id": annotator_id,
            "tags": ["synthetic"],
            "created_at": (START_TIME + timedelta(seconds=index)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if kind == "pair":
            event.update(_pair(rng, world, flip_rate))
        elif kind == "ranking":
            event.update(_ranking(rng, world, flip_rate))
        elif kind == "ratings":
            event.update(_ratings(rng, world, flip_rate))
        else:
            raise ValueError(f"unknown synthetic event kind {kind!r}; expected pair, ranking or ratings")
        yield event


def synthetic_candidate_sets(
    n: int, *, seed: int, model_id: str = "default", n_completions: int = 4, world_seed: int = 0
) -> Iterator[dict[str, Any]]:
    """Yield `n` candidate sets (``candidate_set`` schema) of `n_completions` completions each."""
    rng = random.Random(seed)
    world = hidden_world(world_seed)
    for index in range(n):
        yield {
            "request_id": f"syn-cand-{seed}-{index}",
            "model_id": model_id,
            "prompt": _prompt(rng, world),
            "completions": [synthetic_completion(rng, world) for _ in range(n_completions)],
            "source": "synthetic",
            "tags": ["synthetic"],
        }


def synthetic_completion(rng: random.Random, world: SyntheticPreferences) -> str:
    """Draw a completion of `world.min_tokens` to `world.max_tokens` words from the world's vocabulary."""
    length = rng.randint(world.min_tokens, world.max_tokens)
    return " ".join(rng.choice(world.vocabulary) for _ in range(length))


def _prompt(rng: random.Random, world: SyntheticPreferences) -> str:
    return "Write about " + " ".join(rng.choice(world.vocabulary) for _ in range(3))


def _pair(rng: random.Random, world: SyntheticPreferences, flip_rate: float) -> dict[str, Any]:
    first, second = synthetic_completion(rng, world), synthetic_completion(rng, world)
    first_reward, second_reward = world.true_reward(first), world.true_reward(second)

    if flip_rate == 0.0 and abs(first_reward - second_reward) < TIE_THRESHOLD:
        kind = "tie_bad" if first_reward < 0 and second_reward < 0 else "tie"
        return {"kind": kind, "chosen": first, "rejected": second}

    prefers_first = rng.random() < 1.0 / (1.0 + math.exp(second_reward - first_reward))
    if rng.random() < flip_rate:
        prefers_first = not prefers_first
    chosen, rejected = (first, second) if prefers_first else (second, first)
    return {"kind": "pair", "chosen": chosen, "rejected": rejected}


def _ranking(rng: random.Random, world: SyntheticPreferences, flip_rate: float) -> dict[str, Any]:
    completions = [synthetic_completion(rng, world) for _ in range(rng.randint(3, 4))]

    # Sorting by reward plus Gumbel noise samples a Plackett-Luce ranking.
    keyed = []
    for completion in completions:
        gumbel = -math.log(-math.log(rng.random() or 1e-12))
        keyed.append((world.true_reward(completion) + gumbel, completion))
    keyed.sort(key=lambda item: item[0], reverse=True)
    ranked = [completion for _, completion in keyed]

    if rng.random() < flip_rate:
        ranked.reverse()
    return {"kind": "ranking", "completions": ranked}


def _ratings(rng: random.Random, world: SyntheticPreferences, flip_rate: float) -> dict[str, Any]:
    completions = [synthetic_completion(rng, world) for _ in range(rng.randint(2, 4))]
    flipped = rng.random() < flip_rate

    ratings = []
    for completion in completions:
        reward = world.true_reward(completion)
        score = 3.0 + (-reward if flipped else reward) + rng.gauss(0.0, 0.3)
        ratings.append(round(min(5.0, max(1.0, score)), 1))
    return {"kind": "ratings", "completions": completions, "ratings": ratings}
