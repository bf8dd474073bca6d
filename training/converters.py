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

import numpy as np

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


def _labelled_xgboost() -> list[tuple[type, str, bool, Any]]:
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

    from training.boosting import LabelledXGBClassifier

    return [(LabelledXGBClassifier, "KilnLabelledXGBClassifier", True, convert_xgboost)]


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
        for library, entries in (
            ("xgboost", _xgboost),
            ("xgboost", _labelled_xgboost),
            ("lightgbm", _lightgbm),
        ):
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


def _in_double(scope: Any, operator: Any, container: Any, chain: list[Any]) -> None:
    """Fitted numeric steps computed as scikit-learn computes them: in float64, one rounding.

    ``chain``: consecutive Pipeline steps (a numeric SimpleImputer, then scalers:
    Standard, Robust, MaxAbs, MinMax) ending with ``operator``'s, which computes them all;
    the ones before it become Identity (see :func:`custom_converters`). skl2onnx's converters
    compute each in float32 with float32 copies of the parameters. Trees after a scaler split
    at values equal to training values (HistGradientBoosting, XGBoost and LightGBM all do),
    so a float32 rounding there sends rows down the other branch: measured on integer-valued
    columns, 78 of 120 XGBoost rows changed. Computed in float64 with the fitted float64
    parameters and rounded once, the value is the one scikit-learn hands the tree.
    """
    from onnx import TensorProto
    from skl2onnx.algebra.onnx_ops import (
        OnnxAdd,
        OnnxCast,
        OnnxClip,
        OnnxDiv,
        OnnxIsNaN,
        OnnxMul,
        OnnxSub,
        OnnxWhere,
    )
    from skl2onnx.common.data_types import guess_proto_type
    from skl2onnx.operator_converters.common import concatenate_variables
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, RobustScaler, StandardScaler

    opv = container.target_opset
    if len(operator.inputs) > 1:
        x: Any = concatenate_variables(scope, operator.inputs, container)
    else:
        x = operator.inputs[0].full_name
    out_type = guess_proto_type(operator.outputs[0].type)
    f64 = np.float64
    node: Any = OnnxCast(x, to=TensorProto.DOUBLE, op_version=opv)
    for op in chain:
        if isinstance(op, SimpleImputer):
            fill = np.asarray(op.statistics_, f64)
            node = OnnxWhere(OnnxIsNaN(node, op_version=opv), fill, node, op_version=opv)
        elif isinstance(op, StandardScaler):
            if op.with_mean:
                node = OnnxSub(node, np.asarray(op.mean_, f64), op_version=opv)
            if op.with_std:
                node = OnnxDiv(node, np.asarray(op.scale_, f64), op_version=opv)
        elif isinstance(op, RobustScaler):
            if op.with_centering:
                node = OnnxSub(node, np.asarray(op.center_, f64), op_version=opv)
            if op.with_scaling:
                node = OnnxDiv(node, np.asarray(op.scale_, f64), op_version=opv)
        elif isinstance(op, MaxAbsScaler):
            node = OnnxDiv(node, np.asarray(op.scale_, f64), op_version=opv)
        elif isinstance(op, MinMaxScaler):
            node = OnnxMul(node, np.asarray(op.scale_, f64), op_version=opv)
            node = OnnxAdd(node, np.asarray(op.min_, f64), op_version=opv)
            if op.clip:
                low, high = (np.array(v, dtype=f64) for v in op.feature_range)
                node = OnnxClip(node, low, high, op_version=opv)
        else:  # pragma: no cover - chains hold only the classes above
            raise TypeError(type(op).__name__)
    cast = OnnxCast(node, to=out_type, op_version=opv, output_names=[operator.outputs[0].full_name])
    cast.add_to(scope, container)


class _NanAsEmptyString(_BooleansAsIntegers):
    """A container whose string keys write NaN's category (skl2onnx writes it 'nan') as "".

    An encoder fitted on strings with NaN among its categories learned NaN as the missing
    value; Kiln serves a missing string as "", so the ONNX encoder must take "" there.
    """

    def add_node(self, op_type: str, inputs: Any, outputs: Any, *args: Any, **attrs: Any) -> Any:
        for key in ("cats_strings", "keys_strings"):
            if key in attrs:
                attrs[key] = [b"" if v in (b"nan", "nan") else v for v in attrs[key]]
        return super().add_node(op_type, inputs, outputs, *args, **attrs)


