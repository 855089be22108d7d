"""Hypothesis strategies shared by the protocol tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

# Values of the JSON data model that both JSON and MessagePack carry exactly:
# integers within 64 bits, finite floats, text without lone surrogates.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)

json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)

json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6)

request_ids = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=10), st.none()
)

methods = st.text(min_size=1, max_size=30)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed JSON-RPC 2.0 message of any of the four shapes."""
    shape = draw(st.sampled_from(["request", "notification", "result", "error"]))
    msg: dict[str, Any] = {"jsonrpc": "2.0"}
    if shape != "notification":
        msg["id"] = draw(request_ids)
    if shape in ("request", "notification"):
        msg["method"] = draw(methods)
        if draw(st.booleans()):
            msg["params"] = draw(json_objects)
    elif shape == "result":
        msg["result"] = draw(json_values)
    else:
        error: dict[str, Any] = {
            "code": draw(st.integers(min_value=-(2**31), max_value=2**31)),
            "message": draw(st.text(max_size=20)),
        }
        if draw(st.booleans()):
            error["data"] = draw(json_values)
        msg["error"] = error
    return msg
