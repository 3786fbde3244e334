"""The byte-level JSON depth check agrees with the real nesting depth, escapes and all."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from rls_cds.api.errors import json_depth_exceeds

# Strings full of the characters that could fool a byte scanner.
tricky = st.text(alphabet='[]{}"\\\nab/u', max_size=8)
json_values = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | tricky,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(tricky, children, max_size=3),
    max_leaves=30,
)


def depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_depth_check_matches_real_depth(value):
    body = orjson.dumps(value)
    d = depth(value)
    if d >= 1:
        assert json_depth_exceeds(body, d) is False
    if d >= 2:
        assert json_depth_exceeds(body, d - 1) is True


def test_deep_nesting_inside_the_limit_passes():
    nested: list = []
    for _ in range(63):
        nested = [nested]
    assert json_depth_exceeds(orjson.dumps(nested), 64) is False
    assert json_depth_exceeds(orjson.dumps([nested[0], "]]]]"]), 64) is False
    assert json_depth_exceeds(orjson.dumps([[nested]]), 64) is True
