"""Duplicate keys in a JSON request: refused, not silently resolved.

RFC 8259 leaves a repeated name in one object to the receiver ("unpredictable"); orjson, like
most parsers, keeps the last value. A model server must not guess which of two values a client
meant, so a request with a repeated key is answered 400 naming the key.

The check costs almost nothing in the common case. A request's raw text has one ``:`` per
object member plus any inside strings, so when the count of ``:`` bytes equals the number of
members in the parsed document, no member was lost to a duplicate (and no string holds a
colon). Only otherwise, when a string holds a colon or a key repeats, is the text parsed
again by the standard library with a hook that sees every member, which finds the key. By
then the free-form members have been walked within their depth bound (service/codecs/bounds.py),
so the standard library's recursive parser meets no deep nesting there; deeper nesting
elsewhere is still a 400.
"""

from __future__ import annotations

import json
from typing import Any

from kiln.errors import InvalidInput
from service.codecs.bounds import free_form

__all__ = ["ensure_unique_keys", "payload_members"]


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return found


def ensure_unique_keys(text: bytes | memoryview, parsed_members: int) -> None:
    """Raise ``InvalidInput`` if an object in ``text`` (valid JSON, already parsed into a
    document with ``parsed_members`` object members) repeats a key."""
    raw = bytes(text)
    if raw.count(b":") == parsed_members:
        return
    try:
        json.loads(raw, object_pairs_hook=_unique)
    except _Duplicate as duplicate:
        shown = duplicate.key if len(duplicate.key) <= 40 else duplicate.key[:37] + "..."
        raise InvalidInput(
            f"the key {shown!r} appears twice in one JSON object; send each key once"
        ) from None
    except RecursionError:
        raise InvalidInput("the JSON document is nested too deeply") from None


def payload_members(payload: dict[str, Any]) -> int:
    """Object members of a decoded records payload (rows hold plain values once decoded), for
    :func:`ensure_unique_keys`; its free-form ``parameters`` within their bounds, or
    ``InvalidInput``."""
    rows = payload.get("instances") or ()
    return len(payload) + sum(map(len, rows)) + free_form(payload.get("parameters"), "'parameters'")
