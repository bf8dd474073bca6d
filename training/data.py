"""Loading the data a spec names, checking it against the spec, and fingerprinting it.

Data files are never modified. Values are given the types the served model takes: numeric
features become float32 (NaN where missing), categorical and text features stay the strings
the file holds ("" where missing), so training sees exactly what serving will receive.
"""

from __future__ import annotations

import glob
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from kiln.artifact import DataFile, FeatureKind, Task, file_sha256
from kiln.errors import DataError, SpecError
from kiln.values import MISSING_STRING
from training.spec import Spec

__all__ = ["Dataset", "fingerprint", "load_dataset", "read_file", "resolve_paths", "typed_features"]

_MISMATCH = "does not match the data"  # SpecError verdict for data-dependent checks
_BUNDLED_TARGETS = {
    "breast_cancer": "diagnosis",
    "diabetes": "progression",
    "iris": "species",
    "wine": "cultivar",
}


@dataclass(frozen=True)
class Dataset:
    """Feature columns (typed for ONNX) and the target, ready to split and fit."""

    X: pd.DataFrame
    y: pd.Series
    features: list[tuple[str, FeatureKind]]
    files: list[DataFile]

    @property
    def rows(self) -> int:
        return len(self.X)


def resolve_paths(patterns: list[str], base: Path) -> list[Path]:
    """Expand globs relative to ``base``; a pattern that matches nothing is an error."""
    paths: list[Path] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else [full]  # noqa: PTH207
        if not matches:
            raise DataError("no file matches this pattern", source=pattern)
        paths.extend(Path(m) for m in matches)
    return paths


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _bundled(name: str) -> tuple[pd.DataFrame, list[DataFile]]:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.rename(columns=_snake)
    target = _BUNDLED_TARGETS[name]
    frame = frame.rename(columns={"target": target})
    if "target_names" in bunch:  # classifiers: labels as names, not indices
        frame[target] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return frame, [DataFile(source=f"sklearn:{name}", sha256=digest.hexdigest(), rows=len(frame))]


def read_file(path: Path, spec: Spec, text_columns: set[str]) -> pd.DataFrame:
    """One CSV, TSV or Parquet file as written, read by ``spec.data``'s rules.

    Only an empty field is missing; ``text_columns`` (and every column, when ``"*"`` takes a
    string kind) are read as the strings the file holds, never as numbers. A file that is
    absent, unreadable or empty is a :class:`DataError` naming it.
    """
    # `"*": categorical` (or text) takes columns not named: read them all as written; numeric
    # features are converted below either way
    all_strings = spec.features.get("*") not in (None, FeatureKind.numeric)
    fmt = spec.data.format or {
        ".tsv": "tsv",
        ".tab": "tsv",
        ".parquet": "parquet",
        ".pq": "parquet",
    }.get(path.suffix.lower(), "csv")
    source = str(path)
    if not path.is_file():
        raise DataError("file not found", source=source)
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(
                path,
                sep="\t" if fmt == "tsv" else ",",
                header=0 if spec.data.header else None,
                names=None if spec.data.header else spec.data.columns,
                dtype=str if all_strings else {c: str for c in text_columns},  # as written
                index_col=False,  # an extra field is an error, never a silent index
                # Only an empty field is missing, as for every served path (kiln/values.py):
                # "NA" or "n/a" is a category in a categorical column and not a number in a
                # numeric one, in training as in `kiln predict` and the routes.
                keep_default_na=False,
                na_values=[""],
                quoting=3 if fmt == "tsv" else 0,  # TSV: quotes are text, not delimiters
                on_bad_lines="error",
            )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"cannot be read as {fmt.upper()}: {str(exc).strip()}", source=source
        ) from None
    except OSError as exc:
        raise DataError(f"cannot be read: {exc.strerror or exc}", source=source) from None
    except Exception as exc:  # pyarrow raises its own types for corrupt files
        raise DataError(f"cannot be read as {fmt.upper()}: {exc}", source=source) from None
    if frame.empty:
        raise DataError("has no data rows", source=source)
    return frame


def fingerprint(path: Path, rows: int) -> DataFile:
    """Where a data file came from: its path, SHA-256, row count and modification time."""
    modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
    return DataFile(source=str(path), sha256=file_sha256(path), rows=rows, modified=modified)


def _resolve_features(spec: Spec, columns: list[str]) -> list[tuple[str, FeatureKind]]:
    problems: list[tuple[str, str]] = []
    named = {k: v for k, v in spec.features.items() if k != "*"}
    for name in named:
        if name not in columns:
            problems.append((f"features.{name}", f"no column {name!r} in the data"))
    for name in spec.drop:
        if name not in columns:
            problems.append(("drop", f"no column {name!r} in the data"))
    if spec.target not in columns:
        problems.append(("target", f"no column {spec.target!r} in the data"))
    if problems:
        shown = ", ".join(columns[:40]) + (" ..." if len(columns) > 40 else "")
        problems.append(("(data)", f"columns are: {shown}"))
        raise SpecError(problems, verdict=_MISMATCH)
    resolved = [(n, named[n]) for n in columns if n in named]
    if "*" in spec.features:
        skip = {spec.target, *spec.drop, *named}
        resolved += [(n, spec.features["*"]) for n in columns if n not in skip]
    # keep the spec's order for named features, then the columns `*` took
    order = {n: i for i, n in enumerate(named)}
    resolved.sort(key=lambda item: order.get(item[0], len(order)))
    return resolved


