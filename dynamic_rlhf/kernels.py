r"""The learner's inner loops over sparse rows, compiled with numba when it is installed.

Every function here is plain Python over numpy arrays. With numba installed they are
compiled on first use (and cached on disk). Without numba they run as written, slower,
and give the same bits. Both hold because the arithmetic is spelled out. Sums run in
float64 in a fixed order and never in BLAS, whose blocking and FMA use differ between
CPUs, so a saved model scores identically on every host. Every value stored in a
float32 array is rounded once per operation, as float32 numpy arithmetic does.

:mod:`dynamic_rlhf.learn_loop` builds the learner's chunk loop from these pieces.
"""

from __future__ import annotations

import math

import numpy as np

try:
    from numba import njit
except ImportError:  # numba is optional: the same functions run uncompiled.
    COMPILED = False

    def njit(*args, **kwargs):  # type: ignore[no-redef, no-untyped-def]
        if args and callable(args[0]):
            return args[0]
        return lambda function: function
else:
    COMPILED = True

MIN_SCALE = 1e-20
# The optimiser's table is (dim, 2, heads): a row's weights and accumulators are adjacent in memory.
# Rows are handed out in the order buckets are first updated, and rows[bucket] is the row plus one (0: none).
WEIGHT, ACCUMULATOR = 0, 1

# Indices into the float64 state vectors passed to the kernels.
METRIC_FIELDS = ("pairs", "loss_sum", "strict", "correct", "margin_sum", "recent_loss", "recent_accuracy")
MOMENT_FIELDS = ("count", "mean_x", "mean_y", "var_x", "var_y", "cov_xy")
ANNOTATOR_PARAMETERS = ("prior_agree", "prior_disagree", "min_weight", "full_weight_reliability", "confidence")


@njit(cache=True)
def _f32(x):  # type: ignore[no-untyped-def]
    return np.float64(np.float32(x))


@njit(cache=True)
def block_rewards(coordinates, block, columns, rows, table, scale, out):  # type: ignore[no-untyped-def]
    """Write the rewards ``out[c, k]`` of the block's columns under every head.

    A bucket without a row has zero weights. Skipping it leaves every sum as it was,
    because adding a zero product to a sum that started at +0.0 cannot change it.
    """
    heads = table.shape[2]
    for c in range(columns):
        for k in range(heads):
            out[c, k] = 0.0
    for j in range(len(coordinates)):
        row = rows[coordinates[j]] - 1
        if row < 0:
            continue
        weights = table[row, WEIGHT]
        for c in range(columns):
            x = np.float64(block[j * columns + c])
            if x != 0.0:
                _add_scaled(out[c], x, weights)
    for c in range(columns):
        for k in range(heads):
            out[c, k] *= scale


@njit(cache=True)
def _pair_rewards(example_rows, count, features, table, scale, out):  # type: ignore[no-untyped-def]
    """Write the rewards ``out[c, k]`` of a pair's two columns, as :func:`block_rewards` does, from its rows."""
    heads = table.shape[2]
    for c in range(2):
        for k in range(heads):
            out[c, k] = 0.0
    for j in range(count):
        row = example_rows[j]
        if row < 0:
            continue
        weights = table[row, WEIGHT]
        for c in range(2):
            x = np.float64(features[j * 2 + c])
            if x != 0.0:
                _add_scaled(out[c], x, weights)
    for c in range(2):
        for k in range(heads):
            out[c, k] *= scale


@njit(cache=True)
def _add_scaled(out, x, weights):  # type: ignore[no-untyped-def]
    # One loop over the heads, which the compiler turns into vector instructions.
    for k in range(len(out)):
        out[k] += x * np.float64(weights[k])


@njit(cache=True)
def block_gradient(block, columns, coefficients, out):  # type: ignore[no-untyped-def]
    """Write ``out[j, k] = sum_c block[j, c] * coefficients[k, c]``, rounded to float32."""
    heads = coefficients.shape[0]
    rows = len(block) // columns
    for j in range(rows):
        for k in range(heads):
            total = 0.0
            for c in range(columns):
                total += np.float64(block[j * columns + c]) * coefficients[k, c]
            out[j, k] = _f32(total)


@njit(cache=True)
def adagrad_rows(coordinates, gradient, rows, table, n_rows, step, delta):  # type: ignore[no-untyped-def]
    """Take one AdaGrad step on the buckets ``coordinates`` with float32 ``gradient[j, k]``; return the rows used.

    ``step`` is the learning rate divided by the decay scale, rounded to float32.
    """
    heads = table.shape[2]
    for j in range(len(coordinates)):
        row, n_rows = claim_row(rows, coordinates[j], n_rows)
        for k in range(heads):
            _adagrad(table, row, k, np.float64(gradient[j, k]), step, delta)
    return n_rows


@njit(cache=True)
def claim_row(rows, bucket, n_rows):  # type: ignore[no-untyped-def]
    """Return the table row of *bucket*, giving it the next free row on its first update, and the rows used."""
    row = rows[bucket] - 1
    if row < 0:
        row = n_rows
        rows[bucket] = n_rows + 1
        n_rows += 1
    return row, n_rows


