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
2. :func:`overlap_flags` finds the completion tokens whose hash is among the token hashes
   of their own prompt, as ``np.isin`` on (prompt, hash) pairs does in the numpy pipeline.
3. :func:`emit_entries` writes one int64 sort key per unigram, bigram, overlap and
   dense entry of every completion, ordered by example, bucket, completion and entry
   kind.
4. The caller sorts the keys with numpy, a run of examples at a time, and :func:`build_blocks` sums each
   (example, bucket, completion) run of keys into one cell of the example's
   ``(buckets, completions)`` block, in float64, then rounds the block to float32.

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
# A prompt's token set has at least this many slots per token.
_SET_LOAD = 8
_ONE = np.uint64(1)
_N_DENSE = 3
# A byte code holds the byte's class above this shift and its hashed value below it.
BYTE_CLASS_SHIFT = 9
_BYTE_VALUE_MASK = (1 << BYTE_CLASS_SHIFT) - 1
# Code points below this have a lower-case table entry; none from U+20000 up has a mapping.
LOWER_TABLE_SIZE = 0x20000
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
def hash_tokens(data, starts, ends, byte_codes, lower_table, lowered, max_tokens, hashes, token_offsets,
                failed):  # type: ignore[no-untyped-def]
    """Write the hashes of the first *max_tokens* tokens of every text; return the token count.

    Text ``t`` is the UTF-8 ``data[starts[t]:ends[t]]``. Its token hashes go to
    ``hashes[token_offsets[t]:token_offsets[t + 1]]``, so *hashes* needs one slot per byte.
    ``byte_codes[byte] >> BYTE_CLASS_SHIFT`` is the byte's class: 0 (separator), 1 (word
    byte) or 2 (punctuation token). The low bits are the value the byte adds to the hash,
    its ASCII lower case plus one.

    Unless ``lowered[t]`` says that text ``t`` is lower case already, each non-ASCII
    code point is lower-cased in place by :func:`_lower_code_point` before its bytes are
    hashed. A text with a code point that this cannot lower-case gets ``failed[t]`` set,
    and its hashes are not valid.

    The loop has no branch that depends on the text, except at non-ASCII lead bytes,
    since a mispredicted branch at every word's end would cost more than the byte's
    arithmetic. Each byte rewrites the open token's slot ``hashes[n]``, and ``n`` moves
    on when the token closes.
    """
    n = 0
    token_offsets[0] = 0
    for t in range(len(starts)):
        first = n
        h = np.uint64(0)
        length = np.uint64(0)
        previous_class = 0
        end = ends[t]
        for i in range(starts[t], end):
            if data[i] >= 0xC0 and not lowered[t]:
                failed[t] |= not _lower_code_point(data, i, lower_table)
            code = byte_codes[data[i]]
            byte_class = code >> BYTE_CLASS_SHIFT
            value = np.uint64(code & _BYTE_VALUE_MASK)
            extend = (byte_class == 1) & (previous_class == 1)
            # The token open before this byte closes unless this byte extends it.
            n += (previous_class != 0) & (not extend)
            if n - first == max_tokens:
                break
            h = h * _P + value if extend else value
            length = length + _ONE if extend else _ONE
            hashes[n] = h ^ (length * _LENGTH_MULT)
            previous_class = byte_class
        else:
            n += previous_class != 0
        token_offsets[t + 1] = n
    for j in range(n):
        hashes[j] = _fmix(hashes[j])
    return n


@njit(cache=True)
def _lower_code_point(data, position, table):  # type: ignore[no-untyped-def]
    """Lower-case the code point whose UTF-8 starts at *position*, in place, and return False when it cannot.

    The code point ``c`` becomes ``table[c]`` (itself from ``len(table)`` up). It cannot
    when its entry is negative or its lower case has another UTF-8 length.
    """
    # Continuation bytes carry 6 bits each. int64 keeps the shifts exact when run uncompiled.
    byte = np.int64(data[position])
    if byte < 0xE0:
        code, width = ((byte & 0x1F) << 6) | _low_bits(data, position + 1), 2
    elif byte < 0xF0:
        code, width = ((byte & 0x0F) << 12) | (_low_bits(data, position + 1) << 6) | _low_bits(data, position + 2), 3
    else:
        code = ((byte & 0x07) << 18) | (_low_bits(data, position + 1) << 12) | (_low_bits(data, position + 2) << 6)
        code, width = code | _low_bits(data, position + 3), 4
    if code >= len(table):
        return True
    lowered = np.int64(table[code])
    if lowered < 0 or _utf8_width(lowered) != width:
        return False
    if lowered != code:
        _write_utf8(data, position, lowered)
    return True


