"""Exact faults on KMock (issue 12, item 4): what the real control plane cannot inject on cue."""

from __future__ import annotations

from tensorgate.handlers import ApiBackoffs

KOPF_DEFAULT_S = (1, 1, 2, 3, 5, 8, 13, 21)  # kopf's NetworkingSettings.error_backoffs


def test_kopf_request_retries_outlast_a_ten_minute_api_outage() -> None:
    """kopf gives a request up (its watch too, which ends the operator) after its last
    backoff: 54 s by default. The operator's backoffs cover more than ten minutes, are
    bounded, and start afresh for every request (kopf iterates them once per request)."""
    first, again = list(ApiBackoffs()), list(ApiBackoffs())
    assert first == again
    assert sum(KOPF_DEFAULT_S) < 60 < 600 < sum(first) < 900
    assert max(first) <= 10 and first[:2] == [1.0, 1.0]
