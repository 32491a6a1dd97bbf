"""A realistic sequence of status transitions: first deploy of v1, v2 promoted, v3 rolled back.

Statuses are dicts as the reconciler writes them (camelCase), so the ledger sees what the
handler will hand it.
"""

from __future__ import annotations

from typing import Any

Status = dict[str, Any]
NAMESPACE = "ml"
NAME = "mnist"


def spec(version: str, replicas: int = 2) -> dict[str, Any]:
    return {
        "model": {"name": "mnist", "version": version, "uri": f"s3://bucket/mnist-{version}"},
        "serving": {"replicas": replicas},
        "contract": {
            "inputs": {"pixels": {"dtype": "float32", "shape": [-1, 784]}},
            "outputs": {"probabilities": {"dtype": "float32", "shape": [-1, 10]}},
        },
    }


def _stable(version: str) -> dict[str, str]:
    return {"name": "mnist", "version": version, "uri": f"s3://bucket/mnist-{version}"}


def first_deploy(version: str = "1") -> list[tuple[Status, Status, dict[str, Any]]]:
    s0: Status = {}
    s1: Status = {
        "phase": "Deploying",
        "phaseStartedAt": "2026-01-01T00:00:00Z",
        "message": f"deploying {version}",
    }
    s2: Status = {
        **s1,
        "phase": "Promoted",
        "phaseStartedAt": "2026-01-01T00:01:00Z",
        "stableVersion": version,
        "stableModel": _stable(version),
        "message": f"version {version} serving on 2 pod(s)",
    }
    return [(s0, s1, spec(version)), (s1, s2, spec(version))]


def rollout(
    stable: str, version: str, minute: int, *, passes: bool, history: list[dict[str, Any]]
) -> list[tuple[Status, Status, dict[str, Any]]]:
    """Transitions of one rollout from a Promoted stable ``stable`` to ``version``."""
    rid = f"{version}-{minute}-2026-01-01T00:{minute:02d}:00Z"
    base: Status = {
        "phase": "Promoted",
        "stableVersion": stable,
        "stableModel": _stable(stable),
        "history": history,
        "phaseStartedAt": f"2026-01-01T00:{minute - 1:02d}:00Z",
    }
    at = f"2026-01-01T00:{minute:02d}:"
    deploying = {
        **base,
        "phase": "Deploying",
        "phaseStartedAt": at + "00Z",
        "canaryVersion": version,
        "canaryWeight": 0,
        "rolloutId": rid,
        "gate": {"version": version},
    }
    smoke = {
        **deploying,
        "phase": "SmokeTesting",
        "phaseStartedAt": at + "10Z",
        "gate": {
            "version": version,
            "smokePassed": True,
            "smoke": [{"name": "signature", "passed": True, "message": "ok"}],
        },
    }
    gate = {
        "version": version,
        "smokePassed": True,
        "compared": True,
        "decision": "promote" if passes else "rollback",
        "stableAccuracy": 0.94,
        "canaryAccuracy": 0.95 if passes else 0.11,
        "delta": -0.01 if passes else 0.83,
        "upperBound": 0.004 if passes else 0.85,
        "pValue": 0.001,
        "samples": 1000,
        "smoke": [{"name": "signature", "passed": True, "message": "ok"}],
    }
    evaluating = {**smoke, "phase": "Evaluating", "phaseStartedAt": at + "20Z"}
    compared = {**evaluating, "gate": gate}
    steps = [(base, deploying), (deploying, smoke), (smoke, evaluating), (evaluating, compared)]
    if passes:
        progressing = {
            **compared,
            "phase": "Progressing",
            "phaseStartedAt": at + "30Z",
            "currentStep": 0,
            "canaryWeight": 50,
        }
        promoting = {
            **progressing,
            "phase": "Promoting",
            "phaseStartedAt": at + "40Z",
            "canaryWeight": 100,
        }
        entry = {
            "version": version,
            "decision": "Promoted",
            "reason": "all checks passed",
            "at": at + "50Z",
            "stableAccuracy": 0.94,
            "canaryAccuracy": 0.95,
        }
        promoted = {
            **promoting,
            "phase": "Promoted",
            "phaseStartedAt": at + "50Z",
            "stableVersion": version,
            "stableModel": _stable(version),
            "canaryVersion": None,
            "canaryWeight": 0,
            "history": [entry, *history],
        }
        steps += [(compared, progressing), (progressing, promoting), (promoting, promoted)]
    else:
        entry = {
            "version": version,
            "decision": "RolledBack",
            "reason": "AccuracyGateFailed: accuracy dropped",
            "at": at + "30Z",
            "stableAccuracy": 0.94,
            "canaryAccuracy": 0.11,
        }
        rolled = {
            **compared,
            "phase": "RolledBack",
            "phaseStartedAt": at + "30Z",
            "canaryWeight": 0,
            "history": [entry, *history],
            "conditions": [
                {
                    "type": "Degraded",
                    "status": "True",
                    "reason": "AccuracyGateFailed",
                    "message": "x",
                }
            ],
        }
        steps += [(compared, rolled)]
    return [(old, new, spec(version)) for old, new in steps]


def full_story() -> list[tuple[Status, Status, dict[str, Any]]]:
    """v1 first deploy, v2 promoted, v3 rolled back."""
    story = first_deploy("1")
    v2 = rollout("1", "2", 10, passes=True, history=[])
    story += v2
    v3 = rollout("2", "3", 20, passes=False, history=v2[-1][1]["history"])
    story += v3
    return story
