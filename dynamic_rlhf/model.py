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
from dynamic_rlhf.bootstrap import poisson_draws
from dynamic_rlhf.config import ModelConfig
from dynamic_rlhf.errors import FeedbackError
from dynamic_rlhf.features import HashingFeaturiser
from dynamic_rlhf.losses import bradley_terry_scalar
from dynamic_rlhf.feedback import Example, Judgement, PreferenceExample, RankingExample, RatingExample, expand
from dynamic_rlhf.objective import ObjectiveParams, Structure, build_structure, example_objective
from dynamic_rlhf.optim import LazyAdaGrad
from dynamic_rlhf.results import EpochStats, LearnOutcome, ModelStats, RewardScore
from dynamic_rlhf.running import ProgressiveMetrics, RunningMoments
from dynamic_rlhf.text import Text, normalise_text, render_text


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
        self.featuriser = HashingFeaturiser(c.dim, c.ngram_max, c.max_tokens, c.token_cache_size)
        self.optimiser = LazyAdaGrad(c.n_heads + 1, c.dim, c.learning_rate, c.l2)
        self.annotators = AnnotatorReliability(c.annotator_prior_agree, c.annotator_prior_disagree, c.annotator_min_weight,
                                               c.annotator_full_weight_reliability, c.annotator_confidence)
        self.metrics = ProgressiveMetrics(window=c.metrics_window)
        self.moments = RunningMoments(window=c.stats_window)
        self.version = 0
        self.examples_seen = 0
        self.pairs_trained = 0
        self.skipped_identical = 0
        self.replay: deque[Example] = deque(maxlen=c.replay_buffer_size)
        self._params = ObjectiveParams(c.tie_nu, c.tie_bad_strength, c.centring)

    # -- learning ---------------------------------------------------------

    def learn_one(self, example: Example) -> LearnOutcome:
        """Predict *example*'s comparisons, record the metrics, then learn them."""
        return self._learn(example, live=True)

    def learn_many(self, examples: Iterable[Example]) -> list[LearnOutcome]:
        """Apply :meth:`learn_one` to each example in order."""
        learn = self._learn
        return [learn(example, live=True) for example in examples]

    def add_preferences(self, examples: Iterable[Example]) -> int:
        """Learn each example and keep it in the bounded replay buffer; return pairs learned."""
        pairs = 0
        for example in examples:
            pairs += self._learn(example, live=True).pairs
            self.replay.append(example)
        return pairs

    def optimise_reward(self, epochs: int = 1) -> list[EpochStats]:
        """Make *epochs* more passes over the replay buffer, in insertion order.

        Each epoch's figures are measured before each update, like the
        progressive metrics, but are not added to :meth:`stats`.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise FeedbackError("epochs", epochs, "an integer >= 0")
        history = []
        for epoch in range(1, epochs + 1):
            tally = ProgressiveMetrics()
            for example in list(self.replay):
                self._learn(example, live=False, tally=tally)
            history.append(EpochStats(epoch, int(tally.pairs), tally.loss, tally.accuracy, tally.mean_margin))
        return history

    def _learn(self, example: Example, live: bool, tally: ProgressiveMetrics | None = None) -> LearnOutcome:
        if not isinstance(example, PreferenceExample | RankingExample | RatingExample):
            raise FeedbackError("example", example, "a PreferenceExample, RankingExample or RatingExample")
        judgement = expand(example, ranking_loss=self.config.ranking_loss, rating_margin_scale=self.config.rating_margin_scale)
        if live:
            self.examples_seen += 1
            self.skipped_identical += judgement.skipped
        if not judgement.pairs:
            return LearnOutcome(0, 0.0, 0, judgement.skipped)

        # Features of all completions, merged into one (buckets x completions) block.
        coordinates, block_features, n_tokens = self._features(judgement.prompt_text, judgement.texts)
        optimiser = self.optimiser
        rows = optimiser.gather(coordinates)
        rewards = (block_features.T @ optimiser.weights_of(rows)).astype(np.float64)  # (completions, heads)

        structure = build_structure(len(judgement.texts), judgement.pairs, judgement.ranking)
        if structure.single_strict and self.config.centring == 0.0:
            # One strict pair: the gradient is the feature difference times a scalar per head.
            first, second = rewards.tolist()
            difference = [a - b for a, b in zip(first, second)]
            scaled, loss = bradley_terry_scalar(difference, float(structure.margins[0]), self._head_weights(judgement))
            outcome = self._record(judgement, structure, np.array(difference[:1]), np.array([loss]),
                                   rewards[:, 0], n_tokens, live, tally)
            gradient = np.multiply.outer(block_features[:, 0] - block_features[:, 1], np.array(scaled, dtype=np.float32))
        else:
            head_weights = np.array(self._head_weights(judgement))
            _, coefficients, differences, pair_loss = example_objective(rewards.T, structure, self._params, head_weights)

            # Progressive figures from head 0, before the update.
            outcome = self._record(judgement, structure, differences[0], pair_loss[0], rewards[:, 0], n_tokens, live, tally)
            gradient = block_features @ coefficients.T.astype(np.float32)

        # One AdaGrad step on every head.
        optimiser.step(coordinates, rows, gradient)
        self.version += 1
        self.pairs_trained += outcome.pairs
        return outcome

    def _head_weights(self, judgement: Judgement) -> list[float]:
        """Return example weight x annotator weight x (1, Poisson(1) draws of the bootstrap heads)."""
        label_weight = judgement.weight * self.annotators.weight(judgement.annotator_id)
        draws = poisson_draws(judgement.example_id, self.config.n_heads)
        return [label_weight] + [label_weight * draw for draw in draws]

    def _record(self, judgement: Judgement, structure: Structure, differences: NDArray[np.float64],
                pair_loss: NDArray[np.float64], rewards: NDArray[np.float64], n_tokens: list[int], live: bool,
                tally: ProgressiveMetrics | None) -> LearnOutcome:
        pairs = len(judgement.pairs)
        if pairs == 1:
            # One comparison: plain floats are cheaper than numpy reductions.
            difference = float(differences[0])
            strict_differences = [difference] if structure.all_strict else []
            loss = float(pair_loss[0])
        else:
            strict_differences = differences[structure.strict].tolist()
            loss = float(pair_loss.sum())
        n_strict = len(strict_differences)
        correct = sum(1 for d in strict_differences if d > 0.0)
        margin = sum(strict_differences)

        if tally is not None:
            tally.update(pairs, loss, n_strict, correct, margin)
        if live:
            self.metrics.update(pairs, loss, n_strict, correct, margin)
            for value in strict_differences:
                # sigmoid via tanh, which cannot overflow for large differences.
                self.annotators.observe(judgement.annotator_id, 0.5 * (1.0 + math.tanh(0.5 * value)))
            for reward, count in zip(rewards.tolist(), n_tokens):
                self.moments.update(reward, math.log1p(count))
        return LearnOutcome(pairs, loss, correct, judgement.skipped)

    def _features(self, prompt: str, texts: Sequence[str]) -> tuple[NDArray[np.int64], NDArray[np.float32], list[int]]:
        """Return unique buckets, the (buckets x completions) feature block and token counts."""
        featuriser = self.featuriser
        features = featuriser.featurise(texts, featuriser.prompt_tokens(prompt))
        return features.coordinates, features.block, features.n_tokens

    # -- scoring ----------------------------------------------------------

    def _rewards(self, prompt: Text, completions: Sequence[Text]) -> NDArray[np.float64]:
        prompt_text = render_text(normalise_text(prompt, "prompt"))
        texts = [render_text(normalise_text(c, f"completions[{i}]")) for i, c in enumerate(completions)]
        coordinates, block, _ = self._features(prompt_text, texts)
        return (block.T @ self.optimiser.current(coordinates)).T.astype(np.float64)

    def score(self, prompt: Text, completions: Sequence[Text]) -> list[RewardScore]:
        """Return the reward and the bootstrap heads' std of each completion."""
        if isinstance(completions, str) or not isinstance(completions, Sequence) or not completions:
            raise FeedbackError("completions", completions, "a non-empty list of completions")
        rewards = self._rewards(prompt, completions)
        spread = rewards[1:].std(axis=0) if rewards.shape[0] > 1 else np.zeros(rewards.shape[1])
        return [RewardScore(float(r), float(s)) for r, s in zip(rewards[0], spread)]

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
        _, weights = self.head_weights()
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
            weight_norm=float(np.linalg.norm(weights[:, 0].astype(np.float64))),
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
