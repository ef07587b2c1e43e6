"""Signed feature hashing of completions, conditioned on the prompt.

Features of one completion ``c`` given prompt ``p``, each signed-hashed
into one of ``dim`` buckets with value +1 or -1 per occurrence:

* word unigrams of ``c`` (``"token"``);
* word bigrams of ``c`` (``"token token"``, when ``ngram_max >= 2``);
* unigrams of ``c`` that also occur in ``p`` (``"\\x01token"``);

plus three dense features at fixed hashed buckets: ``log1p`` of the token
count, the share of completion tokens found in the prompt, and an indicator
for an empty completion. Tokens are lower-cased runs of word characters or
single punctuation marks. Everything is O(tokens).

The hash is CRC-32 (zlib) of the UTF-8 feature string, spread over 64 bits
by a multiplicative mix, never Python's salted ``hash()``: a model saved on
one host indexes the same buckets on every other host. A bounded dict
caches the bucket and sign of every feature string seen recently.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

TOKEN_PATTERN: Final = re.compile(r"\w+|[^\w\s]")
PROMPT_PREFIX: Final = "\x01"
DENSE_FEATURES: Final = ("\x02log_tokens", "\x02prompt_overlap", "\x02empty")
_MASK64: Final = (1 << 64) - 1
_GOLDEN64: Final = 0x9E3779B97F4A7C15


def feature_code(name: str, dim: int) -> int:
    """Return ``2 * bucket + sign_bit`` of the feature string *name*.

    A sign bit of 1 means the feature adds -1 to its bucket.

    >>> feature_code("hello", 2**20) == feature_code("hello", 2**20)
    True
    """
    mixed = (zlib.crc32(name.encode("utf-8")) * _GOLDEN64) & _MASK64
    mixed ^= mixed >> 29
    return ((mixed >> 33) % dim) * 2 + ((mixed >> 32) & 1)


def _sum_colliding(counts: Counter[int]) -> dict[int, float]:
    # Two features of one completion share a bucket: add their signed counts.
    column: dict[int, float] = {}
    for code, count in counts.items():
        bucket = code >> 1
        column[bucket] = column.get(bucket, 0.0) + (-float(count) if code & 1 else float(count))
    return column


class FeatureCodeCache(dict[str, int]):
    """A dict from feature string to :func:`feature_code` that empties itself when full."""

    def __init__(self, dim: int, max_size: int) -> None:
        super().__init__()
        self.dim = dim
        self.max_size = max_size

    def __missing__(self, name: str) -> int:
        if len(self) >= self.max_size:
            self.clear()
        code = feature_code(name, self.dim)
        self[name] = code
        return code


@dataclass(frozen=True)
class FeatureBlock:
    """Sparse features of several completions as one dense block over their buckets.

    ``block[i, c]`` is the value of bucket ``coordinates[i]`` in completion
    ``c``; repeated occurrences and hash collisions are already summed, and
    every bucket appears once.
    """

    coordinates: NDArray[np.int64]
    block: NDArray[np.float32]
    n_tokens: list[int]

    @property
    def indices(self) -> NDArray[np.int64]:
        """Bucket of each non-zero entry, in coordinate (COO) form, bucket-major."""
        rows, _ = np.nonzero(self.block)
        return self.coordinates[rows]

    @property
    def values(self) -> NDArray[np.float32]:
        """Value of each non-zero entry, aligned with :attr:`indices`."""
        return self.block[np.nonzero(self.block)]

    @property
    def columns(self) -> NDArray[np.int64]:
        """Completion of each non-zero entry, aligned with :attr:`indices`."""
        return np.nonzero(self.block)[1].astype(np.int64)


class HashingFeaturiser:
    """Map (prompt, completion) texts to sparse signed-hashed features.

    Parameters
    ----------
    dim:
        Number of hash buckets (any integer >= 16; powers of two are usual).
    ngram_max:
        1 for unigrams only, 2 to add bigrams.
    max_tokens:
        Tokens beyond this count in one text are ignored.
    cache_size:
        Most feature codes kept in memory.

    Examples
    --------
    >>> f = HashingFeaturiser(dim=2**10)
    >>> features = f.featurise(["the cat sat", ""], prompt_tokens=frozenset({"cat"}))
    >>> features.n_tokens, features.block.shape
    ([3, 0], (9, 2))
    """

    def __init__(self, dim: int = 2**20, ngram_max: int = 2, max_tokens: int = 4096, cache_size: int = 500_000) -> None:
        self.dim = dim
        self.ngram_max = ngram_max
        self.max_tokens = max_tokens
        self.cache = FeatureCodeCache(dim, cache_size)
        self._dense_indices = np.array([feature_code(name, dim) // 2 for name in DENSE_FEATURES], dtype=np.int64)
        self._dense_list: list[int] = self._dense_indices.tolist()

    def tokenise(self, text: str) -> list[str]:
        """Split lower-cased *text* into words and single punctuation marks."""
        tokens: list[str] = TOKEN_PATTERN.findall(text.lower())
        return tokens[: self.max_tokens] if len(tokens) > self.max_tokens else tokens

    def prompt_tokens(self, prompt: str) -> frozenset[str]:
        """Return the token set of *prompt* used by the overlap features."""
        return frozenset(self.tokenise(prompt))

    def featurise(self, completions: Sequence[str], prompt_tokens: frozenset[str]) -> FeatureBlock:
        """Return the merged sparse features of *completions* given the prompt's tokens.

        The merge runs in plain Python (dicts and comprehensions): for the
        few dozen features of a completion it costs less than the fixed
        overhead of the numpy calls a vectorised merge needs.
        """
        columns: list[dict[int, float]] = []
        lengths: list[int] = []
        lookup = self.cache.__getitem__
        bigrams = self.ngram_max >= 2

        for text in completions:
            tokens = self.tokenise(text)
            length = len(tokens)
            names = list(tokens)
            if bigrams and length >= 2:
                names += map(" ".join, zip(tokens, tokens[1:]))
            overlap = [PROMPT_PREFIX + token for token in tokens if token in prompt_tokens]
            names += overlap
            lengths.append(length)

            # Signed counts per bucket: the sign bit of a code flips the feature's value.
            counts = Counter(map(lookup, names))
            column = {code >> 1: -float(count) if code & 1 else float(count) for code, count in counts.items()}
            if len(column) < len(counts):
                column = _sum_colliding(counts)
            dense = (math.log1p(length), len(overlap) / length if length else 0.0, 0.0 if length else 1.0)
            for bucket, value in zip(self._dense_list, dense):
                column[bucket] = column.get(bucket, 0.0) + value
            columns.append(column)

        buckets = dict.fromkeys(itertools.chain.from_iterable(columns))
        coordinates = np.fromiter(buckets, dtype=np.int64, count=len(buckets))
        block = np.array([[column.get(b, 0.0) for b in buckets] for column in columns], dtype=np.float32).T
        return FeatureBlock(coordinates, block, lengths)

    def feature_names(self) -> dict[int, tuple[str, float]]:
        """Return bucket -> (name, sign) for the features whose codes are cached.

        A feature's weight is its sign times its bucket's weight. Overlap
        features are shown as ``"prompt:token"``.
        """
        names: dict[int, tuple[str, float]] = {}
        for name, code in self.cache.items():
            shown = "prompt:" + name[1:] if name.startswith(PROMPT_PREFIX) else name
            names[code >> 1] = (shown, -1.0 if code & 1 else 1.0)
        for index, name in zip(self._dense_indices.tolist(), DENSE_FEATURES):
            names[index] = ("dense:" + name[1:], 1.0)
        return names
