r"""The compiled loop that learns the active examples of a chunk in stream order.

One call of :func:`learn_examples` learns every example of a chunk that has at least
one comparison. Each example is predicted before it is learned, as ``learn_one`` does.

* A single pair of two completions (strict, tie or both-bad tie, without reward
  centring) takes :func:`_learn_pair`, whose step is vectorised across heads.
* Any other example (a ranking, a set of ratings, several comparisons, or any example
  under reward centring) takes :func:`_learn_general`. It evaluates the objective of
  :mod:`dynamic_rlhf.objective` in scalar loops over heads, completions and comparisons,
  with the C library's ``exp`` and ``log1p``, so the compiled and the
  uncompiled loop give the same bits, as the pair path does.

The steps of both paths for each example, in order:

1. label weight: the example weight times the annotator's current reliability weight;
   head ``k`` weighs the example by that times its Poisson(1) draw (``draws[e, 0] = 1``);
2. rewards of every completion for every head, before the update;
3. progressive metrics of head 0 (loss, accuracy, margin), annotator agreement for each
   strict comparison, and reward/length moments for each completion (see
   :mod:`dynamic_rlhf.running`, :mod:`dynamic_rlhf.annotators`);
4. the lazy decay (``scale *= decay``) and one AdaGrad step on the example's buckets
   (see :mod:`dynamic_rlhf.optim`), with the decay folded into the weights when the
   scale nears float underflow.

Comparisons of a general example are rows of ``comparisons``:
``(first, second, kind, margin, weight)`` with the kind codes of
:mod:`dynamic_rlhf.feedback` (0 strict, 1 tie, 2 both-bad tie).
"""

from __future__ import annotations

import math

import numpy as np

from dynamic_rlhf.kernels import (
    ACCUMULATOR,
    MIN_SCALE,
    WEIGHT,
    _adagrad,
    _adagrad_heads,
    _davidson,
    _f32,
    _pair_rewards,
    _sigmoid,
    adagrad_rows,
    annotator_weight,
    block_gradient,
    block_rewards,
    fold_scale,
    njit,
    observe_annotator,
    update_metrics,
    update_moments,
)

_STRICT, _TIE_BAD = 0, 2


@njit(cache=True)
def learn_examples(coordinates, coordinate_offsets, block, block_offsets, completion_offsets, n_tokens, single,
                   kinds, margins, weights, comparison_offsets, comparisons, ranked, annotators, draws, rows, table,
                   n_rows, scale, decay, learning_rate, delta, tie_nu, tie_bad_strength, centring, counts,
                   annotator_parameters, metrics, metrics_window, moments, moments_window, live, out_pairs,
                   out_loss, out_correct):  # type: ignore[no-untyped-def]
    """Learn the examples in order, and return the new decay scale and the number of table rows used.

    Example ``e`` is row ``e`` of the per-example arrays. ``single[e]`` marks a single
    pair, learned from ``kinds[e]``, ``margins[e]`` and ``weights[e]`` (example weight
    times comparison weight). Any other example is learned from its comparisons
    ``comparisons[comparison_offsets[e]:comparison_offsets[e + 1]]`` with example weight
    ``weights[e]``, and with the Plackett-Luce likelihood of its completions in listed
    order when ``ranked[e]``. ``out_pairs``, ``out_loss`` and ``out_correct`` receive each
    example's comparison count, head-0 loss before the update and correct strict comparisons.
    """
    heads = table.shape[2]
    columns = 2
    largest = 0
    for e in range(len(single)):
        largest = max(largest, coordinate_offsets[e + 1] - coordinate_offsets[e])
        columns = max(columns, completion_offsets[e + 1] - completion_offsets[e])
    example_rows = np.empty(largest, dtype=np.int64)
    rewards = np.zeros((columns, heads))
    coefficients = np.zeros((heads, columns))
    pair_coefficients = np.zeros((2, heads))
    strict_coefficient = np.zeros(heads, dtype=np.float32)
    gradient = np.empty((largest, heads), dtype=np.float32)
    head_weights = np.empty(heads)

    for e in range(len(single)):
        label_weight = weights[e] * annotator_weight(counts, annotators[e], annotator_parameters)
        for k in range(heads):
            head_weights[k] = label_weight * draws[e, k]
        if single[e]:
            scale, n_rows = _learn_pair(e, coordinates, coordinate_offsets, block, block_offsets, completion_offsets,
                                        n_tokens, kinds[e], margins[e], head_weights, annotators[e], rows, table,
                                        n_rows, scale, decay, learning_rate, delta, tie_nu, tie_bad_strength, counts,
                                        annotator_parameters, metrics, metrics_window, moments, moments_window, live,
                                        example_rows, rewards, pair_coefficients, strict_coefficient, out_loss,
                                        out_correct)
            out_pairs[e] = 1
        else:
            scale, n_rows = _learn_general(e, coordinates, coordinate_offsets, block, block_offsets,
                                           completion_offsets, n_tokens, comparison_offsets, comparisons, ranked[e],
                                           head_weights, annotators[e], rows, table, n_rows, scale, decay,
                                           learning_rate, delta, tie_nu, tie_bad_strength, centring, counts,
                                           annotator_parameters, metrics, metrics_window, moments, moments_window,
                                           live, rewards, coefficients, gradient, out_pairs, out_loss, out_correct)
        if scale < MIN_SCALE:
            fold_scale(table, n_rows, scale)
            scale = 1.0
    return scale, n_rows