def typed_features(frame: pd.DataFrame, features: list[tuple[str, FeatureKind]]) -> pd.DataFrame:
    """The feature columns typed as the served model takes them.

    Numeric features become float32 (NaN where missing); categorical and text features the
    strings the file holds (``""`` where missing). Non-numeric values in a numeric feature and
    values that overflow float32 are a :class:`SpecError` naming every such feature.
    """
    out: dict[str, pd.Series] = {}
    problems: list[tuple[str, str]] = []
    for name, kind in features:
        column = frame[name]
        if kind is FeatureKind.numeric:
            numbers = pd.to_numeric(column, errors="coerce")
            bad = column[numbers.isna() & column.notna()]
            if len(bad):
                examples = ", ".join(repr(v) for v in bad.astype(str).unique()[:3])
                problems.append(
                    (
                        f"features.{name}",
                        f"declared numeric but holds non-numeric values such as {examples}; "
                        "leave a missing value empty, or declare it categorical (or text)",
                    )
                )
                continue
            with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
                values = numbers.astype("float64").astype("float32")
            infinite = int(np.isinf(values).sum())
            if infinite:
                problems.append(
                    (f"features.{name}", f"holds {infinite} infinite or float32-overflowing values")
                )
                continue
            out[name] = values
        else:
            strings = column.astype("string").fillna(MISSING_STRING)
            out[name] = strings.astype(object)
    if problems:
        raise SpecError(problems, verdict=_MISMATCH)
    return pd.DataFrame(out, index=frame.index)


def _typed_target(frame: pd.DataFrame, spec: Spec, sources: str) -> pd.Series:
    y = frame[spec.target]
    empty = int(y.isna().sum())
    if empty:
        raise DataError(
            f"target {spec.target!r} is empty in {empty} of {len(y)} rows; fill or remove them",
            source=sources,
        )
    if spec.task is Task.regression:
        numbers = pd.to_numeric(y, errors="coerce")
        if numbers.isna().any():
            example = y[numbers.isna()].iloc[0]
            raise SpecError(
                [("target", f"task is regression but {spec.target!r} holds {example!r}")],
                verdict=_MISMATCH,
            )
        infinite = int(np.isinf(numbers.astype("float64")).sum())
        if infinite:
            raise SpecError(
                [("target", f"{spec.target!r} holds {infinite} infinite values")],
                verdict=_MISMATCH,
            )
        return numbers.astype("float64")
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        y = y.astype(str).astype(object)  # class labels as the file writes them
    elif pd.api.types.is_float_dtype(y) and (y == y.round()).all():
        y = y.astype("int64")
    counts = y.value_counts()
    if len(counts) < 2:
        raise SpecError(
            [
                (
                    "target",
                    f"{spec.target!r} has one class ({counts.index[0]!r}); "
                    "a classifier needs at least two",
                )
            ],
            verdict=_MISMATCH,
        )
    rare = counts[counts < 2]
    if len(rare):
        raise SpecError(
            [
                (
                    "target",
                    f"class {rare.index[0]!r} has a single row; every class needs at "
                    "least two for a stratified holdout",
                )
            ],
            verdict=_MISMATCH,
        )
    return y


def load_dataset(spec: Spec, paths: list[Path]) -> Dataset:
    """Read every file (or the bundled set), concatenate, check against the spec, type it."""
    if spec.data.sklearn:
        frame, files = _bundled(spec.data.sklearn)
    else:
        if not paths:
            raise SpecError(
                [
                    (
                        "data.paths",
                        "no data: give paths in the spec or `--data FILE` on the command line",
                    )
                ]
            )
        text_columns = {
            n for n, k in spec.features.items() if k is not FeatureKind.numeric and n != "*"
        }
        frames, files = [], []
        for path in paths:
            part = read_file(path, spec, text_columns)
            frames.append(part)
            files.append(fingerprint(path, len(part)))
        first = list(frames[0].columns)
        for path, part in zip(paths[1:], frames[1:], strict=True):
            missing = [c for c in first if c not in part.columns]
            extra = [c for c in part.columns if c not in first]
            if missing or extra:
                differences = [
                    f"{label} {', '.join(map(repr, cols))}"
                    for label, cols in (("missing", missing), ("extra", extra))
                    if cols
                ]
                raise DataError(
                    f"columns differ from {paths[0].name}: {'; '.join(differences)}",
                    source=str(path),
                )
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    features = _resolve_features(spec, columns)
    X = typed_features(frame, features)
    y = _typed_target(frame, spec, ", ".join(f.source for f in files))
    return Dataset(X=X, y=y, features=features, files=files)
