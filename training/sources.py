"""Loading a model fitted elsewhere: a joblib or pickle file, a ``.skops`` file, an MLflow
model directory (sklearn flavor) or a model in the BentoML store (``bentoml.sklearn``).

**Unpickling runs code.** A joblib or pickle file (and an MLflow directory or BentoML model
stored as a pickle) can do anything when it is loaded: load only files you made or trust.
Only ``kiln import`` and :func:`kiln.save_model`, on the training side, ever load one; what
is registered and served is the verified ONNX export, and serving never unpickles anything.
A ``.skops`` file is loaded with skops' trusted-type check instead: a type skops does not
trust by default stops the import, listed in the error, until ``--trust TYPE`` admits it.

Every problem with the source (not found, not a model, not fitted, an untrusted type, an
MLflow directory of another flavor) is a :class:`~kiln.errors.DataError` (exit 2) naming the
source, raised before anything is written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kiln.artifact import DataFile, FeatureKind, file_sha256
from kiln.errors import DataError

__all__ = ["BENTOML_PREFIX", "FORMATS", "Loaded", "load_source", "loaded_object"]

BENTOML_PREFIX = "bentoml:"
FORMATS = {  # file suffix -> format
    ".joblib": "joblib",
    ".jl": "joblib",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".skops": "skops",
}
_WHAT_KILN_READS = (
    "a .joblib, .pkl or .pickle file (joblib.dump or pickle.dump), a .skops file "
    "(skops.io.dump), an MLflow model directory (mlflow.sklearn.save_model) or "
    "bentoml:NAME[:VERSION] (bentoml.sklearn.save_model)"
)
# MLflow signature column types -> the kind of feature they make
_MLFLOW_KINDS = {
    "double": FeatureKind.numeric,
    "float": FeatureKind.numeric,
    "long": FeatureKind.numeric,
    "integer": FeatureKind.numeric,
    "boolean": FeatureKind.categorical,
    "string": FeatureKind.categorical,
}


@dataclass(frozen=True)
class Loaded:
    """A fitted model, and what is known of where it came from."""

    model: Any
    format: str  # joblib | pickle | skops | mlflow | bentoml | python
    source: str | None  # the path or bentoml:NAME:VERSION read; None for an object
    sha256: str | None  # of the file the model was loaded from
    loaded_with: dict[str, str]  # library versions that loaded it
    sample: pd.DataFrame | None = None  # rows that came with it (MLflow's input example)
    sample_file: DataFile | None = None
    declared: dict[str, FeatureKind] = field(default_factory=dict)  # MLflow signature kinds

    @property
    def model_class(self) -> str:
        cls = type(self.model)
        return f"{cls.__module__}.{cls.__qualname__}"


def _version(module: str) -> str | None:
    loaded = sys.modules.get(module)
    version = getattr(loaded, "__version__", None)
    return str(version) if version is not None else None


def _components(model: Any) -> list[Any]:
    """The model and every estimator nested in it (pipeline steps, column transformers)."""
    found = [model]
    if hasattr(model, "get_params"):
        try:
            params = model.get_params(deep=True)
        except Exception:  # a third-party estimator with odd parameters
            params = {}
        found += [v for v in params.values() if hasattr(v, "get_params")]
    return found


def _libraries(model: Any, loader: str | None) -> dict[str, str]:
    """scikit-learn, the loader, and xgboost / lightgbm when the model holds their estimators."""
    wanted = ["sklearn"] + ([loader] if loader else [])
    used = {type(part).__module__.partition(".")[0] for part in _components(model)}
    wanted += [library for library in ("xgboost", "lightgbm") if library in used]
    names = {"sklearn": "scikit-learn"}
    found = {}
    for module in wanted:
        version = _version(module)
        if version is not None:
            found[names.get(module, module)] = version
    return found


def check_model(model: Any, source: str) -> None:
    """A fitted scikit-learn estimator or Pipeline, or a DataError saying what it is instead."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    cls = type(model)
    what = f"{cls.__module__}.{cls.__qualname__}"
    if not (hasattr(model, "predict") and hasattr(model, "get_params")):
        raise DataError(
            f"holds a {what}, not a scikit-learn estimator or Pipeline; save the fitted "
            "model itself",
            source=source,
        )
    try:
        check_is_fitted(model)
    except NotFittedError:
        raise DataError(
            f"holds a {cls.__qualname__} that was never fitted; fit it before saving it",
            source=source,
        ) from None
    except TypeError as exc:
        raise DataError(
            f"holds a {what}, not a scikit-learn estimator: {exc}", source=source
        ) from None


