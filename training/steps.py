"""What a fitted model is made of, and which of its steps Kiln refuses to export.

:func:`walk` lists every step of a fitted estimator with its place: Pipeline steps and
ColumnTransformer/FeatureUnion transformers by name, the members of a meta-estimator (a
voting or stacking ensemble, a calibrated or one-vs-rest classifier) by name or by index,
as in ``preprocess > num > power: PowerTransformer``. :func:`refusal` finds the first step
that cannot become a faithful ONNX model, before skl2onnx is called, and says why and what
to do instead: a step skl2onnx has no converter for, or an option it converts into
different answers. :func:`missing_strings` decides how a missing categorical value, which
Kiln serves as ``""``, reaches the model (see :func:`training.export.export_model`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kiln.values import MISSING_STRING

__all__ = [
    "TFIDF_OPTIONS",
    "MissingStrings",
    "Step",
    "TfidfOption",
    "missing_strings",
    "refusal",
    "unfaithful_tfidf",
    "walk",
]

# Replacements to suggest for steps skl2onnx cannot convert; the default names the list.
_INSTEAD = {
    "SplineTransformer": "replace it with StandardScaler, or with PolynomialFeatures",
    "QuantileTransformer": "replace it with StandardScaler or MinMaxScaler",
    "KNNImputer": "replace it with SimpleImputer",
    "IterativeImputer": "replace it with SimpleImputer",
    "MissingIndicator": "use SimpleImputer(add_indicator=True) instead",
    "TransformedTargetRegressor": "fit the regressor on the transformed target and "
    "transform its predictions after serving",
}


@dataclass(frozen=True)
class TfidfOption:
    """A TfidfVectorizer option that skl2onnx converts faithfully only at ``default``."""

    default: Any  # scikit-learn's default, the one value ONNX Runtime answers alike
    what: str  # what another value does, as a plural: "bigrams and longer n-grams"

    def faithful(self, value: Any) -> bool:
        """Whether ``value`` converts faithfully: the default, or None (unset)."""
        if isinstance(value, list):  # a spec's YAML gives ngram_range as a list
            value = tuple(value)
        return value is None or value == self.default

    @property
    def why(self) -> str:
        return (
            f"{self.what} are not converted faithfully by skl2onnx (ONNX Runtime would answer "
            "differently from scikit-learn)"
        )


# The TF-IDF rule, for a spec's `text` (training/spec.py TextSpec) and for a user's fitted
# vectorizer (refusal below). Measured with skl2onnx 1.20 / ONNX Runtime 1.32 on the SMS data:
# bigrams and sublinear_tf change up to 95% of the outputs (by up to 0.8); a custom token
# pattern or a character analyzer does not load or disagrees; a Python tokenizer or
# preprocessor cannot be held by an ONNX graph, and accent stripping is not converted.
TFIDF_OPTIONS: dict[str, TfidfOption] = {
    "ngram_range": TfidfOption((1, 1), "bigrams and longer n-grams"),
    "sublinear_tf": TfidfOption(False, "sublinear term frequencies"),
    "token_pattern": TfidfOption(r"(?u)\b\w\w+\b", "custom token patterns"),
    "analyzer": TfidfOption("word", "character analyzers"),
    "tokenizer": TfidfOption(None, "custom tokenizers"),
    "preprocessor": TfidfOption(None, "custom preprocessors"),
    "strip_accents": TfidfOption(None, "accent stripping"),
}


def unfaithful_tfidf(options: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The first option in ``options`` that :data:`TFIDF_OPTIONS` refuses, and its value
    (a list as a tuple); None when every one converts faithfully."""
    for key, option in TFIDF_OPTIONS.items():
        if key in options and not option.faithful(options[key]):
            value = options[key]
            return key, tuple(value) if isinstance(value, list) else value
    return None


