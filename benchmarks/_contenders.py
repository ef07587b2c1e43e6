"""Progressive (predict, then learn) runs of the baseline learners, and the shared timer.

Each runner (here and in ``benchmarks._core``) builds a fresh learner, walks the stream once in order and returns how many
pairs it predicted correctly before learning from them. A prediction counts as correct
only when it is strictly on the right side of 0.5, so a tie counts as an error for every
learner. The caller times the whole call, so featurisation and update are both measured.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from river import linear_model
from vowpalwabbit import Workspace

from benchmarks._data import PairRecord
from benchmarks._features import difference_features

CONTENDER_NAMES = ("dynamic_rlhf", "dynamic_rlhf_learn_one", "river", "vowpalwabbit")
VW_ARGUMENTS = "--loss_function logistic --quiet -b 20 --noconstant"


@dataclass(frozen=True, slots=True)
class ProgressiveResult:
    """Outcome of one progressive pass: pairs seen and pairs predicted correctly."""

    pairs: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.pairs if self.pairs else 0.0


@dataclass(slots=True)
class ContenderTiming:
    """Wall-clock seconds of each repetition and the progressive result of the first one."""

    name: str
    seconds: list[float] = field(default_factory=list)
    result: ProgressiveResult | None = None
    results_differ: bool = False


Runner = Callable[[], ProgressiveResult]


def sign_flips(count: int, seed: int) -> list[bool]:
    """Draw the per-pair sign flips that balance the classes of the difference learners."""
    rng = random.Random(seed)
    return [rng.random() < 0.5 for _ in range(count)]


def run_river(pairs: Sequence[PairRecord], flips: Sequence[bool]) -> ProgressiveResult:
    """Run River's logistic regression on f(chosen) - f(rejected) with random sign flips.

    The intercept stays at zero (``intercept_lr=0``) because a difference of two
    completions has no natural offset; the other settings are River's defaults.
    """
    model = linear_model.LogisticRegression(intercept_lr=0.0)
    correct = 0
    for pair, flipped in zip(pairs, flips):
        features = difference_features(pair.chosen, pair.rejected)
        if flipped:
            features = {name: -value for name, value in features.items()}
        label = not flipped

        probability = model.predict_proba_one(features)[True]
        correct += probability > 0.5 if label else probability < 0.5
        model.learn_one(features, label)
    return ProgressiveResult(len(pairs), correct)


def run_vowpalwabbit(pairs: Sequence[PairRecord], flips: Sequence[bool]) -> ProgressiveResult:
    """Run Vowpal Wabbit (logistic loss) on difference features in one namespace.

    Each example is parsed once, then predicted and learned, which is the cheapest way to
    get a progressive prediction from the Python binding.
    """
    workspace = Workspace(VW_ARGUMENTS)
    correct = 0
    try:
        for pair, flipped in zip(pairs, flips):
            features = difference_features(pair.chosen, pair.rejected)
            sign = -1.0 if flipped else 1.0
            body = " ".join(f"{name}:{sign * value:g}" for name, value in features.items())
            label = -1 if flipped else 1

            example = workspace.parse(f"{label} |t {body}")
            score = workspace.predict(example)
            workspace.learn(example)
            workspace.finish_example(example)
            correct += score > 0.0 if label > 0 else score < 0.0
    finally:
        workspace.finish()
    return ProgressiveResult(len(pairs), correct)


def time_contenders(runners: dict[str, Runner], repeats: int) -> list[ContenderTiming]:
    """Time every runner ``repeats`` times, interleaved so load spikes hit all of them.

    The order of the runners rotates between repetitions, so no learner always runs
    first (with a cold cache) or last. A full garbage collection runs before each timed
    call, untimed. Otherwise a full collection, which scans every object of the process
    (the benchmark's own streams included), would fall inside whichever run happened to
    reach the collector's threshold, and add 30 to 70 ms to it on the benchmark machine.
    """
    timings = {name: ContenderTiming(name) for name in runners}
    names = list(runners)
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            started = time.perf_counter()
            result = runners[name]()
            elapsed = time.perf_counter() - started

            timing = timings[name]
            timing.seconds.append(elapsed)
            if timing.result is None:
                timing.result = result
            elif timing.result != result:
                timing.results_differ = True
    return [timings[name] for name in names]
