"""The gate against real SavedModels served by the local backend, over REST and gRPC.

Every failure class of the issue is a tiny model; each case asserts the decision *and* the
check that caught it.
"""

from __future__ import annotations

import pytest

from tensorgate.gate.report import Decision
from tensorgate.gate.runner import GateConfig, run_gate
from tests.integration.gate.conftest import ClientFactory, Served

pytestmark = pytest.mark.tf

PROTOCOLS = ["rest", "grpc"]

# (family, stable, candidate, parity golden?, decision, first check that caught it or None)
CASES = [
    ("digits", "good", "identical", False, Decision.PROMOTE, None),
    ("digits", "good", "good", False, Decision.PROMOTE, None),
    ("digits", "slightly-worse", "good", False, Decision.PROMOTE, None),
    ("digits", "good", "slightly-worse", False, Decision.PROMOTE, None),
    ("digits", "good", "identical", True, Decision.PROMOTE, None),
    ("digits", "good", "collapse", False, Decision.ROLLBACK, "accuracy"),
    ("digits", "good", "renamed-input", False, Decision.ROLLBACK, "signature"),
    ("digits", "good", "wrong-dtype", False, Decision.ROLLBACK, "signature"),
    ("digits", "good", "narrow-output", False, Decision.ROLLBACK, "batch-1-shape"),
    ("digits", "good", "first-row-only", False, Decision.ROLLBACK, "batch-n-shape"),
    ("digits", "good", "nan-rare", False, Decision.ROLLBACK, "finite"),
    ("digits", "good", "batch-stats", False, Decision.ROLLBACK, "batch-invariance"),
    ("digits", "good", "not-normalised", False, Decision.ROLLBACK, "probabilities"),
    ("digits", "good", "parity-skew", True, Decision.ROLLBACK, "parity"),
    ("shapes", "good", "collapse", False, Decision.ROLLBACK, "accuracy"),
    ("shapes", "good", "batch-stats", False, Decision.ROLLBACK, "batch-invariance"),
    ("shapes", "good", "first-row-only", False, Decision.ROLLBACK, "batch-n-shape"),
    ("fraud", "good", "collapse", False, Decision.ROLLBACK, "accuracy"),
    ("fraud", "good", "nan-rare", False, Decision.ROLLBACK, "finite"),
]


def _id(case: tuple[object, ...]) -> str:
    family, stable, candidate, parity, decision, _ = case
    suffix = "-parity" if parity else ""
    return f"{family}-{stable}-vs-{candidate}{suffix}-{decision}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
async def test_gate_real_model_decides_and_names_the_check(
    served: dict[str, Served],
    make_client: ClientFactory,
    protocol: str,
    case: tuple[str, str, str, bool, Decision, str | None],
) -> None:
    family, stable_variant, candidate_variant, parity, decision, caught = case
    entry = served[family]
    golden = entry.parity_golden if parity else entry.golden
    report = await run_gate(
        make_client(entry, stable_variant, protocol),
        make_client(entry, candidate_variant, protocol),
        golden,
        GateConfig(contract=entry.contract),
    )
    assert report.decision == decision, report.to_dict()
    if caught is None:
        assert report.caught_by == []
        assert report.smoke.passed
        assert report.canary.ran
        assert report.canary.upper_bound is not None
        assert report.canary.upper_bound <= 0.02
        if parity:
            assert any(c.name == "parity" and c.passed for c in report.smoke.checks)
    else:
        assert report.caught_by[0] == caught, report.to_dict()
    if caught is not None and caught != "accuracy":
        assert not report.canary.ran  # smoke failed: no comparison


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_gate_slightly_worse_candidate_reports_positive_drop_within_margin(
    served: dict[str, Served], make_client: ClientFactory, protocol: str
) -> None:
    entry = served["digits"]
    report = await run_gate(
        make_client(entry, "good", protocol),
        make_client(entry, "slightly-worse", protocol),
        entry.golden,
        GateConfig(contract=entry.contract),
    )
    canary = report.canary
    assert canary.drop is not None and canary.upper_bound is not None
    assert 0 < canary.drop < canary.upper_bound <= 0.02
    assert canary.stable_only_correct > canary.candidate_only_correct
    assert 0.9 < (canary.agreement or 0) < 1.0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_gate_slightly_worse_candidate_rolls_back_with_a_tight_margin(
    served: dict[str, Served], make_client: ClientFactory, protocol: str
) -> None:
    entry = served["digits"]
    report = await run_gate(
        make_client(entry, "good", protocol),
        make_client(entry, "slightly-worse", protocol),
        entry.golden,
        GateConfig(contract=entry.contract, max_accuracy_drop=0.0),
    )
    assert report.decision == Decision.ROLLBACK
    assert report.caught_by == ["accuracy"]


async def test_gate_collapse_reports_recall_changes_and_low_agreement(
    served: dict[str, Served], make_client: ClientFactory
) -> None:
    entry = served["digits"]
    report = await run_gate(
        make_client(entry, "good", "grpc"),
        make_client(entry, "collapse", "grpc"),
        entry.golden,
        GateConfig(contract=entry.contract),
    )
    canary = report.canary
    assert canary.stable_accuracy is not None and canary.stable_accuracy > 0.85
    assert canary.candidate_accuracy is not None and canary.candidate_accuracy < 0.3
    assert canary.p_value is not None and canary.p_value > 0.5
    assert len(canary.recall_changes) >= 5
    assert (canary.agreement or 1) < 0.4


async def test_gate_shape_message_names_output_expected_and_actual(
    served: dict[str, Served], make_client: ClientFactory
) -> None:
    entry = served["digits"]
    report = await run_gate(
        make_client(entry, "good", "rest"),
        make_client(entry, "narrow-output", "rest"),
        entry.golden,
        GateConfig(contract=entry.contract),
    )
    failed = {c.name: c.message for c in report.smoke.failed}
    assert failed["batch-1-shape"] == "output probabilities: expected shape [1, 10], got [1, 1]"
