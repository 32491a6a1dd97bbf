"""The gate's analysis fields: the types and the generated CRD reject the same values."""

from __future__ import annotations

from typing import Any

import pytest

from tensorgate.api.spec import parse_resource
from tensorgate.errors import SpecError
from tests.crdcheck import crd_errors
from tests.unit.api.test_crd_table import with_


@pytest.mark.parametrize(
    ("analysis", "bad_field"),
    [
        pytest.param({"confidence": 0.5}, None, id="confidence-0.5-accepted"),
        pytest.param({"confidence": 0.999}, None, id="confidence-0.999-accepted"),
        pytest.param({"confidence": 0.4}, "analysis.confidence", id="confidence-below-0.5"),
        pytest.param({"confidence": 1.0}, "analysis.confidence", id="confidence-1"),
        pytest.param({"confidence": 0.9995}, "analysis.confidence", id="confidence-unproven"),
        pytest.param({"maxAccuracyDrop": 0.0}, None, id="zero-margin-accepted"),
        pytest.param({"maxAccuracyDrop": 0.3}, None, id="margin-0.3-accepted"),
        pytest.param({"maxAccuracyDrop": 0.4}, "analysis.maxAccuracyDrop", id="margin-unproven"),
        pytest.param({"maxAccuracyDrop": 1.0}, "analysis.maxAccuracyDrop", id="margin-1"),
        pytest.param({"minAccuracy": 0.9}, None, id="min-accuracy-accepted"),
        pytest.param({"minAccuracy": 1.2}, "analysis.minAccuracy", id="min-accuracy-above-1"),
    ],
)
def test_analysis_types_and_crd_agree(analysis: dict[str, Any], bad_field: str | None) -> None:
    manifest = with_("spec.analysis", analysis)
    crd = crd_errors(manifest)
    if bad_field is None:
        parse_resource(manifest)
        assert crd == []
        return
    with pytest.raises(SpecError) as info:
        parse_resource(manifest)
    assert bad_field in "\n".join(info.value.errors)
    assert crd, f"the CRD accepted {analysis}"