@njit(cache=True)
def _adagrad(table, row, k, g, step, delta):  # type: ignore[no-untyped-def]
    # G += g^2; w -= step * g / (sqrt(G) + delta), each operation rounded to float32.
    a = _f32(np.float64(table[row, ACCUMULATOR, k]) + _f32(g * g))
    table[row, ACCUMULATOR, k] = a
    denominator = _f32(_f32(math.sqrt(a)) + delta)
    table[row, WEIGHT, k] = _f32(np.float64(table[row, WEIGHT, k]) - _f32(_f32(g / denominator) * step))


@njit(cache=True, error_model="numpy")
def _adagrad_heads(weights, accumulators, difference, coefficients, step, delta):  # type: ignore[no-untyped-def]
    """Take :func:`_adagrad`'s step on one bucket for every head, with gradient ``difference * coefficients[k]``.

    Every operand is a float32 and every operation is a float32 operation, so the
    compiler can use vector instructions across the heads. The bits equal
    :func:`_adagrad`'s: for ``+``, ``-``, ``*``, ``/`` and ``sqrt`` of float32
    operands, the float64 result rounded to float32 is the correctly rounded float32
    result, because float64 carries more than twice float32's 24 significand bits plus 2.
    The numpy error model only drops the zero-division check, and ``sqrt(a) + delta`` is
    at least ``delta``, which is > 0.
    """
    for k in range(len(weights)):
        g = difference * coefficients[k]
        a = accumulators[k] + g * g
        accumulators[k] = a
        weights[k] = weights[k] - (g / (np.sqrt(a) + delta)) * step


@njit(cache=True)
def fold_scale(table, n_rows, scale):  # type: ignore[no-untyped-def]
    """Multiply every stored weight by ``scale`` (the rare pass over the used rows of the lazy decay)."""
    factor = np.float64(np.float32(scale))
    for row in range(n_rows):
        for k in range(table.shape[2]):
            if table[row, WEIGHT, k] != 0.0:
                table[row, WEIGHT, k] = _f32(np.float64(table[row, WEIGHT, k]) * factor)


@njit(cache=True)
def annotator_weight(counts, index, parameters):  # type: ignore[no-untyped-def]
    """Return the label weight of annotator row ``index`` (1.0 for ``index < 0``)."""
    if index < 0:
        return 1.0
    prior_agree, prior_disagree, min_weight, full = parameters[0], parameters[1], parameters[2], parameters[3]
    reliability = (counts[index, 0] + prior_agree) / (counts[index, 1] + prior_agree + prior_disagree)
    scaled = (reliability - 0.5) / (full - 0.5)
    return min_weight + (1.0 - min_weight) * min(1.0, max(0.0, scaled))


@njit(cache=True)
def observe_annotator(counts, index, probability, confidence):  # type: ignore[no-untyped-def]
    """Count one strict label of annotator row ``index`` when the model was confident."""
    if index < 0 or 1.0 - confidence < probability < confidence:
        return
    counts[index, 1] += 1.0
    if probability >= confidence:
        counts[index, 0] += 1.0


@njit(cache=True)
def update_metrics(metrics, window, pairs, loss_sum, strict, correct, margin_sum):  # type: ignore[no-untyped-def]
    """Add one example's comparisons to the vector ``METRIC_FIELDS``, as ``ProgressiveMetrics.update`` does."""
    if pairs:
        metrics[0] += pairs
        metrics[1] += loss_sum
        a = pairs / min(metrics[0], window)
        metrics[5] += min(1.0, a) * (loss_sum / pairs - metrics[5])
    if strict:
        metrics[2] += strict
        metrics[3] += correct
        metrics[4] += margin_sum
        a = strict / min(metrics[2], window)
        metrics[6] += min(1.0, a) * (correct / strict - metrics[6])


@njit(cache=True)
def update_moments(moments, window, x, y):  # type: ignore[no-untyped-def]
    """Add one observation to the vector ``MOMENT_FIELDS``, as ``RunningMoments.update`` does."""
    moments[0] += 1.0
    a = 1.0 / min(moments[0], window)
    dx = x - moments[1]
    dy = y - moments[2]
    moments[1] += a * dx
    moments[2] += a * dy
    moments[3] = (1.0 - a) * (moments[3] + a * dx * dx)
    moments[4] = (1.0 - a) * (moments[4] + a * dy * dy)
    moments[5] = (1.0 - a) * (moments[5] + a * dx * dy)


@njit(cache=True)
def _sigmoid(x):  # type: ignore[no-untyped-def]
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    tail = math.exp(x)
    return tail / (1.0 + tail)


@njit(cache=True)
def _davidson(d, nu):  # type: ignore[no-untyped-def]
    """Return the Davidson tie loss and its derivative by ``d`` (see ``losses.davidson_tie``)."""
    a = 0.5 * abs(d)
    e1 = math.exp(-a)
    e2 = e1 * e1
    denominator = 1.0 + e2 + nu * e1
    sign = 0.0
    if d > 0.0:
        sign = 1.0
    elif d < 0.0:
        sign = -1.0
    return a + math.log(denominator) - math.log(nu), sign * 0.5 * (1.0 - e2) / denominator
