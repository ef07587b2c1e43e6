"""The batch featuriser: tokens, hashes and merged blocks against a plain Python reference."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from dynamic_rlhf.features import (
    TOKEN_BYTES,
    HashingFeaturiser,
    bigram_code,
    bucket_and_sign,
    encode_text,
    overlap_code,
    token_hash,
    unigram_code,
)


def reference_features(prompt: str, completion: str, featuriser: HashingFeaturiser) -> dict[int, float]:
    """Features of one completion computed token by token in Python."""
    dim, limit = featuriser.dim, featuriser.max_tokens
    tokens = [token_hash(t) for t in TOKEN_BYTES.findall(encode_text(completion))[:limit]]
    prompt_tokens = {token_hash(t) for t in TOKEN_BYTES.findall(encode_text(prompt))[:limit]}
    codes = [unigram_code(h) for h in tokens]
    if featuriser.ngram_max >= 2:
        codes += [bigram_code(a, b) for a, b in zip(tokens, tokens[1:])]
    overlap = [h for h in tokens if h in prompt_tokens]
    codes += [overlap_code(h) for h in overlap]

    features: dict[int, float] = {}
    for code in codes:
        bucket, sign = bucket_and_sign(code, dim)
        features[bucket] = features.get(bucket, 0.0) + sign
    n = len(tokens)
    dense = (math.log1p(n), len(overlap) / n if n else 0.0, 0.0 if n else 1.0)
    for bucket, value in zip(featuriser.dense.tolist(), dense):
        features[bucket] = features.get(bucket, 0.0) + value
    return features


def random_text(rng: random.Random) -> str:
    words = ["the", "Launch", "is", "on", "time", "déjà", "vu", "naïve", "日本語", "x_1", "42", "", " "]
    marks = [",", ".", "!", "?", "'", "--", "\n", "\t", "“", "”", "\x00"]
    return "".join(rng.choice(words) + rng.choice([" ", " ", "", *marks]) for _ in range(rng.randint(0, 30)))


def test_token_hash_is_pinned() -> None:
    # Bucket assignment is part of the state format: a change here needs a new format version.
    assert token_hash(b"hello") == 0x87AD050A26AAB81D
    assert HashingFeaturiser(dim=2**20).dense.tolist() == [73721, 675456, 888998]


def test_tokens_are_words_and_single_punctuation() -> None:
    featuriser = HashingFeaturiser(dim=2**10)

    assert featuriser.tokenise("Don't STOP -- déjà-vu, 日本語!") == [
        "don", "'", "t", "stop", "-", "-", "déjà", "-", "vu", ",", "日本語", "!"]
    assert featuriser.tokenise(" \t\n") == []


@pytest.mark.parametrize("ngram_max", [1, 2])
def test_batch_matches_python_reference(ngram_max: int) -> None:
    rng = random.Random(ngram_max)
    featuriser = HashingFeaturiser(dim=2**12, ngram_max=ngram_max, max_tokens=25)
    prompts = [random_text(rng) for _ in range(40)]
    completions = [tuple(random_text(rng) for _ in range(rng.randint(2, 4))) for _ in prompts]
    prompts[3] = prompts[4]  # a repeated prompt is tokenised once

    features = featuriser.featurise_examples(prompts, completions)

    for e, (prompt, texts) in enumerate(zip(prompts, completions)):
        coordinates, block = features.example(e)
        assert coordinates.tolist() == sorted(set(coordinates.tolist()))
        for c, text in enumerate(texts):
            expected = reference_features(prompt, text, featuriser)
            got = {b: v for b, v in zip(coordinates.tolist(), block[:, c].tolist()) if v != 0.0}
            assert got.keys() == {b for b, v in expected.items() if np.float32(v) != 0.0}
            for bucket, value in got.items():
                assert value == np.float32(expected[bucket])
            first = int(features.completion_offsets[e])
            assert features.n_tokens[first + c] == len(featuriser.tokenise(text))


def test_overlap_bigrams_and_dense_values() -> None:
    featuriser = HashingFeaturiser(dim=2**16)
    names = featuriser.feature_names(["the launch is on time"])

    features = featuriser.featurise_examples(["When is the LAUNCH? On time?"], [("The launch is on time", "")])

    coordinates, block = features.example(0)
    by_name = {names[b][0]: names[b][1] * v for b, v in zip(coordinates.tolist(), block[:, 0].tolist()) if b in names}
    assert by_name["the launch"] == 1.0
    assert by_name["on time"] == 1.0
    assert by_name["prompt:launch"] == 1.0
    assert by_name["prompt:time"] == 1.0
    assert by_name["prompt:on"] == 1.0
    assert by_name["dense:log_tokens"] == pytest.approx(math.log1p(5))
    assert by_name["dense:prompt_overlap"] == pytest.approx(5 / 5)
    assert features.n_tokens.tolist() == [5, 0]
    empty = dict(zip(coordinates.tolist(), block[:, 1].tolist()))
    assert [empty[b] for b in featuriser.dense.tolist()] == [0.0, 0.0, 1.0]
    assert sum(1 for v in block[:, 1] if v != 0.0) == 1


def test_repeats_sum_and_max_tokens_truncates() -> None:
    featuriser = HashingFeaturiser(dim=2**16, max_tokens=3)

    features = featuriser.featurise_examples([""], [("yes yes yes no no", "a")])

    coordinates, block = features.example(0)
    values = dict(zip(coordinates.tolist(), block[:, 0].tolist()))
    bucket, sign = bucket_and_sign(unigram_code(token_hash(b"yes")), 2**16)
    assert values[bucket] == 3.0 * sign
    assert bucket_and_sign(unigram_code(token_hash(b"no")), 2**16)[0] not in values
    assert features.n_tokens.tolist() == [3, 1]


def test_empty_batch_and_recent_texts() -> None:
    featuriser = HashingFeaturiser(dim=2**10, name_memory=2)

    featuriser.featurise_examples(["p"], [("one", "two", "three")])
    featuriser.featurise_examples(["p"], [("four", "five")], remember=False)

    assert list(featuriser.recent) == ["two", "three"]
