"""XGBoost and LightGBM inside skl2onnx: onnxmltools' converters, registered once, on first use.

skl2onnx converts only scikit-learn's own estimators; onnxmltools has the converters for
``XGBClassifier``/``XGBRegressor`` and ``LGBMClassifier``/``LGBMRegressor``. Registered with
:func:`skl2onnx.update_registered_converter` (the pattern of skl2onnx's "Convert a pipeline
with a LightGBM classifier" and "... XGBoost model" examples), they convert alone or as the
last step of a Pipeline, and classifiers take the ``zipmap`` option like scikit-learn's.

Nothing is imported or registered when this module is imported: :func:`register_converters`
does it the first time an export needs it (xgboost and lightgbm are only imported if they are
installed), and every later call returns at once.
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Any

__all__ = ["register_converters", "registered"]

_CLASSIFIER_OPTIONS = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
_lock = threading.Lock()
_registered: tuple[str, ...] | None = None


def _xgboost() -> list[tuple[type, str, bool, Any]]:
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from xgboost import XGBClassifier, XGBRegressor

    return [
        (XGBClassifier, "XGBoostXGBClassifier", True, convert_xgboost),
        (XGBRegressor, "XGBoostXGBRegressor", False, convert_xgboost),
    ]


def _lightgbm() -> list[tuple[type, str, bool, Any]]:
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

    return [
        (LGBMClassifier, "LightGbmLGBMClassifier", True, convert_lightgbm),
        (LGBMRegressor, "LightGbmLGBMRegressor", False, convert_lightgbm),
    ]


def register_converters() -> tuple[str, ...]:
    """Register the converters of the installed boosting libraries; the class names done.

    Idempotent and thread-safe: the registration happens once per process.
    """
    global _registered
    with _lock:
        if _registered is not None:
            return _registered
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import (
            calculate_linear_classifier_output_shapes,
            calculate_linear_regressor_output_shapes,
        )

        done: list[str] = []
        for library, entries in (("xgboost", _xgboost), ("lightgbm", _lightgbm)):
            if importlib.util.find_spec(library) is None:
                continue
            for cls, alias, classifier, convert in entries():
                update_registered_converter(
                    cls,
                    alias,
                    calculate_linear_classifier_output_shapes
                    if classifier
                    else calculate_linear_regressor_output_shapes,
                    convert,
                    options=_CLASSIFIER_OPTIONS if classifier else None,
                )
                done.append(cls.__name__)
        _registered = tuple(done)
        return _registered


def registered() -> tuple[str, ...] | None:
    """The classes registered so far, or None before the first :func:`register_converters`."""
    return _registered


class _BooleansAsIntegers:
    """A converter's container whose nodes get 0/1 where a list attribute holds a bool.

    skl2onnx 1.20 gives the leaves of a HistGradientBoosting tree ``missing=False`` (a Python
    bool) in ``nodes_missing_value_tracks_true``, an integer list; onnx >= 1.17 refuses bools
    there ("Expected an int, got a boolean"), so every HistGradientBoosting model fails to
    convert. 0/1 is what the attribute means.
    """

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, op_type: str, inputs: Any, outputs: Any, *args: Any, **attrs: Any) -> Any:
        for key, value in attrs.items():
            if isinstance(value, list) and any(isinstance(v, bool) for v in value):
                attrs[key] = [int(v) if isinstance(v, bool) else v for v in value]
        return self._container.add_node(op_type, inputs, outputs, *args, **attrs)


def custom_converters() -> dict[type, Any]:
    """Per-call converters for ``convert_sklearn(custom_conversion_functions=...)``.

    Only HistGradientBoosting: skl2onnx's own converter, given a container that writes its
    booleans as integers (:class:`_BooleansAsIntegers`). Nothing global is changed.
    """
    from skl2onnx.common._registration import get_converter
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    def wrap(alias: str) -> Any:
        convert = get_converter(alias)

        def converter(scope: Any, operator: Any, container: Any) -> Any:
            return convert(scope, operator, _BooleansAsIntegers(container))

        return converter

    return {
        HistGradientBoostingClassifier: wrap("SklearnHistGradientBoostingClassifier"),
        HistGradientBoostingRegressor: wrap("SklearnHistGradientBoostingRegressor"),
    }
