"""What a valid feature value is, and how values are typed for the model: one set of rules.

Every entry point applies these rules: the JSON records route and the in-process Predictor
(value by value, :func:`typed_value`), the Open Inference Protocol route (typed tensors, then
:func:`check_columns`), and batch scoring of files and DataFrames (vectorised,
:func:`check_frame`). The verdict on a value is the same everywhere:

- numeric features take numbers; missing is ``null`` in JSON, NaN in a tensor or DataFrame,
  an empty field in a CSV file. A text file's fields are text, so there a field is a number
  when it reads as one; anything else (``"n/a"``, ``"?"``, a boolean) is refused as not a
  number, never read as missing. Infinite values and numbers beyond float32 are refused.
- categorical and text features take strings (integer codes for categoricals, read as their
  decimal string); missing becomes :data:`MISSING_STRING`.

The model's answers have one rule too: a row whose float outputs (probabilities, scores, a
regression's prediction) are not all finite is an error for that row, never an answer
(:func:`nonfinite_outputs`; the words are :class:`kiln.errors.NonFiniteOutput`'s). Finite
inputs far outside the training data can overflow float32 inside the model (a linear
model's score), and its label would then be a confident guess made from NaN.

Typed columns are float32 (numeric) and object arrays of ``str`` (the rest), one per
feature, as the ONNX model takes them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from kiln.artifact import FeatureKind, ModelMetadata
from kiln.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FLOAT32_MAX",
    "MISSING_STRING",
    "CheckedFrame",
    "by_identity",
    "check_columns",
    "check_frame",
    "expected",
    "kind_name",
    "nonfinite_outputs",
    "show",
    "typed_value",
]

MISSING_STRING = ""
"""How a missing categorical or text value reaches the model (and how training stores it)."""

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Largest magnitude a numeric feature may have: the model computes in float32."""

_SHOWN = 40  # longest value shown in a message


def show(value: Any) -> str:
    """A value as a message shows it: its repr, cut to 40 characters."""
    if isinstance(value, np.generic):  # numpy scalars: show 1.5, not np.float64(1.5)
        value = value.item()
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def kind_name(value: Any) -> str:
    """A value's JSON type name, for messages."""
    return {bool: "boolean", str: "string", list: "array", dict: "object", type(None): "null"}.get(
        type(value), "number" if isinstance(value, int | float) else type(value).__name__
    )


def expected(kind: FeatureKind) -> str:
    """What a feature of ``kind`` takes, as messages say it."""
    if kind is FeatureKind.numeric:
        return "a number"
    return "a string" if kind is FeatureKind.text else "a string (or an integer code)"


def not_a_number(value: Any) -> str:
    return f"{show(value)} is not a number"


def not_finite(value: Any) -> str:
    return f"{show(value)} is not a finite float32 number"


def wrong_type(kind: FeatureKind, value: Any, missing: str = "") -> str:
    return f"expected {expected(kind)}{missing}, got {kind_name(value)} {show(value)}"


def typed_value(value: Any, kind: FeatureKind, where: str) -> Any:
    """One JSON value as the model takes it, or InvalidInput naming ``where``."""
    if kind is FeatureKind.numeric:
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"{where}: {wrong_type(kind, value, ' or null')}")
        number = float(value)
        if math.isnan(number):  # a DataFrame's missing value (JSON cannot carry NaN)
            return math.nan
        if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
            raise InvalidInput(f"{where}: {not_finite(value)}")
        return number
    if value is None:
        return MISSING_STRING
    if isinstance(value, str):
        return value
    if kind is FeatureKind.categorical and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidInput(f"{where}: {wrong_type(kind, value, ' or null')}")


def check_columns(metadata: ModelMetadata, columns: dict[str, np.ndarray]) -> None:
    """Checks on typed columns that hold whatever the protocol: finite numbers (NaN means
    missing), strings for the other features."""
    numeric, other = _kinds(metadata)
    if numeric:  # one pass over every numeric value; the feature and row only when one is bad
        values = np.concatenate([columns[n] for n in numeric]) if len(numeric) > 1 else None
        if values is None or np.isinf(values).any():
            for name in numeric:
                bad = np.isinf(columns[name])
                if bad.any():
                    row = int(np.argmax(bad))
                    raise InvalidInput(
                        f"feature {name!r}, row {row}: infinite values are not accepted "
                        "(send null or NaN for a missing value)"
                    )
    for name in other:
        if columns[name].dtype != object:
            raise InvalidInput(f"feature {name!r}: expected strings")


T = TypeVar("T")
_MEMO: dict[tuple[int, str], tuple[Any, Any]] = {}
_MEMO_KEPT = 256  # entries remembered (a worker serves a few model versions at a time)


def by_identity(obj: Any, what: str, make: Callable[[Any], T]) -> T:
    """``make(obj)``, made once per object: for what the request paths derive from a model's
    features on every request. Remembered by identity (the metadata models and feature lists
    are not hashable), holding the object so that its id is not reused; forgotten all at once
    past ``_MEMO_KEPT`` entries. (By hand: functools' caches need hashable keys.)"""
    key = (id(obj), what)
    found = _MEMO.get(key)
    if found is None or found[0] is not obj:
        if len(_MEMO) >= _MEMO_KEPT:
            _MEMO.clear()
        found = _MEMO[key] = (obj, make(obj))
    return found[1]


