"""Validation and expansion of feedback examples."""

from __future__ import annotations

import copy

import pytest

from dynamic_rlhf import FeedbackError, PreferenceExample, RankingExample, RatingExample
from dynamic_rlhf.feedback import STRICT, TIE, TIE_BAD, expand, stable_example_id

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Summarise the notes"}]


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({"prompt": 3}, "prompt", "a string or a non-empty list"),
        ({"prompt": []}, "prompt", "a string or a non-empty list"),
        ({"prompt": [{"role": "user"}]}, "prompt[0].content", "a string"),
        ({"prompt": [{"content": "x"}]}, "prompt[0].role", "non-empty string"),
        ({"prompt": ["hello"]}, "prompt[0]", "message"),
        ({"chosen": None}, "chosen", "a string or a non-empty list"),
        ({"rejected": b"bytes"}, "rejected", "a string or a non-empty list"),
        ({"label": "better"}, "label", "one of 'chosen', 'tie', 'tie_bad'"),
        ({"margin": -1.0}, "margin", "a finite number >= 0"),
        ({"margin": float("nan")}, "margin", "a finite number >= 0"),
        ({"margin": True}, "margin", "a finite number >= 0"),
        ({"weight": 0.0}, "weight", "a finite number > 0"),
        ({"weight": float("inf")}, "weight", "a finite number > 0"),
        ({"weight": "1"}, "weight", "a finite number > 0"),
        ({"annotator_id": ""}, "annotator_id", "non-empty string"),
        ({"annotator_id": 7}, "annotator_id", "non-empty string"),
        ({"tags": "summary"}, "tags", "a list or tuple of strings"),
        ({"tags": ["ok", 3]}, "tags[1]", "a non-empty string"),
        ({"model_id": ""}, "model_id", "non-empty string"),
        ({"model_id": None}, "model_id", "non-empty string"),
        ({"example_id": "x" * 300}, "example_id", "at most 256 characters"),
    ],
)
def test_preference_rejects_malformed_field(kwargs: dict, field: str, expected: str) -> None:
    values = {"prompt": "Q", "chosen": "good", "rejected": "bad"} | kwargs

    with pytest.raises(FeedbackError) as caught:
        PreferenceExample(**values)

    assert caught.value.field == field
    assert expected in caught.value.expected
    assert field in str(caught.value)


def test_error_message_truncates_long_values() -> None:
    long_prompt = ["word " * 10_000]

    with pytest.raises(FeedbackError) as caught:
        PreferenceExample(long_prompt, "a", "b")

    message = str(caught.value)
    assert len(message) < 300
    assert "chars)" in message


def test_feedback_error_is_value_error() -> None:
    assert issubclass(FeedbackError, ValueError)


def test_empty_completion_is_valid() -> None:
    example = PreferenceExample("Q", "", "an answer")

    judgement = expand(example)

    assert judgement.texts == ("", "an answer")
    assert judgement.pairs == ((0, 1, STRICT, 0.0, 1.0),)


def test_identical_completions_are_skipped() -> None:
    judgement = expand(PreferenceExample("Q", "same", "same"))

    assert judgement.pairs == ()
    assert judgement.skipped == 1


def test_chat_prompt_is_copied_and_not_mutated() -> None:
    prompt = copy.deepcopy(CHAT)

    example = PreferenceExample(prompt, [{"role": "assistant", "content": "Done."}], "No.")
    prompt[0]["content"] = "changed"

    assert prompt != CHAT
    assert example.prompt[0]["content"] == "Be brief."
    assert isinstance(example.prompt, tuple)
    assert expand(example).prompt_text == "Be brief.\nSummarise the notes"


def test_tie_labels_expand_to_tie_kinds() -> None:
    tie = expand(PreferenceExample("Q", "a", "b", label="tie"))
    bad = expand(PreferenceExample("Q", "a", "b", label="tie_bad"))

    assert tie.pairs[0][2] == TIE
    assert bad.pairs[0][2] == TIE_BAD


def test_ranking_counts_as_one_judgement() -> None:
    judgement = expand(RankingExample("Q", ["best", "mid", "worst", "mid"]))

    assert judgement.texts == ("best", "mid", "worst")
    assert judgement.skipped == 1
    assert judgement.ranking == (0, 1, 2)
    assert [p[:2] for p in judgement.pairs] == [(0, 1), (0, 2), (1, 2)]
    assert sum(p[4] for p in judgement.pairs) == pytest.approx(1.0)


def test_ranking_pairs_option_drops_plackett_luce() -> None:
    judgement = expand(RankingExample("Q", ["a", "b"]), ranking_loss="pairs")

    assert judgement.ranking is None
    assert judgement.pairs == ((0, 1, STRICT, 0.0, 1.0),)


def test_ratings_give_ordered_pairs_and_ties() -> None:
    judgement = expand(RatingExample("Q", ["x", "y", "z"], [2.0, 5.0, 2.0]), rating_margin_scale=0.5)

    pairs = {(a, b): (kind, margin) for a, b, kind, margin, _ in judgement.pairs}
    assert pairs == {(0, 2): (TIE, 0.0), (1, 0): (STRICT, 1.5), (1, 2): (STRICT, 1.5)}
    assert sum(p[4] for p in judgement.pairs) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: RankingExample("Q", ["only one"]), "completions"),
        (lambda: RankingExample("Q", "not a list"), "completions"),
        (lambda: RankingExample("Q", ["a", 5]), "completions[1]"),
        (lambda: RatingExample("Q", ["a", "b"], [1.0]), "ratings"),
        (lambda: RatingExample("Q", ["a", "b"], [1.0, float("nan")]), "ratings[1]"),
        (lambda: RatingExample("Q", ["a", "b"], [1.0, "high"]), "ratings[1]"),
        (lambda: RankingExample("Q", ["a", "b"], weight=-2), "weight"),
    ],
)
def test_list_examples_reject_malformed_field(build, field: str) -> None:
    with pytest.raises(FeedbackError) as caught:
        build()

    assert caught.value.field == field


def test_stable_id_depends_on_content_only() -> None:
    first = PreferenceExample("Q", "a", "b", tags=["t"])
    same = PreferenceExample("Q", "a", "b", tags=("t",))
    other = PreferenceExample("Q", "a", "b", label="tie")

    assert stable_example_id(first) == stable_example_id(same)
    assert stable_example_id(first) != stable_example_id(other)
    assert stable_example_id(PreferenceExample("Q", "a", "b", example_id="e-1")) == "e-1"


def test_stable_id_accepts_lone_surrogates() -> None:
    # JSON text may decode to lone surrogates ("\ud800"), which UTF-8 cannot encode.
    example = PreferenceExample("Q \ud800", "a \udfff", "b")

    assert stable_example_id(example) == stable_example_id(PreferenceExample("Q \ud800", "a \udfff", "b"))
    assert stable_example_id(example) != stable_example_id(PreferenceExample("Q \ud801", "a \udfff", "b"))
    assert stable_example_id(example).startswith("content:")
