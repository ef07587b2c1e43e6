"""Chunks read from examples equal chunks built from expanded judgements."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from dynamic_rlhf import PreferenceExample, RankingExample, RatingExample
from dynamic_rlhf.chunks import Chunk
from dynamic_rlhf.feedback import expand, stable_example_id

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Status?"}]
EXAMPLES = [
    PreferenceExample("Q", "good", "bad", example_id="e-1"),
    PreferenceExample("Q", "same", "same"),
    PreferenceExample(CHAT, [{"role": "assistant", "content": "On time."}], "Late.", label="tie", weight=2.0),
    PreferenceExample("Q", "a", "b", label="tie_bad", margin=0.5, annotator_id="ann-1"),
    RankingExample("Q", ["best", "best", "worst"]),
    RankingExample("Q", ["first", "second", "third"], annotator_id="ann-2"),
    RatingExample("Q", ["x", "y", "x"], ratings=[1.0, 2.0, 3.0]),
    PreferenceExample("Q", "", "non-empty", margin=1.5, weight=0.25),
]


@pytest.mark.parametrize("ranking_loss", ["plackett_luce", "pairs"])
@pytest.mark.parametrize("centring", [0.0, 0.1])
def test_from_examples_equals_from_judgements(ranking_loss: str, centring: float) -> None:
    judgements = [expand(e, ranking_loss=ranking_loss, rating_margin_scale=0.5) for e in EXAMPLES]
    ids = [stable_example_id(e) for e in EXAMPLES]

    direct = Chunk.from_examples(EXAMPLES, ids, ranking_loss=ranking_loss, rating_margin_scale=0.5, centring=centring)
    expanded = Chunk.from_judgements(judgements, centring)

    assert asdict(direct) == asdict(expanded)
    assert direct.skipped == [0, 1, 0, 0, 1, 0, 1, 0]
    assert direct.active == [0, 2, 3, 4, 5, 6, 7]
    expected_single = [centring == 0.0] * 3 + [ranking_loss == "pairs" and centring == 0.0, False, False,
                                               centring == 0.0]
    assert direct.single == expected_single
