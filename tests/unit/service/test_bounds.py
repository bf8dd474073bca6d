"""The structure of a JSON request is bounded before the parse and after it."""

from __future__ import annotations

import json

import orjson
import pytest

from kiln.errors import InvalidInput
from service.codecs.bounds import (
    MAX_DEPTH,
    MAX_ITEMS,
    check_structure,
    free_form,
    structure_budget,
)


def _rows(rows: int, **row: object) -> bytes:
    return json.dumps({"instances": [row] * rows}).encode()


def test_a_request_of_max_rows_fits_its_budget_in_both_protocols() -> None:
    features = {f"f{i}": 1.5 for i in range(9)}
    budget = structure_budget(1000, len(features))
    check_structure(_rows(1000, **features), budget, "x")
    nested = {"inputs": [{"name": k, "shape": [1000, 1], "datatype": "FP32",
                          "data": [[v]] * 1000, "parameters": {"a": 1}}
                         for k, v in features.items()]}  # fmt: skip
    check_structure(json.dumps(nested).encode(), budget, "x")


def test_empty_containers_past_the_budget_are_refused() -> None:
    body = b'{"instances": [], "parameters": [' + b"{}," * 10_000 + b"{}]}"
    with pytest.raises(InvalidInput, match="more than 2,000 rows needs"):
        check_structure(body, structure_budget(10, 1), "2,000 rows")
    values = b"[" + b"1," * 10_000 + b"1]"
    with pytest.raises(InvalidInput, match="JSON containers and values"):
        check_structure(values, structure_budget(10, 1), "x")


@pytest.mark.parametrize("text", ["{[,", '\\"{[,', "\\\\", 'a\\\\\\"{'])
def test_structure_inside_strings_is_not_counted(text: str) -> None:
    body = json.dumps({"instances": [{"a": text * 3000, "b": "{" * 10}]}).encode()
    assert orjson.loads(body)  # valid JSON, escapes and all
    check_structure(body, structure_budget(1, 2), "x")
    outside = body[:-2] + b", " + b"{}," * 100 + b'"x"]}'
    with pytest.raises(InvalidInput):
        check_structure(outside, structure_budget(1, 2) - 8 * MAX_ITEMS + 50, "x")


def test_an_unterminated_string_is_left_to_the_parser() -> None:
    check_structure(b'{"a": "' + b"{" * 50_000, structure_budget(1, 1), "x")


def test_free_form_counts_members_and_bounds_depth_and_items() -> None:
    assert free_form({"a": {"b": 1, "c": [{"d": 2}]}}, "p") == 4
    assert free_form("text", "p") == 0
    nested: object = []
    for _ in range(MAX_DEPTH - 1):
        nested = [nested]
    free_form(nested, "p")
    with pytest.raises(InvalidInput, match="'p' is nested more than 32 levels"):
        free_form([nested], "'p'")
    deep = json.loads("[" * 900 + "]" * 900)  # a recursive walk failed at about 485
    with pytest.raises(InvalidInput, match="nested"):
        free_form(deep, "p")
    free_form([{}] * (MAX_ITEMS - 1), "p")
    with pytest.raises(InvalidInput, match="holds more than 1024 values"):
        free_form([[]] * (MAX_ITEMS + 1), "p")
