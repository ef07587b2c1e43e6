"""Signed feature hashing of completions, conditioned on the prompt.

Features of one completion ``c`` given prompt ``p`` (all signed-hashed into
``dim`` buckets, value +1 or -1 per occurrence):

* ``u:<token>`` -- word unigrams of ``c``;
* ``b:<token> <token>`` -- word bigrams of ``c`` (when ``ngram_max >= 2``);
* ``p:<token>`` -- unigrams of ``c`` that also occur in ``p``;

plus three dense features at fixed hashed positions: ``log1p`` of the token
count, the share of completion tokens found in the prompt, and an indicator
for an empty completion. Everything is O(tokens).

Token hashes come from BLAKE2b, never from Python's salted ``hash()``, so a
model saved on one host indexes the same buckets on every other host. A
bounded dict caches the hash of each token string.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

TOKEN_PATTERN: Final = re.compile(r"\w+|[^\w\s]")

_MASK64: Final = (1 << 64) - 1
_BIGRAM_MULTIPLIER: Final = np.uint64(0x9E3779B97F4A7C15)
_PROMPT_SALT: Final = np.uint64(0x5851F42D4C957F2D)
_MIX1: Final = np.uint64(0xBF58476D1CE4E5B9)
_MIX2: Final = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S33 = (np.uint64(s) for s in (30, 27, 31, 33))
_ONE: Final = np.uint64(1)

DENSE_FEATURES: Final = ("dense:log_tokens", "dense:prompt_overlap", "dense:empty")


def token_hash(token: str) -> int:
    """Return the 64-bit hash of a unigram token."""
    digest = hashlib.blake2b(token.encode("utf-8"), digest_size=8, person=b"drlhf-u1").digest()
    return int.from_bytes(digest, "little")


def _mix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # SplitMix64 finaliser: spreads every input bit over the whole word.
    x = x ^ (x >> _S30)
    x = x * _MIX1
    x = x ^ (x >> _S27)
    x = x * _MIX2
    return x ^ (x >> _S31)


class TokenHashCache(dict[str, int]):
    """A dict from token to :func:`token_hash` that empties itself when full."""

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size

    def __missing__(self, token: str) -> int:
        if len(self) >= self.max_size:
            self.clear()
        value = token_hash(token)
        self[token] = value
        return value


@dataclass(frozen=True)
class FeatureVector:
    """Sparse features of one completion; ``indices`` may repeat."""

    indices: NDArray[np.int64]
    values: NDArray[np.float32]
    n_tokens: int


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
        Most token hashes kept in memory.

    Examples
    --------
    >>> f = HashingFeaturiser(dim=2**10)
    >>> vec = f.featurise("the cat sat", prompt_tokens=frozenset({"cat"}))
    >>> vec.n_tokens, len(vec.indices)
    (3, 9)
    """

    def __init__(self, dim: int = 2**20, ngram_max: int = 2, max_tokens: int = 4096, cache_size: int = 500_000) -> None:
        self.dim = dim
        self.ngram_max = ngram_max
        self.max_tokens = max_tokens
        self.cache = TokenHashCache(cache_size)
        self._dim64 = np.uint64(dim)
        self._dense_indices = np.array([token_hash(name) % dim for name in DENSE_FEATURES], dtype=np.int64)

    def tokenise(self, text: str) -> list[str]:
        """Split lower-cased *text* into words and single punctuation marks."""
        return TOKEN_PATTERN.findall(text.lower())[: self.max_tokens]

    def prompt_tokens(self, prompt: str) -> frozenset[str]:
        """Return the token set of *prompt* used by the overlap features."""
        return frozenset(self.tokenise(prompt))

    def featurise(self, completion: str, prompt_tokens: frozenset[str]) -> FeatureVector:
        """Return the sparse features of *completion* given the prompt's tokens."""
        tokens = self.tokenise(completion)
        n = len(tokens)
        hashes = np.fromiter(map(self.cache.__getitem__, tokens), dtype=np.uint64, count=n)

        # Hash streams: unigrams as cached, bigrams and prompt overlaps re-mixed.
        parts = [hashes]
        if self.ngram_max >= 2 and n >= 2:
            parts.append(_mix64(hashes[:-1] * _BIGRAM_MULTIPLIER + hashes[1:]))
        overlap = np.fromiter((t in prompt_tokens for t in tokens), dtype=bool, count=n)
        n_overlap = int(overlap.sum())
        if n_overlap:
            parts.append(_mix64(hashes[overlap] ^ _PROMPT_SALT))
        hashed = np.concatenate(parts) if len(parts) > 1 else hashes

        # Bucket from the high bits, sign from the lowest bit.
        indices = ((hashed >> _S33) % self._dim64).astype(np.int64)
        signs = 1.0 - 2.0 * (hashed & _ONE).astype(np.float32)

        dense = np.array([math.log1p(n), n_overlap / n if n else 0.0, 0.0 if n else 1.0], dtype=np.float32)
        return FeatureVector(
            indices=np.concatenate((indices, self._dense_indices)),
            values=np.concatenate((signs.astype(np.float32), dense)),
            n_tokens=n,
        )

    def feature_names(self) -> dict[int, tuple[str, float]]:
        """Return bucket -> (name, sign) for the unigram, overlap and dense features known now.

        Only tokens still in the hash cache are named; bigram names are not
        recoverable from their hashes. A feature's weight is its sign times
        its bucket's weight.
        """
        names: dict[int, tuple[str, float]] = {}
        if self.cache:
            tokens = list(self.cache)
            hashes = np.fromiter(self.cache.values(), dtype=np.uint64, count=len(tokens))
            for prefix, hashed in (("u:", hashes), ("p:", _mix64(hashes ^ _PROMPT_SALT))):
                buckets = ((hashed >> _S33) % self._dim64).tolist()
                signs = (1 - 2 * (hashed & _ONE).astype(np.int64)).tolist()
                names.update(zip(buckets, ((prefix + t, float(s)) for t, s in zip(tokens, signs))))
        names.update((int(i), (name, 1.0)) for i, name in zip(self._dense_indices, DENSE_FEATURES))
        return names
