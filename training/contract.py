"""The input contract of an imported model: which features it takes, of which kind, and its
sample typed as the served model will receive it.

- Names: the model's ``feature_names_in_`` (a model fitted on a DataFrame), else the sample's
  columns in order (a model fitted on an array). A column the model needs that the sample
  lacks is an error naming it; sample columns the model does not use are dropped, with a note.
- Kinds: ``--features name=kind`` first, then an MLflow signature's column types, then the
  sample's dtypes: numbers are numeric (float32 when served); strings, categories and
  booleans are categorical; a column a TfidfVectorizer (or another text vectorizer) reads is
  text.
- The sample is read by the same rules as training data (:mod:`training.data`: only an empty
  field is missing) and typed as served: numeric float32 with NaN, strings with ``""`` where
  a value is missing (:data:`kiln.values.MISSING_STRING`).

How the imported model gets those rows back is :func:`training.export.model_input`'s rule
(the ONNX export and verification share it: a model that learned NaN as a missing string is
handed NaN where a categorical holds ``""``); :class:`SourceView` adds what only the sample
knows: booleans and numeric codes of a categorical column, served as strings, go back to the
model as the values it was fitted on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.metaestimators import available_if

from kiln.artifact import DataFile, FeatureKind, Task
from kiln.errors import DataError
from kiln.values import MISSING_STRING
from training.data import fingerprint, read_file, typed_features
from training.spec import Spec

__all__ = [
    "Contract",
    "SourceView",
    "checked_labels",
    "frame_file",
    "input_contract",
    "parse_features",
    "read_sample",
    "task_of",
    "text_columns",
]

_TEXT_VECTORIZERS = ("TfidfVectorizer", "CountVectorizer", "HashingVectorizer")


@dataclass(frozen=True)
class Contract:
    """What the served model takes, and how its sample maps back to the imported model."""

    features: list[tuple[str, FeatureKind]]
    unused: list[str]  # sample columns the model does not take (dropped)
    by_name: bool  # the model was fitted on a DataFrame (feature_names_in_)
    restore: dict[str, str]  # feature -> "bool" | "number": sample dtype of a categorical

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.features]

    def notes(self) -> list[str]:
        """What a user should know about the contract, one line each."""
        if not self.unused:
            return []
        shown = ", ".join(repr(c) for c in self.unused[:20])
        more = f" and {len(self.unused) - 20} more" if len(self.unused) > 20 else ""
        return [f"dropped sample columns the model does not use: {shown}{more}"]


def parse_features(text: str | Mapping[str, Any] | None) -> dict[str, FeatureKind]:
    """``name=kind,name=kind`` (or a mapping) -> kinds; a wrong kind is an error naming it."""
    if not text:
        return {}
    pairs: list[tuple[str, str]] = []
    if isinstance(text, Mapping):
        pairs = [(str(k), str(v)) for k, v in text.items()]
    else:
        for part in text.split(","):
            if not part.strip():
                continue
            name, sep, kind = part.rpartition("=")
            if not sep or not name.strip():
                raise DataError(f"--features: {part.strip()!r} is not of the form name=kind")
            pairs.append((name.strip(), kind.strip()))
    kinds: dict[str, FeatureKind] = {}
    for name, kind in pairs:
        try:
            kinds[name] = FeatureKind(kind)
        except ValueError:
            known = ", ".join(k.value for k in FeatureKind)
            raise DataError(f"--features: {name}={kind}: the kind is one of {known}") from None
    return kinds


@cache
def _reader() -> Spec:
    """The reading rules of a spec with no declared kinds: pandas reads numbers as numbers,
    anything else as written, and only an empty field is missing."""
    return Spec.model_validate(
        {
            "name": "sample",
            "task": "classification",
            "target": "-",
            "features": {"*": "numeric"},
            "estimator": {"type": "LogisticRegression"},
        }
    )


def read_sample(path: Path, strings: set[str] | None = None) -> tuple[pd.DataFrame, DataFile]:
    """A CSV, TSV or Parquet sample, read as training reads data; ``strings``: columns read as
    written (declared categorical or text), never as numbers."""
    frame = read_file(path, _reader(), set(strings or ()))
    frame.columns = [str(c) for c in frame.columns]
    return frame, fingerprint(path, len(frame))


def frame_file(frame: pd.DataFrame) -> DataFile:
    """The fingerprint of a sample given in-process, as ``python:DataFrame``."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    columns = "\x1f".join(map(str, frame.columns)).encode()
    digest = hashlib.sha256(columns + hashed).hexdigest()
    return DataFile(source="python:DataFrame", sha256=digest, rows=len(frame))