@njit(cache=True)
def _learn_pair(e, coordinates, coordinate_offsets, block, block_offsets, completion_offsets, n_tokens, kind, margin,
                head_weights, annotator, rows, table, n_rows, scale, decay, learning_rate, delta, tie_nu,
                tie_bad_strength, counts, annotator_parameters, metrics, metrics_window, moments, moments_window, live,
                example_rows, rewards, pair_coefficients, strict_coefficient, out_loss,
                out_correct):  # type: ignore[no-untyped-def]
    """Learn single pair ``e`` (strict, tie or both-bad tie), and return the new scale and the rows used."""
    heads = table.shape[2]
    buckets = coordinates[coordinate_offsets[e]:coordinate_offsets[e + 1]]
    features = block[block_offsets[e]:block_offsets[e + 1]]

    # The rows of all buckets first: independent loads that the CPU overlaps.
    for j in range(len(buckets)):
        example_rows[j] = rows[buckets[j]] - 1
    _pair_rewards(example_rows, len(buckets), features, table, scale, rewards)

    # d objective / d reward of each completion, per head and times the head weight.
    first_coefficient = pair_coefficients[0]
    second_coefficient = pair_coefficients[1]
    for k in range(heads):
        head_weight = head_weights[k]
        d = rewards[0, k] - rewards[1, k]
        if kind == 0:
            # Bradley-Terry: sigma(d - m) - 1 = -sigma(m - d), on the side that cannot overflow.
            gradient = -_sigmoid(margin - d)
            first_coefficient[k] = _f32(gradient * head_weight)
            second_coefficient[k] = -first_coefficient[k]
        else:
            _, gradient = _davidson(d, tie_nu)
            first = gradient
            second = -gradient
            if kind == 2 and tie_bad_strength > 0.0:
                first += tie_bad_strength * _sigmoid(rewards[0, k])
                second += tie_bad_strength * _sigmoid(rewards[1, k])
            first_coefficient[k] = first * head_weight
            second_coefficient[k] = second * head_weight

    # Progressive figures of head 0: accuracy and margin count strict pairs only.
    d0 = rewards[0, 0] - rewards[1, 0]
    if kind == 0:
        z0 = d0 - margin
        loss = math.log1p(math.exp(-abs(z0))) + max(-z0, 0.0)
        correct = 1 if d0 > 0.0 else 0
        update_metrics(metrics, metrics_window, 1, loss, 1, correct, d0)
    else:
        loss, _ = _davidson(d0, tie_nu)
        correct = 0
        update_metrics(metrics, metrics_window, 1, loss, 0, 0, 0.0)
    out_loss[e] = loss
    out_correct[e] = correct
    if live:
        if kind == 0:
            observe_annotator(counts, annotator, 0.5 * (1.0 + math.tanh(0.5 * d0)), annotator_parameters[4])
        first_completion = completion_offsets[e]
        update_moments(moments, moments_window, rewards[0, 0], math.log1p(n_tokens[first_completion]))
        update_moments(moments, moments_window, rewards[1, 0], math.log1p(n_tokens[first_completion + 1]))

    # Lazy decay, then the AdaGrad step on the pair's buckets.
    scale *= decay
    step = _f32(learning_rate / scale)
    step32 = np.float32(step)
    delta32 = np.float32(delta)
    for k in range(heads):
        strict_coefficient[k] = np.float32(first_coefficient[k])
    for j in range(len(buckets)):
        row = example_rows[j]
        if row < 0:
            # Buckets of one example are unique, so none is claimed twice here.
            row = n_rows
            rows[buckets[j]] = n_rows + 1
            n_rows += 1
        x_first = np.float64(features[2 * j])
        x_second = np.float64(features[2 * j + 1])
        if kind == 0:
            difference = np.float32(x_first - x_second)
            if difference == 0.0:
                continue  # a zero gradient leaves the accumulator and the weight unchanged
            _adagrad_heads(table[row, WEIGHT], table[row, ACCUMULATOR], difference, strict_coefficient, step32,
                           delta32)
        else:
            for k in range(heads):
                g = _f32(x_first * first_coefficient[k] + x_second * second_coefficient[k])
                if g != 0.0:
                    _adagrad(table, row, k, g, step, delta)
    return scale, n_rows


