"""Learning behaviour and the learner contract of DynamicRLHFModel."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from dynamic_rlhf import (
    DynamicRLHFModel,
    FeedbackError,
    ModelConfig,
    PreferenceExample,
    RankingExample,
    RatingExample,
)
from dynamic_rlhf.synthetic import SyntheticPreferences

PROMPT = "Summarise the meeting notes"
GOOD = "Key decisions: launch is on schedule; budget approved."
BAD = "Meeting summary: talk happened. The end."
# A tiny AdaGrad delta makes every first step full size, so a few examples show an effect clearly.
BIG_STEPS = ModelConfig(learning_rate=0.05, adagrad_delta=1e-8)


def test_readme_example_scores_and_reports() -> None:
    model = DynamicRLHFModel()
    added = model.add_preferences([PreferenceExample(
        prompt=PROMPT, chosen=GOOD, rejected=BAD, tags=("summary", "fintech"))])
    stats = model.optimise_reward(epochs=3)
    records = model.build_fine_tune_records(
        prompt=PROMPT,
        completions=["Launch remains on schedule with QA complete; finance approved the marketing budget.",
                     "Summary: meeting happened and people talked."],
        source="rlhf-human-feedback")

    assert added == 1
    assert [s.epoch for s in stats] == [1, 2, 3]
    assert [s.pairs for s in stats] == [1, 1, 1]
    assert all(s.accuracy == 1.0 for s in stats)
    assert stats[0].mean_loss > stats[1].mean_loss > stats[2].mean_loss
    assert stats[0].mean_margin < stats[1].mean_margin < stats[2].mean_margin
    assert [r["kind"] for r in records] == ["sft", "preference"]
    assert records[0]["completion"].startswith("Launch remains")
    assert records[1]["chosen_reward"] > records[1]["rejected_reward"]
    assert records[0]["model_version"] == 4
    assert records[0]["source"] == "rlhf-human-feedback"


def test_learn_one_is_progressive() -> None:
    model = DynamicRLHFModel()
    example = PreferenceExample(PROMPT, GOOD, BAD)

    first = model.learn_one(example)
    second = model.learn_one(example)

    assert (first.pairs, first.correct, first.skipped) == (1, 0, 0)
    assert first.loss == pytest.approx(math.log(2.0))
    assert second.correct == 1
    assert second.loss < first.loss
    stats = model.stats()
    assert stats.pairs_trained == 2
    assert stats.progressive_accuracy == 0.5
    assert stats.progressive_loss == pytest.approx((first.loss + second.loss) / 2)


def test_identical_pair_is_counted_not_learned() -> None:
    model = DynamicRLHFModel()

    outcome = model.learn_one(PreferenceExample(PROMPT, "same text", "same text"))

    assert outcome.skipped == 1
    assert outcome.pairs == 0
    assert model.version == 0
    assert model.stats().skipped_identical == 1


def test_input_examples_are_not_mutated() -> None:
    chat = [{"role": "user", "content": PROMPT}]
    example = PreferenceExample(chat, GOOD, BAD, tags=["a"])
    snapshot = copy.deepcopy(example)
    model = DynamicRLHFModel()

    model.learn_one(example)
    model.add_preferences([example])
    model.score(chat, [GOOD])

    assert example == snapshot
    assert chat == [{"role": "user", "content": PROMPT}]


def test_probability_is_antisymmetric() -> None:
    model = DynamicRLHFModel()
    model.add_preferences([PreferenceExample(PROMPT, GOOD, BAD), PreferenceExample(PROMPT, "Launch approved.", "No notes.")])

    pairs = [(GOOD, BAD), ("Launch approved.", "Nothing"), ("", GOOD), ("x", "x")]
    for a, b in pairs:
        forward = model.predict_proba_one(PROMPT, a, b)
        backward = model.predict_proba_one(PROMPT, b, a)
        assert forward + backward == 1.0
    assert model.predict_proba_one(PROMPT, GOOD, BAD) > 0.5


def test_unseen_tokens_are_harmless() -> None:
    model = DynamicRLHFModel()
    model.learn_one(PreferenceExample(PROMPT, GOOD, BAD))

    scores = model.score("Zqxj vblk", ["wqzx plmk trnv", "", "ÜnïcödÉ 日本語 🚀"])

    assert [s.reward for s in scores[:2]] == [scores[0].reward, scores[1].reward]
    assert all(math.isfinite(s.reward) and math.isfinite(s.std) for s in scores)
    assert abs(scores[0].reward) < 0.5


def test_score_reports_head_spread() -> None:
    model = DynamicRLHFModel(ModelConfig(n_heads=6))
    for i in range(20):
        model.learn_one(PreferenceExample(PROMPT, f"{GOOD} item {i}", f"{BAD} item {i}", example_id=f"e-{i}"))

    score = model.score(PROMPT, [GOOD])[0]

    assert score.reward > 0
    assert score.std > 0


def test_no_heads_gives_zero_std() -> None:
    model = DynamicRLHFModel(ModelConfig(n_heads=0))
    model.learn_one(PreferenceExample(PROMPT, GOOD, BAD))

    assert model.score(PROMPT, [GOOD])[0].std == 0.0


def test_tie_pulls_rewards_together() -> None:
    model = DynamicRLHFModel(BIG_STEPS)
    model.learn_one(PreferenceExample(PROMPT, GOOD, BAD))
    before = model.score(PROMPT, [GOOD, BAD])

    # Distinct ids give each tie its own bootstrap draws, so every head learns some of them.
    for i in range(5):
        model.learn_one(PreferenceExample(PROMPT, GOOD, BAD, label="tie", example_id=f"tie-{i}"))

    after = model.score(PROMPT, [GOOD, BAD])
    assert abs(after[0].reward - after[1].reward) < abs(before[0].reward - before[1].reward) / 2


def test_tie_bad_pushes_both_rewards_down() -> None:
    plain, bad = DynamicRLHFModel(BIG_STEPS), DynamicRLHFModel(BIG_STEPS)

    for _ in range(3):
        plain.learn_one(PreferenceExample(PROMPT, GOOD, BAD, label="tie"))
        bad.learn_one(PreferenceExample(PROMPT, GOOD, BAD, label="tie_bad"))

    plain_rewards = [s.reward for s in plain.score(PROMPT, [GOOD, BAD])]
    bad_rewards = [s.reward for s in bad.score(PROMPT, [GOOD, BAD])]
    assert plain_rewards == [0.0, 0.0]
    assert all(r < -0.5 for r in bad_rewards)


def test_ranking_orders_completions() -> None:
    model = DynamicRLHFModel()
    ranking = ["Launch on schedule, budget approved.", "Launch discussed.", "Nothing."]

    for _ in range(3):
        outcome = model.learn_one(RankingExample(PROMPT, ranking))

    rewards = [s.reward for s in model.score(PROMPT, ranking)]
    assert rewards[0] > rewards[1] > rewards[2]
    assert outcome.pairs == 3
    assert outcome.correct == 3


def test_ratings_order_completions() -> None:
    model = DynamicRLHFModel(ModelConfig(rating_margin_scale=0.5))
    texts = ["Launch on schedule, budget approved.", "Launch discussed.", "Nothing."]

    for _ in range(3):
        model.learn_one(RatingExample(PROMPT, texts, [9.0, 5.0, 1.0]))

    rewards = [s.reward for s in model.score(PROMPT, texts)]
    assert rewards[0] > rewards[1] > rewards[2]


def test_example_weight_scales_update() -> None:
    light, heavy = DynamicRLHFModel(ModelConfig(n_heads=0)), DynamicRLHFModel(ModelConfig(n_heads=0))
    for _ in range(3):
        light.learn_one(PreferenceExample(PROMPT, GOOD, BAD, weight=0.2))
        heavy.learn_one(PreferenceExample(PROMPT, GOOD, BAD, weight=1.0))

    # AdaGrad normalises the first step, so compare after the accumulators differ.
    assert light.stats().version == heavy.stats().version == 3
    assert light.to_bytes() != heavy.to_bytes()


def test_unreliable_annotator_is_down_weighted() -> None:
    stream = SyntheticPreferences(seed=3, n_annotators=5, noisy_share=0.2, noisy_flip_rate=0.5)
    model = DynamicRLHFModel()

    model.learn_many(stream.examples(12000))

    # Measured 0.427: the weight falls only as head 0 grows confident, from the prior's 1.0.
    weights = {a.annotator_id: model.annotators.weight(a.annotator_id) for a in stream.annotators}
    assert weights["annotator-0"] < 0.45
    assert all(weights[f"annotator-{i}"] == 1.0 for i in range(1, 5))
    assert model.annotators.weight("newcomer") == 1.0
    assert model.annotators.weight(None) == 1.0
    assert model.stats().annotators == 5


def test_annotator_weight_stays_in_bounds() -> None:
    model = DynamicRLHFModel()
    reliability = model.annotators
    for _ in range(200):
        reliability.observe("contrarian", 0.05)
        reliability.observe("loyal", 0.95)

    assert reliability.weight("contrarian") == 0.25
    assert reliability.weight("loyal") == 1.0
    reliability.observe("unsure", 0.6)
    assert "unsure" not in reliability.records


def test_stats_report_length_correlation() -> None:
    model = DynamicRLHFModel()
    for i in range(60):
        model.learn_one(PreferenceExample(PROMPT, "detail " * (i % 7 + 5) + f"v{i}", f"short {i}", example_id=f"l-{i}"))

    stats = model.stats()

    assert stats.reward_length_correlation > 0.5
    assert stats.weight_norm > 0
    assert stats.examples_seen == 60


def test_weight_norm_matches_head_weights() -> None:
    model = DynamicRLHFModel(config=ModelConfig(dim=2**12, l2=0.5))
    for i in range(40):
        model.learn_one(PreferenceExample(PROMPT, f"clear answer {i} with detail", f"vague {i}", example_id=f"n-{i}"))
    _, weights = model.head_weights()

    assert model.optimiser.scale < 1.0
    assert model.stats().weight_norm == pytest.approx(float(np.linalg.norm(weights[:, 0].astype(np.float64))), rel=1e-6)


def test_learn_many_matches_learn_one() -> None:
    examples = [PreferenceExample(PROMPT, f"{GOOD} {i}", f"{BAD} {i}", annotator_id=f"a{i % 3}") for i in range(25)]
    examples.append(RankingExample(PROMPT, ["a b", "c d", "e"]))
    one, many = DynamicRLHFModel(), DynamicRLHFModel()

    outcomes = [one.learn_one(e) for e in examples]

    assert many.learn_many(examples) == outcomes
    assert many.to_bytes() == one.to_bytes()


def test_top_features_names_tokens() -> None:
    model = DynamicRLHFModel()
    model.learn_one(PreferenceExample(PROMPT, "excellent answer", "terrible answer"))

    top = dict(model.top_features(50))

    assert top["excellent"] > 0
    assert top["terrible"] < 0
    assert "answer" not in top


def test_learn_one_rejects_other_types() -> None:
    with pytest.raises(FeedbackError) as caught:
        DynamicRLHFModel().learn_one({"prompt": "Q"})

    assert caught.value.field == "example"


def test_optimise_reward_rejects_negative_epochs() -> None:
    with pytest.raises(FeedbackError):
        DynamicRLHFModel().optimise_reward(-1)
