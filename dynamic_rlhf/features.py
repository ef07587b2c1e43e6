r"""Signed feature hashing of completions, conditioned on the prompt, for a batch at once.

Features of one completion ``c`` given prompt ``p``, each signed-hashed into one of
``dim`` buckets with value +1 or -1 per occurrence:

* word unigrams of ``c``;
* word bigrams of ``c`` (when ``ngram_max >= 2``);
* unigrams of ``c`` that also occur in ``p`` (prompt-overlap features);

plus three dense features at fixed buckets: ``log1p`` of the token count, the share of
completion tokens found in the prompt, and an indicator for an empty completion.

Tokens. A text is lower-cased (``str.lower``) and encoded as UTF-8. A token is a
maximal run of word bytes (ASCII letters, digits, ``_`` and every byte >= 0x80, so
non-ASCII letters stay inside words) or a single ASCII punctuation byte. Other bytes
(whitespace and control characters) separate tokens. At most ``max_tokens`` tokens of
each text are used.

Hashing. The token hash is the polynomial :math:`h = \sum_j (b_j + 1) P^{n-1-j} \bmod 2^{64}`
over the token's bytes, with its length folded in, finished by the MurmurHash3 64-bit
mixer. A batch is hashed in numpy without a Python loop per token: with
:math:`Q = P^{-1} \bmod 2^{64}` and the prefix sums :math:`S_i = \sum_{j<i} (b_j + 1) Q^j`
of the concatenated texts, the token in bytes ``[s, e)`` hashes to
:math:`(S_e - S_s) P^{e-1}`. Unigram, bigram and overlap features mix the token hashes
with distinct salts; the bucket is ``(code >> 1) % dim`` and bit 0 is the sign. Nothing
uses Python's salted ``hash()``, so every host computes the same buckets.
:func:`token_hash` is the same hash in plain Python, used to name features.

With numba installed, :meth:`HashingFeaturiser.featurise_examples` runs the loops of
:mod:`dynamic_rlhf.feature_kernels` instead, which compute the same buckets and the
same float32 block bits in one pass over each text's bytes.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from dynamic_rlhf import feature_kernels, kernels

_MASK64: Final = (1 << 64) - 1
_P: Final = 0x100000001B3  # the 64-bit FNV prime; any odd multiplier works
_Q: Final = pow(_P, -1, 1 << 64)
_LENGTH_MULT: Final = 0x9E3779B97F4A7C15
_MIX1: Final = 0xFF51AFD7ED558CCD
_MIX2: Final = 0xC4CEB9FE1A85EC53
_BIGRAM_MULT: Final = 0xD6E8FEB86659FD93
_SALT_UNIGRAM: Final = 0x5555_0001
_SALT_BIGRAM: Final = 0x5555_0002
_SALT_OVERLAP: Final = 0x5555_0003
_SALT_DENSE: Final = 0x5555_0004
DENSE_FEATURES: Final = ("log_tokens", "prompt_overlap", "empty")
# Examples whose entry keys are sorted together: about 13,000 keys of HH-RLHF pairs, 100 KB.
SORT_RUN: Final = 32

# Byte classes: 0 separates tokens, 1 belongs to a word, 2 is one punctuation token.
_WORD, _PUNCT = 1, 2
_CLASSES = np.zeros(256, dtype=np.uint8)
_CLASSES[0x80:] = _WORD
for _byte in b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_":
    _CLASSES[_byte] = _WORD
for _byte in range(0x21, 0x7F):
    if _CLASSES[_byte] == 0:
        _CLASSES[_byte] = _PUNCT
# ASCII upper-case letters to lower case; str.lower() leaves none in any text, so other bytes map to themselves.
_ASCII_LOWER = np.arange(256, dtype=np.uint8)
_ASCII_LOWER[ord("A"):ord("Z") + 1] += ord("a") - ord("A")
# The compiled tokeniser's table: class and hashed value (ASCII lower case plus one) of every byte.
_BYTE_CODES = (_CLASSES.astype(np.int64) << feature_kernels.BYTE_CLASS_SHIFT) | (_ASCII_LOWER.astype(np.int64) + 1)
TOKEN_BYTES: Final = re.compile(rb"[0-9A-Za-z_\x80-\xff]+|[!-/:-@\[-^`{-~]")


def encode_text(text: str) -> bytes:
    """Return the lower-cased UTF-8 bytes that tokens are cut from (lone surrogates kept)."""
    return text.lower().encode("utf-8", "surrogatepass")


def _fmix(h: int) -> int:
    h ^= h >> 33
    h = (h * _MIX1) & _MASK64
    h ^= h >> 33
    h = (h * _MIX2) & _MASK64
    return h ^ (h >> 33)


def token_hash(token: bytes) -> int:
    """Return the 64-bit hash of one token's bytes (the plain Python form of the batch hash)."""
    h = 0
    for byte in token:
        h = (h * _P + byte + 1) & _MASK64
    return _fmix(h ^ ((len(token) * _LENGTH_MULT) & _MASK64))


