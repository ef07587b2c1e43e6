"""Unit tests of the learner benchmark helpers: data loading and batch features."""

from __future__ import annotations

import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import _batch, _core, _data  # noqa: E402
from benchmarks._contenders import run_river, run_vowpalwabbit, sign_flips  # noqa: E402
from benchmarks._stream_report import histogram_quantile  # noqa: E402
from dynamic_rlhf import DynamicRLHFModel  # noqa: E402

PROMPT = "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Tell me a joke\n\nAssistant:"


def test_split_transcript_last_turn() -> None:
    prompt, completion = _data.split_transcript(PROMPT + " Why did the chicken cross?")

    assert prompt == PROMPT
    assert completion == "Why did the chicken cross?"


def test_load_hh_rlhf_drops_equal_turns(tmp_path: Path) -> None:
    rows = [
        {"chosen": PROMPT + " A good joke.", "rejected": PROMPT + " No."},
        {"chosen": PROMPT + " Same.", "rejected": PROMPT + " Same."},
        {"chosen": PROMPT + " Another.", "rejected": PROMPT + " Go away."},
    ]
    path = tmp_path / "pairs.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(json.dumps(row) for row in rows) + "\n")

    pairs = _data.load_hh_rlhf(path)

    assert len(pairs) == 2
    assert pairs[0] == _data.PairRecord(PROMPT, "A good joke.", "No.")
    assert pairs[1].rejected == "Go away."
    assert len(_data.load_hh_rlhf(path, limit=1)) == 1


def test_batch_features_match_model_margins() -> None:
    stream = _data.synthetic_pairs(400, seed=3)
    model = DynamicRLHFModel()
    for example in _core.build_examples(stream.pairs[:300]):
        model.learn_one(example)
    held_out = stream.pairs[300:340]

    featurise, dimension, _ = _core.text_featuriser()
    coordinates, weights = model.head_weights()
    head0 = np.zeros(dimension)
    head0[coordinates] = weights[:, 0]
    margins = _batch.difference_matrix(held_out, featurise, dimension) @ head0

    for margin, pair in zip(margins, held_out):
        probability = model.predict_proba_one(pair.prompt, pair.chosen, pair.rejected)
        model_margin = math.log(probability / (1.0 - probability))
        assert math.isclose(margin, model_margin, rel_tol=1e-3, abs_tol=1e-4), (margin, model_margin)


def test_baselines_are_deterministic() -> None:
    pairs = _data.synthetic_pairs(300, seed=5).pairs
    flips = sign_flips(len(pairs), seed=6)

    river_first, river_second = run_river(pairs, flips), run_river(pairs, flips)
    vw_first, vw_second = run_vowpalwabbit(pairs, flips), run_vowpalwabbit(pairs, flips)

    assert river_first == river_second
    assert vw_first == vw_second
    assert river_first.pairs == 300
    assert vw_first.pairs == 300
    assert 0.5 < river_first.accuracy < 1.0
    assert 0.5 < vw_first.accuracy < 1.0


def test_sign_flips_balanced() -> None:
    flips = sign_flips(10_000, seed=0)

    assert flips == sign_flips(10_000, seed=0)
    assert 4_800 < sum(flips) < 5_200


def test_histogram_quantile_interpolates_between_scrapes() -> None:
    inf = float("inf")
    before = {0.01: 5.0, 0.1: 5.0, 1.0: 5.0, inf: 5.0}
    # 10 new observations: 4 up to 10 ms, 5 in (10 ms, 100 ms], 1 in (100 ms, 1 s].
    after = {0.01: 9.0, 0.1: 14.0, 1.0: 15.0, inf: 15.0}

    assert histogram_quantile(before, after, 0.2) == pytest.approx(0.005)
    assert histogram_quantile(before, after, 0.5) == pytest.approx(0.01 + 0.09 * (1 / 5))
    assert histogram_quantile(before, after, 0.95) == pytest.approx(0.1 + 0.9 * 0.5)
    assert histogram_quantile(before, before, 0.5) is None
    assert histogram_quantile({}, {0.01: 0.0, inf: 2.0}, 0.5) is None