@njit(cache=True)
def _utf8_width(code):  # type: ignore[no-untyped-def]
    if code < 0x80:
        return 1
    if code < 0x800:
        return 2
    return 3 if code < 0x10000 else 4


@njit(cache=True)
def _low_bits(data, position):  # type: ignore[no-untyped-def]
    return np.int64(data[position]) & 0x3F


@njit(cache=True)
def _write_utf8(data, position, code):  # type: ignore[no-untyped-def]
    """Write the UTF-8 bytes of code point *code* at *position*; return the position after them."""
    if code < 0x80:
        data[position] = code
        return position + 1
    if code < 0x800:
        data[position] = 0xC0 | (code >> 6)
        data[position + 1] = 0x80 | (code & 0x3F)
        return position + 2
    if code < 0x10000:
        data[position] = 0xE0 | (code >> 12)
        data[position + 1] = 0x80 | ((code >> 6) & 0x3F)
        data[position + 2] = 0x80 | (code & 0x3F)
        return position + 3
    data[position] = 0xF0 | (code >> 18)
    data[position + 1] = 0x80 | ((code >> 12) & 0x3F)
    data[position + 2] = 0x80 | ((code >> 6) & 0x3F)
    data[position + 3] = 0x80 | (code & 0x3F)
    return position + 4


@njit(cache=True)
def overlap_flags(hashes, token_offsets, per_example, prompt_of_example):  # type: ignore[no-untyped-def]
    """Return, per completion token, whether its hash is among the token hashes of its example's prompt.

    The token hashes of the completions come first in *hashes*, in text order, then those
    of every distinct prompt. Each prompt's hashes go into one small open-addressing set,
    which answers the completions of all examples that share the prompt. A slot is taken
    when its stamp is the prompt's number plus one, so the set is never cleared.
    """
    n_examples = len(per_example)
    text_starts = np.empty(n_examples + 1, dtype=np.int64)
    text_starts[0] = 0
    for e in range(n_examples):
        text_starts[e + 1] = text_starts[e] + per_example[e]
    n_texts = text_starts[n_examples]
    n_prompts = len(token_offsets) - 1 - n_texts
    found = np.zeros(token_offsets[n_texts], dtype=np.bool_)

    # Examples of each prompt, as linked lists in stream order.
    first = np.full(n_prompts, -1, dtype=np.int64)
    following = np.full(n_examples, -1, dtype=np.int64)
    for e in range(n_examples - 1, -1, -1):
        following[e] = first[prompt_of_example[e]]
        first[prompt_of_example[e]] = e

    largest = 1
    for p in range(n_prompts):
        largest = max(largest, token_offsets[n_texts + p + 1] - token_offsets[n_texts + p])
    # Slot i contains a stamp in slots[i, 0] and a hash in slots[i, 1], in one cache line. A set's
    # size is the smallest power of two from 16 and from _SET_LOAD times its tokens, so it fits here.
    slots = np.zeros((2 * _SET_LOAD * largest + 16, 2), dtype=np.uint64)

    for p in range(n_prompts):
        size = 16
        while size < _SET_LOAD * (token_offsets[n_texts + p + 1] - token_offsets[n_texts + p]):
            size *= 2
        mask = np.uint64(size - 1)
        stamp = np.uint64(p + 1)
        for j in range(token_offsets[n_texts + p], token_offsets[n_texts + p + 1]):
            slot = _probe(slots, stamp, hashes[j], mask)
            slots[slot, 0] = stamp
            slots[slot, 1] = hashes[j]

        e = first[p]
        while e >= 0:
            for j in range(token_offsets[text_starts[e]], token_offsets[text_starts[e + 1]]):
                found[j] = slots[_probe(slots, stamp, hashes[j], mask), 0] == stamp
            e = following[e]
    return found


