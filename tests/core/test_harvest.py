"""Harvesting policy rules and the fine-tune record format."""

from __future__ import annotations

import pytest

from dynamic_rlhf import ConfigError, DynamicRLHFModel, FeedbackError, HarvestPolicy, PreferenceExample

PROMPT = "Explain the release plan"
STRONG = "The release ships Monday after QA signs off; rollback is scripted."
MEDIUM = "The release ships Monday."
WEAK = "Dunno."
COMMON_FIELDS = {
    "record_id", "kind", "model_id", "model_version", "reward", "reward_z", "reward_std", "rank",
    "policy", "source", "tags", "created_at", "request_id",
}


@pytest.fixture(scope="module")
def model() -> DynamicRLHFModel:
    trained = DynamicRLHFModel(model_id="planner")
    examples = []
    for i in range(30):
        examples.append(PreferenceExample(PROMPT, f"{STRONG} Step {i}.", f"{WEAK} {i}", example_id=f"a-{i}"))
        examples.append(PreferenceExample(PROMPT, f"{MEDIUM} {i}", f"{WEAK} {i}", example_id=f"b-{i}"))
        examples.append(PreferenceExample(PROMPT, f"{STRONG} {i}", f"{MEDIUM} {i}", example_id=f"c-{i}"))
    trained.add_preferences(examples)
    return trained


def build(model: DynamicRLHFModel, completions: list, **policy) -> list[dict]:
    return model.build_fine_tune_records(
        PROMPT, completions, "candidates-v1", policy=HarvestPolicy(**policy) if policy else None,
        tags=["release"], request_id="req-1", created_at="2026-12-04T12:00:00Z")


def test_default_policy_emits_best_sft_and_pair(model) -> None:
    records = build(model, [WEAK, STRONG, MEDIUM])

    sft, pair = records
    assert set(sft) == COMMON_FIELDS | {"prompt", "completion"}
    assert set(pair) == COMMON_FIELDS | {"prompt", "chosen", "rejected", "chosen_reward", "rejected_reward"}
    assert (sft["kind"], sft["completion"], sft["rank"]) == ("sft", STRONG, 1)
    assert (pair["chosen"], pair["rejected"]) == (STRONG, WEAK)
    assert pair["chosen_reward"] > pair["rejected_reward"]
    assert sft["model_id"] == "planner"
    assert sft["model_version"] == model.version
    assert sft["policy"] == {"name": "default", "params": HarvestPolicy().params}
    assert (sft["source"], sft["tags"], sft["request_id"], sft["created_at"]) == (
        "candidates-v1", ["release"], "req-1", "2026-12-04T12:00:00Z")
    assert sft["reward_z"] > 0
    assert sft["reward_std"] >= 0


def test_record_ids_are_deterministic_and_distinct(model) -> None:
    first = build(model, [WEAK, STRONG])
    again = build(model, [STRONG, WEAK])

    assert [r["record_id"] for r in first] == [r["record_id"] for r in again]
    assert len({r["record_id"] for r in first}) == 2
    assert all(len(r["record_id"]) == 64 for r in first)


def test_record_id_changes_with_model_version() -> None:
    trained = DynamicRLHFModel()
    trained.learn_one(PreferenceExample(PROMPT, STRONG, WEAK))
    before = trained.build_fine_tune_records(PROMPT, [STRONG, WEAK], "s")[0]["record_id"]

    trained.learn_one(PreferenceExample(PROMPT, MEDIUM, WEAK))
    after = trained.build_fine_tune_records(PROMPT, [STRONG, WEAK], "s")[0]["record_id"]

    assert before != after


def test_top_k_ranks_candidates(model) -> None:
    records = build(model, [WEAK, MEDIUM, STRONG], top_k=3, emit_preference=False)

    assert [(r["completion"], r["rank"]) for r in records] == [(STRONG, 1), (MEDIUM, 2), (WEAK, 3)]
    assert records[0]["reward"] > records[1]["reward"] > records[2]["reward"]


