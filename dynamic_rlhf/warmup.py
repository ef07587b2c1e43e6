"""Load the compiled loops and the lazily imported code before the first real update.

The first update in a process compiles each numba loop it reaches, or loads it from
numba's on-disk cache, and imports modules that only some feedback kinds need. That
takes from a few hundred milliseconds to seconds, spread over the first events of each
kind. A service calls `warm_up` at start, so the cost is paid before it reports ready.
"""

from __future__ import annotations

import dataclasses
import time

from dynamic_rlhf.config import ModelConfig
from dynamic_rlhf.feedback import Example, PreferenceExample, RankingExample, RatingExample
from dynamic_rlhf.model import DynamicRLHFModel

WARM_UP_DIM = 1024
"""Buckets of the throwaway model: compiled loops depend on array types, not sizes."""


def warm_up_examples() -> list[Example]:
    """Return one example of every feedback kind and text form the learner handles."""
    chat = [{"role": "user", "content": "Name a colour."}]
    return [
        PreferenceExample("Name a colour.", "Blue, like the sky.", "No.", example_id="warm-up-pair"),
        PreferenceExample("Name a colour.", "Red.", "Green.", label="tie", example_id="warm-up-tie"),
        PreferenceExample("Name a colour.", "Maybe.", "", label="tie_bad", example_id="warm-up-tie-bad"),
        PreferenceExample(chat, [{"role": "assistant", "content": "Yellow."}], "Hmm.", margin=0.5,
                          annotator_id="warm-up", example_id="warm-up-chat"),
        RankingExample("Name a colour.", ["Teal.", "A colour.", "?"], example_id="warm-up-ranking"),
        RatingExample("Name a colour.", ["Violet.", "Colour."], ratings=[4.0, 1.5], example_id="warm-up-rating"),
    ]


def warm_up(config: ModelConfig | None = None) -> float:
    """Run every learner path once on a small throwaway model shaped like `config`, and return the seconds taken.

    The model learns each kind of example one by one and in a batch, scores and harvests
    completions, and makes a round trip through its state bytes. Nothing of it is kept.
    """
    started = time.perf_counter()
    base = config or ModelConfig()
    model = DynamicRLHFModel(dataclasses.replace(base, dim=min(base.dim, WARM_UP_DIM)), model_id="warm-up")
    examples = warm_up_examples()

    model.learn_one(examples[0])
    model.learn_many(examples)
    model.add_preferences(examples)
    model.optimise_reward(epochs=1)
    model.build_fine_tune_records("Name a colour.", ["Indigo.", "I cannot say."], source="warm-up")
    DynamicRLHFModel.from_bytes(model.to_bytes()).stats()

    return time.perf_counter() - started
