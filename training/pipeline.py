"""Building the one scikit-learn Pipeline a spec describes: preprocessing plus estimator.

Every transformation the served model needs lives inside the pipeline, so the ONNX model
takes raw feature values: numeric features are imputed (median) and scaled where the
estimator needs it, categoricals one-hot encoded (unknown categories ignored), text turned
into TF-IDF. Only transformers that skl2onnx converts faithfully are used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from kiln.artifact import FeatureKind
from training.estimators import ESTIMATORS, make_estimator
from training.spec import Spec

__all__ = ["build_pipeline", "categories_seen", "estimator_params"]


def _text_vectorizer(spec: Spec) -> TfidfVectorizer:
    t = spec.text
    return TfidfVectorizer(
        max_features=t.max_features,
        min_df=t.min_df,
        max_df=t.max_df,
        lowercase=t.lowercase,
        stop_words=t.stop_words,
        binary=t.binary,
        dtype=np.float32,
    )


def estimator_params(spec: Spec) -> dict[str, Any]:
    """The estimator's parameters: Kiln's defaults, the spec's, and the spec's seed."""
    info = ESTIMATORS[spec.estimator.type]
    params: dict[str, Any] = {**dict(info.defaults), **spec.estimator.params}
    if "random_state" in dict(info.defaults) and "random_state" not in spec.estimator.params:
        params["random_state"] = spec.evaluation.seed
    return params


def build_pipeline(spec: Spec, features: list[tuple[str, FeatureKind]]) -> Pipeline:
    """The unfitted pipeline for ``spec`` over the resolved ``features`` (name, kind)."""
    info = ESTIMATORS[spec.estimator.type]
    estimator = make_estimator(info.name, estimator_params(spec), spec.estimator.probabilities)

    numeric = [n for n, k in features if k is FeatureKind.numeric]
    categorical = [n for n, k in features if k is FeatureKind.categorical]
    text = [n for n, k in features if k is FeatureKind.text]
    parts: list[tuple[str, Any, Any]] = []
    if numeric:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if info.scale:
            steps.append(("scale", StandardScaler()))
        parts.append(("numeric", Pipeline(steps), numeric))
    if categorical:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        parts.append(("categorical", encoder, categorical))
    for name in text:  # a string column name (not a list) hands TF-IDF a 1-D column
        parts.append((f"text_{name}", _text_vectorizer(spec), name))
    # TF-IDF is sparse; HistGradientBoosting takes only dense arrays, and XGBoost reads the
    # zeros a sparse matrix leaves out as missing values, which the ONNX model cannot know
    sparse = 0.3 if text and not info.name.startswith(("HistGradientBoosting", "XGB")) else 0.0
    pre = ColumnTransformer(parts, remainder="drop", sparse_threshold=sparse)
    return Pipeline([("preprocess", pre), ("estimator", estimator)])


def categories_seen(pipeline: Pipeline) -> dict[str, list[str]]:
    """Categories the fitted one-hot encoder learned, per categorical feature."""
    pre: ColumnTransformer = pipeline.named_steps["preprocess"]
    if "categorical" not in pre.named_transformers_:
        return {}
    encoder = pre.named_transformers_["categorical"]
    return {
        str(name): [str(c) for c in cats]
        for name, cats in zip(encoder.feature_names_in_, encoder.categories_, strict=True)
    }