def float32_threshold(threshold: np.ndarray, strict: bool = False) -> np.ndarray:
    """The float32 threshold that splits float32 values as a float64 one does.

    ``x <= t`` for every float32 ``x`` exactly when ``x <= `` the largest float32 at or
    below ``t``; ``x < t`` when ``x <`` the smallest float32 at or above it. Rounding ``t``
    to the nearest float32, as the converters do, sends a value within half a float32 step
    of the threshold down the other branch.
    """
    t = np.asarray(threshold, dtype=np.float64)
    near = t.astype(np.float32)
    if strict:
        return np.where(near < t, np.nextafter(near, np.float32(np.inf)), near)
    return np.where(near > t, np.nextafter(near, np.float32(-np.inf)), near)


class _DoubleThresholds(_BooleansAsIntegers):
    """A container whose tree nodes get :func:`float32_threshold` of float64 thresholds.

    For LightGBM, which splits in float64 and whose converter hands the thresholds over as
    Python floats.
    """

    def add_node(self, op_type: str, inputs: Any, outputs: Any, *args: Any, **attrs: Any) -> Any:
        values, modes = attrs.get("nodes_values"), attrs.get("nodes_modes")
        if op_type.startswith("TreeEnsemble") and isinstance(values, list) and modes:
            attrs["nodes_values"] = [
                float(float32_threshold(v, strict=m == "BRANCH_LT"))
                if m in ("BRANCH_LEQ", "BRANCH_LT")
                else v
                for v, m in zip(values, modes, strict=True)
            ]
        return super().add_node(op_type, inputs, outputs, *args, **attrs)


def _hist_thresholds(model: Any) -> Any:
    """A shallow copy of a fitted HistGradientBoosting model, thresholds as float32 ones.

    It splits ``x <= threshold`` in float64; the copy's thresholds are the
    :func:`float32_threshold` of them, which skl2onnx's float32 cast keeps exactly.
    """
    import copy

    shadow = copy.copy(model)
    iterations = []
    for predictors in model._predictors:
        copies = []
        for predictor in predictors:
            twin = copy.copy(predictor)
            twin.nodes = predictor.nodes.copy()
            column = twin.nodes["num_threshold"]
            finite = np.isfinite(column)
            column[finite] = float32_threshold(column[finite]).astype(np.float64)
            copies.append(twin)
        iterations.append(copies)
    shadow._predictors = iterations
    return shadow


def _unnamed_features(model: Any) -> Any:
    """A shallow copy of a fitted XGBoost model whose booster has no feature names.

    Fitted on a DataFrame, the booster names its features after the columns, and
    onnxmltools reads only ``f0, f1, ...``; the ONNX model takes them by position anyway.
    """
    import copy

    booster = model.get_booster()
    if booster.feature_names is None:
        return model
    shadow = copy.copy(model)
    unnamed = booster.copy()
    unnamed.feature_names = None
    unnamed.feature_types = None
    shadow._Booster = unnamed
    return shadow


def _numeric_imputer(imputer: Any) -> bool:
    """A SimpleImputer of NaN in numbers that keeps every column and adds no indicator."""
    stats = getattr(imputer, "statistics_", None)
    missing = imputer.missing_values
    return (
        stats is not None
        and stats.dtype.kind == "f"
        and bool(np.isfinite(stats).all())
        and isinstance(missing, float)
        and np.isnan(missing)
        and not imputer.add_indicator
    )