def _unpickled(path: Path, fmt: str) -> Any:
    """``joblib.load`` (which also reads plain pickles) of a file the user trusts."""
    import joblib

    try:
        return joblib.load(path)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise DataError(
            f"cannot be loaded: it needs code that is not importable here ({exc}); classes "
            "defined in a notebook cannot be loaded outside it: move them into an installed "
            "module",
            source=str(path),
        ) from None
    except MemoryError:
        raise
    except Exception as exc:  # unpickling raises anything; all mean "not a model file"
        raise DataError(
            f"cannot be loaded as a {fmt} file ({type(exc).__name__}: {exc}); expected "
            f"{_WHAT_KILN_READS}",
            source=str(path),
        ) from None


def _skops(path: Path, trust: Sequence[str], hint: str = "") -> Any:
    """``skops.io.load`` with its trusted-type check: types it does not trust need --trust."""
    import skops.io

    source = str(path)
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:
        raise DataError(f"cannot be read as a .skops file ({exc})", source=source) from None
    refused = [t for t in untrusted if t not in set(trust)]
    if refused:
        flags = " ".join(f"--trust {t}" for t in refused)
        raise DataError(
            f"holds types skops does not trust by default: {', '.join(refused)}. Loading one "
            "can run code or crash: admit only types you have reviewed, each with --trust "
            f"TYPE ({flags}){hint}",
            source=source,
        )
    try:
        return skops.io.load(path, trusted=[t for t in untrusted if t in set(trust)])
    except Exception as exc:
        raise DataError(f"cannot be loaded as a .skops file ({exc})", source=source) from None


