"""``is_newer``: which body a driver decides from (the newest of watch events and the answers
to its own status writes), so an event that arrives after our write cannot roll it back."""

from __future__ import annotations

import contextvars

from tensorgate.handlers import driver_context, is_newer, kept_body


def meta(version: str) -> dict[str, str]:
    return {"resourceVersion": version}


def test_a_newer_version_replaces_and_an_older_one_does_not() -> None:
    ours = {"metadata": meta("102")}  # the answer to our own status write
    assert is_newer(meta("103"), ours)
    assert not is_newer(meta("101"), ours)  # a late event from before our write
    assert not is_newer(meta("102"), ours)
    assert is_newer(meta("99"), None)  # nothing known yet


def test_versions_that_are_not_integers_always_replace_and_none_never() -> None:
    """resourceVersions are opaque: a server with other versions gets the latest event."""
    assert is_newer(meta("b7f"), {"metadata": meta("c1a")})
    assert not is_newer({}, {"metadata": meta("1")})


def test_the_kept_body_drops_managed_fields_only_and_leaves_the_event_alone() -> None:
    """managedFields were a large part of every body a driver held between decisions."""
    event = {
        "metadata": {"name": "m", "resourceVersion": "7", "managedFields": [{"manager": "x"}]},
        "spec": {"model": {"version": "2"}},
        "status": {"phase": "Promoted"},
    }
    kept = kept_body(event)
    assert kept == {
        "metadata": {"name": "m", "resourceVersion": "7"},
        "spec": {"model": {"version": "2"}},
        "status": {"phase": "Promoted"},
    }
    assert event["metadata"]["managedFields"]  # kopf's event object is not modified
    assert kept_body(None) is None


CAUSE: contextvars.ContextVar[object] = contextvars.ContextVar("cause_var")
QUEUE: contextvars.ContextVar[object] = contextvars.ContextVar("event_queue_var")


def test_a_driver_context_drops_the_event_being_handled_and_keeps_the_event_queue() -> None:
    """A driver task started from kopf's handler would otherwise keep the handler's cause (the
    first event's whole body) alive as long as the object exists."""

    def inside_a_handler() -> contextvars.Context:
        CAUSE.set({"body": "the first event"})
        QUEUE.set("kopf's Event queue")
        return driver_context()

    context = contextvars.copy_context().run(inside_a_handler)
    assert CAUSE not in context
    assert context[QUEUE] == "kopf's Event queue"