def _steps(model: Any) -> list[Any]:
    """The estimators a pipeline chains (the model itself if it is not one)."""
    steps = getattr(model, "steps", None)
    return [step for _, step in steps] if isinstance(steps, list) else [model]


def text_columns(model: Any) -> set[str]:
    """Columns a text vectorizer reads whole (a ColumnTransformer entry naming one column)."""
    found: set[str] = set()
    for step in _steps(model):
        for _, transformer, columns in getattr(step, "transformers_", None) or []:
            first = _steps(transformer)[0]
            if isinstance(columns, str) and type(first).__name__ in _TEXT_VECTORIZERS:
                found.add(columns)
            found |= text_columns(transformer)
    return found


def task_of(model: Any, source: str) -> Task:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model):
        return Task.classification
    if is_regressor(model):
        return Task.regression
    raise DataError(
        f"holds a {type(model).__qualname__}, which is neither a classifier nor a regressor; "
        "Kiln serves models that predict a class or a number",
        source=source,
    )


def _kind_of(column: pd.Series, name: str) -> FeatureKind:
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return FeatureKind.categorical
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype):
        return FeatureKind.numeric
    if pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
        inferred = pd.api.types.infer_dtype(column, skipna=True)
        if inferred in ("integer", "floating", "mixed-integer-float", "decimal", "empty"):
            return FeatureKind.numeric
        if inferred in ("string", "boolean", "mixed", "mixed-integer", "unicode"):
            return FeatureKind.categorical
    raise DataError(
        f"sample column {name!r} holds {dtype} values, which Kiln does not serve; give it as "
        "numbers or strings, or declare its kind with --features"
    )


def input_contract(
    model: Any,
    sample: pd.DataFrame,
    *,
    overrides: Mapping[str, FeatureKind] | None = None,
    declared: Mapping[str, FeatureKind] | None = None,
    source: str = "the sample",
) -> Contract:
    """The features ``model`` takes, their kinds, and the sample columns it does not use.

    ``sample``: feature columns only (the target already taken out). ``overrides``: kinds
    given by the user (``--features``); ``declared``: kinds the source declares (an MLflow
    signature).
    """
    overrides = dict(overrides or {})
    columns = [str(c) for c in sample.columns]
    names_in = getattr(model, "feature_names_in_", None)
    if names_in is not None:
        names = [str(n) for n in names_in]
        missing = [n for n in names if n not in columns]
        if missing:
            raise DataError(
                f"has no column {', '.join(map(repr, missing))}, which the model needs "
                f"(it takes {', '.join(map(repr, names))})",
                source=source,
            )
    else:
        names = columns
        expected = getattr(model, "n_features_in_", None)
        if expected is not None and expected != len(names):
            raise DataError(
                f"has {len(names)} feature columns but the model was fitted on {expected} "
                "unnamed ones (an array): give a sample with exactly its columns, in order",
                source=source,
            )
    wrong = [n for n in overrides if n not in names]
    if wrong:
        raise DataError(
            f"--features names {', '.join(map(repr, wrong))}, which the model does not take "
            f"(it takes {', '.join(map(repr, names))})"
        )
    text = text_columns(model)
    features: list[tuple[str, FeatureKind]] = []
    restore: dict[str, str] = {}
    for name in names:
        column = sample[name]
        if name in overrides:
            kind = overrides[name]
        elif name in text:
            kind = FeatureKind.text
        elif declared and name in declared:
            kind = declared[name]
        else:
            kind = _kind_of(column, name)
        features.append((name, kind))
        if kind is FeatureKind.categorical:
            if pd.api.types.is_bool_dtype(column.dtype):
                restore[name] = "bool"
            elif pd.api.types.is_numeric_dtype(column.dtype):
                restore[name] = "number"
    unused = [c for c in columns if c not in names]
    return Contract(features, unused, names_in is not None, restore)