def custom_converters(model: Any, nan_strings: bool) -> dict[type, Any]:
    """Converters for one ``convert_sklearn(model, custom_conversion_functions=...)`` call.

    - HistGradientBoosting: skl2onnx's own converter, given a container that writes its
      booleans as integers (:class:`_BooleansAsIntegers`) and thresholds that split float32
      inputs as the float64 ones do (:func:`_hist_thresholds`); LightGBM likewise
      (:class:`_DoubleThresholds`); XGBoost with its features unnamed
      (:func:`_unnamed_features`).
    - StandardScaler, RobustScaler, MaxAbsScaler, MinMaxScaler: in float64
      (:func:`_in_double`). Consecutive Pipeline steps of a numeric SimpleImputer and scalers
      are computed together by the last one, the others becoming Identity, so a filled or
      scaled value is not rounded to float32 between them.
    - ``nan_strings`` (the model learned NaN as the missing string, see
      :func:`training.steps.missing_strings`): a SimpleImputer of NaN in strings imputes ""
      instead (skl2onnx refuses NaN there), and encoders take "" for their NaN category.

    Nothing global is changed; other classes keep skl2onnx's converters.
    """
    import copy

    from skl2onnx.common._registration import get_converter
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        MaxAbsScaler,
        MinMaxScaler,
        OneHotEncoder,
        OrdinalEncoder,
        RobustScaler,
        StandardScaler,
    )

    from training.steps import walk

    scalers = (StandardScaler, RobustScaler, MaxAbsScaler, MinMaxScaler)
    deferred: set[int] = set()  # computed by a later step of their chain
    chains: dict[int, list[Any]] = {}  # id of a chain's last step -> the chain
    for step in walk(model):
        if not isinstance(step.estimator, Pipeline):
            continue
        chain: list[Any] = []
        for _, part in [*step.estimator.steps, ("end", None)]:
            if isinstance(part, scalers) or (
                not chain and isinstance(part, SimpleImputer) and _numeric_imputer(part)
            ):
                chain.append(part)
                continue
            if any(isinstance(p, scalers) for p in chain):
                deferred.update(id(p) for p in chain[:-1])
                chains[id(chain[-1])] = chain
            chain = [part] if isinstance(part, SimpleImputer) and _numeric_imputer(part) else []

    def hist(alias: str) -> Any:
        convert = get_converter(alias)

        def converter(scope: Any, operator: Any, container: Any) -> Any:
            op = operator.raw_operator
            operator.raw_operator = _hist_thresholds(op)
            try:
                return convert(scope, operator, _BooleansAsIntegers(container))
            finally:
                operator.raw_operator = op

        return converter

    def xgboost(scope: Any, operator: Any, container: Any) -> Any:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        op = operator.raw_operator
        operator.raw_operator = _unnamed_features(op)
        try:
            return convert_xgboost(scope, operator, container)
        finally:
            operator.raw_operator = op

    def lightgbm(scope: Any, operator: Any, container: Any) -> Any:
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        return convert_lightgbm(scope, operator, _DoubleThresholds(container))

    def identity(scope: Any, operator: Any, container: Any) -> None:
        container.add_node(
            "Identity",
            operator.inputs[0].full_name,
            operator.outputs[0].full_name,
            name=scope.get_unique_operator_name("Identity"),
        )

    def scaler(scope: Any, operator: Any, container: Any) -> None:
        op = operator.raw_operator
        if id(op) in deferred:
            return identity(scope, operator, container)
        return _in_double(scope, operator, container, chains.get(id(op), [op]))

    impute = get_converter("SklearnSimpleImputer")

    def imputer(scope: Any, operator: Any, container: Any) -> Any:
        op = operator.raw_operator
        if id(op) in deferred:
            return identity(scope, operator, container)
        strings = isinstance(operator.inputs[0].type, StringTensorType)
        if not (strings and nan_strings and not isinstance(op.missing_values, str)):
            return impute(scope, operator, container)
        shadow = copy.copy(op)  # the same statistics, with "" as the missing value
        shadow.missing_values = ""
        operator.raw_operator = shadow
        try:
            return impute(scope, operator, container)
        finally:
            operator.raw_operator = op

    def encoder(alias: str) -> Any:
        convert = get_converter(alias)

        def converter(scope: Any, operator: Any, container: Any) -> Any:
            if nan_strings and isinstance(operator.inputs[0].type, StringTensorType):
                container = _NanAsEmptyString(container)
            return convert(scope, operator, container)

        return converter

    boosters: dict[type, Any] = {}
    if importlib.util.find_spec("xgboost") is not None:
        from xgboost import XGBClassifier, XGBRegressor

        from training.boosting import LabelledXGBClassifier

        boosters.update(
            dict.fromkeys((XGBClassifier, XGBRegressor, LabelledXGBClassifier), xgboost)
        )
    if importlib.util.find_spec("lightgbm") is not None:
        from lightgbm import LGBMClassifier, LGBMRegressor

        boosters.update(dict.fromkeys((LGBMClassifier, LGBMRegressor), lightgbm))
    return {
        **boosters,
        HistGradientBoostingClassifier: hist("SklearnHistGradientBoostingClassifier"),
        HistGradientBoostingRegressor: hist("SklearnHistGradientBoostingRegressor"),
        **dict.fromkeys(scalers, scaler),
        SimpleImputer: imputer,
        OneHotEncoder: encoder("SklearnOneHotEncoder"),
        OrdinalEncoder: encoder("SklearnOrdinalEncoder"),
    }
