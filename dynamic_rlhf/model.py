"""The online reward model: hashed features, bootstrap heads, progressive metrics.

One update (``learn_one``) runs these steps:

1. expand the example into completions and weighted comparisons;
2. featurise every completion once and merge duplicate buckets;
3. predict the rewards of all heads with the current weights;
4. record progressive metrics, annotator agreement and reward statistics;
5. compute the objective's gradient and take one AdaGrad step on all heads.

Each step costs O(active features x heads), independent of ``dim``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dynamic_rlhf.annotators import AnnotatorReliability
from dynamic_rlhf.bootstrap import poisson_draw_matrix
from dynamic_rlhf.config import ModelConfig
from dynamic_rlhf.errors import FeedbackError
from dynamic_rlhf import learn_loop
from dynamic_rlhf.features import ExampleFeatures, HashingFeaturiser
from dynamic_rlhf.chunks import Chunk
from dynamic_rlhf.feedback import (Example, Judgement, PreferenceExample, RankingExample, RatingExample, expand,
                                   stable_example_id)
from dynamic_rlhf.kernels import METRIC_FIELDS, MOMENT_FIELDS
from dynamic_rlhf.optim import LazyAdaGrad
from dynamic_rlhf.results import EpochStats, LearnOutcome, ModelStats, RewardScore, learn_outcomes
from dynamic_rlhf.running import ProgressiveMetrics, RunningMoments
from dynamic_rlhf.text import Text, normalise_text, render_text

# Examples featurised together by learn_many, add_preferences and optimise_reward.
LEARN_CHUNK = 2048


class DynamicRLHFModel:
    """A Bradley--Terry reward model over hashed text features, learned online.

    Parameters
    ----------
    config:
        Hyperparameters; ``None`` uses :class:`ModelConfig` defaults.
    model_id:
        Name stored in the state and in harvested records.

    Examples
    --------
    >>> from dynamic_rlhf import PreferenceExample
    >>> model = DynamicRLHFModel()
    >>> outcome = model.learn_one(PreferenceExample("Say hi", "Hello there!", "Go away."))
    >>> outcome.pairs, model.version
    (1, 1)
    >>> model.predict_proba_one("Say hi", "Hello there!", "Go away.") > 0.5
    True
    """

    def __init__(self, config: ModelConfig | None = None, model_id: str = "default") -> None:
        self.config = config or ModelConfig()
        self.model_id = model_id
        c = self.config
        self.featuriser = HashingFeaturiser(c.dim, c.ngram_max, c.max_tokens, c.name_memory)
        self.optimiser = LazyAdaGrad(c.n_heads + 1, c.dim, c.learning_rate, c.l2, c.adagrad_delta)
        self.annotators = AnnotatorReliability(c.annotator_prior_agree, c.annotator_prior_disagree, c.annotator_min_weight,
                                               c.annotator_full_weight_reliability, c.annotator_confidence)
        self.metrics = ProgressiveMetrics(window=c.metrics_window)
        self.moments = RunningMoments(window=c.stats_window)
        self.version = 0
        self.examples_seen = 0
        self.pairs_trained = 0
        self.skipped_identical = 0
        self.replay: deque[Example] = deque(maxlen=c.replay_buffer_size)

    # -- learning ---------------------------------------------------------

    def learn_one(self, example: Example) -> LearnOutcome:
        """Predict *example*'s comparisons, record the metrics, then learn them."""
        return self._learn_chunk(Chunk.from_judgements([self._expand(example)], self.config.centring), live=True)[0]

    def learn_many(self, examples: Iterable[Example]) -> list[LearnOutcome]:
        """Learn *examples* in order; the model equals :meth:`learn_one` on each in turn.

        Every example is validated before the first is learned. The batch is
        featurised at once and runs of single pairs (strict or tie) are learned in one
        compiled loop, which is the fast way to feed a stream.
        """
        examples = list(examples)
        # Most events are preference pairs with an id of their own, which need no further check.
        example_ids = [example.example_id if type(example) is PreferenceExample and example.example_id is not None
                       else self._example_id(example) for example in examples]
        c = self.config
        outcomes: list[LearnOutcome] = []
        for start in range(0, len(examples), LEARN_CHUNK):
            end = start + LEARN_CHUNK
            chunk = Chunk.from_examples(examples[start:end], example_ids[start:end], ranking_loss=c.ranking_loss,
                                        rating_margin_scale=c.rating_margin_scale, centring=c.centring)
            outcomes += self._learn_chunk(chunk, live=True)
        return outcomes

    def add_preferences(self, examples: Iterable[Example]) -> int:
        """Learn each example and keep it in the bounded replay buffer; return pairs learned."""
        examples = list(examples)
        pairs = sum(outcome.pairs for outcome in self.learn_many(examples))
        self.replay.extend(examples)
        return pairs

    def optimise_reward(self, epochs: int = 1) -> list[EpochStats]:
        """Make *epochs* more passes over the replay buffer, in insertion order.

        Each epoch's figures are measured before each update, like the
        progressive metrics, but are not added to :meth:`stats`.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise FeedbackError("epochs", epochs, "an integer >= 0")
        judgements = [self._expand(example) for example in self.replay]
        chunks = [Chunk.from_judgements(judgements[start:start + LEARN_CHUNK], self.config.centring)
                  for start in range(0, len(judgements), LEARN_CHUNK)]
        history = []
        for epoch in range(1, epochs + 1):
            tally = ProgressiveMetrics()
            for chunk in chunks:
                self._learn_chunk(chunk, live=False, tally=tally)
            history.append(EpochStats(epoch, int(tally.pairs), tally.loss, tally.accuracy, tally.mean_margin))
        return history

    def _check_example(self, example: Any) -> None:
        if not isinstance(example, PreferenceExample | RankingExample | RatingExample):
            raise FeedbackError("example", example, "a PreferenceExample, RankingExample or RatingExample")

    def _example_id(self, example: Example) -> str:
        """Check the example's type and return its stable id (the expansion steps that can raise)."""
        self._check_example(example)
        return stable_example_id(example)

    def _expand(self, example: Example) -> Judgement:
        self._check_example(example)
        return expand(example, ranking_loss=self.config.ranking_loss, rating_margin_scale=self.config.rating_margin_scale)

    def _learn_chunk(self, chunk: Chunk, live: bool, tally: ProgressiveMetrics | None = None) -> list[LearnOutcome]:
        """Learn a chunk's examples in order: one featurisation, then one compiled loop over its active examples."""
        if live:
            self.examples_seen += len(chunk.skipped)
            self.skipped_identical += sum(chunk.skipped)
        if not chunk.active:
            return [LearnOutcome(0, 0.0, 0, skipped) for skipped in chunk.skipped]
        features = self.featuriser.featurise_examples(chunk.prompts, chunk.texts)
        learned = self._learn_active(chunk, features, live, tally)
        if len(learned) == len(chunk.skipped):
            return learned

        # Examples without comparisons get an empty outcome in their place.
        outcomes = [LearnOutcome(0, 0.0, 0, skipped) for skipped in chunk.skipped]
        for position, outcome in zip(chunk.active, learned):
            outcomes[position] = outcome
        return outcomes

    def _learn_active(self, chunk: Chunk, features: ExampleFeatures, live: bool,
                      tally: ProgressiveMetrics | None) -> list[LearnOutcome]:
        """Learn every active example of *chunk* in :func:`learn_loop.learn_examples`."""
        n_active = len(chunk.active)
        n_heads = self.config.n_heads
        annotator_rows: dict[str, int] = {}
        annotators = np.fromiter((-1 if a is None else annotator_rows.setdefault(a, len(annotator_rows))
                                  for a in chunk.annotator_ids), dtype=np.int64, count=n_active)
        draws = np.ones((n_active, n_heads + 1))
        if n_heads:
            draws[:, 1:] = poisson_draw_matrix(chunk.example_ids, n_heads)
        comparison_offsets, comparisons, ranked = _comparison_arrays(chunk)
        counts = self.annotators.counts(annotator_rows)
        metrics = tally if tally is not None else self.metrics
        metric_vector = np.array([getattr(metrics, name) for name in METRIC_FIELDS])
        moment_vector = np.array([getattr(self.moments, name) for name in MOMENT_FIELDS])
        pairs = np.empty(n_active, dtype=np.int64)
        losses = np.empty(n_active)
        correct = np.empty(n_active, dtype=np.int64)

        optimiser = self.optimiser
        config = self.config
        optimiser.scale, optimiser.n_rows = learn_loop.learn_examples(
            features.coordinates, features.coordinate_offsets, features.block, features.block_offsets,
            features.completion_offsets, features.n_tokens, np.array(chunk.single, dtype=np.bool_),
            np.array(chunk.kinds, dtype=np.int64), np.array(chunk.margins, dtype=np.float64),
            np.array(chunk.weights, dtype=np.float64), comparison_offsets, comparisons, ranked, annotators, draws,
            optimiser.rows, optimiser.table, optimiser.n_rows, optimiser.scale, optimiser.decay,
            optimiser.learning_rate, optimiser.delta, config.tie_nu, config.tie_bad_strength, config.centring, counts,
            self.annotators.parameters(), metric_vector, metrics.window, moment_vector, self.moments.window, live,
            pairs, losses, correct)

        # Copy the running figures back from the kernel's vectors.
        for name, value in zip(METRIC_FIELDS, metric_vector.tolist()):
            setattr(metrics, name, value)
        if live:
            for name, value in zip(MOMENT_FIELDS, moment_vector.tolist()):
                setattr(self.moments, name, value)
            self.annotators.store_counts(annotator_rows, counts)
        self.version += n_active
        pair_counts = pairs.tolist()
        self.pairs_trained += sum(pair_counts)
        skipped = [chunk.skipped[position] for position in chunk.active]
        if not chunk.general:
            return learn_outcomes(1, losses.tolist(), correct.tolist(), skipped)
        return [LearnOutcome(*fields) for fields in zip(pair_counts, losses.tolist(), correct.tolist(), skipped)]

    # -- scoring ----------------------------------------------------------

    def _rewards(self, prompt: Text, completions: Sequence[Text]) -> NDArray[np.float64]:
        """Return the ``(heads, completions)`` rewards."""
        prompt_text = render_text(normalise_text(prompt, "prompt"))
        texts = [render_text(normalise_text(c, f"completions[{i}]")) for i, c in enumerate(completions)]
        features = self.featuriser.featurise_examples([prompt_text], [texts], remember=False)
        coordinates, block = features.example(0)
        return self.optimiser.rewards(coordinates, block, len(texts)).T

    def score(self, prompt: Text, completions: Sequence[Text]) -> list[RewardScore]:
        """Return the mean reward of the bootstrap heads and their std, per completion.

        Without bootstrap heads (``n_heads=0``) the reward is head 0's and the std is 0.
        """
        if isinstance(completions, str) or not isinstance(completions, Sequence) or not completions:
            raise FeedbackError("completions", completions, "a non-empty list of completions")
        rewards = self._rewards(prompt, completions)
        if rewards.shape[0] > 1:
            mean, spread = rewards[1:].mean(axis=0), rewards[1:].std(axis=0)
        else:
            mean, spread = rewards[0], np.zeros(rewards.shape[1])
        return [RewardScore(float(r), float(s)) for r, s in zip(mean, spread)]

    def score_one(self, prompt: Text, completion: Text) -> RewardScore:
        """Return the :class:`RewardScore` of one completion."""
        return self.score(prompt, [completion])[0]

    def predict_proba_one(self, prompt: Text, a: Text, b: Text) -> float:
        """Return P(a > b) = sigmoid(r(a) - r(b)) under head 0.

        The two rewards are computed separately, so swapping *a* and *b*
        negates the difference exactly and P(a > b) = 1 - P(b > a).
        """
        r_a = self._rewards(prompt, [a])[0, 0]
        r_b = self._rewards(prompt, [b])[0, 0]
        d = float(r_a) - float(r_b)
        if d >= 0.0:
            return 1.0 / (1.0 + math.exp(-d))
        return 1.0 - 1.0 / (1.0 + math.exp(d))

    # -- inspection -------------------------------------------------------

    def head_weights(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Return the touched buckets and their current ``(buckets, heads)`` weights."""
        coordinates = self.optimiser.touched()
        return coordinates, self.optimiser.current(coordinates)

    def top_features(self, n: int = 20) -> list[tuple[str, float]]:
        """Return the *n* non-zero head-0 features of largest absolute weight, strongest first.

        Named features report their own weight (bucket weight times the
        feature's hash sign). Buckets whose feature string is no longer in
        the featuriser's cache are named ``"#<bucket>"`` and report the
        bucket weight. When several features share a bucket, the name is one
        of them.
        """
        coordinates, weights = self.head_weights()
        nonzero = weights[:, 0] != 0.0
        coordinates, head = coordinates[nonzero], weights[nonzero, 0]
        order = np.argsort(-np.abs(head), kind="stable")[:n]
        names = self.featuriser.feature_names()
        top = []
        for i in order.tolist():
            bucket = int(coordinates[i])
            name, sign = names.get(bucket, (f"#{bucket}", 1.0))
            top.append((name, sign * float(head[i])))
        return top

    def stats(self) -> ModelStats:
        """Return the live metrics."""
        m = self.metrics
        return ModelStats(
            model_id=self.model_id,
            version=self.version,
            examples_seen=self.examples_seen,
            pairs_trained=self.pairs_trained,
            skipped_identical=self.skipped_identical,
            progressive_loss=m.loss,
            progressive_accuracy=m.accuracy,
            recent_loss=m.recent_loss,
            recent_accuracy=m.recent_accuracy,
            mean_margin=m.mean_margin,
            weight_norm=self.optimiser.weight_norm(0),
            reward_mean=self.moments.mean_x,
            reward_std=math.sqrt(self.moments.var_x),
            reward_length_correlation=self.moments.correlation(),
            annotators=len(self.annotators.records),
            n_heads=self.config.n_heads,
            dim=self.config.dim,
        )

    # -- harvesting and state ----------------------------------------------

    def build_fine_tune_records(self, prompt: Text, completions: Sequence[Text], source: str, *, policy: Any = None,
                                tags: Sequence[str] = (), request_id: str | None = None,
                                created_at: str | None = None) -> list[dict[str, Any]]:
        """Score *completions* and return the records accepted by *policy*.

        See :mod:`dynamic_rlhf.harvest` for the rules and the record fields.
        """
        from dynamic_rlhf.harvest import HarvestPolicy, build_records

        return build_records(self, prompt, completions, source, policy or HarvestPolicy(), tags, request_id, created_at)

    def to_bytes(self) -> bytes:
        """Serialise the model (see :mod:`dynamic_rlhf.state`)."""
        from dynamic_rlhf.state import dump_model

        return dump_model(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> DynamicRLHFModel:
        """Rebuild a model from :meth:`to_bytes` output."""
        from dynamic_rlhf.state import load_model

        return load_model(data)


# The loop reads comparison rows of general examples only, so a chunk of single pairs passes these.
_NO_COMPARISONS = (np.zeros(1, dtype=np.int64), np.zeros((0, 5)), np.zeros(0, dtype=np.bool_))


def _comparison_arrays(chunk: Chunk) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.bool_]]:
    """Return the comparisons of the chunk's general examples: offsets, rows and ranking flags.

    Each row is ``(first, second, kind, margin, weight)``. Single pairs own no rows: the
    loop reads them from the chunk's per-example columns. A ranked example's flag selects
    the Plackett-Luce likelihood of its completions in listed order. That order is its
    ranking, because ``expand`` lists a ranking's completions best first.
    """
    if not chunk.general:
        return _NO_COMPARISONS
    n_active = len(chunk.active)
    offsets = np.zeros(n_active + 1, dtype=np.int64)
    ranked = np.zeros(n_active, dtype=np.bool_)
    rows: list[tuple[int, int, int, float, float]] = []
    for index, judgement in chunk.general.items():
        offsets[index + 1] = len(judgement.pairs)
        ranked[index] = judgement.ranking is not None
        rows.extend(judgement.pairs)
    np.cumsum(offsets, out=offsets)
    comparisons = np.array(rows, dtype=np.float64).reshape(-1, 5)
    return offsets, comparisons, ranked
