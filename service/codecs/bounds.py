"""How much structure a JSON request may hold: checked before the parse, and after it.

A request's size limit (``max_body_bytes``) does not bound what parsing it costs: 32 MiB of
``[{},{},...]`` is eight million dictionaries, about 880 MB of memory and seconds of parsing,
though no model needs more than its rows times its features. Two bounds follow from that.

Before the parse, :func:`check_structure` counts the bytes that make the parser build
something (``{``, ``[`` and ``,``: every container, and every value after the first of its
container) and refuses a body with more than a request of ``max_rows`` rows could hold
(:func:`structure_budget`). Counting bytes is a few fast passes; only when the count is over
the budget, which a body can reach with those bytes inside strings (a text feature), is the
body walked string by string to count the ones outside strings.

After the parse, free-form members (``parameters``, and V2 fields Kiln does not read) are
walked iteratively by :func:`free_form`, which refuses nesting deeper than ``MAX_DEPTH``
(a recursive walk raised RecursionError at about 485 levels, a 500) and more than
``MAX_ITEMS`` containers and values in one free-form member; it returns the object members
it saw, for the duplicate-key check (service/codecs/jsonkeys.py).
"""

from __future__ import annotations

from typing import Any

from kiln.errors import InvalidInput

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "check_structure", "free_form", "structure_budget"]

MAX_DEPTH = 32
"""Deepest nesting of a free-form member (``parameters``); a model's own fields are shallower."""
MAX_ITEMS = 1024
"""Most containers and values (every one, not only keys: ``[{},{}]`` has no keys) in one
free-form member."""
_SLACK = 8 * MAX_ITEMS  # the envelope: top-level fields, shapes, names, every free-form member
_CHUNK = 1 << 20  # bytes counted per call: between calls, the GIL can pass to the event loop


def structure_budget(max_rows: int, features: int) -> int:
    """Most ``{``, ``[`` and ``,`` a request of ``max_rows`` rows of ``features`` features
    needs: a records row is one object and a comma per value; a V2 input in the nested
    ``[[v], [v], ...]`` form one list and one comma per row (two per row and feature), plus
    the envelope and its free-form members."""
    return 2 * max_rows * (features + 1) + _SLACK


def _count(raw: bytes, start: int, end: int) -> int:
    found = 0
    for at in range(start, end, _CHUNK):
        stop = min(at + _CHUNK, end)
        found += raw.count(b"{", at, stop) + raw.count(b"[", at, stop) + raw.count(b",", at, stop)
    return found


def _outside_strings(raw: bytes, budget: int) -> int:
    """The structural bytes outside JSON strings, counted until past ``budget``. Strings are
    skipped by searching for their closing quote (a quote after an even run of backslashes);
    each quote found costs one turn of this loop, bounded by a multiple of the budget, as a
    request's strings are its keys and values."""
    found, pos, turns = 0, 0, 0
    while found <= budget:
        quote = raw.find(b'"', pos)
        if quote < 0:
            return found + _count(raw, pos, len(raw))
        found += _count(raw, pos, quote)
        end = quote
        while True:
            end = raw.find(b'"', end + 1)
            turns += 1
            if end < 0:
                return found  # an unterminated string: the parser names the error
            if turns > 4 * budget:
                return budget + 1
            backslashes = 0
            while raw[end - 1 - backslashes] == 0x5C:  # "\\"
                backslashes += 1
            if backslashes % 2 == 0:
                break
        pos = end + 1
    return found


def check_structure(body: bytes, budget: int, what: str) -> None:
    """Raise ``InvalidInput`` if ``body`` holds more containers and values than ``budget``
    (see :func:`structure_budget`); ``what`` says what a request may carry, for the message."""
    if _count(body, 0, len(body)) <= budget:
        return
    if _outside_strings(body, budget) <= budget:
        return
    raise InvalidInput(
        f"the body holds more than {budget:,} JSON containers and values, more than {what} "
        "needs; send fewer rows per request"
    )


def free_form(node: Any, where: str) -> int:
    """The object members in ``node`` (a free-form JSON value, e.g. ``parameters``), walked
    without recursion; ``InvalidInput`` past ``MAX_DEPTH`` levels or ``MAX_ITEMS`` items."""
    if not isinstance(node, dict | list):
        return 0
    members, items = 0, 0
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidInput(f"{where} is nested more than {MAX_DEPTH} levels deep")
        children = value.values() if isinstance(value, dict) else value
        if isinstance(value, dict):
            members += len(value)
        items += len(value)
        if items > MAX_ITEMS:
            raise InvalidInput(f"{where} holds more than {MAX_ITEMS} values")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return members
