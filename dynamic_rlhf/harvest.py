r"""Harvesting policy: turn scored candidate completions into fine-tune records.

For the candidates :math:`c_1..c_n` of one prompt the model gives head-0
rewards :math:`r_i` and bootstrap spreads :math:`s_i`. With the running
reward statistics :math:`(\mu_r, \sigma_r)`, log-length statistics
:math:`(\mu_\ell, \sigma_\ell)` and covariance :math:`\sigma_{r\ell}`:

1. optional length correction: :math:`r_i \leftarrow r_i - b(\ell_i - \mu_\ell)`
   with :math:`b = \sigma_{r\ell} / \sigma_\ell^2` and :math:`\ell_i = \log(1 + \text{tokens}_i)`;
2. selection reward :math:`q_i = r_i - \kappa s_i` (pessimistic when :math:`\kappa > 0`);
3. :math:`z_i = (q_i - \mu_r) / \sigma_r` (after correction :math:`\sigma_r^2` becomes the
   residual variance :math:`\sigma_r^2 - \sigma_{r\ell}^2 / \sigma_\ell^2`); :math:`z_i = 0`
   while the variance is zero;
4. drop completions shorter than ``min_completion_chars`` and, with ``dedupe``,
   repeats of an earlier identical completion;
5. rank by :math:`q_i` (ties keep input order). An SFT record is emitted for each of
   the ``top_k`` best with :math:`z_i \ge` ``min_reward_z`` (when set) and gap to the
   worst candidate :math:`q_i - \min_j q_j \ge` ``min_gap``;
6. one preference record (best versus worst) when their gap is > 0 and
   :math:`\ge` ``min_preference_gap``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgpack

from dynamic_rlhf.errors import ConfigError, FeedbackError
from dynamic_rlhf.text import NormalText, Text, as_messages, canonical_text, normalise_text, render_text

if TYPE_CHECKING:
    from dynamic_rlhf.model import DynamicRLHFModel


@dataclass(frozen=True, kw_only=True)
class HarvestPolicy:
    """Rules that decide which scored completions become fine-tune records.

    >>> HarvestPolicy(name="strict", top_k=2, min_reward_z=1.0).params["top_k"]
    2
    """

    name: str = "default"
    min_reward_z: float | None = None
    top_k: int = 1
    min_gap: float = 0.0
    pessimism: float = 0.0
    dedupe: bool = True
    min_completion_chars: int = 1
    remove_length_bias: bool = False
    emit_sft: bool = True
    emit_preference: bool = True
    min_preference_gap: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError("name", self.name, "a non-empty string")
        if self.min_reward_z is not None:
            _check_number("min_reward_z", self.min_reward_z, low=-math.inf)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError("top_k", self.top_k, "an integer >= 0")
        if isinstance(self.min_completion_chars, bool) or not isinstance(self.min_completion_chars, int) or self.min_completion_chars < 0:
            raise ConfigError("min_completion_chars", self.min_completion_chars, "an integer >= 0")
        for name in ("min_gap", "pessimism", "min_preference_gap"):
            _check_number(name, getattr(self, name), low=0.0)
        for name in ("dedupe", "remove_length_bias", "emit_sft", "emit_preference"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "True or False")

    @property
    def params(self) -> dict[str, Any]:
        """Every rule except the name, as stored in each record's ``policy.params``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}

    @classmethod
    def from_params(cls, name: str, params: Mapping[str, Any]) -> HarvestPolicy:
        """Build a policy from a name and a params mapping; unknown keys raise ConfigError."""
        known = {f.name for f in fields(cls)} - {"name"}
        for key in params:
            if key not in known:
                raise ConfigError(f"params.{key}", params[key], "one of " + ", ".join(sorted(known)))
        return cls(name=name, **params)


