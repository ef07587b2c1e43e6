"""Preference streams for the benchmarks: HH-RLHF pairs and a seeded synthetic stream.

Both streams produce :class:`PairRecord` values holding plain text, so every learner in a
benchmark featurises the same strings itself.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HH_RLHF_ENV = "DRLHF_HH_RLHF_PATH"
HH_RLHF_DEFAULT = REPO_ROOT / ".." / "shared" / "data" / "hh-rlhf-harmless-base" / "test.jsonl.gz"
ASSISTANT_MARKER = "\n\nAssistant:"


@dataclass(frozen=True, slots=True)
class PairRecord:
    """One preference pair: the prompt and the preferred and dispreferred completions."""

    prompt: str
    chosen: str
    rejected: str


def hh_rlhf_path() -> Path:
    """Return the HH-RLHF file named by ``DRLHF_HH_RLHF_PATH``, else the default location."""
    configured = os.environ.get(HH_RLHF_ENV)
    if configured:
        return Path(configured)
    return HH_RLHF_DEFAULT.resolve()


def split_transcript(transcript: str) -> tuple[str, str]:
    """Split an HH-RLHF transcript into (prompt, final assistant turn).

    The prompt keeps everything up to and including the last ``"\\n\\nAssistant:"`` marker,
    so it contains the whole earlier conversation. The completion is stripped of the
    surrounding whitespace.
    """
    cut = transcript.rfind(ASSISTANT_MARKER)
    if cut < 0:
        raise ValueError(
            "invalid HH-RLHF transcript: no '\\n\\nAssistant:' turn found "
            f"(first 60 characters: {transcript[:60]!r}); expected Human/Assistant turns"
        )
    end_of_prompt = cut + len(ASSISTANT_MARKER)
    return transcript[:end_of_prompt], transcript[end_of_prompt:].strip()


def load_hh_rlhf(path: Path, limit: int | None = None) -> list[PairRecord]:
    """Read HH-RLHF ``{"chosen", "rejected"}`` lines from a (gzipped) JSONL file.

    The two transcripts of a pair share every turn but the final assistant turn. The prompt
    of the chosen transcript is used for the pair. Pairs whose two final turns are equal
    carry no preference signal and are dropped.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    pairs: list[PairRecord] = []
    with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            row = json.loads(line)
            prompt, chosen = split_transcript(row["chosen"])
            _, rejected = split_transcript(row["rejected"])
            if chosen == rejected:
                continue
            pairs.append(PairRecord(prompt, chosen, rejected))
            if limit is not None and len(pairs) >= limit:
                break
    return pairs


@dataclass(frozen=True, slots=True)
class SyntheticStream:
    """Synthetic pairs, the generator that made them and its Bayes-optimal accuracy.

    The Bayes-optimal accuracy is E[max(q, 1 - q)] over the pairs, where q is the
    probability that the annotator labels *chosen* as better. No learner can beat it in
    expectation.
    """

    pairs: list[PairRecord]
    generator: str
    bayes_accuracy: float


def synthetic_pairs(count: int, seed: int) -> SyntheticStream:
    """Generate ``count`` seeded synthetic pairs.

    ``dynamic_rlhf.synthetic`` is preferred, so the benchmark measures the stream the
    core's own tests use. The local generator below is the fallback when that module is
    missing. Annotator ids are dropped, so every learner uses only the text.
    """
    try:
        from dynamic_rlhf.synthetic import SyntheticPreferences  # noqa: PLC0415
    except ImportError:
        pairs, bayes = _local_synthetic_pairs(count, seed)
        return SyntheticStream(pairs, "benchmarks._data (local generator)", bayes)

    stream = SyntheticPreferences(seed=seed)
    examples = stream.examples(count)
    pairs = [PairRecord(str(ex.prompt), str(ex.chosen), str(ex.rejected)) for ex in examples]
    generator = f"dynamic_rlhf.synthetic.SyntheticPreferences(seed={seed})"
    return SyntheticStream(pairs, generator, stream.bayes_accuracy(examples))


_CONSONANTS = "bcdfghklmnprstvz"
_VOWELS = "aeiou"


def _make_vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.randint(2, 3)
        words.add("".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables)))
    return sorted(words)


def _local_synthetic_pairs(
    count: int,
    seed: int,
    *,
    vocabulary_size: int = 2000,
    min_words: int = 8,
    max_words: int = 30,
    temperature: float = 1.0,
) -> tuple[list[PairRecord], float]:
    """Return pairs labelled by a hidden linear reward, and their Bayes-optimal accuracy.

    Each word gets a hidden weight drawn from N(0, 1). A completion's reward is the sum of
    its word weights divided by sqrt(length), and the first of two completions is preferred
    with probability sigmoid((r_a - r_b) / temperature), a Bradley-Terry draw. Word
    frequencies follow a Zipf law, so some words are frequent and many are rare.
    """
    rng = random.Random(seed)
    vocabulary = _make_vocabulary(vocabulary_size, rng)
    hidden_weight = {word: rng.gauss(0.0, 1.0) for word in vocabulary}
    zipf_weights = [1.0 / (rank + 1) for rank in range(vocabulary_size)]

    def completion() -> tuple[str, float]:
        words = rng.choices(vocabulary, zipf_weights, k=rng.randint(min_words, max_words))
        reward = sum(hidden_weight[word] for word in words) / math.sqrt(len(words))
        return " ".join(words), reward

    pairs: list[PairRecord] = []
    best_label_probability = 0.0
    for _ in range(count):
        prompt = " ".join(rng.choices(vocabulary, zipf_weights, k=rng.randint(4, 12)))
        first, first_reward = completion()
        second, second_reward = completion()
        while second == first:
            second, second_reward = completion()

        # Bradley-Terry label noise: a close pair is nearly a coin flip.
        probability_first = 1.0 / (1.0 + math.exp(-(first_reward - second_reward) / temperature))
        best_label_probability += max(probability_first, 1.0 - probability_first)
        if rng.random() < probability_first:
            pairs.append(PairRecord(prompt, first, second))
        else:
            pairs.append(PairRecord(prompt, second, first))
    return pairs, best_label_probability / count if count else 0.0
