"""Converters from public feedback-file formats to preference events.

Supported: our own events as JSONL (``drlhf``), TRL preference records (``trl``),
Anthropic HH-RLHF transcripts (``hh-rlhf``) and UltraFeedback-style rated
completions (``ultrafeedback``).
"""

from service.converters.base import ConversionError
from service.converters.reader import FORMATS, candidate_sets_from_feedback, detect_format, read_feedback_file

__all__ = ["FORMATS", "ConversionError", "candidate_sets_from_feedback", "detect_format", "read_feedback_file"]
