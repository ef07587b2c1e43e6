"""Tests of event validation, conversion to core examples, and the synthetic stream."""

from __future__ import annotations

import copy
from collections import Counter

import pytest

from dynamic_rlhf import PreferenceExample, RankingExample, RatingExample
from service.demo_stream import (
    annotator_flip_rates,
    bayes_optimal_choice,
    hidden_world,
    synthetic_candidate_sets,
    synthetic_preference_events,
    true_preference_probability,
    true_reward,
)
from service.errors import InvalidInput
from service.events import CandidateSet, parse_candidate_set, parse_preference_event
from service.limits import Limits

LIMITS = Limits()
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


def pair(**fields):
    event = {"event_id": "e-1", "kind": "pair", "prompt": "p", "chosen": "good", "rejected": "bad"}
    event.update(fields)
    return event


def reject(obj, limits: Limits = LIMITS) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse_preference_event(obj, limits)
    return info.value


def test_pair_fields_reach_example():
    event = pair(model_id="m-2", margin=0.25, weight=2.0, annotator_id="ann-1", tags=["x", "y"])
    [example] = parse_preference_event(event, LIMITS)
    assert isinstance(example, PreferenceExample)
    assert example.label == "chosen"
    assert example.example_id == "e-1"
    assert example.model_id == "m-2"
    assert example.margin == 0.25
    assert example.weight == 2.0
    assert example.annotator_id == "ann-1"
    assert example.tags == ("x", "y")


def test_defaults_applied():
    [example] = parse_preference_event(pair(), LIMITS)
    assert example.model_id == "default"
    assert example.weight == 1.0
    assert example.margin == 0.0
    assert example.annotator_id is None
    assert example.tags == ()


@pytest.mark.parametrize(("kind", "label"), [("pair", "chosen"), ("tie", "tie"), ("tie_bad", "tie_bad")])
def test_pair_kinds_map_to_labels(kind, label):
    [example] = parse_preference_event(pair(kind=kind), LIMITS)
    assert example.label == label


def test_ranking_keeps_order():
    event = {"event_id": "r", "kind": "ranking", "prompt": CHAT, "completions": ["a", "b", ""]}
    [example] = parse_preference_event(event, LIMITS)
    assert isinstance(example, RankingExample)
    assert list(example.completions) == ["a", "b", ""]
    assert [dict(m) for m in example.prompt] == CHAT


def test_ratings_converted_to_floats():
    event = {"event_id": "r", "kind": "ratings", "prompt": "p", "completions": ["a", "b"], "ratings": [5, 2.5]}
    [example] = parse_preference_event(event, LIMITS)
    assert isinstance(example, RatingExample)
    assert example.ratings == (5.0, 2.5)


def test_empty_completions_valid():
    [example] = parse_preference_event(pair(chosen="", rejected=""), LIMITS)
    assert example.chosen == ""


def test_input_not_mutated():
    event = pair(prompt=copy.deepcopy(CHAT), tags=["t"])
    before = copy.deepcopy(event)
    parse_preference_event(event, LIMITS)
    assert event == before


def test_schema_error_names_path():
    error = reject(pair(tags=["ok", 5]))
    assert error.reason == "schema"
    assert error.detail.startswith("/tags/1:")


def test_schema_error_truncates_long_values():
    error = reject(pair(chosen=12345, prompt="p", rejected="r", event_id="e" * 200))
    assert error.reason == "schema"
    assert len(error.detail) < 300


def test_field_of_other_kind_rejected():
    error = reject({"event_id": "e", "kind": "ranking", "prompt": "p", "completions": ["a", "b"], "chosen": "a"})
    assert error.reason == "schema"
    assert error.detail == "/chosen: field is not allowed when kind is 'ranking'"


def test_ratings_length_mismatch():
    error = reject({"event_id": "e", "kind": "ratings", "prompt": "p", "completions": ["a", "b"], "ratings": [1, 2, 3]})
    assert error.reason == "schema"
    assert "3 ratings for 2 completions" in error.detail


def test_text_limit_per_message():
    limits = Limits(max_text_chars=10)
    parse_preference_event(pair(prompt=[{"role": "user", "content": "x" * 10}]), limits)
    error = reject(pair(prompt=[{"role": "user", "content": "ok"}, {"role": "user", "content": "x" * 11}]), limits)
    assert error.reason == "too_large"
    assert error.detail.startswith("/prompt/1/content: 11 characters")


def test_text_limit_on_completion():
    error = reject(pair(rejected="y" * 33), Limits(max_text_chars=32))
    assert error.reason == "too_large"
    assert error.detail.startswith("/rejected:")


def test_message_count_limit():
    messages = [{"role": "user", "content": "m"}] * 5
    error = reject(pair(prompt=messages), Limits(max_messages=4))
    assert error.reason == "too_large"
    assert "max_messages=4" in error.detail


