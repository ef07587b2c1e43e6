"""Model state as msgpack bytes.

Layout (a msgpack map, keys in this order):

* ``format`` = ``"dynamic-rlhf-model"`` and ``format_version`` (currently 2; version 1
  hashed features differently and is refused);
* ``model_id``, ``config`` (the :class:`ModelConfig` fields), counters;
* ``metrics``, ``moments``, ``annotators`` -- running statistics;
* ``scale`` -- the lazy decay factor (see :mod:`dynamic_rlhf.optim`);
* ``coordinates`` -- touched buckets, ascending, raw little-endian uint32;
* ``weights`` (stored, i.e. divided by ``scale``) and ``accumulators`` --
  ``(len(coordinates), heads)`` raw little-endian float32, row-major.

Only touched buckets are stored, so the size grows with the vocabulary
seen, not with ``dim``: ``8 * (n_heads + 1) + 4`` bytes per bucket.
Loading and saving again gives the same bytes. The replay buffer of
``add_preferences`` and the token hash cache are not stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from dynamic_rlhf.config import ModelConfig
from dynamic_rlhf.errors import StateError
from dynamic_rlhf.running import ProgressiveMetrics, RunningMoments

if TYPE_CHECKING:
    from dynamic_rlhf.model import DynamicRLHFModel

FORMAT_NAME = "dynamic-rlhf-model"
FORMAT_VERSION = 2


def dump_model(model: DynamicRLHFModel) -> bytes:
    """Serialise *model* to msgpack bytes."""
    optimiser = model.optimiser
    coordinates = optimiser.touched()
    weights, accumulators = optimiser.stored(coordinates)
    state: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_id": model.model_id,
        "config": model.config.to_dict(),
        "version": model.version,
        "examples_seen": model.examples_seen,
        "pairs_trained": model.pairs_trained,
        "skipped_identical": model.skipped_identical,
        "metrics": model.metrics.to_state(),
        "moments": model.moments.to_state(),
        "annotators": model.annotators.to_state(),
        "scale": optimiser.scale,
        "coordinates": coordinates.astype("<u4").tobytes(),
        "weights": np.ascontiguousarray(weights, dtype="<f4").tobytes(),
        "accumulators": np.ascontiguousarray(accumulators, dtype="<f4").tobytes(),
    }
    return msgpack.packb(state, use_bin_type=True)


def load_model(data: bytes) -> DynamicRLHFModel:
    """Rebuild a model from :func:`dump_model` bytes.

    Raises
    ------
    StateError
        When *data* is not a model state, or was written by a newer format version.
    """
    from dynamic_rlhf.model import DynamicRLHFModel

    state = _unpack(data)
    try:
        config = ModelConfig.from_dict(state["config"])
        model = DynamicRLHFModel(config, model_id=state["model_id"])
        model.version = int(state["version"])
        model.examples_seen = int(state["examples_seen"])
        model.pairs_trained = int(state["pairs_trained"])
        model.skipped_identical = int(state["skipped_identical"])
        model.metrics = ProgressiveMetrics.from_state(state["metrics"])
        model.moments = RunningMoments.from_state(state["moments"])
        model.annotators.load_state(state["annotators"])
        _load_arrays(model, state)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, StateError):
            raise
        raise StateError(f"invalid model state: {error!r}; expected bytes written by DynamicRLHFModel.to_bytes") from error
    return model


def _unpack(data: bytes) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise StateError(f"invalid model state: got {type(data).__name__}, expected bytes from DynamicRLHFModel.to_bytes")
    try:
        state = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as error:
        raise StateError(f"invalid model state: not msgpack ({error}); expected bytes from DynamicRLHFModel.to_bytes") from error

    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        raise StateError(f"invalid model state: missing format marker {FORMAT_NAME!r}; expected bytes from DynamicRLHFModel.to_bytes")
    version = state.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise StateError(f"invalid model state: format_version {version!r}, expected an integer >= 1")
    if version < FORMAT_VERSION:
        raise StateError(
            f"model state format_version {version} hashes features differently from this library "
            f"(format_version {FORMAT_VERSION}) and cannot be loaded; rebuild the model by learning its events again"
        )
    if version > FORMAT_VERSION:
        raise StateError(
            f"model state format_version {version} is newer than this library supports ({FORMAT_VERSION}); "
            "upgrade dynamic-rlhf to load it"
        )
    return state


def _load_arrays(model: DynamicRLHFModel, state: dict[str, Any]) -> None:
    optimiser = model.optimiser
    heads = optimiser.heads
    coordinates = np.frombuffer(state["coordinates"], dtype="<u4").astype(np.int64)
    n = len(coordinates)
    if n and int(coordinates.max()) >= model.config.dim:
        raise StateError(f"invalid model state: bucket {int(coordinates.max())} outside dim {model.config.dim}")

    weights = np.frombuffer(state["weights"], dtype="<f4")
    accumulators = np.frombuffer(state["accumulators"], dtype="<f4")
    if weights.size != heads * n or accumulators.size != heads * n:
        raise StateError(f"invalid model state: array sizes do not match {n} buckets x {heads} heads")

    optimiser.scale = float(state["scale"])
    optimiser.load(coordinates, weights.reshape(n, heads), accumulators.reshape(n, heads))