def test_min_reward_z_filters(model) -> None:
    records = build(model, [WEAK, MEDIUM, STRONG], top_k=3, min_reward_z=0.0, emit_preference=False)

    assert all(r["reward_z"] >= 0.0 for r in records)
    assert WEAK not in [r["completion"] for r in records]


def test_min_gap_to_worst_filters(model) -> None:
    scores = [s.reward for s in model.score(PROMPT, [WEAK, MEDIUM, STRONG])]
    gap_medium = scores[1] - scores[0]

    records = build(model, [WEAK, MEDIUM, STRONG], top_k=3, min_gap=gap_medium + 1e-6, emit_preference=False)

    assert [r["completion"] for r in records] == [STRONG]


def test_pessimism_uses_lower_bound(model) -> None:
    plain = build(model, [STRONG, WEAK], emit_preference=False)[0]
    cautious = build(model, [STRONG, WEAK], pessimism=2.0, emit_preference=False)[0]

    assert cautious["reward"] == plain["reward"]
    assert cautious["reward_z"] < plain["reward_z"]


def test_dedupe_and_min_length(model) -> None:
    records = build(model, [STRONG, STRONG, "", "ok"], top_k=4, emit_preference=False, min_completion_chars=3)

    assert [r["completion"] for r in records] == [STRONG]

    kept = build(model, [STRONG, STRONG], top_k=2, dedupe=False, emit_preference=False)
    assert [r["completion"] for r in kept] == [STRONG, STRONG]


def test_preference_needs_gap(model) -> None:
    records = build(model, [STRONG, WEAK], emit_sft=False, min_preference_gap=1e6)

    assert records == []


def test_length_bias_removal_changes_rewards() -> None:
    model = DynamicRLHFModel()
    for i in range(80):
        model.learn_one(PreferenceExample(PROMPT, "detail " * (5 + i % 9) + f"n{i}", f"no {i}", example_id=f"l-{i}"))
    assert model.stats().reward_length_correlation > 0.5
    long_text, short_text = "detail " * 12, "detail"

    plain = build(model, [long_text, short_text], top_k=2, emit_preference=False)
    debiased = build(model, [long_text, short_text], top_k=2, emit_preference=False, remove_length_bias=True)

    plain_gap = plain[0]["reward"] - plain[1]["reward"]
    debiased_rewards = {r["completion"]: r["reward"] for r in debiased}
    assert debiased_rewards[long_text] - debiased_rewards[short_text] < plain_gap


def test_chat_prompt_gives_conversational_records(model) -> None:
    chat = [{"role": "system", "content": "Be precise."}, {"role": "user", "content": PROMPT}]

    sft, pair = model.build_fine_tune_records(chat, [STRONG, WEAK], "chat")

    assert sft["prompt"] == chat
    assert sft["completion"] == [{"role": "assistant", "content": STRONG}]
    assert sft["messages"] == chat + [{"role": "assistant", "content": STRONG}]
    assert pair["chosen"] == [{"role": "assistant", "content": STRONG}]
    assert "messages" not in pair


def test_empty_candidate_list_gives_no_records(model) -> None:
    assert model.build_fine_tune_records(PROMPT, [], "s") == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"top_k": -1}, "top_k"), ({"pessimism": -0.5}, "pessimism"), ({"dedupe": "yes"}, "dedupe"),
     ({"name": ""}, "name"), ({"min_reward_z": float("nan")}, "min_reward_z")],
)
def test_policy_rejects_invalid_params(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HarvestPolicy(**kwargs)

    assert caught.value.field == field


def test_policy_from_params_round_trip() -> None:
    policy = HarvestPolicy(name="strict", top_k=2, pessimism=1.0)

    assert HarvestPolicy.from_params("strict", policy.params) == policy
    with pytest.raises(ConfigError, match="params.topk"):
        HarvestPolicy.from_params("x", {"topk": 1})


def test_invalid_request_fields_raise(model) -> None:
    with pytest.raises(FeedbackError, match="source"):
        model.build_fine_tune_records(PROMPT, [STRONG], "")
    with pytest.raises(FeedbackError, match=r"completions\[1\]"):
        model.build_fine_tune_records(PROMPT, [STRONG, 3], "s")