@njit(cache=True)
def _learn_general(e, coordinates, coordinate_offsets, block, block_offsets, completion_offsets, n_tokens,
                   comparison_offsets, comparisons, ranked, head_weights, annotator, rows, table, n_rows, scale, decay,
                   learning_rate, delta, tie_nu, tie_bad_strength, centring, counts, annotator_parameters, metrics,
                   metrics_window, moments, moments_window, live, rewards, coefficients, gradient, out_pairs,
                   out_loss, out_correct):  # type: ignore[no-untyped-def]
    """Learn example ``e`` from its comparisons or its ranking, and return the new scale and the rows used."""
    heads = table.shape[2]
    n = completion_offsets[e + 1] - completion_offsets[e]
    buckets = coordinates[coordinate_offsets[e]:coordinate_offsets[e + 1]]
    features = block[block_offsets[e]:block_offsets[e + 1]]
    first_comparison = comparison_offsets[e]
    n_comparisons = comparison_offsets[e + 1] - first_comparison

    block_rewards(buckets, features, n, rows, table, scale, rewards)
    _general_coefficients(rewards, n, comparisons, first_comparison, n_comparisons, ranked, head_weights, tie_nu,
                          tie_bad_strength, centring, coefficients)

    # Progressive figures of head 0: the unweighted likelihood of each comparison.
    loss = 0.0
    n_strict = 0
    correct = 0
    margin_sum = 0.0
    for p in range(first_comparison, first_comparison + n_comparisons):
        a, b, kind, margin = np.int64(comparisons[p, 0]), np.int64(comparisons[p, 1]), comparisons[p, 2], comparisons[p, 3]
        d0 = rewards[a, 0] - rewards[b, 0]
        if kind == _STRICT:
            z0 = d0 - margin
            loss += math.log1p(math.exp(-abs(z0))) + max(-z0, 0.0)
            n_strict += 1
            correct += 1 if d0 > 0.0 else 0
            margin_sum += d0
        else:
            tie_loss, _ = _davidson(d0, tie_nu)
            loss += tie_loss
    update_metrics(metrics, metrics_window, n_comparisons, loss, n_strict, correct, margin_sum)
    out_pairs[e] = n_comparisons
    out_loss[e] = loss
    out_correct[e] = correct
    if live:
        for p in range(first_comparison, first_comparison + n_comparisons):
            if comparisons[p, 2] == _STRICT:
                d0 = rewards[np.int64(comparisons[p, 0]), 0] - rewards[np.int64(comparisons[p, 1]), 0]
                observe_annotator(counts, annotator, 0.5 * (1.0 + math.tanh(0.5 * d0)), annotator_parameters[4])
        for c in range(n):
            update_moments(moments, moments_window, rewards[c, 0], math.log1p(n_tokens[completion_offsets[e] + c]))

    # Lazy decay, then the AdaGrad step on every bucket of the example.
    scale *= decay
    block_gradient(features, n, coefficients[:, :n], gradient)
    n_rows = adagrad_rows(buckets, gradient, rows, table, n_rows, _f32(learning_rate / scale), delta)
    return scale, n_rows


