"""The status merge patch: what the operator sends must turn the old status into the new one
under RFC 7386 merge semantics, which merge nested objects key by key."""

from __future__ import annotations

from typing import Any

import pytest

from tensorgate.handlers import status_patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies a merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


CASES = [
    (
        "a-new-rollout-drops-the-previous-gate-verdict",
        {"phase": "Progressing", "gate": {"version": "2", "smokePassed": True, "compared": True}},
        {"phase": "Deploying", "gate": {"version": "2", "revision": "b"}},
    ),
    ("removed-top-level-key", {"phase": "Paused", "canaryVersion": "2"}, {"phase": "RolledBack"}),
    ("lists-are-replaced", {"checks": [{"name": "a"}, {"name": "b"}]}, {"checks": [{"name": "b"}]}),
    ("nested-deeper", {"a": {"b": {"c": 1, "d": 2}}}, {"a": {"b": {"c": 1}}}),
    ("unchanged-sends-nothing", {"phase": "Promoted"}, {"phase": "Promoted"}),
]


@pytest.mark.parametrize(("old", "new"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_status_patch_turns_old_into_new_under_merge_semantics(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    patch = status_patch(old, new)
    assert apply_merge_patch(old, patch) == new
    if old == new:
        assert patch == {}
