r"""Online reliability of annotators.

For every strict comparison on which the model is confident before the
update (head-0 probability :math:`p \ge c` or :math:`p \le 1 - c`, default
:math:`c = 0.7`), the
annotator's label either agrees with the model's side or not. With
:math:`a` agreements in :math:`n` such comparisons and a Beta prior
:math:`(\alpha, \beta)`, the reliability is the posterior mean

.. math:: \rho = \frac{a + \alpha}{n + \alpha + \beta}

and the weight of the annotator's next labels is

.. math:: w = w_{\min} + (1 - w_{\min}) \,
    \operatorname{clip}\!\Big(\frac{\rho - 1/2}{\rho_{\mathrm{full}} - 1/2}, 0, 1\Big)

so an annotator who agrees no better than chance gets :math:`w_{\min}`
(default 0.25), one at or above :math:`\rho_{\mathrm{full}}` (default 0.7,
equal to :math:`c`) gets 1. The full-weight level sits well below 1 because
even a careful annotator disagrees with a confident model now and then:
when the model predicts :math:`p = 0.8`, a label drawn from the same
Bradley--Terry preference disagrees 20% of the time. The default prior
(7, 3) has mean 0.7 = :math:`\rho_{\mathrm{full}}`, so a new annotator
starts at full weight and needs evidence to lose it. Labels without an
annotator id always get weight 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass
class AnnotatorRecord:
    """Agreement counts of one annotator on confident comparisons."""

    agreements: float = 0.0
    judged: float = 0.0


class AnnotatorReliability:
    """Agreement counts per annotator id and the label weights derived from them."""

    def __init__(self, prior_agree: float = 7.0, prior_disagree: float = 3.0, min_weight: float = 0.25,
                 full_weight_reliability: float = 0.7, confidence: float = 0.7) -> None:
        self.prior_agree = prior_agree
        self.prior_disagree = prior_disagree
        self.min_weight = min_weight
        self.full_weight_reliability = full_weight_reliability
        self.confidence = confidence
        self.records: dict[str, AnnotatorRecord] = {}

    def reliability(self, annotator_id: str) -> float:
        """Return the posterior mean agreement rate of *annotator_id*."""
        record = self.records.get(annotator_id)
        agreements = record.agreements if record else 0.0
        judged = record.judged if record else 0.0
        return (agreements + self.prior_agree) / (judged + self.prior_agree + self.prior_disagree)

    def weight(self, annotator_id: str | None) -> float:
        """Return the label weight of *annotator_id*, in ``[min_weight, 1]``."""
        if annotator_id is None:
            return 1.0
        scaled = (self.reliability(annotator_id) - 0.5) / (self.full_weight_reliability - 0.5)
        return self.min_weight + (1.0 - self.min_weight) * min(1.0, max(0.0, scaled))

    def observe(self, annotator_id: str | None, probability_first_wins: float) -> None:
        """Record one strict comparison whose first item the annotator preferred.

        Comparisons where the model is not confident leave the counts unchanged.
        """
        if annotator_id is None:
            return
        if 1.0 - self.confidence < probability_first_wins < self.confidence:
            return
        record = self.records.setdefault(annotator_id, AnnotatorRecord())
        record.judged += 1.0
        if probability_first_wins >= self.confidence:
            record.agreements += 1.0

    def parameters(self) -> NDArray[np.float64]:
        """Return the settings in the order of ``kernels.ANNOTATOR_PARAMETERS``."""
        return np.array([self.prior_agree, self.prior_disagree, self.min_weight, self.full_weight_reliability,
                         self.confidence])

    def counts(self, rows: dict[str, int]) -> NDArray[np.float64]:
        """Return ``[agreements, judged]`` of each annotator in *rows* (id -> row), zeros when unseen."""
        counts = np.zeros((len(rows), 2))
        for annotator_id, row in rows.items():
            record = self.records.get(annotator_id)
            if record is not None:
                counts[row] = (record.agreements, record.judged)
        return counts

    def store_counts(self, rows: dict[str, int], counts: NDArray[np.float64]) -> None:
        """Write back counts from :meth:`counts` after a kernel updated them."""
        for annotator_id, row in rows.items():
            agreements, judged = counts[row].tolist()
            if judged or annotator_id in self.records:
                self.records[annotator_id] = AnnotatorRecord(agreements, judged)

    def to_state(self) -> dict[str, list[float]]:
        """Return the counts as ``{annotator_id: [agreements, judged]}``, sorted by id."""
        return {key: [self.records[key].agreements, self.records[key].judged] for key in sorted(self.records)}

    def load_state(self, state: dict[str, list[float]]) -> None:
        """Replace the counts with those from :meth:`to_state`."""
        self.records = {key: AnnotatorRecord(float(a), float(n)) for key, (a, n) in state.items()}
