"""The server's method table is the contract's, handler by handler."""

from __future__ import annotations

from taskmill.protocol import METHODS
from taskmill.server.api import HANDLERS
from tests import contract


def test_every_method_of_the_contract_has_its_parser_and_a_handler() -> None:
    assert list(HANDLERS) == list(METHODS)
    for name, method in HANDLERS.items():
        assert method.parse is METHODS[name], name
        if name in contract.NOTIFICATIONS:
            assert method.notify is not None and method.handle is None, name
        else:
            assert method.handle is not None and method.notify is None, name


def test_only_hello_and_info_answer_while_closing() -> None:
    assert {n for n, m in HANDLERS.items() if m.while_closing} == {"session.hello", "sidecar.info"}


def test_only_the_batch_is_parsed_in_steps() -> None:
    assert {n for n, m in HANDLERS.items() if m.steps is not None} == {"task.submit_batch"}