def as_served(sample: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The sample's feature columns typed as the served model takes them (see the module).

    Values are checked as served (numbers finite within float32, strings with "" for a
    missing value), but numbers keep the sample's float64 precision: the ONNX model gets them
    as float32 (as it gets a request's numbers), the imported model as they were written.
    """
    typed = typed_features(sample, contract.features)
    for name, kind in contract.features:
        if kind is FeatureKind.numeric:
            typed[name] = pd.to_numeric(sample[name]).astype("float64")
    return typed


def checked_labels(model: Any, y: pd.Series, task: Task, source: str) -> pd.Series:
    """Labels in the model's terms; empty labels or classes the model does not know: errors."""
    empty = int(y.isna().sum())
    if empty:
        raise DataError(f"{empty} of {len(y)} labels are empty; fill or remove them", source=source)
    if task is Task.regression:
        numbers = pd.to_numeric(y, errors="coerce")
        if numbers.isna().any():
            example = y[numbers.isna()].iloc[0]
            raise DataError(f"the model is a regressor but a label is {example!r}", source=source)
        return numbers.astype("float64")
    classes = list(model.classes_)
    if all(isinstance(c, str | np.str_) for c in classes):
        y = y.astype(str).astype(object)
    elif pd.api.types.is_float_dtype(y) and (y == y.round()).all():
        y = y.astype("int64")
    known = set(classes)
    unknown = sorted({str(v) for v in y.unique() if v not in known})
    if unknown:
        shown = ", ".join(repr(v) for v in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise DataError(
            f"labels {shown} are not classes the model knows "
            f"({', '.join(map(repr, (c.item() if hasattr(c, 'item') else c for c in classes)))})",
            source=source,
        )
    return y


class SourceView(BaseEstimator):
    """The imported model, called with frames typed as served (see the module's docstring).

    ``missing_as_nan``: the export's verdict (:attr:`training.export.Exported.missing_as_nan`)
    on whether the model takes a missing string as NaN.
    """

    def __init__(self, model: Any, contract: Contract, missing_as_nan: bool = False) -> None:
        self.model = model
        self.contract = contract
        self.missing_as_nan = missing_as_nan

    def __sklearn_tags__(self) -> Any:
        return self.model.__sklearn_tags__()

    def __sklearn_is_fitted__(self) -> bool:
        return True

    @property
    def classes_(self) -> Any:
        return self.model.classes_

    @property
    def feature_names_in_(self) -> np.ndarray:
        """The served columns: what this view takes (a frame, by name)."""
        return np.asarray(self.contract.names, dtype=object)

    def fit(self, X: Any, y: Any = None) -> SourceView:
        """Never refits: an imported model is used as it was fitted (``fit`` exists because
        scikit-learn's inspection tools ask for it)."""
        raise NotImplementedError("an imported model is used as it was fitted")

    def source_input(self, X: pd.DataFrame) -> Any:
        """``X`` (typed as served) as the imported model takes it."""
        from training.export import model_input

        frame = X[self.contract.names]
        if self.contract.restore:
            frame = frame.copy()
            for name, way in self.contract.restore.items():
                values = frame[name].to_numpy(dtype=object)
                present = values != MISSING_STRING
                if way == "bool":
                    restored = np.where(values == "True", True, False).astype(object)
                else:
                    restored = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(object)
                frame[name] = pd.Series(
                    np.where(present, restored, MISSING_STRING), index=frame.index, dtype=object
                )
        return model_input(self.model, frame, self.contract.features, self.missing_as_nan)

    def predict(self, X: pd.DataFrame) -> Any:
        return self.model.predict(self.source_input(X))

    @available_if(lambda self: hasattr(self.model, "predict_proba"))
    def predict_proba(self, X: pd.DataFrame) -> Any:
        return self.model.predict_proba(self.source_input(X))

    @available_if(lambda self: hasattr(self.model, "decision_function"))
    def decision_function(self, X: pd.DataFrame) -> Any:
        return self.model.decision_function(self.source_input(X))