def _kinds(metadata: ModelMetadata) -> tuple[list[str], list[str]]:
    """(numeric feature names, the others), in order: read off the pydantic fields on every
    request, they cost 13 us of a one-row request of 30 features, more than the checks."""
    return by_identity(metadata, "kinds", _split_kinds)


def _split_kinds(metadata: ModelMetadata) -> tuple[list[str], list[str]]:
    numeric = [f.name for f in metadata.features if f.kind is FeatureKind.numeric]
    other = [f.name for f in metadata.features if f.kind is not FeatureKind.numeric]
    return numeric, other


def nonfinite_outputs(outputs: dict[str, np.ndarray]) -> dict[int, str]:
    """Rows whose float outputs are not all finite: row -> ``"name = value"`` of its first
    such output. One pass per output when all is well (the usual case)."""
    found: dict[int, str] = {}
    for name, array in outputs.items():
        if not np.issubdtype(array.dtype, np.floating) or np.isfinite(array).all():
            continue
        flat = array.reshape(len(array), -1)
        for row in np.flatnonzero(~np.isfinite(flat).all(axis=1)).tolist():
            if row not in found:
                value = flat[row][~np.isfinite(flat[row])][0]
                found[row] = f"{name} = {show(value)}"
    return found


# --- frames: the same rules, vectorised, for files and DataFrames ---------------------------


@dataclass
class CheckedFrame:
    """A frame checked by the rules above."""

    columns: dict[str, np.ndarray]  # typed, every row (refused rows hold placeholders)
    bad: np.ndarray  # bool, rows refused
    reasons: dict[int, list[str]]  # row position -> "feature: problem" for each bad value


def _is_strings(column: pd.Series) -> bool:
    """Strings and missing values only (a CSV column read as text, a Parquet string column)."""
    import pandas as pd

    if isinstance(column.dtype, pd.StringDtype):
        return True
    return column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) in (
        "string",
        "empty",
    )


def _numbers(column: pd.Series) -> tuple[np.ndarray, np.ndarray | None]:
    """(float64 values with NaN where missing or unreadable, mask of non-numbers or None)."""
    import pandas as pd

    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return np.full(len(column), np.nan), column.notna().to_numpy()
    if pd.api.types.is_numeric_dtype(dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan), None
    if _is_strings(column):  # text from a file: a number when it reads as one
        present = column.notna().to_numpy() & (column.to_numpy(dtype=object) != MISSING_STRING)
        parsed = pd.to_numeric(column.where(present), errors="coerce")
        values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
        return values, np.isnan(values) & present
    # objects: numbers mixed with anything else (a DataFrame built by hand)
    objects = column.to_numpy(dtype=object)
    values = np.full(len(column), np.nan)
    wrong = np.zeros(len(column), dtype=bool)
    for i, value in enumerate(objects):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            wrong[i] = True
        else:
            values[i] = float(value)
    return values, wrong


def check_frame(frame: pd.DataFrame, features: list[tuple[str, FeatureKind]]) -> CheckedFrame:
    """Check and type every feature column of ``frame``; bad rows are marked, not raised."""
    rows = len(frame)
    bad = np.zeros(rows, dtype=bool)
    reasons: dict[int, list[str]] = {}
    columns: dict[str, np.ndarray] = {}

    def refuse(name: str, mask: np.ndarray, problem: Any, values: np.ndarray) -> None:
        for i in np.flatnonzero(mask):
            reasons.setdefault(int(i), []).append(f"{name}: {problem(values[i])}")
        bad[mask] = True

    for name, kind in features:
        column = frame[name]
        raw = column.to_numpy(dtype=object)
        if kind is FeatureKind.numeric:
            values, not_numbers = _numbers(column)
            if not_numbers is not None and not_numbers.any():
                text = _is_strings(column)
                refuse(
                    name,
                    not_numbers,
                    not_a_number if text else (lambda v: wrong_type(FeatureKind.numeric, v)),
                    raw,
                )
            with np.errstate(invalid="ignore"):
                too_big = np.abs(values) > FLOAT32_MAX  # infinities and float32 overflow
            if too_big.any():
                refuse(name, too_big, not_finite, values)
                values = np.where(too_big, np.nan, values)
            columns[name] = values.astype(np.float32)
        elif _is_strings(column):
            columns[name] = column.fillna(MISSING_STRING).to_numpy(dtype=object)
        else:
            typed = np.full(rows, MISSING_STRING, dtype=object)
            wrong = np.zeros(rows, dtype=bool)
            for i, value in enumerate(raw):
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue
                if isinstance(value, str):
                    typed[i] = value
                elif (
                    kind is FeatureKind.categorical
                    and isinstance(value, int | np.integer)
                    and not isinstance(value, bool | np.bool_)
                ):
                    typed[i] = str(value)
                else:
                    wrong[i] = True
            if wrong.any():
                refuse(name, wrong, lambda v, k=kind: wrong_type(k, v), raw)
            columns[name] = typed
    return CheckedFrame(columns, bad, reasons)
