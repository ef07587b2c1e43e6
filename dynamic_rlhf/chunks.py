"""A chunk of examples as columns, the form in which the learner consumes them.

Single preference pairs make most streams, and the learner needs only a few fields
of each: the rendered texts, the comparison kind, margin and weight, the annotator
and the example id. :meth:`Chunk.from_examples` reads those fields straight from
:class:`~dynamic_rlhf.feedback.PreferenceExample` values into lists, without the
:class:`~dynamic_rlhf.feedback.Judgement` that :func:`~dynamic_rlhf.feedback.expand`
builds, so a long stream allocates few Python objects per example. Every other
example keeps its ``Judgement``. Both constructors give the same columns for the same
examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from dynamic_rlhf.feedback import STRICT, TIE, TIE_BAD, Example, Judgement, PreferenceExample, RankingLoss, expand
from dynamic_rlhf.text import render_text

_KINDS = {"chosen": STRICT, "tie": TIE, "tie_bad": TIE_BAD}


@dataclass
class Chunk:
    """Examples in stream order, as columns over the examples that have comparisons.

    ``skipped`` has one entry per example. The other lists have one entry per
    *active* example (one with at least one comparison), whose position in the chunk
    is ``active[i]``. ``single[i]`` marks one comparison of completions 0 and 1, learned
    from ``kinds``, ``margins`` and ``weights`` (example weight times comparison
    weight). Other active examples are learned from the comparisons of ``general[i]``,
    and their ``weights`` entry is the example weight.
    """

    skipped: list[int] = field(default_factory=list)
    active: list[int] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    texts: list[tuple[str, ...]] = field(default_factory=list)
    single: list[bool] = field(default_factory=list)
    kinds: list[int] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    annotator_ids: list[str | None] = field(default_factory=list)
    example_ids: list[str] = field(default_factory=list)
    general: dict[int, Judgement] = field(default_factory=dict)

    @classmethod
    def from_judgements(cls, judgements: Sequence[Judgement], centring: float) -> Chunk:
        """Return the chunk of expanded examples; *centring* > 0 sends every example to the general path."""
        chunk = cls()
        for judgement in judgements:
            chunk.add_judgement(judgement, centring)
        return chunk

    @classmethod
    def from_examples(cls, examples: Sequence[Example], example_ids: Sequence[str], *, ranking_loss: RankingLoss,
                      rating_margin_scale: float, centring: float) -> Chunk:
        """Return the chunk of validated *examples*, whose stable ids are *example_ids*.

        Equals ``from_judgements`` over ``expand(example)`` for every example.
        """
        chunk = cls()
        # Bound methods of the column lists, looked up once per chunk rather than once per example.
        skip, activate, prompt_of, texts_of = (chunk.skipped.append, chunk.active.append, chunk.prompts.append,
                                               chunk.texts.append)
        single, kind_of, margin_of, weight_of = (chunk.single.append, chunk.kinds.append, chunk.margins.append,
                                                 chunk.weights.append)
        annotator_of, id_of = chunk.annotator_ids.append, chunk.example_ids.append
        for position, (example, example_id) in enumerate(zip(examples, example_ids)):
            if type(example) is not PreferenceExample or centring != 0.0:
                chunk.add_judgement(expand(example, ranking_loss=ranking_loss, rating_margin_scale=rating_margin_scale),
                                    centring)
                continue
            chosen, rejected = example.chosen, example.rejected
            if chosen == rejected:
                skip(1)
                continue
            skip(0)
            activate(position)
            prompt = example.prompt
            prompt_of(prompt if type(prompt) is str else render_text(prompt))
            if type(chosen) is not str:
                chosen = render_text(chosen)
            if type(rejected) is not str:
                rejected = render_text(rejected)
            texts_of((chosen, rejected))
            single(True)
            kind_of(_KINDS[example.label])
            margin_of(example.margin)
            weight_of(example.weight * 1.0)  # the comparison weight of a pair is 1.0
            annotator_of(example.annotator_id)
            id_of(example_id)
        return chunk

    def add_judgement(self, judgement: Judgement, centring: float) -> None:
        """Append one expanded example."""
        self.skipped.append(judgement.skipped)
        if not judgement.pairs:
            return
        index = len(self.active)
        self.active.append(len(self.skipped) - 1)
        self.prompts.append(judgement.prompt_text)
        self.texts.append(judgement.texts)
        single = (len(judgement.texts) == 2 and len(judgement.pairs) == 1 and judgement.ranking is None
                  and judgement.pairs[0][:2] == (0, 1) and centring == 0.0)
        self.single.append(single)
        first_pair = judgement.pairs[0]
        self.kinds.append(first_pair[2])
        self.margins.append(first_pair[3])
        self.weights.append(judgement.weight * first_pair[4] if single else judgement.weight)
        self.annotator_ids.append(judgement.annotator_id)
        self.example_ids.append(judgement.example_id)
        if not single:
            self.general[index] = judgement