@dataclass(frozen=True)
class Step:
    path: tuple[str, ...]  # names (or list indexes) from the model down to this step
    estimator: Any

    @property
    def place(self) -> str:
        """``preprocess > num > power: PowerTransformer``; the model itself: its class."""
        name = type(self.estimator).__name__
        return f"{' > '.join(self.path)}: {name}" if self.path else name


def _members(model: Any) -> list[tuple[str, Any]]:
    """The fitted estimators directly inside ``model``, each with its name in a path."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    from training.contract import SourceView

    if isinstance(model, SourceView):  # an imported model seen through its contract
        return [("model", model.model)]
    if isinstance(model, Pipeline):
        return [(name, step) for name, step in model.steps]
    if isinstance(model, ColumnTransformer):
        fitted = getattr(model, "transformers_", model.transformers)
        return [(name, trans) for name, trans, _ in fitted]
    if isinstance(model, FeatureUnion):
        return list(model.transformer_list)
    if isinstance(model, CalibratedClassifierCV):
        members = getattr(model, "calibrated_classifiers_", [])
        return [(str(i), c.estimator) for i, c in enumerate(members)]
    named = getattr(model, "named_estimators_", None)  # voting and stacking ensembles
    if named is not None:
        out = [(str(name), est) for name, est in named.items()]
        final = getattr(model, "final_estimator_", None)
        return out + ([("final_estimator", final)] if final is not None else [])
    if type(model).__name__ in ("OneVsRestClassifier", "OneVsOneClassifier"):
        return [(str(i), est) for i, est in enumerate(getattr(model, "estimators_", []))]
    return []


def walk(model: Any, path: tuple[str, ...] = ()) -> Iterator[Step]:
    """Every step of a fitted model, the model first, depth first in pipeline order."""
    yield Step(path, model)
    for name, member in _members(model):
        if member is None or isinstance(member, str):  # "drop", "passthrough"
            continue
        yield from walk(member, (*path, name))


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _strings_learned(estimator: Any) -> list[list[Any]]:
    """The string values a fitted imputer or encoder learned, per column (else [])."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if isinstance(estimator, OneHotEncoder | OrdinalEncoder):
        return [
            list(cats) for cats in getattr(estimator, "categories_", []) if cats.dtype == object
        ]
    if isinstance(estimator, SimpleImputer):
        stats = getattr(estimator, "statistics_", None)
        if stats is not None and stats.dtype == object:
            return [[estimator.missing_values, *stats]]
    return []


@dataclass(frozen=True)
class MissingStrings:
    """How the model takes a missing categorical value.

    ``as_nan``: some step learned NaN as the missing string (an imputer with
    ``missing_values=NaN`` on strings, an encoder with NaN among its categories). The ONNX
    graph then sends ``""`` down NaN's path, and verification hands the model NaN where Kiln
    serves ``""``. Otherwise ``""`` reaches the model as it is (Kiln's spec pipelines learn
    it as a category).
    """

    as_nan: bool
    nan_steps: tuple[Step, ...] = ()


def missing_strings(model: Any) -> tuple[MissingStrings, str | None]:
    """The model's missing-string rule, and why it cannot be served if it cannot."""
    nan_steps: list[Step] = []
    empty_steps: list[Step] = []
    for step in walk(model):
        columns = _strings_learned(step.estimator)
        if any(_is_nan(v) for col in columns for v in col):
            nan_steps.append(step)
        if any(isinstance(v, str) and v == MISSING_STRING for col in columns for v in col):
            empty_steps.append(step)
        if any(isinstance(v, str) and v == "nan" for col in columns for v in col) and any(
            _is_nan(v) for col in columns for v in col
        ):
            return MissingStrings(False), (
                f"{step.place} knows both NaN and the string 'nan'; skl2onnx writes NaN as "
                "'nan', so the two would be one category; rename the string category"
            )
    if nan_steps and empty_steps:
        return MissingStrings(False), (
            f"{nan_steps[0].place} takes NaN as a missing string but {empty_steps[0].place} "
            'learned "" as a value; Kiln serves a missing string as "", so it cannot be '
            "both: fill the missing values with one of them before fitting"
        )
    return MissingStrings(bool(nan_steps), tuple(nan_steps)), None


