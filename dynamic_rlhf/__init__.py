"""Online reward learning from human preference feedback (pure numpy core).

The core imports only the standard library, numpy and msgpack. Typical use:

>>> from dynamic_rlhf import DynamicRLHFModel, PreferenceExample
>>> model = DynamicRLHFModel()
>>> model.add_preferences([PreferenceExample("Greet me", "Hello, nice to meet you!", "No.")])
1
>>> [round(s.reward, 3) > 0 for s in model.score("Greet me", ["Hello!", "No."])]
[True, False]
"""

from dynamic_rlhf.config import ModelConfig
from dynamic_rlhf.errors import ConfigError, FeedbackError, StateError
from dynamic_rlhf.feedback import Example, PreferenceExample, RankingExample, RatingExample, stable_example_id
from dynamic_rlhf.harvest import HarvestPolicy
from dynamic_rlhf.model import DynamicRLHFModel
from dynamic_rlhf.results import EpochStats, LearnOutcome, ModelStats, RewardScore
from dynamic_rlhf.state import FORMAT_VERSION

__all__ = [
    "FORMAT_VERSION",
    "ConfigError",
    "DynamicRLHFModel",
    "EpochStats",
    "Example",
    "FeedbackError",
    "HarvestPolicy",
    "LearnOutcome",
    "ModelConfig",
    "ModelStats",
    "PreferenceExample",
    "RankingExample",
    "RatingExample",
    "RewardScore",
    "StateError",
    "stable_example_id",
]
