"""Whether a golden set is large enough to ever promote, judged before any pod starts.

Pure: the reconciler reads the golden set's row count when a rollout starts and hands it in
``Observations.golden_rows``; ``golden_set_shortfall`` says, with the numbers, when even two
identical models could not pass the accuracy gate on that many rows
(``tensorgate.engine.stats.minimum_samples``, the same bound ``tensorgate plan`` prints).
"""

from __future__ import annotations

from tensorgate.api.spec import ModelDeploymentSpec
from tensorgate.engine.stats import minimum_samples

__all__ = ["golden_set_shortfall"]


def golden_set_shortfall(spec: ModelDeploymentSpec, rows: int | None) -> str | None:
    """Why no candidate can be promoted on ``rows`` golden-set rows; None when it can (or
    when the row count is not known: the gate judges the set at evaluation)."""
    if rows is None or spec.golden_set is None:
        return None
    margin, confidence = spec.analysis.max_accuracy_drop, spec.analysis.confidence
    if not 0.0 < margin < 1.0:
        return None  # a zero margin is refused or warned about by validation, not here
    needed = minimum_samples(margin, confidence)
    if rows >= needed:
        return None
    return (
        f"golden set has {rows} rows; with maxAccuracyDrop {margin} and confidence "
        f"{confidence} no candidate can be promoted below {needed}; add rows or raise "
        "maxAccuracyDrop (tensorgate plan); no canary pod was started"
    )