def _tfidf_refusal(step: Step) -> str | None:
    found = unfaithful_tfidf(step.estimator.get_params(deep=False))
    if found is None:
        return None
    key, value = found
    option = TFIDF_OPTIONS[key]
    return f"{step.place}: {key}={value!r}: {option.why}; refit it with {key}={option.default!r}"


def _step_refusal(step: Step, known: set[type]) -> str | None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    est = step.estimator
    name = type(est).__name__
    if type(est) not in known:
        instead = _INSTEAD.get(
            name,
            "replace it with a step skl2onnx converts (skl2onnx.supported_converters() lists "
            "them), or leave it out",
        )
        return f"{step.place}: skl2onnx has no converter for {name}; {instead}"
    categorical = getattr(est, "is_categorical_", None)
    if categorical is not None and bool(categorical.any()):
        return (
            f"{step.place}: native categorical support (categorical_features) is not "
            "converted by skl2onnx; one-hot encode the categorical columns upstream "
            "(OneHotEncoder in a ColumnTransformer) and refit with categorical_features=None"
        )
    if isinstance(est, CountVectorizer):  # TfidfVectorizer is one
        return _tfidf_refusal(step)
    if isinstance(est, FunctionTransformer) and (est.func is not None or est.inverse_func):
        return (
            f"{step.place}: a FunctionTransformer runs Python code ({est.func!r}) that an "
            "ONNX model cannot hold; replace it with a scikit-learn transformer"
        )
    learned_nan = any(_is_nan(c) for cats in getattr(est, "categories_", []) for c in cats)
    if isinstance(est, OrdinalEncoder) and _is_nan(est.encoded_missing_value) and learned_nan:
        return (
            f"{step.place}: encodes missing values as NaN (encoded_missing_value=nan), "
            "which skl2onnx does not convert; refit with encoded_missing_value=-1, or "
            "impute the column before encoding it"
        )
    return None


def _sparse_into_xgboost(model: Any) -> str | None:
    """XGBoost after a step whose output is sparse: it reads the left-out zeros as missing."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    for step in walk(model):
        if not isinstance(step.estimator, Pipeline):
            continue
        named = [(n, s) for n, s in step.estimator.steps if not isinstance(s, str | None)]
        for (_, before), (name, after) in itertools.pairwise(named):
            if not type(after).__name__.startswith(("XGB", "LabelledXGB")):
                continue
            sparse = (
                (isinstance(before, ColumnTransformer) and bool(before.sparse_output_))
                or (isinstance(before, OneHotEncoder) and bool(before.sparse_output))
                or isinstance(before, CountVectorizer)
            )
            if sparse:
                place = Step((*step.path, name), after).place
                return (
                    f"{place}: XGBoost reads the zeros a sparse matrix leaves out as missing "
                    f"values, and the {type(before).__name__} before it outputs one, so "
                    "ONNX (which sees zeros) would answer differently; make that output dense "
                    "(ColumnTransformer(sparse_threshold=0) or "
                    "OneHotEncoder(sparse_output=False)) and refit"
                )
    return None


def refusal(model: Any) -> str | None:
    """Why ``model`` cannot be exported faithfully (the first such step), or None."""
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError:
        return f"{type(model).__name__} is not fitted; fit it before exporting it"
    except TypeError as exc:  # not an estimator at all
        return f"{type(model).__name__} is not a scikit-learn estimator: {exc}"
    known = set(sklearn_operator_name_map)
    for step in walk(model):
        reason = _step_refusal(step, known)
        if reason is not None:
            return reason
    return _sparse_into_xgboost(model) or missing_strings(model)[1]