@njit(cache=True)
def _general_coefficients(rewards, n, comparisons, first_comparison, n_comparisons, ranked, head_weights, tie_nu,
                          tie_bad_strength, centring, coefficients):  # type: ignore[no-untyped-def]
    """Write ``coefficients[k, c]``, d objective / d reward of completion ``c`` under head ``k``, times the head weight.

    The objective is :func:`dynamic_rlhf.objective.example_objective`'s: the weighted
    Bradley-Terry or Davidson term of each comparison (or the Plackett-Luce likelihood of
    the listed order when *ranked*), the push-down of both-bad ties, and reward centring.
    """
    heads = coefficients.shape[0]
    for k in range(heads):
        for c in range(n):
            coefficients[k, c] = 0.0
        if ranked:
            _plackett_luce_gradient(rewards, n, k, coefficients[k])
        for p in range(first_comparison, first_comparison + n_comparisons):
            a, b = np.int64(comparisons[p, 0]), np.int64(comparisons[p, 1])
            kind, margin, weight = comparisons[p, 2], comparisons[p, 3], comparisons[p, 4]
            d = rewards[a, k] - rewards[b, k]
            if not ranked:
                if kind == _STRICT:
                    g = -_sigmoid(margin - d)
                else:
                    _, g = _davidson(d, tie_nu)
                coefficients[k, a] += weight * g
                coefficients[k, b] -= weight * g
            if kind == _TIE_BAD and tie_bad_strength > 0.0:
                coefficients[k, a] += weight * tie_bad_strength * _sigmoid(rewards[a, k])
                coefficients[k, b] += weight * tie_bad_strength * _sigmoid(rewards[b, k])
            if centring > 0.0:
                total = centring * (rewards[a, k] + rewards[b, k]) * weight
                coefficients[k, a] += total
                coefficients[k, b] += total
        for c in range(n):
            coefficients[k, c] *= head_weights[k]


@njit(cache=True)
def _plackett_luce_gradient(rewards, n, k, out):  # type: ignore[no-untyped-def]
    """Add d/d r of the Plackett-Luce loss of head ``k``'s rewards ``rewards[:n, k]`` (best first) to *out*.

    Stage ``i`` picks completion ``i`` out of ``i..n-1``: it adds ``softmax_j`` to every
    ``j >= i`` and subtracts 1 at ``i``. The stage's log-partition is a running
    log-sum-exp from the last completion, so no exponential overflows.
    """
    partition = np.empty(n)
    partition[n - 1] = rewards[n - 1, k]
    for i in range(n - 2, -1, -1):
        partition[i] = max(partition[i + 1], rewards[i, k]) + math.log1p(math.exp(-abs(partition[i + 1] - rewards[i, k])))
    for i in range(n - 1):
        for j in range(i, n):
            out[j] += math.exp(rewards[j, k] - partition[i])
        out[i] -= 1.0