def _sniff(path: Path) -> str | None:
    """The format of a file whose suffix does not say: skops (a zip) or a pickle."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise DataError(f"cannot be read: {exc.strerror or exc}", source=str(path)) from None
    if head.startswith(b"PK\x03\x04"):
        return "skops"
    if head[:1] == b"\x80":  # pickle protocol 2+ (joblib writes these too)
        return "pickle"
    return None


def _file(path: Path, trust: Sequence[str]) -> Loaded:
    fmt = FORMATS.get(path.suffix.lower()) or _sniff(path)
    if fmt is None:
        raise DataError(
            f"is not a model file Kiln reads; expected {_WHAT_KILN_READS}", source=str(path)
        )
    model = _skops(path, trust) if fmt == "skops" else _unpickled(path, fmt)
    check_model(model, str(path))
    loader = "skops" if fmt == "skops" else "joblib"
    return Loaded(model, fmt, str(path), file_sha256(path), _libraries(model, loader))


def _mlflow_sample(directory: Path, doc: dict[str, Any]) -> tuple[pd.DataFrame, DataFile] | None:
    """MLflow's saved input example as a frame (the ``dataframe`` kind, split orient)."""
    info = doc.get("saved_input_example_info") or {}
    if info.get("type") != "dataframe" or not info.get("artifact_path"):
        return None
    path = directory / str(info["artifact_path"])
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        frame = pd.DataFrame(raw["data"], columns=raw["columns"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"its input example cannot be read: {exc}", source=str(path)) from None
    if frame.empty:
        return None
    return frame, DataFile(source=str(path), sha256=file_sha256(path), rows=len(frame))


def _mlflow_kinds(doc: dict[str, Any]) -> dict[str, FeatureKind]:
    """Feature kinds from the signature's named input columns (column-based signatures)."""
    inputs = (doc.get("signature") or {}).get("inputs")
    try:
        columns = json.loads(inputs) if isinstance(inputs, str) else []
    except ValueError:
        return {}
    return {
        str(c["name"]): _MLFLOW_KINDS[c["type"]]
        for c in columns
        if isinstance(c, dict) and c.get("name") and c.get("type") in _MLFLOW_KINDS
    }


def _mlflow(directory: Path, trust: Sequence[str]) -> Loaded:
    import yaml

    source = str(directory)
    try:
        doc = yaml.safe_load((directory / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"its MLmodel file cannot be read: {exc}", source=source) from None
    flavors = doc.get("flavors") if isinstance(doc, dict) else None
    if not isinstance(flavors, dict):
        raise DataError("its MLmodel file names no flavors", source=source)
    sklearn = flavors.get("sklearn")
    if not isinstance(sklearn, dict):
        raise DataError(
            f"is an MLflow model without the sklearn flavor (flavors: "
            f"{', '.join(map(str, flavors)) or 'none'}); Kiln imports models saved with "
            "mlflow.sklearn.save_model or mlflow.sklearn.log_model (an XGBoost or LightGBM "
            "model through its scikit-learn API: XGBClassifier, LGBMRegressor, ...)",
            source=source,
        )
    fmt = sklearn.get("serialization_format", "cloudpickle")
    model_path = directory / str(sklearn.get("pickled_model") or "")
    if not sklearn.get("pickled_model") or not model_path.is_file():
        raise DataError(
            f"its sklearn flavor names no model file ({model_path.name})", source=source
        )
    if fmt == "skops":
        declared = sklearn.get("skops_trusted_types") or []
        hint = (
            f" (its MLmodel file lists {', '.join(declared)} as trusted by whoever saved it)"
            if declared
            else ""
        )
        model = _skops(model_path, trust, hint)
    elif fmt in ("pickle", "cloudpickle"):
        model = _unpickled(model_path, fmt)
    else:
        raise DataError(f"its sklearn flavor has serialization format {fmt!r}", source=source)
    check_model(model, source)
    sample = _mlflow_sample(directory, doc)
    loader = "skops" if fmt == "skops" else "joblib"
    return Loaded(
        model,
        "mlflow",
        source,
        file_sha256(model_path),
        _libraries(model, loader),
        sample=sample[0] if sample else None,
        sample_file=sample[1] if sample else None,
        declared=_mlflow_kinds(doc),
    )


def _bentoml(ref: str) -> Loaded:
    """A model saved with ``bentoml.sklearn.save_model`` (NAME: its newest such version)."""
    import bentoml
    import bentoml.sklearn
    from bentoml.exceptions import BentoMLException, NotFound

    from kiln.store import foreign_models, list_models

    name, _, version = ref.removeprefix(BENTOML_PREFIX).partition(":")
    source = f"{BENTOML_PREFIX}{name}" + (f":{version}" if version else "")
    if not name:
        raise DataError("name the model: bentoml:NAME or bentoml:NAME:VERSION", source=source)
    others = [m for m in foreign_models(name) if m.importable]
    try:
        if version:
            model = bentoml.models.get(f"{name}:{version}")
        elif others:
            model = bentoml.models.get(others[0].tag)
        else:
            kiln_made = bool(list_models(name)[0])
            raise DataError(
                "is a Kiln model already (kiln models show it)"
                if kiln_made
                else "no such model in the BentoML store (bentoml models list shows what it "
                "holds; $BENTOML_HOME decides which store)",
                source=source,
            )
    except NotFound:
        raise DataError("no such model in the BentoML store", source=source) from None
    except BentoMLException as exc:
        raise DataError(f"not a model reference: {exc}", source=source) from None
    source = f"{BENTOML_PREFIX}{model.tag}"
    if (Path(model.path) / "kiln.json").is_file():
        raise DataError("is a Kiln model already (kiln models show it)", source=source)
    if model.info.module != "bentoml.sklearn":
        raise DataError(
            f"was saved with {model.info.module}; Kiln imports models saved with "
            "bentoml.sklearn.save_model",
            source=source,
        )
    path = Path(model.path_of(getattr(bentoml.sklearn, "MODEL_FILENAME", "saved_model.pkl")))
    try:
        fitted = bentoml.sklearn.load_model(model)
    except Exception as exc:
        raise DataError(f"cannot be loaded: {exc}", source=source) from None
    check_model(fitted, source)
    sha256 = file_sha256(path) if path.is_file() else None
    return Loaded(fitted, "bentoml", source, sha256, _libraries(fitted, "bentoml"))


def load_source(source: str, *, trust: Sequence[str] = ()) -> Loaded:
    """Load the fitted model ``source`` names (see the module's docstring for what it may be).

    ``trust``: type names a ``.skops`` file may hold beyond those skops trusts by default.
    """
    if source.startswith(BENTOML_PREFIX):
        return _bentoml(source)
    path = Path(source)
    if path.is_dir():
        if (path / "MLmodel").is_file():
            return _mlflow(path, trust)
        raise DataError(
            f"is a directory without an MLmodel file; expected {_WHAT_KILN_READS}", source=source
        )
    if not path.is_file():
        raise DataError("file not found", source=source)
    return _file(path, trust)


def loaded_object(model: Any) -> Loaded:
    """A fitted model handed over in-process (:func:`kiln.save_model`): nothing is loaded."""
    check_model(model, f"the {type(model).__qualname__} given")
    return Loaded(model, "python", None, None, _libraries(model, None))
