"""The estimators a spec may name, and what each needs around it.

Each entry says which task it serves, whether its inputs need scaling, and what its ONNX
model outputs: per-class ``probabilities``, per-class decision ``scores`` (LinearSVC without
calibration), or a ``prediction`` (regressors). The parity test is parametrised over
``ESTIMATORS``, so adding an entry here adds it to the test. Classes are named by import
path and imported only when a spec names them (XGBoost and LightGBM are not imported
otherwise); their ONNX converters are registered by :mod:`training.converters`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal

from kiln.artifact import Task
from kiln.errors import SpecError

__all__ = ["ESTIMATORS", "EstimatorInfo", "ScoreKind", "make_estimator", "score_kind"]

ScoreKind = Literal["probabilities", "scores", "prediction"]


@dataclass(frozen=True)
class EstimatorInfo:
    name: str
    task: Task
    import_path: str  # module:Class
    scale: bool  # put a StandardScaler in front of numeric features
    defaults: tuple[tuple[str, Any], ...] = ()  # applied unless the spec sets them

    def cls(self) -> type:
        module, _, attr = self.import_path.partition(":")
        return getattr(importlib.import_module(module), attr)


_C, _R = Task.classification, Task.regression
_SEED = (("random_state", 0),)
_ONE_THREAD = (*_SEED, ("n_jobs", 1))
_QUIET = ("verbose", -1)  # LightGBM prints warnings on stdout unless told not to

ESTIMATORS: dict[str, EstimatorInfo] = {
    info.name: info
    for info in [
        EstimatorInfo(
            "LogisticRegression",
            _C,
            "sklearn.linear_model:LogisticRegression",
            True,
            (("max_iter", 1000),),
        ),
        EstimatorInfo("LinearSVC", _C, "sklearn.svm:LinearSVC", True, _SEED),
        EstimatorInfo(
            "RandomForestClassifier", _C, "sklearn.ensemble:RandomForestClassifier", False, _SEED
        ),
        EstimatorInfo(
            "RandomForestRegressor", _R, "sklearn.ensemble:RandomForestRegressor", False, _SEED
        ),
        EstimatorInfo(
            "ExtraTreesClassifier", _C, "sklearn.ensemble:ExtraTreesClassifier", False, _SEED
        ),
        EstimatorInfo(
            "ExtraTreesRegressor", _R, "sklearn.ensemble:ExtraTreesRegressor", False, _SEED
        ),
        EstimatorInfo(
            "GradientBoostingClassifier",
            _C,
            "sklearn.ensemble:GradientBoostingClassifier",
            False,
            _SEED,
        ),
        EstimatorInfo(
            "GradientBoostingRegressor",
            _R,
            "sklearn.ensemble:GradientBoostingRegressor",
            False,
            _SEED,
        ),
        EstimatorInfo("Ridge", _R, "sklearn.linear_model:Ridge", True),
        EstimatorInfo("LinearRegression", _R, "sklearn.linear_model:LinearRegression", True),
        EstimatorInfo(
            "MLPClassifier",
            _C,
            "sklearn.neural_network:MLPClassifier",
            True,
            (*_SEED, ("max_iter", 500)),
        ),
        EstimatorInfo(
            "MLPRegressor",
            _R,
            "sklearn.neural_network:MLPRegressor",
            True,
            (*_SEED, ("max_iter", 500)),
        ),
        # HistGradientBoosting has no n_jobs: training/run.py limits its OpenMP threads
        # (TrainingSettings.openmp_threads, one by default).
        EstimatorInfo(
            "HistGradientBoostingClassifier",
            _C,
            "sklearn.ensemble:HistGradientBoostingClassifier",
            False,
            _SEED,
        ),
        EstimatorInfo(
            "HistGradientBoostingRegressor",
            _R,
            "sklearn.ensemble:HistGradientBoostingRegressor",
            False,
            _SEED,
        ),
        # Boosters on one thread: the same data and seed give bit-identical models.
        EstimatorInfo(
            "XGBClassifier", _C, "training.boosting:LabelledXGBClassifier", False, _ONE_THREAD
        ),
        EstimatorInfo("XGBRegressor", _R, "xgboost:XGBRegressor", False, _ONE_THREAD),
        EstimatorInfo(
            "LGBMClassifier", _C, "lightgbm:LGBMClassifier", False, (*_ONE_THREAD, _QUIET)
        ),
        EstimatorInfo("LGBMRegressor", _R, "lightgbm:LGBMRegressor", False, (*_ONE_THREAD, _QUIET)),
    ]
}


def score_kind(info: EstimatorInfo, probabilities: str | None) -> ScoreKind:
    if info.task is Task.regression:
        return "prediction"
    if info.name == "LinearSVC" and probabilities == "scores":
        return "scores"
    return "probabilities"


def make_estimator(name: str, params: dict[str, Any], probabilities: str | None = None) -> Any:
    """Build the named estimator with exactly ``params``; a wrong name or value is a SpecError.

    LinearSVC has no probabilities of its own: with ``probabilities: calibrated`` (the default)
    it is wrapped in ``CalibratedClassifierCV`` (sigmoid); with ``scores`` the model outputs
    its decision scores instead of probabilities.
    """
    info = ESTIMATORS.get(name)
    if info is None:
        raise SpecError(
            [("estimator.type", f"unknown estimator {name!r}; known: {', '.join(ESTIMATORS)}")]
        )
    cls = info.cls()
    valid = {*cls().get_params(), *dict(info.defaults)}  # LightGBM takes verbose as a kwarg
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise SpecError(
            [(f"estimator.params.{key}", f"{name} has no parameter {key!r}") for key in unknown]
        )
    native = params.get("categorical_features")
    if name.startswith("HistGradientBoosting") and native not in (None, "from_dtype"):
        raise SpecError(
            [
                (
                    "estimator.params.categorical_features",
                    "native categorical support is not converted to ONNX by skl2onnx; "
                    "leave it out: Kiln one-hot encodes the categorical features already",
                )
            ]
        )
    estimator = cls(**params)
    if hasattr(estimator, "_parameter_constraints"):  # XGBoost and LightGBM have none
        try:
            estimator._validate_params()  # scikit-learn's own checks of types and ranges
        except (ValueError, TypeError) as exc:
            raise SpecError([("estimator.params", str(exc))]) from None
    if info.name == "LinearSVC" and probabilities != "scores":
        from sklearn.calibration import CalibratedClassifierCV

        return CalibratedClassifierCV(estimator, method="sigmoid", cv=3)
    return estimator
