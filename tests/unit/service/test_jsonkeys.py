"""Duplicate JSON keys are refused; documents without them always pass, colons or not."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kiln.errors import InvalidInput
from service.codecs.bounds import free_form
from service.codecs.jsonkeys import ensure_unique_keys

_SCALARS = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8)
_KEYS = st.text(min_size=1, max_size=6)
_DOCS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(_KEYS, _DOCS, max_size=5), st.booleans())
def test_documents_without_duplicates_pass(doc: dict[str, Any], escaped: bool) -> None:
    raw = json.dumps(doc, ensure_ascii=escaped).encode()
    ensure_unique_keys(raw, free_form(orjson.loads(raw), "doc"))


@given(st.dictionaries(_KEYS, _SCALARS, min_size=1, max_size=5), st.data())
def test_a_repeated_key_is_named(doc: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(doc)))
    body = json.dumps(doc)[:-1] + f", {json.dumps(key)}: 1" + "}"
    parsed = orjson.loads(body)
    with pytest.raises(InvalidInput, match="appears twice") as caught:
        ensure_unique_keys(body.encode(), free_form(parsed, "doc"))
    assert repr(key) in caught.value.message


def test_nested_duplicates_and_colons_in_strings() -> None:
    nested = b'{"instances": [{"a": 1, "b": "12:30", "a": 2}]}'
    with pytest.raises(InvalidInput, match="'a' appears twice"):
        ensure_unique_keys(nested, free_form(orjson.loads(nested), "doc"))
    colons = b'{"instances": [{"a": "x:y:z", "b:c": 1}]}'
    ensure_unique_keys(colons, free_form(orjson.loads(colons), "doc"))


def test_an_undercount_never_passes_a_duplicate() -> None:
    body = b'{"a": 1, "a": 2}'
    for count in range(2):  # a count that misses members still finds the duplicate
        with pytest.raises(InvalidInput):
            ensure_unique_keys(body, count)
