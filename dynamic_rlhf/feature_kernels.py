r"""The compiled form of :meth:`HashingFeaturiser.featurise_examples`.

With numba installed, the featuriser tokenises, hashes and merges a batch in the loops
below, one pass over each text's bytes, instead of the numpy pipeline in
:mod:`dynamic_rlhf.features`. Both give the same buckets and the same float32 block
bits, and the tests compare them on random text. Without numba the featuriser uses the
numpy pipeline. These functions still run as plain Python (slowly) on numpy uint64
scalars, whose products wrap modulo :math:`2^{64}` as numba's do, with a numpy
overflow warning that the tests silence.

The steps for a batch:

1. :func:`hash_tokens` cuts every text into tokens and computes each token's hash with
   Horner's rule, which equals the prefix-sum form of the numpy pipeline modulo
   :math:`2^{64}`.
2. :func:`emit_entries` puts the prompt tokens' keys in one open-addressing set, as
   ``np.isin`` compares them in the numpy pipeline. Then it writes one int64 sort key
   per unigram, bigram, overlap and dense entry of every completion, ordered by
   example, bucket, completion and entry kind.
3. The caller sorts the keys with numpy, and :func:`build_blocks` sums each
   (example, bucket, completion) run of keys into one float32 cell of the example's
   ``(buckets, completions)`` block.

Sums follow the numpy pipeline's order: the ±1 entries are integers, exact in float64
in any order, and the dense values are added last, in :data:`DENSE_FEATURES` order, as
``np.bincount`` adds them after every token entry.
"""

from __future__ import annotations

import numpy as np

from dynamic_rlhf.kernels import njit

_P = np.uint64(0x100000001B3)
_LENGTH_MULT = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX2 = np.uint64(0xC4CEB9FE1A85EC53)
_BIGRAM_MULT = np.uint64(0xD6E8FEB86659FD93)
_SALT_UNIGRAM = np.uint64(0x5555_0001)
_SALT_BIGRAM = np.uint64(0x5555_0002)
_SALT_OVERLAP = np.uint64(0x5555_0003)
_SHIFT = np.uint64(33)
_ONE = np.uint64(1)
_N_DENSE = 3
# Entry kinds in a sort key: 0 is +1, 1 is -1, then one kind per dense feature.
_DENSE_KIND = 2
KIND_BITS = 3
_KINDS = 1 << KIND_BITS


def sort_keys_fit(n_examples: int, dim: int, columns: int) -> bool:
    """Return True when the entry keys of *n_examples* with up to *columns* completions fit in 63 bits."""
    return (n_examples * dim) << (column_bits(columns) + KIND_BITS) < 1 << 63


def column_bits(columns: int) -> int:
    """Return the bits that hold a completion index below *columns* in an entry key."""
    return max(columns - 1, 0).bit_length()


@njit(cache=True)
def _fmix(h):  # type: ignore[no-untyped-def]
    h ^= h >> _SHIFT
    h *= _MIX1
    h ^= h >> _SHIFT
    h *= _MIX2
    return h ^ (h >> _SHIFT)


@njit(cache=True)
def hash_tokens(data, text_offsets, classes, lower, max_tokens, hashes, token_offsets):  # type: ignore[no-untyped-def]
    """Write the hashes of the first *max_tokens* tokens of every text; return the token count.

    Text ``t`` is ``data[text_offsets[t]:text_offsets[t + 1]]``. Its token hashes go to
    ``hashes[token_offsets[t]:token_offsets[t + 1]]``, so *hashes* needs one slot per byte.
    ``classes`` maps a byte to 0 (separator), 1 (word byte) or 2 (punctuation token).
    Each byte is hashed as ``lower[byte]``, which lower-cases ASCII letters.
    """
    n = 0
    token_offsets[0] = 0
    for t in range(len(text_offsets) - 1):
        i = text_offsets[t]
        end = text_offsets[t + 1]
        kept = 0
        while i < end and kept < max_tokens:
            kind = classes[data[i]]
            if kind == 0:
                i += 1
                continue
            start = i
            h = np.uint64(lower[data[i]]) + _ONE
            i += 1
            if kind == 1:
                while i < end and classes[data[i]] == 1:
                    h = h * _P + np.uint64(lower[data[i]]) + _ONE
                    i += 1
            hashes[n] = _fmix(h ^ (np.uint64(i - start) * _LENGTH_MULT))
            n += 1
            kept += 1
        token_offsets[t + 1] = n
    return n


@njit(cache=True)
def _prompt_key(h, prompt):  # type: ignore[no-untyped-def]
    return _fmix(h ^ (np.uint64(prompt + 1) * _P))


@njit(cache=True)
def _key_set(hashes, token_offsets, first_prompt_text):  # type: ignore[no-untyped-def]
    """Return an open-addressing set of every prompt token's key: (slots, whether key 0 is in it).

    A slot holding 0 is free, so key 0 is recorded by the flag instead of a slot.
    """
    first = token_offsets[first_prompt_text]
    count = token_offsets[len(token_offsets) - 1] - first
    size = 16
    while size < 2 * count:
        size *= 2
    keys = np.zeros(size, dtype=np.uint64)
    has_zero = False
    mask = np.uint64(size - 1)
    for t in range(first_prompt_text, len(token_offsets) - 1):
        for j in range(token_offsets[t], token_offsets[t + 1]):
            key = _prompt_key(hashes[j], t - first_prompt_text)
            if key == 0:
                has_zero = True
                continue
            slot = np.int64(key & mask)
            while keys[slot] != 0 and keys[slot] != key:
                slot = (slot + 1) & (size - 1)
            keys[slot] = key
    return keys, has_zero


