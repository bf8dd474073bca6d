"""An XGBoost classifier that takes class labels as every scikit-learn classifier does.

``xgboost.XGBClassifier`` only accepts the labels ``0 .. n_classes-1`` and predicts those
codes; a spec's target holds the classes as the data file writes them (``"yes"``,
``"Adelie"``). :class:`LabelledXGBClassifier` encodes them before fitting and answers with
them, and its ``classes_`` are the labels, so the ONNX model (onnxmltools reads
``classes_``) outputs the same ``label`` as the rest of Kiln's classifiers. Importing this
module imports xgboost; :mod:`training.estimators` names it by path, so it is imported only
when a spec asks for XGBoost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from xgboost import XGBClassifier

__all__ = ["LabelledXGBClassifier"]


class LabelledXGBClassifier(XGBClassifier):
    """``XGBClassifier`` fitted on any labels; predicts and lists them as given."""

    def fit(self, X: Any, y: Any, **fit_params: Any) -> LabelledXGBClassifier:
        labels, codes = np.unique(np.asarray(y), return_inverse=True)
        self._labels: np.ndarray | None = None  # XGBoost checks classes_ == codes in fit
        super().fit(X, codes, **fit_params)
        self._labels = labels
        return self

    @property
    def classes_(self) -> np.ndarray:
        labels = getattr(self, "_labels", None)
        return np.arange(self.n_classes_) if labels is None else labels

    def predict(self, X: Any, **kwargs: Any) -> np.ndarray:
        return np.asarray(self.classes_)[np.asarray(super().predict(X, **kwargs), dtype=int)]