def test_completion_count_limit():
    event = {"event_id": "e", "kind": "ranking", "prompt": "p", "completions": list("abcde")}
    error = reject(event, Limits(max_completions=4))
    assert error.reason == "too_large"


def test_tag_count_limit():
    error = reject(pair(tags=[f"t{i}" for i in range(4)]), Limits(max_tags=3))
    assert error.reason == "too_large"


@pytest.mark.parametrize(
    ("field", "value"),
    [("margin", float("nan")), ("weight", float("inf")), ("margin", float("inf"))],
)
def test_non_finite_numbers_are_invalid_feedback(field, value):
    error = reject(pair(**{field: value}))
    assert error.reason == "invalid_feedback"
    assert field in error.detail


def test_non_finite_rating_is_invalid_feedback():
    error = reject({"event_id": "e", "kind": "ratings", "prompt": "p", "completions": ["a", "b"],
                    "ratings": [1.0, float("nan")]})
    assert error.reason == "invalid_feedback"
    assert "ratings[1]" in error.detail


def test_candidate_set_parsed():
    obj = {"request_id": "r-1", "model_id": "m", "prompt": CHAT, "completions": ["", "b"], "tags": ["t"]}
    candidate_set = parse_candidate_set(obj, LIMITS)
    assert candidate_set == CandidateSet(
        request_id="r-1", model_id="m", prompt=CHAT, completions=("", "b"), source="unspecified", tags=("t",)
    )


def test_candidate_set_text_limit():
    obj = {"request_id": "r-1", "prompt": "p", "completions": ["z" * 40]}
    with pytest.raises(InvalidInput) as info:
        parse_candidate_set(obj, Limits(max_text_chars=39))
    assert info.value.reason == "too_large"
    assert info.value.detail.startswith("/completions/0:")


def test_synthetic_events_are_valid_and_reproducible():
    events = list(synthetic_preference_events(600, seed=7, model_id="m-syn"))
    assert events == list(synthetic_preference_events(600, seed=7, model_id="m-syn"))
    assert len({event["event_id"] for event in events}) == 600

    kinds = Counter(event["kind"] for event in events)
    assert set(kinds) == {"pair", "tie", "tie_bad", "ranking", "ratings"}
    for event in events:
        [example] = parse_preference_event(event, LIMITS)
        assert example.model_id == "m-syn"


def test_synthetic_seeds_share_world():
    vocabulary = set(hidden_world().vocabulary)
    events = list(synthetic_preference_events(50, seed=1, kinds={"pair": 1.0}))
    sets = list(synthetic_candidate_sets(50, seed=2))
    words = {word for event in events for word in (event["chosen"] + " " + event["rejected"]).split()}
    words |= {word for obj in sets for completion in obj["completions"] for word in completion.split()}
    assert words <= vocabulary
    assert len(vocabulary) == 100


def test_synthetic_annotator_agreement():
    rates = annotator_flip_rates(10, 0.2, 0.1)
    assert Counter(rates.values()) == {0.0: 7, 0.35: 2, 1.0: 1}

    agreement: dict[float, list[bool]] = {0.0: [], 0.35: [], 1.0: []}
    for event in synthetic_preference_events(4000, seed=3, kinds={"pair": 1.0}):
        if event["kind"] != "pair":
            continue
        agrees = bayes_optimal_choice(event["prompt"], event["chosen"], event["rejected"]) == 0
        agreement[rates[event["annotator_id"]]].append(agrees)

    share = {rate: sum(values) / len(values) for rate, values in agreement.items()}
    # Measured with seed 3: honest 0.864, noisy 0.616, adversarial 0.142.
    assert share[0.0] > 0.82
    assert 0.55 < share[0.35] < 0.68
    assert share[1.0] < 0.2


def test_true_preference_is_symmetric():
    world = hidden_world()
    ranked = sorted(world.vocabulary, key=lambda word: world.weights[word])
    good, bad = " ".join(ranked[-3:]), " ".join(ranked[:3])
    assert true_reward("p", good) > 0 > true_reward("p", bad)
    assert true_reward("p", "") == 0.0
    assert true_preference_probability("p", good, bad) == pytest.approx(1 - true_preference_probability("p", bad, good))
    assert true_preference_probability("p", good, bad) > 0.9
    assert bayes_optimal_choice("p", good, bad) == 0
    assert bayes_optimal_choice("p", bad, good) == 1


def test_synthetic_candidate_sets_valid():
    sets = list(synthetic_candidate_sets(50, seed=1, model_id="m", n_completions=3))
    assert [s["request_id"] for s in sets[:2]] == ["syn-cand-1-0", "syn-cand-1-1"]
    for obj in sets:
        candidate_set = parse_candidate_set(obj, LIMITS)
        assert len(candidate_set.completions) == 3
        assert candidate_set.model_id == "m"
