r"""Online bagging weights derived from an example's id.

Online bagging (Oza and Russell, 2001) approximates bootstrap resampling of
a stream: head :math:`k` learns each example :math:`w_k \sim \mathrm{Poisson}(1)`
times. Here the draws are a pure function of the example id: BLAKE2b of the
id gives 32-bit uniforms, mapped through the Poisson(1) inverse CDF. The
same event therefore gets the same draws in every process, on every host
and on every replay, which makes a replayed stream give a bit-identical
model. The draws cost one hash per example instead of seeding a random
number generator.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import struct
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

_UINT32_RANGE = float(2**32)
_MAX_DRAW = 12
_HEADS_PER_DIGEST = 16

# P(X <= k) for X ~ Poisson(1), scaled to the 32-bit range.
_CDF = np.array(
    [sum(math.exp(-1.0) / math.factorial(j) for j in range(k + 1)) * _UINT32_RANGE for k in range(_MAX_DRAW)],
    dtype=np.float64,
).astype(np.uint64)
_CDF_LIST: list[int] = _CDF.tolist()


def _digest(example_id: str, block: int = 0) -> bytes:
    """Return the 64-byte BLAKE2b digest whose 32-bit words are the uniforms of heads ``block..block+15``."""
    return hashlib.blake2b(example_id.encode("utf-8"), digest_size=64, salt=block.to_bytes(8, "little"),
                           person=b"drlhf-bag").digest()


# The hash state after the parameters of block 0; copying it is cheaper than a new hash per id.
_BLOCK_ZERO = hashlib.blake2b(digest_size=64, salt=bytes(8), person=b"drlhf-bag")


def _digest_block_zero(example_id: str) -> bytes:
    """Return ``_digest(example_id)``."""
    state = _BLOCK_ZERO.copy()
    state.update(example_id.encode("utf-8"))
    return state.digest()


def poisson_draws(example_id: str, heads: int) -> list[int]:
    """Return the same draws as :func:`poisson_weights` as a list of ints.

    >>> poisson_draws("event-1", 4) == poisson_weights("event-1", 4).tolist()
    True
    """
    if heads <= 0:
        return []
    if heads > _HEADS_PER_DIGEST:
        return [int(k) for k in poisson_weights(example_id, heads)]
    return [bisect.bisect_right(_CDF_LIST, word) for word in struct.unpack_from(f"<{heads}I", _digest(example_id))]


def poisson_draw_matrix(example_ids: Sequence[str], heads: int) -> NDArray[np.float64]:
    """Return ``(len(example_ids), heads)`` draws, row ``i`` equal to ``poisson_draws(example_ids[i], heads)``.

    >>> poisson_draw_matrix(["event-1"], 4)[0].tolist() == poisson_weights("event-1", 4).tolist()
    True
    """
    if heads > _HEADS_PER_DIGEST:
        return np.array([poisson_weights(example_id, heads) for example_id in example_ids]).reshape(-1, heads)
    digests = b"".join(map(_digest_block_zero, example_ids))
    words = np.frombuffer(digests, dtype="<u4").reshape(len(example_ids), _HEADS_PER_DIGEST)[:, :heads]
    return np.searchsorted(_CDF, words, side="right").astype(np.float64)


def poisson_weights(example_id: str, heads: int) -> NDArray[np.float64]:
    """Return ``heads`` Poisson(1) draws determined by *example_id*.

    >>> poisson_weights("event-1", 4).tolist() == poisson_weights("event-1", 4).tolist()
    True
    """
    if heads <= 0:
        return np.zeros(0, dtype=np.float64)

    chunks = [_digest(example_id, block) for block in range(0, heads, _HEADS_PER_DIGEST)]
    # Head k always uses word k, so adding heads leaves earlier heads' draws unchanged.
    uniforms = np.frombuffer(b"".join(chunks) if len(chunks) > 1 else chunks[0], dtype="<u4")[:heads]
    return np.searchsorted(_CDF, uniforms, side="right").astype(np.float64)
