"""The compiled featuriser against the numpy pipeline: same buckets, same float32 bits."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from dynamic_rlhf import feature_kernels, kernels
from dynamic_rlhf.features import (
    _P,
    TOKEN_BYTES,
    ExampleFeatures,
    HashingFeaturiser,
    _hash_encoded,
    _Tokens,
    encode_text,
    token_hash,
)
from dynamic_rlhf.text import render_text

FIELDS = ("coordinates", "coordinate_offsets", "block", "block_offsets", "completion_offsets", "n_tokens")
PIECES = ["the", "Launch", "déjà", "naïve", "日本語", "x_1", "42", "🙂", "\ud800", "ǅ", "İ", "ß", "\x00", "\x7f", "ΟΔΟΣ",
          "Σ", "𐐀", "Ⱥ", "\u212a", "ẞ",
          "\u00a0", "\u2028", "", " ", "\n", "\t", ",", ".", "--", "'", "“", "”", "A" * 30]


def random_unicode(rng: random.Random, pieces: int) -> str:
    """Return known words, marks and control characters mixed with random code points."""
    parts = []
    for _ in range(pieces):
        if rng.random() < 0.2:
            parts.append(chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0x2FFF), rng.randint(0x10000, 0x1FFFF)])))
        else:
            parts.append(rng.choice(PIECES))
    return "".join(parts)


def features_by_path(featuriser: HashingFeaturiser, prompts: Sequence[str], completions: Sequence[Sequence[str]],
                     compiled: bool, monkeypatch: pytest.MonkeyPatch) -> ExampleFeatures:
    """Featurise with the compiled loops (run as plain Python when numba is absent) or with numpy."""
    with monkeypatch.context() as patch:
        patch.setattr(kernels, "COMPILED", compiled)
        # Uncompiled, the uint64 products overflow numpy scalars, which wrap as intended.
        with np.errstate(over="ignore"):
            return featuriser.featurise_examples(prompts, completions, remember=False)


def assert_same_features(first: ExampleFeatures, second: ExampleFeatures) -> None:
    for name in FIELDS:
        a, b = getattr(first, name), getattr(second, name)
        assert a.dtype == b.dtype, name
        assert a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name


def batches(seed: int, count: int) -> Iterator[tuple[list[str], list[tuple[str, ...]]]]:
    rng = random.Random(seed)
    for _ in range(count):
        prompts = [random_unicode(rng, rng.randint(0, 60)) for _ in range(rng.randint(1, 12))]
        if len(prompts) > 2:
            prompts[1] = prompts[2]  # a repeated prompt is tokenised once
        completions = [tuple(random_unicode(rng, rng.randint(0, 40)) for _ in range(rng.randint(1, 5)))
                       for _ in prompts]
        yield prompts, completions


@pytest.mark.parametrize(("dim", "ngram_max", "max_tokens"),
                         [(2**20, 2, 4096), (2**10, 1, 4096), (16, 2, 5), (17, 2, 3), (1000, 1, 1), (2**28, 2, 64)])
def test_compiled_matches_numpy_on_random_unicode(dim: int, ngram_max: int, max_tokens: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    featuriser = HashingFeaturiser(dim=dim, ngram_max=ngram_max, max_tokens=max_tokens)

    for prompts, completions in batches(seed=dim + max_tokens, count=8):
        compiled = features_by_path(featuriser, prompts, completions, True, monkeypatch)
        reference = features_by_path(featuriser, prompts, completions, False, monkeypatch)

        assert_same_features(compiled, reference)


def test_compiled_matches_numpy_on_edge_texts(monkeypatch: pytest.MonkeyPatch) -> None:
    featuriser = HashingFeaturiser(dim=2**20)
    chat = render_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is the launch on time?"}])
    long_text = " ".join(f"w{i % 977}" for i in range(6000))  # beyond max_tokens = 4096
    punctuation = "!?" * 3000
    prompts = ["", chat, long_text, "", "launch time", punctuation]
    completions = [("", ""), ("The launch is on time.", chat), (long_text, long_text[:100], ""),
                   (" \t\n", "\x00\x00"), ("launch launch time", "time"), (punctuation, "! ?")]

    compiled = features_by_path(featuriser, prompts, completions, True, monkeypatch)
    reference = features_by_path(featuriser, prompts, completions, False, monkeypatch)

    assert_same_features(compiled, reference)
    assert compiled.n_tokens.tolist() == [0, 0, 6, 9, 4096, 28, 0, 0, 0, 3, 1, 4096, 2]


def test_compiled_matches_numpy_on_empty_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    featuriser = HashingFeaturiser(dim=2**10)

    compiled = features_by_path(featuriser, [], [], True, monkeypatch)
    reference = features_by_path(featuriser, [], [], False, monkeypatch)

    assert_same_features(compiled, reference)
    assert compiled.coordinate_offsets.tolist() == [0]


def test_sort_keys_fit_limit() -> None:
    # Keys hold (example, bucket, completion, kind) in 63 bits.
    assert feature_kernels.sort_keys_fit(2048, 2**28, 8)
    assert feature_kernels.sort_keys_fit(2**31 - 1, 2**28, 1)
    assert not feature_kernels.sort_keys_fit(2**31, 2**28, 2)
    assert not feature_kernels.sort_keys_fit(2**30, 2**28, 3)


def test_batch_too_large_for_keys_uses_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    featuriser = HashingFeaturiser(dim=2**10)
    prompts, completions = next(batches(seed=1, count=1))
    reference = features_by_path(featuriser, prompts, completions, False, monkeypatch)
    monkeypatch.setattr(feature_kernels, "sort_keys_fit", lambda n_examples, dim, columns: False)
    monkeypatch.setattr(feature_kernels, "emit_entries", None)  # fails if the compiled path runs

    fallback = features_by_path(featuriser, prompts, completions, True, monkeypatch)

    assert_same_features(fallback, reference)


@pytest.mark.parametrize("n_examples", [1, 7, 300])
def test_overlap_flags_match_prompt_sets(n_examples: int) -> None:
    rng = np.random.default_rng(n_examples)
    per_example = np.full(n_examples, 2, dtype=np.int64)
    prompt_of_example = rng.integers(0, max(1, n_examples // 2), n_examples)
    n_prompts = int(prompt_of_example.max()) + 1
    lengths = rng.integers(0, 12, 2 * n_examples + n_prompts)
    lengths[0] = lengths[2 * n_examples] = 3  # the first completion and prompt 0 have tokens
    token_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    # Few distinct hashes, so many completion tokens occur in their own or another prompt.
    hashes = rng.integers(0, 20, int(token_offsets[-1])).astype(np.uint64)

    found = feature_kernels.overlap_flags(hashes, token_offsets, per_example, prompt_of_example)

    texts = [hashes[token_offsets[t]:token_offsets[t + 1]].tolist() for t in range(len(lengths))]
    prompt_sets = [set(tokens) for tokens in texts[2 * n_examples:]]
    expected = [h in prompt_sets[prompt_of_example[t // 2]] for t in range(2 * n_examples) for h in texts[t]]
    assert found.tolist() == expected
    assert 0 < sum(expected) < len(expected)


def test_overlap_needs_own_prompt_hash() -> None:
    # Prompt 0 contains hash P, and example 1's completion contains 2P, in prompt 1. A key that
    # mixed hash and prompt as h ^ (prompt + 1) * P would give both the key 0 and match them.
    hashes = np.array([5, 2 * _P % 2**64, _P, 2 * _P % 2**64 + 1], dtype=np.uint64)
    token_offsets = np.array([0, 1, 1, 2, 2, 3, 4], dtype=np.int64)
    per_example = np.array([2, 2], dtype=np.int64)
    prompt_of_example = np.array([0, 1], dtype=np.int64)

    found = feature_kernels.overlap_flags(hashes, token_offsets, per_example, prompt_of_example)

    assert found.tolist() == [False, False]
    tokens = _Tokens(hashes, np.array([0, 2, 4, 5], dtype=np.int64), np.array([1, 0, 1, 0, 1, 1], dtype=np.int64))
    owner = np.array([0, 2], dtype=np.int64)
    numpy_owner, _ = HashingFeaturiser()._overlap(tokens, hashes[:2], owner, 4, np.array([0, 0, 1, 1]))
    assert numpy_owner.tolist() == []


def every_code_point_texts() -> list[str]:
    """Return texts that hold every code point once, 4,096 per text, plus capital sigmas in context."""
    texts = ["".join(map(chr, range(first, min(first + 4096, 0x110000)))) for first in range(0, 0x110000, 4096)]
    return texts + ["ΟΔΟΣ ΟΔΟΣΑ Σ", "plain ascii", "", "’quoted’ Text"]


@pytest.mark.parametrize("max_tokens", [4096, 7])
def test_token_hashes_match_python_tokeniser(max_tokens: int) -> None:
    # The compiled tokeniser lower-cases as it goes; str.lower() is the reference for every code point.
    texts = every_code_point_texts()
    featuriser = HashingFeaturiser(max_tokens=max_tokens)

    hashes, token_offsets = featuriser._hash_tokens(texts)

    for t, text in enumerate(texts):
        expected = [token_hash(token) for token in TOKEN_BYTES.findall(encode_text(text))[:max_tokens]]
        assert hashes[token_offsets[t]:token_offsets[t + 1]].tolist() == expected, f"text {t}"


def test_unlowerable_texts_use_str_lower() -> None:
    texts = ["ΟΔΟΣ ΟΔΟΣΑ", "İstanbul", "Kelvin \u212a", "plain Text", "’quoted’ Ā"]
    encoded = [text.encode("utf-8", "surrogatepass") for text in texts]

    _, _, failed = _hash_encoded(encoded, np.zeros(len(texts), dtype=np.bool_), 4096)
    hashes, token_offsets = HashingFeaturiser()._hash_tokens(texts)

    assert failed.tolist() == [True, True, True, False, False]
    for t, text in enumerate(texts):
        expected = [token_hash(token) for token in TOKEN_BYTES.findall(encode_text(text))]
        assert hashes[token_offsets[t]:token_offsets[t + 1]].tolist() == expected


def test_no_lower_case_mapping_beyond_table() -> None:
    # The compiled lower-casing copies every code point from LOWER_TABLE_SIZE up unchanged.
    changed = [code for code in range(feature_kernels.LOWER_TABLE_SIZE, 0x110000) if chr(code).lower() != chr(code)]

    assert changed == []