def unigram_code(h: int) -> int:
    return _fmix((h + _SALT_UNIGRAM) & _MASK64)


def bigram_code(first: int, second: int) -> int:
    return _fmix((first * _BIGRAM_MULT + second + _SALT_BIGRAM) & _MASK64)


def overlap_code(h: int) -> int:
    return _fmix((h + _SALT_OVERLAP) & _MASK64)


def bucket_and_sign(code: int, dim: int) -> tuple[int, float]:
    """Return the bucket of a feature code and the feature's sign (+1.0 or -1.0)."""
    return (code >> 1) % dim, -1.0 if code & 1 else 1.0


def dense_buckets(dim: int) -> list[int]:
    """Return the fixed buckets of the dense features, in :data:`DENSE_FEATURES` order."""
    return [bucket_and_sign(_fmix((token_hash(name.encode()) + _SALT_DENSE) & _MASK64), dim)[0]
            for name in DENSE_FEATURES]


# -- vectorised hashing ------------------------------------------------------

class _Powers:
    """Tables of P**i and Q**i mod 2**64, grown on demand."""

    def __init__(self) -> None:
        self.p = np.ones(1, dtype=np.uint64)
        self.q = np.ones(1, dtype=np.uint64)

    def ensure(self, n: int) -> None:
        if len(self.p) >= n:
            return
        size = max(n, 2 * len(self.p), 1 << 16)
        for name, base in (("p", _P), ("q", _Q)):
            table = np.full(size, base, dtype=np.uint64)
            table[0] = 1
            setattr(self, name, np.cumprod(table, dtype=np.uint64))


_POWERS = _Powers()


def _fmix_array(h: NDArray[np.uint64]) -> NDArray[np.uint64]:
    h = h ^ (h >> np.uint64(33))
    h *= np.uint64(_MIX1)
    h ^= h >> np.uint64(33)
    h *= np.uint64(_MIX2)
    h ^= h >> np.uint64(33)
    return h


@dataclass(frozen=True)
class _Tokens:
    """Token hashes of a batch of texts, in text order, with the text each belongs to."""

    hashes: NDArray[np.uint64]
    text: NDArray[np.int64]
    counts: NDArray[np.int64]  # tokens kept per text


def _hash_tokens(encoded: Sequence[bytes], max_tokens: int) -> _Tokens:
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    # Texts are joined with one separator byte, so no token spans two texts.
    data = np.frombuffer(b"\x00".join(encoded), dtype=np.uint8)
    text_starts = np.zeros(len(encoded), dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=text_starts[1:])

    # Token boundaries from byte classes.
    classes = _CLASSES[data]
    word = classes == _WORD
    punct = classes == _PUNCT
    edge = np.zeros(len(data) + 1, dtype=np.bool_)
    edge[1:-1] = word[1:] != word[:-1]
    edge[0], edge[-1] = word[:1].any(), word[-1:].any()
    starts = np.flatnonzero((edge[:-1] & word) | punct)
    ends = np.flatnonzero((edge[1:] & word) | punct) + 1

    # Polynomial hash of every token from prefix sums (uint64 arithmetic wraps mod 2**64).
    _POWERS.ensure(len(data) + 1)
    prefix = np.zeros(len(data) + 1, dtype=np.uint64)
    np.cumsum((data.astype(np.uint64) + np.uint64(1)) * _POWERS.q[: len(data)], out=prefix[1:])
    raw = (prefix[ends] - prefix[starts]) * _POWERS.p[ends - 1]
    raw ^= (ends - starts).astype(np.uint64) * np.uint64(_LENGTH_MULT)
    hashes = _fmix_array(raw)

    # Keep the first max_tokens tokens of each text.
    text = np.searchsorted(text_starts, starts, side="right") - 1
    first = np.searchsorted(starts, text_starts)
    keep = np.arange(len(starts)) - first[text] < max_tokens
    if not keep.all():
        hashes, text = hashes[keep], text[keep]
    counts = np.bincount(text, minlength=len(encoded)).astype(np.int64)
    return _Tokens(hashes, text.astype(np.int64), counts)


