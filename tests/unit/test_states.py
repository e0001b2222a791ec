"""The state names and named sets in ``domain/states.py``."""

from __future__ import annotations

import pytest

from payops.domain import states
from payops.domain.states import AttemptState, OperationState, ParentState


def test_members_equal_the_stored_strings() -> None:
    assert ParentState.PAID == "paid" and f"{ParentState.PAID}" == "paid"
    assert "needs_review" in states.RESERVING
    assert [str(s) for s in OperationState] == [
        "processing",
        "queued",
        "needs_review",
        "succeeded",
        "failed",
        "rejected",
    ]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("PAYABLE", ParentState),
        ("EXPIRABLE", ParentState),
        ("CANCELABLE", ParentState),
        ("SETTLED", ParentState),
        ("SOFT_DELETABLE", ParentState),
        ("INQUIRABLE", ParentState),
        ("LATE_SUCCESS", ParentState),
        ("OPEN", OperationState),
        ("RESERVING", OperationState),
        ("UNSETTLED", OperationState),
        ("ACCEPTED", OperationState),
        ("WITHOUT_EFFECT", OperationState),
        ("ATTEMPT_BLOCKING", AttemptState),
        ("ATTEMPT_UNDECIDED", AttemptState),
    ],
)
def test_each_named_set_holds_distinct_states_of_one_kind(name: str, kind: type) -> None:
    members = getattr(states, name)
    assert members and all(isinstance(m, kind) for m in members)
    assert len(set(members)) == len(members)


def test_how_the_sets_relate() -> None:
    assert set(states.OPEN) < set(states.RESERVING)
    assert set(states.UNSETTLED) < set(states.RESERVING)
    assert not set(states.ACCEPTED) & set(states.RESERVING) - {OperationState.QUEUED}
    assert not set(states.WITHOUT_EFFECT) & set(states.RESERVING)
    assert set(states.PAYABLE) < set(states.LATE_SUCCESS)
    assert not set(states.SETTLED) & set(states.INQUIRABLE)
    assert not set(states.SETTLED) & set(states.LATE_SUCCESS)
