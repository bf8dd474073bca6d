"""Kiln's shared core: errors, the artifact format, the model store, model resolution and the
inference core (ONNX Runtime sessions, value rules, the in-process Predictor).

Both sides use it: ``training/`` and ``service/`` import ``kiln``, never each other. Importing
``kiln`` loads nothing heavy: ``kiln.Predictor`` is imported on first use, and
:func:`save_model` loads the training side (scikit-learn, skl2onnx) only when it is called:
this module is the one place in ``kiln/`` allowed to reach into ``training/``, lazily.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kiln.predictor import Predictor
    from kiln.store import StoredModel

__all__ = ["Predictor", "save_model"]


def save_model(
    model: Any,
    name: str,
    sample: Any,
    y: Any = None,
    gate: str | Sequence[str] | None = None,
    features: str | Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> StoredModel:
    """Verify a fitted scikit-learn model as ONNX and register it as ``name``, from a notebook.

        import kiln
        kiln.save_model(pipeline, "penguins", sample=X_test, y=y_test)

    ``model``: a fitted estimator or Pipeline (XGBoost and LightGBM through their
    scikit-learn API too). ``sample``: a DataFrame (or a CSV/TSV/Parquet path) of rows to
    verify on: the ONNX model must answer like ``model`` on every one. ``y``: their labels,
    optional: with them the model is evaluated (metrics, baseline, ``gate`` rules such as
    ``"accuracy >= 0.9"``); without, only parity is checked and no quality is measured.
    ``features``: kinds that override the ones read from the sample's dtypes
    (``"name=kind,..."`` or a mapping). ``labels``: what reports call the features
    (``{"bill_length_mm": "bill length"}``; default: the column name made readable). The same
    chain as ``kiln import`` (training/importer.py); returns the stored version. Nothing is
    unpickled: the object is used as it is.
    """
    if isinstance(model, str | os.PathLike):
        from kiln.errors import DataError

        raise DataError(
            f"kiln.save_model takes the fitted model itself, not {str(model)!r}; to import a "
            "saved file or a bentoml: model, run `kiln import SOURCE --name NAME --sample FILE`"
        )
    from training.importer import import_model

    log = logging.getLogger("kiln")
    return import_model(
        model,
        name,
        sample=sample,
        y=y,
        gate=gate,
        features=features,
        feature_labels=labels,
        on_step=log.info,
        on_note=log.warning,
    )


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from kiln.predictor import Predictor

        return Predictor
    raise AttributeError(f"module 'kiln' has no attribute {name!r}")