def _check_number(name: str, value: Any, low: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < low:
        raise ConfigError(name, value, f"a finite number >= {low}")


@dataclass(frozen=True)
class _Candidate:
    index: int
    text: NormalText
    reward: float
    std: float
    selection: float
    z: float


def build_records(model: DynamicRLHFModel, prompt: Text, completions: Sequence[Text], source: str, policy: HarvestPolicy,
                  tags: Sequence[str], request_id: str | None, created_at: str | None) -> list[dict[str, Any]]:
    """Score *completions* with *model* and return the records *policy* accepts."""
    _check_request(source, tags, request_id, created_at)
    if not isinstance(policy, HarvestPolicy):
        raise ConfigError("policy", policy, "a HarvestPolicy or None")
    prompt_value = normalise_text(prompt, "prompt")
    if isinstance(completions, str) or not isinstance(completions, Sequence):
        raise FeedbackError("completions", completions, "a list of completions")
    texts = [normalise_text(c, f"completions[{i}]") for i, c in enumerate(completions)]
    if not texts:
        return []

    candidates = _rank(_score(model, prompt_value, texts, policy), policy)
    if not candidates:
        return []

    common = {
        "model_id": model.model_id,
        "model_version": model.version,
        "policy": {"name": policy.name, "params": policy.params},
        "source": source,
        "tags": list(tags),
        "created_at": created_at or datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "request_id": request_id,
    }
    records = []
    worst = candidates[-1]
    if policy.emit_sft:
        for rank, candidate in enumerate(candidates[: policy.top_k], start=1):
            if policy.min_reward_z is not None and candidate.z < policy.min_reward_z:
                continue
            if candidate.selection - worst.selection < policy.min_gap:
                continue
            records.append(_sft_record(prompt_value, candidate, rank, common))

    best = candidates[0]
    gap = best.selection - worst.selection
    if policy.emit_preference and len(candidates) >= 2 and gap > 0.0 and gap >= policy.min_preference_gap:
        records.append(_preference_record(prompt_value, best, worst, common))
    return records


def _check_request(source: Any, tags: Any, request_id: Any, created_at: Any) -> None:
    if not isinstance(source, str) or not source:
        raise FeedbackError("source", source, "a non-empty string naming where the completions came from")
    if isinstance(tags, str) or not isinstance(tags, Sequence) or not all(isinstance(t, str) for t in tags):
        raise FeedbackError("tags", tags, "a list of strings")
    if request_id is not None and not isinstance(request_id, str):
        raise FeedbackError("request_id", request_id, "a string or None")
    if created_at is not None and not isinstance(created_at, str):
        raise FeedbackError("created_at", created_at, "an ISO 8601 timestamp string or None")


def _score(model: DynamicRLHFModel, prompt: NormalText, texts: list[NormalText], policy: HarvestPolicy) -> list[_Candidate]:
    scores = model.score(prompt, texts)
    moments = model.moments
    mean, variance = moments.mean_x, moments.var_x

    slope = 0.0
    if policy.remove_length_bias and moments.var_y > 0.0:
        slope = moments.slope_x_on_y()
        variance = max(0.0, variance - moments.cov_xy * slope)
    deviation = math.sqrt(variance)

    candidates = []
    for index, (text, score) in enumerate(zip(texts, scores)):
        reward = score.reward
        if slope:
            length = math.log1p(len(model.featuriser.tokenise(render_text(text))))
            reward -= slope * (length - moments.mean_y)
        selection = reward - policy.pessimism * score.std
        z = (selection - mean) / deviation if deviation > 0.0 else 0.0
        candidates.append(_Candidate(index, text, reward, score.std, selection, z))
    return candidates


def _rank(candidates: list[_Candidate], policy: HarvestPolicy) -> list[_Candidate]:
    kept: list[_Candidate] = []
    seen: set[str] = set()
    for candidate in candidates:
        if len(render_text(candidate.text)) < policy.min_completion_chars:
            continue
        key = msgpack.packb(canonical_text(candidate.text))
        if policy.dedupe and key in seen:
            continue
        seen.add(key)
        kept.append(candidate)
    return sorted(kept, key=lambda c: (-c.selection, c.index))


def _record_id(kind: str, parts: list[Any], model_id: str, version: int) -> str:
    payload = msgpack.packb([kind, parts, model_id, version])
    return hashlib.sha256(payload).hexdigest()


def _completion_field(prompt: NormalText, text: NormalText) -> str | list[dict[str, str]]:
    # Chat prompts get conversational completions, plain prompts plain text.
    if isinstance(prompt, str) and isinstance(text, str):
        return text
    return as_messages(text, "assistant")


def _prompt_field(prompt: NormalText) -> str | list[dict[str, str]]:
    return prompt if isinstance(prompt, str) else as_messages(prompt, "user")


def _sft_record(prompt: NormalText, candidate: _Candidate, rank: int, common: dict[str, Any]) -> dict[str, Any]:
    completion = _completion_field(prompt, candidate.text)
    record: dict[str, Any] = {
        "record_id": _record_id("sft", [canonical_text(prompt), canonical_text(candidate.text)], common["model_id"], common["model_version"]),
        "kind": "sft",
        **common,
        "reward": candidate.reward,
        "reward_z": candidate.z,
        "reward_std": candidate.std,
        "rank": rank,
        "prompt": _prompt_field(prompt),
        "completion": completion,
    }
    if not isinstance(prompt, str):
        record["messages"] = as_messages(prompt, "user") + as_messages(candidate.text, "assistant")
    return record


def _preference_record(prompt: NormalText, best: _Candidate, worst: _Candidate, common: dict[str, Any]) -> dict[str, Any]:
    parts = [canonical_text(prompt), canonical_text(best.text), canonical_text(worst.text)]
    return {
        "record_id": _record_id("preference", parts, common["model_id"], common["model_version"]),
        "kind": "preference",
        **common,
        "reward": best.reward,
        "reward_z": best.z,
        "reward_std": best.std,
        "rank": 1,
        "prompt": _prompt_field(prompt),
        "chosen": _completion_field(prompt, best.text),
        "rejected": _completion_field(prompt, worst.text),
        "chosen_reward": best.reward,
        "rejected_reward": worst.reward,
    }
