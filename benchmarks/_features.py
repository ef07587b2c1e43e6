"""Bag-of-n-grams features for the baseline learners (River, Vowpal Wabbit).

The baselines see the same n-grams as the core (lower-cased word unigrams and bigrams of
the completion), but as named features instead of hashed indices.
"""

from __future__ import annotations

import re
from collections import Counter

_TOKEN = re.compile(r"\w+")


def bag_of_ngrams(text: str, *, bigrams: bool = True) -> Counter[str]:
    """Count the lower-cased word unigrams and, optionally, bigrams of ``text``.

    A bigram is named ``"first+second"``; ``+`` is not a word character, so bigram names
    never collide with unigrams, and the names contain no space, ``|`` or ``:``, which
    Vowpal Wabbit's text format reserves.
    """
    tokens = _TOKEN.findall(text.lower())
    counts = Counter(tokens)
    if bigrams:
        counts.update(f"{first}+{second}" for first, second in zip(tokens, tokens[1:]))
    return counts


def difference_features(chosen: str, rejected: str, *, bigrams: bool = True) -> dict[str, float]:
    """Return f(chosen) - f(rejected) without the n-grams whose counts cancel."""
    difference: Counter[str] = bag_of_ngrams(chosen, bigrams=bigrams)
    difference.subtract(bag_of_ngrams(rejected, bigrams=bigrams))
    return {name: float(value) for name, value in difference.items() if value}
