"""Preference records built straight from human-labelled pairs (``DRLHF_PUBLISH_LABEL_PAIRS``)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from dynamic_rlhf import DynamicRLHFModel, PreferenceExample

POLICY = {"name": "human_label", "params": {}}
SOURCE = "human_feedback"


def label_pair_records(model: DynamicRLHFModel, examples: list[Any], *, event_timestamp_s: float) -> list[dict[str, Any]]:
    """Return one preference record per strict human preference (label ``chosen``) in `examples`.

    Rewards are the model's scores right after it learned the event. As in harvested
    preference records, ``reward``, ``reward_std`` and ``rank`` describe the chosen completion
    (rank 1: the human preferred it), and ``reward_z`` is null because no candidate set was
    normalised. The record id hashes the texts, the model id and the model version, so a
    replayed event gives the same id.
    """
    created_at = datetime.fromtimestamp(event_timestamp_s, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    records = []
    for example in examples:
        if not isinstance(example, PreferenceExample) or example.label != "chosen":
            continue

        chosen, rejected = model.score(example.prompt, [example.chosen, example.rejected])
        content = json.dumps([example.prompt, example.chosen, example.rejected, example.model_id, model.version],
                             sort_keys=True, ensure_ascii=False)
        records.append({
            "record_id": hashlib.sha256(content.encode("utf-8")).hexdigest(),
            "kind": "preference",
            "model_id": example.model_id,
            "model_version": model.version,
            "reward": chosen.reward,
            "reward_z": None,
            "reward_std": chosen.std,
            "rank": 1,
            "policy": POLICY,
            "source": SOURCE,
            "tags": list(example.tags),
            "created_at": created_at,
            "request_id": example.example_id,
            "prompt": example.prompt,
            "chosen": example.chosen,
            "rejected": example.rejected,
            "chosen_reward": chosen.reward,
            "rejected_reward": rejected.reward,
        })
    return records
