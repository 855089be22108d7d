"""tests/contract.py, the contract as data, against the code and its JSON copy."""

from __future__ import annotations

import json

import taskmill.errors as errors
from taskmill.model import EVENT_KINDS
from taskmill.protocol import METHODS, NOTIFICATION_METHODS
from tests import contract


def test_the_json_copy_is_up_to_date() -> None:
    assert contract.JSON_PATH.read_text() == contract.as_json(), (
        "tests/contract.json is stale: run python -m tests.contract"
    )
    data = json.loads(contract.JSON_PATH.read_text())
    assert list(data["params"]) == list(contract.PARAMS)


def test_every_error_class_has_the_contract_code_and_kind() -> None:
    classes = [
        cls
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.TaskmillError)
    ]
    seen = {cls.code: cls.kind for cls in classes}
    assert seen == contract.ERROR_KINDS


def test_methods_and_events_are_the_contract() -> None:
    assert list(METHODS) == list(contract.PARAMS)
    assert set(contract.NOTIFICATIONS) == NOTIFICATION_METHODS
    assert set(contract.SIDECAR_TO_CLIENT).isdisjoint(METHODS)
    assert set(contract.EVENT_FIELDS) == EVENT_KINDS
    assert set(contract.TASK_EVENT_KINDS) | set(contract.SCHEDULER_EVENT_KINDS) == EVENT_KINDS