@njit(cache=True)
def _in_key_set(keys, has_zero, key):  # type: ignore[no-untyped-def]
    if key == 0:
        return has_zero
    size = len(keys)
    slot = np.int64(key & np.uint64(size - 1))
    while keys[slot] != 0:
        if keys[slot] == key:
            return True
        slot = (slot + 1) & (size - 1)
    return False


@njit(cache=True)
def _bucket(code, dim, mask):  # type: ignore[no-untyped-def]
    """Return ``(code >> 1) % dim``; ``mask`` is ``dim - 1`` when ``dim`` is a power of two, else 0."""
    if mask:
        return np.int64((code >> _ONE) & np.uint64(mask))
    return np.int64((code >> _ONE) % np.uint64(dim))


@njit(cache=True)
def _entry(e, bucket, column, kind, dim, column_bits):  # type: ignore[no-untyped-def]
    return ((((e * dim + bucket) << column_bits) | column) << KIND_BITS) | kind


@njit(cache=True)
def emit_entries(hashes, token_offsets, per_example, prompt_of_example, dim, bigrams, dense, column_bits, keys,
                 overlap_counts):  # type: ignore[no-untyped-def]
    """Write one sort key per feature entry of every completion; return the number written.

    The key orders entries by example, bucket, completion and kind (see :func:`build_blocks`).
    ``overlap_counts[t]`` receives completion ``t``'s prompt-overlap count. ``keys``
    needs ``3 * tokens + 3`` slots per completion.
    """
    n_examples = len(per_example)
    n_texts = 0
    for e in range(n_examples):
        n_texts += per_example[e]
    prompt_keys, has_zero = _key_set(hashes, token_offsets, n_texts)
    mask = dim - 1 if dim & (dim - 1) == 0 else 0

    n = 0
    text = 0
    for e in range(n_examples):
        prompt = prompt_of_example[e]
        for c in range(per_example[e]):
            first = token_offsets[text]
            end = token_offsets[text + 1]
            for j in range(first, end):
                code = _fmix(hashes[j] + _SALT_UNIGRAM)
                keys[n] = _entry(e, _bucket(code, dim, mask), c, np.int64(code & _ONE), dim, column_bits)
                n += 1
            if bigrams:
                for j in range(first + 1, end):
                    code = _fmix(hashes[j - 1] * _BIGRAM_MULT + hashes[j] + _SALT_BIGRAM)
                    keys[n] = _entry(e, _bucket(code, dim, mask), c, np.int64(code & _ONE), dim, column_bits)
                    n += 1
            overlaps = 0
            for j in range(first, end):
                if _in_key_set(prompt_keys, has_zero, _prompt_key(hashes[j], prompt)):
                    code = _fmix(hashes[j] + _SALT_OVERLAP)
                    keys[n] = _entry(e, _bucket(code, dim, mask), c, np.int64(code & _ONE), dim, column_bits)
                    n += 1
                    overlaps += 1
            overlap_counts[text] = overlaps
            for feature in range(_N_DENSE):
                keys[n] = _entry(e, dense[feature], c, _DENSE_KIND + feature, dim, column_bits)
                n += 1
            text += 1
    return n


@njit(cache=True)
def build_blocks(keys, dim, column_bits, per_example, completion_offsets, dense_values):  # type: ignore[no-untyped-def]
    """Return (coordinates, coordinate_offsets, block, block_offsets) from sorted entry keys.

    Entries of one (example, bucket) are one row of the example's block. Within a
    completion's cell they arrive ±1 entries first, then the dense values in the order
    of ``DENSE_FEATURES``, which is the order in which ``np.bincount`` sums them in the
    numpy pipeline. ``dense_values[t, f]`` is dense feature ``f`` of completion ``t``.
    """
    n_examples = len(per_example)
    rows_per_example = np.zeros(n_examples, dtype=np.int64)
    previous = -1
    for r in range(len(keys)):
        row = keys[r] >> (column_bits + KIND_BITS)
        if row != previous:
            rows_per_example[row // dim] += 1
            previous = row
    coordinate_offsets = np.zeros(n_examples + 1, dtype=np.int64)
    block_offsets = np.zeros(n_examples + 1, dtype=np.int64)
    for e in range(n_examples):
        coordinate_offsets[e + 1] = coordinate_offsets[e] + rows_per_example[e]
        block_offsets[e + 1] = block_offsets[e] + rows_per_example[e] * per_example[e]
    coordinates = np.empty(coordinate_offsets[n_examples], dtype=np.int64)
    block = np.zeros(block_offsets[n_examples], dtype=np.float32)

    # One pass over the sorted keys; a cell's sum is written when its last entry has been added.
    row_shift = column_bits + KIND_BITS
    column_mask = (1 << column_bits) - 1
    n_rows = -1
    previous = -1
    e = 0
    cell = 0
    total = 0.0
    for r in range(len(keys)):
        key = keys[r]
        row = key >> row_shift
        if key >> KIND_BITS != previous:
            if previous >= 0:
                block[cell] = np.float32(total)
            previous = key >> KIND_BITS
            total = 0.0
            if n_rows < 0 or row != coordinates[n_rows] + e * dim:
                n_rows += 1
                e = row // dim
                coordinates[n_rows] = row - e * dim
            cell = block_offsets[e] + (n_rows - coordinate_offsets[e]) * per_example[e] + (previous & column_mask)
        kind = key & (_KINDS - 1)
        if kind < _DENSE_KIND:
            total += 1.0 - 2.0 * kind
        else:
            total += dense_values[completion_offsets[e] + (previous & column_mask), kind - _DENSE_KIND]
    if previous >= 0:
        block[cell] = np.float32(total)
    return coordinates, coordinate_offsets, block, block_offsets