@njit(cache=True)
def _probe(slots, stamp, key, mask):  # type: ignore[no-untyped-def]
    """Return the slot of *key* in the set stamped *stamp*, or the free slot where it would go (linear probing).

    In a sparse set both outcomes, found and free, usually leave the loop at once, so its
    branch is predictable.
    """
    slot = np.int64(key & mask)
    while (slots[slot, 0] == stamp) & (slots[slot, 1] != key):
        slot = (slot + 1) & np.int64(mask)
    return slot


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
                 key_offsets, overlap_counts):  # type: ignore[no-untyped-def]
    """Write one sort key per feature entry of every completion; return the number written.

    The key orders entries by example, bucket, completion and kind (see :func:`build_blocks`).
    Example ``e``'s keys go to ``keys[key_offsets[e]:key_offsets[e + 1]]``, so sorting
    each run of whole examples sorts all keys. ``overlap_counts[t]`` receives completion
    ``t``'s prompt-overlap count. ``keys`` needs ``3 * tokens + 3`` slots per completion.
    """
    n_examples = len(per_example)
    n_texts = 0
    for e in range(n_examples):
        n_texts += per_example[e]
    in_prompt = overlap_flags(hashes, token_offsets, per_example, prompt_of_example)
    mask = dim - 1 if dim & (dim - 1) == 0 else 0

    n = 0
    text = 0
    key_offsets[0] = 0
    for e in range(n_examples):
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
                if in_prompt[j]:
                    code = _fmix(hashes[j] + _SALT_OVERLAP)
                    keys[n] = _entry(e, _bucket(code, dim, mask), c, np.int64(code & _ONE), dim, column_bits)
                    n += 1
                    overlaps += 1
            overlap_counts[text] = overlaps
            for feature in range(_N_DENSE):
                keys[n] = _entry(e, dense[feature], c, _DENSE_KIND + feature, dim, column_bits)
                n += 1
            text += 1
        key_offsets[e + 1] = n
    return n


@njit(cache=True)
def build_blocks(keys, key_offsets, dim, column_bits, per_example, completion_offsets, dense_values):  # type: ignore[no-untyped-def]
    """Return (coordinates, coordinate_offsets, block, block_offsets) from sorted entry keys.

    Example ``e``'s keys are ``keys[key_offsets[e]:key_offsets[e + 1]]``. Entries of one
    bucket are one row of the example's block. Within a completion's cell they arrive ±1
    entries first, then the dense values in the order of ``DENSE_FEATURES``, which is
    the order in which ``np.bincount`` sums them in the numpy pipeline.
    ``dense_values[t, f]`` is dense feature ``f`` of completion ``t``.
    """
    n_examples = len(per_example)
    row_shift = column_bits + KIND_BITS
    coordinate_offsets = np.zeros(n_examples + 1, dtype=np.int64)
    block_offsets = np.zeros(n_examples + 1, dtype=np.int64)
    largest = 0
    for e in range(n_examples):
        rows = 0
        previous = -1
        for r in range(key_offsets[e], key_offsets[e + 1]):
            row = keys[r] >> row_shift
            rows += row != previous
            previous = row
        coordinate_offsets[e + 1] = coordinate_offsets[e] + rows
        block_offsets[e + 1] = block_offsets[e] + rows * per_example[e]
        largest = max(largest, rows * per_example[e])
    coordinates = np.empty(coordinate_offsets[n_examples], dtype=np.int64)
    block = np.empty(block_offsets[n_examples], dtype=np.float32)
    sums = np.empty(largest, dtype=np.float64)

    # Every key adds its value to its cell in a float64 scratch block, which stays in the cache.
    column_mask = (1 << column_bits) - 1
    for e in range(n_examples):
        columns = per_example[e]
        cells = block_offsets[e + 1] - block_offsets[e]
        sums[:cells] = 0.0
        row = coordinate_offsets[e] - 1
        previous = -1
        for r in range(key_offsets[e], key_offsets[e + 1]):
            key = keys[r]
            bucket = (key >> row_shift) - e * dim
            row += bucket != previous
            previous = bucket
            coordinates[row] = bucket
            column = (key >> KIND_BITS) & column_mask
            kind = key & (_KINDS - 1)
            dense = dense_values[completion_offsets[e] + column, max(kind - _DENSE_KIND, 0)]
            sums[(row - coordinate_offsets[e]) * columns + column] += 1.0 - 2.0 * kind if kind < _DENSE_KIND else dense
        for i in range(cells):
            block[block_offsets[e] + i] = np.float32(sums[i])
    return coordinates, coordinate_offsets, block, block_offsets
