"""JSON records: ``{"instances": [{"feature": value, ...}, ...]}`` in, predictions out.

Values are raw feature values as in the data file: numbers for numeric features (null where
missing), strings for categorical and text features (null where missing; integers are
accepted for categoricals and read as their decimal string).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from kiln.artifact import FeatureKind
from kiln.errors import InvalidInput, PayloadTooLarge
from kiln.values import FLOAT32_MAX, by_identity, kind_name, show, typed_value

__all__ = ["decode_instances", "encode_predictions"]


def decode_instances(
    payload: Any,
    features: Sequence[tuple[str, FeatureKind]],
    *,
    max_rows: int,
    unknown: Literal["reject", "ignore"] = "reject",
) -> tuple[dict[str, np.ndarray], int]:
    """Check and type a records payload: (columns by feature name, row count)."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"body must be a JSON object with 'instances', got {kind_name(payload)}")
    extra = set(payload) - {"instances", "parameters"}
    if extra:
        raise InvalidInput(f"unknown top-level field {sorted(extra)[0]!r}; expected 'instances'")
    instances = payload.get("instances")
    if not isinstance(instances, list):
        raise InvalidInput("'instances' must be a list of objects, one per row")
    if not instances:
        raise InvalidInput("'instances' is empty: send at least one row")
    if len(instances) > max_rows:
        raise PayloadTooLarge(f"'instances' has {len(instances)} rows; the limit is {max_rows}")
    layout = by_identity(features, "records", _Layout)
    names = layout.names
    for i, row in enumerate(instances):
        if type(row) is not dict:
            raise InvalidInput(f"instances[{i}] must be an object, got {kind_name(row)}")
        if row.keys() != names:  # C-level set comparison; the details only on a mismatch
            _check_keys(i, row, features, names, unknown)
    return _typed(instances, features, layout), len(instances)


class _Layout:
    """What decoding needs of a feature list, made once per list (``by_identity``)."""

    def __init__(self, features: Sequence[tuple[str, FeatureKind]]) -> None:
        self.names = {name for name, _ in features}
        self.numeric = [name for name, kind in features if kind is FeatureKind.numeric]
        self.other = [name for name, kind in features if kind is not FeatureKind.numeric]
        self.all_numeric = not self.other  # then the block's order is the features' order


def _typed(
    instances: list[dict[str, Any]],
    features: Sequence[tuple[str, FeatureKind]],
    layout: _Layout,
) -> dict[str, np.ndarray]:
    """Columns by feature. The common case (plain numbers, strings) takes a few array
    operations for all numeric features together; anything else goes value by value, row by
    row, and the first bad value is named."""
    numeric = layout.numeric
    found: dict[str, np.ndarray] = {}
    if numeric:
        block = _numeric_block(instances, numeric)
        if block is None:
            return _typed_one_by_one(instances, features)
        found.update(zip(numeric, block, strict=True))
        if layout.all_numeric:
            return found
    for name in layout.other:
        values = [row[name] for row in instances]
        if not set(map(type, values)) <= {str}:
            return _typed_one_by_one(instances, features)
        found[name] = np.array(values, dtype=object)
    return {name: found[name] for name, _ in features}


def _numeric_block(instances: list[dict[str, Any]], numeric: list[str]) -> np.ndarray | None:
    """[feature, row] float32 array of plain numbers (None: NaN), or None if any value is
    something else or out of float32's range."""
    get = operator.itemgetter(*numeric)
    rows: list[Any] = list(map(get, instances))  # C-level: one tuple per row
    if len(numeric) == 1:
        rows = [(value,) for value in rows]
    types = set(map(type, itertools.chain.from_iterable(rows)))
    if not types <= _NUMBERS_OR_NONE:
        return None
    if type(None) in types:
        rows = [tuple(math.nan if v is None else v for v in row) for row in rows]
    try:
        array = np.fromiter(
            itertools.chain.from_iterable(rows), dtype=np.float64, count=len(rows) * len(numeric)
        ).reshape(len(rows), len(numeric))
    except OverflowError:  # an integer past float64
        return None
    if (np.abs(array) > FLOAT32_MAX).any():
        return None
    return array.astype(np.float32).T.copy()  # one contiguous row per feature


def _typed_one_by_one(
    instances: list[dict[str, Any]], features: Sequence[tuple[str, FeatureKind]]
) -> dict[str, np.ndarray]:
    columns: dict[str, list[Any]] = {name: [None] * len(instances) for name, _ in features}
    for i, row in enumerate(instances):
        for name, kind in features:
            columns[name][i] = typed_value(row[name], kind, f"instances[{i}].{name}")
    return {
        name: np.array(columns[name], dtype=np.float32 if kind is FeatureKind.numeric else object)
        for name, kind in features
    }


def _check_keys(
    i: int,
    row: dict[str, Any],
    features: Sequence[tuple[str, FeatureKind]],
    names: set[str],
    unknown: Literal["reject", "ignore"],
) -> None:
    if unknown == "reject":
        for key in row:
            if key not in names:
                raise InvalidInput(
                    f"instances[{i}]: unknown feature {show(key)}; the model takes "
                    f"{', '.join(sorted(names))}"
                )
    for name, _ in features:
        if name not in row:
            raise InvalidInput(
                f"instances[{i}]: missing feature {name!r} (send null for a missing value)"
            )


_NUMBERS_OR_NONE = frozenset({int, float, type(None)})


def encode_predictions(
    *,
    model: str,
    version: str,
    outputs: dict[str, np.ndarray],
    classes: list[Any] | None,
) -> dict[str, Any]:
    """The answer: predictions in order, plus per-class probabilities (or scores) by class."""
    answer: dict[str, Any] = {"model": model, "version": version}
    if classes is None:
        answer["predictions"] = [float(v) for v in outputs["prediction"].reshape(-1)]
        return answer
    answer["predictions"] = outputs["label"].tolist()  # native Python values
    key = "probabilities" if "probabilities" in outputs else "scores"
    names = [str(c) for c in classes]
    answer[key] = [dict(zip(names, row, strict=True)) for row in outputs[key].tolist()]
    return answer