def _codes_to_buckets(codes: NDArray[np.uint64], dim: int) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    buckets = ((codes >> np.uint64(1)) % np.uint64(dim)).astype(np.int64)
    signs = 1.0 - 2.0 * (codes & np.uint64(1)).astype(np.float64)
    return buckets, signs


@dataclass(frozen=True)
class ExampleFeatures:
    """Features of a batch of examples, each as a dense block over its own buckets.

    Example ``e`` owns buckets ``coordinates[coordinate_offsets[e]:coordinate_offsets[e+1]]``
    (ascending, unique) and the row-major ``(buckets, completions)`` block
    ``block[block_offsets[e]:block_offsets[e+1]]``. Repeats and hash collisions are
    summed. ``n_tokens[completion_offsets[e] + c]`` is the token count of completion ``c``.
    """

    coordinates: NDArray[np.int64]
    coordinate_offsets: NDArray[np.int64]
    block: NDArray[np.float32]
    block_offsets: NDArray[np.int64]
    completion_offsets: NDArray[np.int64]
    n_tokens: NDArray[np.int64]

    def example(self, e: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Return example ``e``'s buckets and its ``(buckets, completions)`` block."""
        coordinates = self.coordinates[self.coordinate_offsets[e]:self.coordinate_offsets[e + 1]]
        block = self.block[self.block_offsets[e]:self.block_offsets[e + 1]]
        return coordinates, block.reshape(len(coordinates), -1)


class HashingFeaturiser:
    """Map prompts and their completions to sparse signed-hashed features.

    Parameters
    ----------
    dim:
        Number of hash buckets (any integer >= 16; powers of two are usual).
    ngram_max:
        1 for unigrams only, 2 to add bigrams.
    max_tokens:
        Tokens beyond this count in one text are ignored.
    name_memory:
        Recent completions kept so that :meth:`feature_names` can name buckets.

    Examples
    --------
    >>> f = HashingFeaturiser(dim=2**10)
    >>> features = f.featurise_examples(["the cat"], [("the cat sat", "")])
    >>> features.n_tokens.tolist(), features.example(0)[1].shape
    ([3, 0], (10, 2))
    """

    def __init__(self, dim: int = 2**20, ngram_max: int = 2, max_tokens: int = 4096, name_memory: int = 1000) -> None:
        self.dim = dim
        self.ngram_max = ngram_max
        self.max_tokens = max_tokens
        self.recent: deque[str] = deque(maxlen=name_memory)
        self.dense = np.array(dense_buckets(dim), dtype=np.int64)

    def tokenise(self, text: str) -> list[str]:
        """Return the tokens of *text* as strings (the Python form of the batch tokeniser)."""
        tokens = TOKEN_BYTES.findall(encode_text(text))[: self.max_tokens]
        return [token.decode("utf-8", "surrogatepass") for token in tokens]

    def featurise_examples(self, prompts: Sequence[str], completions: Sequence[Sequence[str]], *,
                           remember: bool = True) -> ExampleFeatures:
        """Return the features of every example ``(prompts[e], completions[e])`` in one pass.

        With *remember*, the completions join the recent texts that name features.
        """
        n_examples = len(prompts)
        per_example = np.fromiter(map(len, completions), dtype=np.int64, count=n_examples)
        texts = [text for group in completions for text in group]
        if remember and self.recent.maxlen:
            self.recent.extend(texts[-self.recent.maxlen:])

        # Prompts are tokenised once per distinct prompt, after the completions.
        distinct: dict[str, int] = {}
        prompt_of_example = np.fromiter((distinct.setdefault(p, len(distinct)) for p in prompts),
                                        dtype=np.int64, count=n_examples)
        n_texts = len(texts)
        if kernels.COMPILED:
            compiled = self._featurise_compiled(texts + list(distinct), n_texts, per_example, prompt_of_example)
            if compiled is not None:
                return compiled
        encoded = [encode_text(t) for t in texts] + [encode_text(p) for p in distinct]
        tokens = _hash_tokens(encoded, self.max_tokens)

        example_of_text = np.repeat(np.arange(n_examples, dtype=np.int64), per_example)
        in_completion = tokens.text < n_texts
        hashes, owner = tokens.hashes[in_completion], tokens.text[in_completion]
        entries = [self._unigrams(hashes, owner)]
        if self.ngram_max >= 2:
            entries.append(self._bigrams(hashes, owner))
        overlap_owner, overlap_entry = self._overlap(tokens, hashes, owner, n_texts, prompt_of_example[example_of_text])
        entries.append(overlap_entry)

        counts = tokens.counts[:n_texts]
        overlap_counts = np.bincount(overlap_owner, minlength=n_texts)
        entries.append(self._dense_entries(counts, overlap_counts))
        return _merge(entries, example_of_text, per_example, counts, self.dim)

    def _featurise_compiled(self, all_texts: list[str], n_texts: int, per_example: NDArray[np.int64],
                            prompt_of_example: NDArray[np.int64]) -> ExampleFeatures | None:
        """Return the same features as the numpy pipeline, from the loops of :mod:`dynamic_rlhf.feature_kernels`.

        Return None when the batch's sort keys would not fit in 63 bits (millions of examples).
        """
        n_examples = len(per_example)
        columns = int(per_example.max(initial=1))
        if not feature_kernels.sort_keys_fit(n_examples, self.dim, columns):
            return None
        column_bits = feature_kernels.column_bits(columns)
        hashes, token_offsets = self._hash_tokens(all_texts)

        # One sort key per entry: unigram, bigram and overlap entries per token, three dense ones per text.
        keys = np.empty(3 * int(token_offsets[n_texts]) + len(DENSE_FEATURES) * n_texts, dtype=np.int64)
        overlap_counts = np.empty(n_texts, dtype=np.int64)
        key_offsets = np.empty(n_examples + 1, dtype=np.int64)
        n_keys = feature_kernels.emit_entries(hashes, token_offsets, per_example, prompt_of_example, self.dim,
                                              self.ngram_max >= 2, self.dense, column_bits, keys, key_offsets,
                                              overlap_counts)
        keys = keys[:n_keys]
        _sort_by_runs(keys, key_offsets)

        counts = np.diff(token_offsets[:n_texts + 1])
        dense_values = self._dense_entries(counts, overlap_counts)[2].reshape(n_texts, len(DENSE_FEATURES))
        completion_offsets = np.zeros(n_examples + 1, dtype=np.int64)
        np.cumsum(per_example, out=completion_offsets[1:])
        coordinates, coordinate_offsets, block, block_offsets = feature_kernels.build_blocks(
            keys, key_offsets, self.dim, column_bits, per_example, completion_offsets, dense_values)
        return ExampleFeatures(coordinates, coordinate_offsets, block, block_offsets, completion_offsets, counts)

    def _hash_tokens(self, texts: list[str]) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
        """Return the token hashes of *texts* and their offsets, text ``t`` owning ``hashes[offsets[t]:offsets[t + 1]]``.

        The compiled tokeniser lower-cases non-ASCII code points as it goes. The few
        texts it cannot lower-case alone are lower-cased by ``str.lower`` and hashed
        again with the others. Those contain a capital sigma (its lower case depends on its
        neighbours), a dotted capital I (it becomes two characters) or a letter whose
        lower case has another UTF-8 length.
        """
        encoded = [t.encode("utf-8", "surrogatepass") for t in texts]
        lowered = np.zeros(len(texts), dtype=np.bool_)
        hashes, token_offsets, failed = _hash_encoded(encoded, lowered, self.max_tokens)
        if failed.any():
            for t in np.flatnonzero(failed).tolist():
                encoded[t] = encode_text(texts[t])
            hashes, token_offsets, _ = _hash_encoded(encoded, failed, self.max_tokens)
        return hashes, token_offsets

    def _unigrams(self, hashes: NDArray[np.uint64], owner: NDArray[np.int64]) -> tuple:
        buckets, signs = _codes_to_buckets(_fmix_array(hashes + np.uint64(_SALT_UNIGRAM)), self.dim)
        return owner, buckets, signs

    def _bigrams(self, hashes: NDArray[np.uint64], owner: NDArray[np.int64]) -> tuple:
        # Consecutive kept tokens of one text form a bigram.
        same = owner[1:] == owner[:-1]
        mixed = hashes[:-1][same] * np.uint64(_BIGRAM_MULT) + hashes[1:][same] + np.uint64(_SALT_BIGRAM)
        buckets, signs = _codes_to_buckets(_fmix_array(mixed), self.dim)
        return owner[1:][same], buckets, signs

    def _overlap(self, tokens: _Tokens, hashes: NDArray[np.uint64], owner: NDArray[np.int64], n_texts: int,
                 prompt_of_text: NDArray[np.int64]) -> tuple[NDArray[np.int64], tuple]:
        # A completion token overlaps when its hash is among the token hashes of its own prompt.
        prompt_tokens = tokens.text >= n_texts
        found = np.isin(_prompt_hash_pairs(prompt_of_text[owner], hashes),
                        _prompt_hash_pairs(tokens.text[prompt_tokens] - n_texts, tokens.hashes[prompt_tokens]))
        buckets, signs = _codes_to_buckets(_fmix_array(hashes[found] + np.uint64(_SALT_OVERLAP)), self.dim)
        return owner[found], (owner[found], buckets, signs)

    def _dense_entries(self, counts: NDArray[np.int64], overlap_counts: NDArray[np.int64]) -> tuple:
        n_texts = len(counts)
        lengths = counts.astype(np.float64)
        share = np.divide(overlap_counts, lengths, out=np.zeros(n_texts), where=counts > 0)
        values = np.stack([np.log1p(lengths), share, (counts == 0).astype(np.float64)], axis=1).ravel()
        owner = np.repeat(np.arange(n_texts, dtype=np.int64), len(DENSE_FEATURES))
        return owner, np.tile(self.dense, n_texts), values

    def feature_names(self, texts: Iterable[str] | None = None) -> dict[int, tuple[str, float]]:
        """Return bucket -> (name, sign) for the features of *texts* (default: recent completions).

        A feature's weight is its sign times its bucket's weight. Overlap features are
        shown as ``"prompt:token"`` and bigrams as ``"first second"``.
        """
        names: dict[int, tuple[str, float]] = {}
        for text in self.recent if texts is None else texts:
            tokens = TOKEN_BYTES.findall(encode_text(text))[: self.max_tokens]
            hashes = [token_hash(token) for token in tokens]
            words = [token.decode("utf-8", "surrogatepass") for token in tokens]
            for word, h in zip(words, hashes):
                names.setdefault(*self._named(unigram_code(h), word))
                names.setdefault(*self._named(overlap_code(h), "prompt:" + word))
            if self.ngram_max >= 2:
                for i in range(len(hashes) - 1):
                    names.setdefault(*self._named(bigram_code(hashes[i], hashes[i + 1]), words[i] + " " + words[i + 1]))
        for bucket, name in zip(self.dense.tolist(), DENSE_FEATURES):
            names[bucket] = ("dense:" + name, 1.0)
        return names

    def _named(self, code: int, name: str) -> tuple[int, tuple[str, float]]:
        bucket, sign = bucket_and_sign(code, self.dim)
        return bucket, (name, sign)


def _prompt_hash_pairs(prompts: NDArray[np.int64], hashes: NDArray[np.uint64]) -> NDArray[np.void]:
    """Return each (prompt, token hash) as one 16-byte value, so that ``np.isin`` compares both exactly."""
    pairs = np.empty((len(hashes), 2), dtype=np.uint64)
    pairs[:, 0] = prompts
    pairs[:, 1] = hashes
    return pairs.view(np.dtype((np.void, 16))).ravel()


def _sort_by_runs(keys: NDArray[np.int64], key_offsets: NDArray[np.int64]) -> None:
    """Sort *keys* in place, :data:`SORT_RUN` examples at a time.

    Keys of a later example are larger than any key of an earlier one, so the runs
    sorted one by one make the whole array sorted. A run's keys fit in the CPU cache,
    which makes the runs faster to sort than the whole array at once.
    """
    bounds = key_offsets[::SORT_RUN].tolist()
    bounds.append(int(key_offsets[-1]))
    for start, end in zip(bounds[:-1], bounds[1:]):
        keys[start:end].sort()


def _hash_encoded(encoded: list[bytes], lowered: NDArray[np.bool_],
                  max_tokens: int) -> tuple[NDArray[np.uint64], NDArray[np.int64], NDArray[np.bool_]]:
    """Run :func:`feature_kernels.hash_tokens` on UTF-8 texts, and return hashes, token offsets and failed texts.

    ``lowered[t]`` marks text ``t`` as lower case already. The buffer is a fresh copy,
    which the tokeniser lower-cases in place.
    """
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    starts = np.zeros(len(encoded), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    data = np.frombuffer(bytearray(b"".join(encoded)), dtype=np.uint8)
    hashes = np.empty(len(data), dtype=np.uint64)
    token_offsets = np.empty(len(encoded) + 1, dtype=np.int64)
    failed = np.zeros(len(encoded), dtype=np.bool_)
    feature_kernels.hash_tokens(data, starts, starts + lengths, _BYTE_CODES, _lower_table(), lowered, max_tokens,
                                hashes, token_offsets, failed)
    return hashes, token_offsets, failed


_LOWER_TABLE: list[NDArray[np.int32]] = []


def _lower_table() -> NDArray[np.int32]:
    """Return ``str.lower`` of every code point below U+20000 (-1 where it is not one code point or depends on context).

    No code point from U+20000 up has a lower-case mapping. Built on first use (about 20 ms).
    """
    if not _LOWER_TABLE:
        lowered = [c.lower() for c in map(chr, range(feature_kernels.LOWER_TABLE_SIZE))]
        table = np.array([ord(c) if len(c) == 1 else -1 for c in lowered], dtype=np.int32)
        table[0x3A3] = -1  # capital sigma: final or medial small sigma, by its neighbours
        _LOWER_TABLE.append(table)
    return _LOWER_TABLE[0]


def _merge(entries: list[tuple], example_of_text: NDArray[np.int64], per_example: NDArray[np.int64],
           n_tokens: NDArray[np.int64], dim: int) -> ExampleFeatures:
    """Sum the (text, bucket, value) entries into one block per example."""
    owner = np.concatenate([e[0] for e in entries])
    buckets = np.concatenate([e[1] for e in entries])
    values = np.concatenate([e[2] for e in entries])
    n_examples = len(per_example)

    completion_offsets = np.zeros(n_examples + 1, dtype=np.int64)
    np.cumsum(per_example, out=completion_offsets[1:])
    example = example_of_text[owner]
    slot = owner - completion_offsets[example]

    # Unique buckets per example, ascending.
    keys, inverse = np.unique(example * dim + buckets, return_inverse=True)
    coordinate_example = keys // dim
    per_example_coordinates = np.bincount(coordinate_example, minlength=n_examples)
    coordinate_offsets = np.zeros(n_examples + 1, dtype=np.int64)
    np.cumsum(per_example_coordinates, out=coordinate_offsets[1:])
    block_offsets = np.zeros(n_examples + 1, dtype=np.int64)
    np.cumsum(per_example_coordinates * per_example, out=block_offsets[1:])

    position = block_offsets[example] + (inverse - coordinate_offsets[example]) * per_example[example] + slot
    block = np.bincount(position, weights=values, minlength=int(block_offsets[-1])).astype(np.float32)
    return ExampleFeatures(keys % dim, coordinate_offsets, block, block_offsets, completion_offsets, n_tokens)
