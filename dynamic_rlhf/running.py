r"""Running statistics: windowed Welford moments and progressive metrics.

:class:`RunningMoments` tracks the mean and variance of rewards, of log
completion lengths and their covariance. The update weight is
:math:`a = 1/\min(n, W)`: for the first :math:`W` observations this is
exactly Welford's algorithm (population moments), afterwards it becomes an
exponential moving average with an effective window of :math:`W`, so the
statistics follow a reward scale that drifts while the model learns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass
class RunningMoments:
    """Windowed means, variances and covariance of a pair of series (x, y)."""

    window: float = 10_000.0
    count: float = 0.0
    mean_x: float = 0.0
    mean_y: float = 0.0
    var_x: float = 0.0
    var_y: float = 0.0
    cov_xy: float = 0.0

    def update(self, x: float, y: float) -> None:
        """Add one observation (x, y)."""
        self.count += 1.0
        a = 1.0 / min(self.count, self.window)
        dx = x - self.mean_x
        dy = y - self.mean_y
        self.mean_x += a * dx
        self.mean_y += a * dy
        self.var_x = (1.0 - a) * (self.var_x + a * dx * dx)
        self.var_y = (1.0 - a) * (self.var_y + a * dy * dy)
        self.cov_xy = (1.0 - a) * (self.cov_xy + a * dx * dy)

    def correlation(self) -> float:
        """Return Pearson's correlation of x and y, 0.0 while undefined."""
        if self.var_x <= 0.0 or self.var_y <= 0.0:
            return 0.0
        return self.cov_xy / math.sqrt(self.var_x * self.var_y)

    def slope_x_on_y(self) -> float:
        """Return the least-squares slope of x regressed on y, 0.0 while undefined."""
        return self.cov_xy / self.var_y if self.var_y > 0.0 else 0.0

    def to_state(self) -> list[float]:
        """Return every field as a list of floats."""
        return [float(getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def from_state(cls, state: list[float]) -> RunningMoments:
        """Rebuild from :meth:`to_state` output."""
        return cls(*(float(v) for v in state))


@dataclass
class ProgressiveMetrics:
    """Loss and accuracy of predictions made before each update.

    ``pairs`` counts all comparisons (strict and ties), ``strict`` the strict
    ones, which alone enter the accuracy and the reward margin. The
    ``recent_*`` fields are exponential moving averages over about
    ``window`` comparisons.
    """

    window: float = 1_000.0
    pairs: float = 0.0
    loss_sum: float = 0.0
    strict: float = 0.0
    correct: float = 0.0
    margin_sum: float = 0.0
    recent_loss: float = 0.0
    recent_accuracy: float = 0.0

    def update(self, pairs: int, loss_sum: float, strict: int, correct: int, margin_sum: float) -> None:
        """Add the comparisons of one example."""
        if pairs:
            self.pairs += pairs
            self.loss_sum += loss_sum
            a = pairs / min(self.pairs, self.window)
            self.recent_loss += min(1.0, a) * (loss_sum / pairs - self.recent_loss)
        if strict:
            self.strict += strict
            self.correct += correct
            self.margin_sum += margin_sum
            a = strict / min(self.strict, self.window)
            self.recent_accuracy += min(1.0, a) * (correct / strict - self.recent_accuracy)

    @property
    def loss(self) -> float:
        """Mean loss per comparison so far."""
        return self.loss_sum / self.pairs if self.pairs else 0.0

    @property
    def accuracy(self) -> float:
        """Share of strict comparisons predicted on the right side of 0.5."""
        return self.correct / self.strict if self.strict else 0.0

    @property
    def mean_margin(self) -> float:
        """Mean predicted reward margin r(chosen) - r(rejected) over strict comparisons."""
        return self.margin_sum / self.strict if self.strict else 0.0

    def to_state(self) -> list[float]:
        """Return every field as a list of floats."""
        return [float(getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def from_state(cls, state: list[float]) -> ProgressiveMetrics:
        """Rebuild from :meth:`to_state` output."""
        return cls(*(float(v) for v in state))
