"""Human feedback examples and their expansion into weighted comparisons.

Three example types cover the usual annotation formats:

* :class:`PreferenceExample` -- one comparison with a label: ``"chosen"``
  (chosen is better), ``"tie"`` or ``"tie_bad"`` (a tie in which both
  completions are bad, as Chatbot Arena records "both are bad").
* :class:`RankingExample` -- K completions ordered best first.
* :class:`RatingExample` -- K completions with a scalar rating each.

Each example validates itself on construction and raises
:class:`~dynamic_rlhf.errors.FeedbackError` naming the field, the value and
what is expected. :func:`expand` turns an example into a :class:`Judgement`,
the internal form the learner consumes.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeAlias

import msgpack

from dynamic_rlhf.errors import FeedbackError
from dynamic_rlhf.text import NormalText, Text, canonical_text, normalise_text, render_text

Label: TypeAlias = Literal["chosen", "tie", "tie_bad"]
RankingLoss: TypeAlias = Literal["plackett_luce", "pairs"]
LABELS: tuple[str, ...] = ("chosen", "tie", "tie_bad")
MAX_ID_CHARS = 256


def _check_weight(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise FeedbackError("weight", value, "a finite number > 0")
    return float(value)


def _check_margin(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise FeedbackError("margin", value, "a finite number >= 0")
    return float(value)


def _check_id(name: str, value: Any, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        expected = f"a non-empty string of at most {MAX_ID_CHARS} characters"
        raise FeedbackError(name, value, expected + (" or None" if optional else ""))
    return value


def _check_tags(value: Any) -> tuple[str, ...]:
    # Tuples and lists skip the Sequence check, an ABC instance check that costs several
    # times more and runs once per example.
    if type(value) not in (tuple, list) and (isinstance(value, str) or not isinstance(value, Sequence)):
        raise FeedbackError("tags", value, "a list or tuple of strings")
    for position, tag in enumerate(value):
        if not isinstance(tag, str) or not tag:
            raise FeedbackError(f"tags[{position}]", tag, "a non-empty string")
    return tuple(value)


def _check_completions(value: Any) -> tuple[NormalText, ...]:
    if type(value) not in (tuple, list) and (isinstance(value, str) or not isinstance(value, Sequence)):
        raise FeedbackError("completions", value, "a list of at least 2 completions")
    if len(value) < 2:
        raise FeedbackError("completions", value, "a list of at least 2 completions")
    return tuple(normalise_text(item, f"completions[{i}]") for i, item in enumerate(value))


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _validate_common(obj: Any) -> None:
    _set(obj, "prompt", normalise_text(obj.prompt, "prompt"))
    _set(obj, "weight", _check_weight(obj.weight))
    _set(obj, "annotator_id", _check_id("annotator_id", obj.annotator_id, optional=True))
    _set(obj, "tags", _check_tags(obj.tags))
    _set(obj, "model_id", _check_id("model_id", obj.model_id, optional=False))
    _set(obj, "example_id", _check_id("example_id", obj.example_id, optional=True))


@dataclass(frozen=True)
class PreferenceExample:
    """One pairwise judgement of two completions of the same prompt.

    ``label="chosen"`` means *chosen* is preferred to *rejected*; with a
    ``margin`` > 0 the reward gap should exceed it. ``"tie"`` and
    ``"tie_bad"`` mean neither is preferred; ``"tie_bad"`` adds that both
    are bad. An empty completion is valid.

    >>> PreferenceExample("Hi", "Hello!", "", tags=["greeting"]).tags
    ('greeting',)
    """

    prompt: Text
    chosen: Text
    rejected: Text
    label: Label = "chosen"
    margin: float = 0.0
    weight: float = 1.0
    annotator_id: str | None = None
    tags: Sequence[str] = ()
    model_id: str = "default"
    example_id: str | None = None

    def __post_init__(self) -> None:
        _validate_common(self)
        _set(self, "chosen", normalise_text(self.chosen, "chosen"))
        _set(self, "rejected", normalise_text(self.rejected, "rejected"))
        if self.label not in LABELS:
            raise FeedbackError("label", self.label, "one of 'chosen', 'tie', 'tie_bad'")
        _set(self, "margin", _check_margin(self.margin))


@dataclass(frozen=True)
class RankingExample:
    """K >= 2 completions of one prompt ranked best first.

    >>> len(RankingExample("Q", ["best", "middle", "worst"]).completions)
    3
    """

    prompt: Text
    completions: Sequence[Text]
    weight: float = 1.0
    annotator_id: str | None = None
    tags: Sequence[str] = ()
    model_id: str = "default"
    example_id: str | None = None

    def __post_init__(self) -> None:
        _validate_common(self)
        _set(self, "completions", _check_completions(self.completions))


@dataclass(frozen=True)
class RatingExample:
    """K >= 2 completions of one prompt with one scalar rating each (higher is better)."""

    prompt: Text
    completions: Sequence[Text]
    ratings: Sequence[float] = field(default=())
    weight: float = 1.0
    annotator_id: str | None = None
    tags: Sequence[str] = ()
    model_id: str = "default"
    example_id: str | None = None

    def __post_init__(self) -> None:
        _validate_common(self)
        completions = _check_completions(self.completions)
        _set(self, "completions", completions)

        ratings = self.ratings
        if isinstance(ratings, str) or not isinstance(ratings, Sequence) or len(ratings) != len(completions):
            raise FeedbackError("ratings", ratings, f"a list of {len(completions)} numbers, one per completion")
        for position, rating in enumerate(ratings):
            if isinstance(rating, bool) or not isinstance(rating, int | float) or not math.isfinite(rating):
                raise FeedbackError(f"ratings[{position}]", rating, "a finite number")
        _set(self, "ratings", tuple(float(r) for r in ratings))


Example: TypeAlias = PreferenceExample | RankingExample | RatingExample

# Comparison kinds inside a Judgement.
STRICT, TIE, TIE_BAD = 0, 1, 2


class Judgement(NamedTuple):
    """An example expanded into completions plus weighted comparisons.

    ``pairs`` contains ``(first, second, kind, margin, weight)`` tuples over
    indices into ``texts``: for ``STRICT`` the first is preferred. When
    ``ranking`` is set, the learner applies the Plackett-Luce likelihood to
    that order instead of using ``pairs`` for the gradient; ``pairs`` then
    still lists the implied comparisons for the progressive metrics.
    A named tuple, because the learner builds one per example.
    """

    example_id: str
    prompt_text: str
    texts: tuple[str, ...]
    pairs: tuple[tuple[int, int, int, float, float], ...]
    ranking: tuple[int, ...] | None
    skipped: int
    weight: float
    annotator_id: str | None


def stable_example_id(example: Example) -> str:
    """Return ``example.example_id``, or a content hash when it is None.

    The hash covers every field that affects learning, so two identical
    events get the same id (and the same bootstrap draws) on every host.
    """
    if example.example_id is not None:
        return example.example_id

    if isinstance(example, PreferenceExample):
        body: list[Any] = ["pair", canonical_text(example.chosen), canonical_text(example.rejected), example.label, example.margin]
    elif isinstance(example, RankingExample):
        body = ["ranking", [canonical_text(c) for c in example.completions]]
    else:
        body = ["ratings", [canonical_text(c) for c in example.completions], list(example.ratings)]
    body += [canonical_text(example.prompt), example.weight, example.annotator_id, list(example.tags), example.model_id]
    # surrogatepass: text decoded from JSON may hold lone surrogates, which plain UTF-8 rejects.
    # Valid text packs to the same bytes either way, so existing ids do not change.
    digest = hashlib.blake2b(msgpack.packb(body, unicode_errors="surrogatepass"), digest_size=16).hexdigest()
    return "content:" + digest


def expand(example: Example, *, ranking_loss: RankingLoss = "plackett_luce", rating_margin_scale: float = 0.0) -> Judgement:
    """Expand *example* into a :class:`Judgement`.

    Comparisons between identical completions carry no information and are
    counted in ``skipped`` instead of being learned. A ranking or rating
    set counts as one judgement: its implied pairs share the example's
    weight equally, so a long list does not outweigh a single pair.
    """
    if isinstance(example, PreferenceExample):
        return _expand_preference(example)
    if isinstance(example, RankingExample):
        return _expand_ranking(example, ranking_loss)
    if isinstance(example, RatingExample):
        return _expand_ratings(example, rating_margin_scale)
    raise FeedbackError("example", example, "a PreferenceExample, RankingExample or RatingExample")


def _judgement(example: Example, texts: Sequence[Text], pairs: list[tuple[int, int, int, float, float]],
               ranking: tuple[int, ...] | None, skipped: int) -> Judgement:
    prompt = example.prompt
    return Judgement(
        stable_example_id(example),
        prompt if isinstance(prompt, str) else render_text(prompt),
        tuple(t if isinstance(t, str) else render_text(t) for t in texts),
        tuple(pairs),
        ranking,
        skipped,
        example.weight,
        example.annotator_id,
    )


def _expand_preference(example: PreferenceExample) -> Judgement:
    texts = (example.chosen, example.rejected)
    if texts[0] == texts[1]:
        return _judgement(example, texts, [], None, skipped=1)

    kind = {"chosen": STRICT, "tie": TIE, "tie_bad": TIE_BAD}[example.label]
    return _judgement(example, texts, [(0, 1, kind, example.margin, 1.0)], None, skipped=0)


def _expand_ranking(example: RankingExample, ranking_loss: RankingLoss) -> Judgement:
    # A repeated completion keeps its best (first) position only.
    texts: list[Text] = []
    for completion in example.completions:
        if completion not in texts:
            texts.append(completion)
    skipped = len(example.completions) - len(texts)

    n = len(texts)
    if n < 2:
        return _judgement(example, texts, [], None, skipped=skipped)
    share = 2.0 / (n * (n - 1))
    pairs = [(i, j, STRICT, 0.0, share) for i in range(n) for j in range(i + 1, n)]
    ranking = tuple(range(n)) if ranking_loss == "plackett_luce" else None
    return _judgement(example, texts, pairs, ranking, skipped=skipped)


def _expand_ratings(example: RatingExample, margin_scale: float) -> Judgement:
    texts = example.completions
    ratings = list(example.ratings)
    pairs: list[tuple[int, int, int, float, float]] = []
    skipped = 0

    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if texts[i] == texts[j]:
                skipped += 1
            elif ratings[i] == ratings[j]:
                pairs.append((i, j, TIE, 0.0, 1.0))
            elif ratings[i] > ratings[j]:
                pairs.append((i, j, STRICT, margin_scale * (ratings[i] - ratings[j]), 1.0))
            else:
                pairs.append((j, i, STRICT, margin_scale * (ratings[j] - ratings[i]), 1.0))

    share = 1.0 / len(pairs) if pairs else 0.0
    pairs = [(a, b, kind, margin, share) for a, b, kind, margin, _ in pairs]
    return _judgement(example, texts, pairs, None, skipped=skipped)
