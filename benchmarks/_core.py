"""Adapters from the benchmark streams to the ``dynamic_rlhf`` core library."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from benchmarks._batch import TextFeaturiser
from benchmarks._contenders import ProgressiveResult
from benchmarks._data import PairRecord
from benchmarks._features import bag_of_ngrams


def core_unavailable_reason() -> str | None:
    """Return why the core cannot be benchmarked, or None when it is importable."""
    try:
        from dynamic_rlhf import DynamicRLHFModel, PreferenceExample  # noqa: F401, PLC0415
    except ImportError as error:
        return f"dynamic_rlhf is not importable ({error})"
    return None


def build_examples(pairs: Sequence[PairRecord], prefix: str = "bench") -> list[Any]:
    """Convert pairs to ``PreferenceExample`` values with stable example ids."""
    from dynamic_rlhf import PreferenceExample  # noqa: PLC0415

    return [
        PreferenceExample(pair.prompt, pair.chosen, pair.rejected, example_id=f"{prefix}-{index}")
        for index, pair in enumerate(pairs)
    ]


def warm_up() -> None:
    """Compile (or load from numba's cache) the learner's kernels outside any timer."""
    from dynamic_rlhf import DynamicRLHFModel, PreferenceExample  # noqa: PLC0415

    # Non-ASCII text also loads the loop that lower-cases Unicode and builds its table.
    example = PreferenceExample("warm up", "a longer answer, déjà vu", "short", example_id="warm-up")
    DynamicRLHFModel().learn_many([example, PreferenceExample("warm up", "x", "y", label="tie", example_id="tie")])


def run_dynamic_rlhf(examples: Sequence[Any]) -> ProgressiveResult:
    """Run ``DynamicRLHFModel.learn_many`` over the whole stream with the default config.

    ``learn_many`` predicts each pair before learning it, in stream order, exactly like
    ``learn_one`` on each pair (same model bytes); it featurises the stream in chunks
    and runs the updates in a compiled loop. ``LearnOutcome.correct`` comes from the
    prediction before the update. A pair the model skips (identical completions) counts
    as an error.
    """
    from dynamic_rlhf import DynamicRLHFModel  # noqa: PLC0415

    outcomes = DynamicRLHFModel().learn_many(examples)
    return ProgressiveResult(len(examples), sum(outcome.correct for outcome in outcomes))


def run_dynamic_rlhf_one(examples: Sequence[Any]) -> ProgressiveResult:
    """Run ``DynamicRLHFModel.learn_one`` on one pair at a time (the per-event API)."""
    from dynamic_rlhf import DynamicRLHFModel  # noqa: PLC0415

    model = DynamicRLHFModel()
    correct = 0
    for example in examples:
        correct += model.learn_one(example).correct
    return ProgressiveResult(len(examples), correct)


def held_out_accuracy(model: Any, pairs: Sequence[PairRecord]) -> float:
    """Return the share of pairs for which the model gives P(chosen > rejected) > 0.5."""
    correct = 0
    for pair in pairs:
        correct += model.predict_proba_one(pair.prompt, pair.chosen, pair.rejected) > 0.5
    return correct / len(pairs) if pairs else 0.0


def online_held_out_curve(
    train: Sequence[PairRecord], test: Sequence[PairRecord], epochs: int
) -> list[dict[str, float]]:
    """Train with ``add_preferences``, then ``optimise_reward`` one epoch at a time.

    Returns the held-out accuracy after the single streaming pass (epoch 0) and after
    each further epoch over the replay buffer.
    """
    from dynamic_rlhf import DynamicRLHFModel  # noqa: PLC0415

    model = DynamicRLHFModel()
    model.add_preferences(build_examples(train, prefix="train"))
    curve = [{"epochs": 0, "accuracy": held_out_accuracy(model, test)}]
    for epoch in range(1, epochs + 1):
        model.optimise_reward(1)
        curve.append({"epochs": epoch, "accuracy": held_out_accuracy(model, test)})
    return curve


def text_featuriser() -> tuple[TextFeaturiser, int, str]:
    """Return the core's hashed featuriser with the default config, its dimension and a name.

    Falls back to CRC32-hashed ``bag_of_ngrams`` when the core's featuriser cannot be
    imported, and the returned name then states the fallback.
    """
    try:
        from dynamic_rlhf import DynamicRLHFModel  # noqa: PLC0415
    except ImportError:
        return _fallback_featuriser()

    model = DynamicRLHFModel()
    config = model.config
    featuriser = model.featuriser

    def core_features(prompt: str, completion: str) -> tuple[Sequence[int], Sequence[float]]:
        # One completion per call, so column 0 of the block holds all of its features.
        coordinates, block = featuriser.featurise_examples([prompt], [[completion]], remember=False).example(0)
        return coordinates.tolist(), block[:, 0].tolist()

    description = (
        f"DynamicRLHFModel().featuriser (dim={config.dim}, ngram_max={config.ngram_max}): "
        "signed-hashed unigrams, bigrams, prompt-overlap unigrams and 3 dense features"
    )
    return core_features, config.dim, description


def _fallback_featuriser() -> tuple[TextFeaturiser, int, str]:
    dimension = 1 << 20

    def hashed_ngrams(prompt: str, completion: str) -> tuple[Sequence[int], Sequence[float]]:
        counts = bag_of_ngrams(completion)
        indices = [zlib.crc32(name.encode("utf-8")) & (dimension - 1) for name in counts]
        return indices, [float(value) for value in counts.values()]

    return hashed_ngrams, dimension, "CRC32-hashed unigrams+bigrams (benchmarks fallback)"


def profile_learner(examples: Sequence[Any], top: int = 25) -> str:
    """Profile ``run_dynamic_rlhf`` (``learn_many``) with cProfile and return the top functions by own time."""
    import cProfile  # noqa: PLC0415
    import io  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    profiler = cProfile.Profile()
    warm_up()
    profiler.runcall(run_dynamic_rlhf, examples)
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(top)
    return buffer.getvalue()
