"""The spec: what loads, what is refused (and with which field), gates, and estimators."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.svm import LinearSVC

from kiln.artifact import FeatureKind, Task
from kiln.errors import SpecError
from tests.conftest import SPECS
from training.data import resolve_paths
from training.estimators import ESTIMATORS, make_estimator
from training.spec import (
    LOWER_IS_BETTER,
    GateRule,
    Spec,
    TextSpec,
    ToleranceSpec,
    key_metric,
    load_spec,
    metrics_for,
    parse_spec,
)
from training.steps import TFIDF_OPTIONS

BASE: dict[str, Any] = {
    "name": "m",
    "task": "classification",
    "target": "y",
    "features": {"a": "numeric", "b": "categorical"},
    "estimator": {"type": "LogisticRegression"},
}
REGRESSION: dict[str, Any] = {"task": "regression", "estimator": {"type": "Ridge"}}


def raw(**changes: Any) -> dict[str, Any]:
    return {**BASE, **changes}


def problems_of(changes: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        parse_spec(raw(**changes))
    return info.value.problems


DEMO_SPECS = sorted(SPECS.glob("*.yaml"))


def test_demo_specs_found() -> None:
    assert len(DEMO_SPECS) >= 5  # guards the parametrisation below against an empty glob


@pytest.mark.parametrize("path", DEMO_SPECS, ids=lambda p: p.stem)
def test_every_demo_spec_loads(path: Path) -> None:
    spec = load_spec(path)
    assert isinstance(spec, Spec)
    assert spec.name == path.stem
    assert ESTIMATORS[spec.estimator.type].task is spec.task
    assert spec.gate, "every demo spec has a quality gate"
    for found in resolve_paths(spec.data.paths, path.parent):  # relative to the spec file
        assert found.is_file()


# fmt: off
BAD = [
    pytest.param({"estimator": {"type": "Foo"}}, "estimator.type", "unknown estimator 'Foo'",
                 id="unknown-estimator"),
    pytest.param({"estimator": {"type": "Ridge"}}, "estimator.type",
                 "Ridge is a regression estimator but task is classification",
                 id="regressor-for-classification"),
    pytest.param({"task": "regression"}, "estimator.type",
                 "LogisticRegression is a classification estimator but task is regression",
                 id="classifier-for-regression"),
    pytest.param({"name": "Churn Model"}, "name", "not a valid model name", id="name-upper-space"),
    pytest.param({"name": "churn-"}, "name", "not a valid model name", id="name-trailing-dash"),
    pytest.param({"name": "x" * 64}, "name", "not a valid model name", id="name-too-long"),
    pytest.param({"colour": "red"}, "colour", "Extra inputs are not permitted", id="unknown-key"),
    pytest.param({"gate": ["mae <= 5"]}, "gate.0", "'mae' is not a classification metric",
                 id="gate-regression-metric"),
    pytest.param({**REGRESSION, "gate": ["r2 >= 0.3", "roc_auc >= 0.9"]}, "gate.1",
                 "'roc_auc' is not a regression metric", id="gate-classification-metric"),
    pytest.param({"gate": ["accuracy is high"]}, "gate", "is not of the form `metric >= number`",
                 id="gate-no-operator"),
    pytest.param({"gate": ["accuracy => 0.9"]}, "gate", "is not of the form", id="gate-bad-op"),
    pytest.param({"gate": ["accuracy >= 0.9.1"]}, "gate", "'0.9.1' in 'accuracy >= 0.9.1' is not",
                 id="gate-bad-number"),
    pytest.param({"tolerance": {"atol": 1e-3}}, "tolerance", "needs a `reason`",
                 id="atol-loosened-no-reason"),
    pytest.param({"tolerance": {"rtol": 1e-4}}, "tolerance", "needs a `reason`",
                 id="rtol-loosened-no-reason"),
    pytest.param({"tolerance": {"atol": 1e-3, "reason": "  "}}, "tolerance", "needs a `reason`",
                 id="blank-reason"),
    pytest.param({"estimator": {"type": "LogisticRegression", "probabilities": "scores"}},
                 "estimator", "`probabilities` applies to LinearSVC only", id="probabilities"),
    pytest.param({"data": {"header": False}}, "data", "`header: false` needs `columns`",
                 id="no-header-no-columns"),
    pytest.param({"data": {"paths": ["a.csv"], "sklearn": "iris"}}, "data",
                 "either `paths` or `sklearn`, not both", id="paths-and-sklearn"),
    pytest.param({"data": {"sklearn": "mnist"}}, "data.sklearn", "Input should be",
                 id="unknown-bundled-set"),
    pytest.param({"features": {"a": "numeric", "y": "numeric"}}, "features.y",
                 "the target cannot also be a feature", id="target-is-feature"),
    pytest.param({"drop": ["a"]}, "drop", "'a' is both dropped and a feature", id="drop-feature"),
    pytest.param({"features": {}}, "features", "at least one feature", id="no-features"),
    pytest.param({"features": {"a": "number"}}, "features.a", "'numeric', 'categorical' or",
                 id="unknown-feature-kind"),
    pytest.param({**REGRESSION, "evaluation": {"positive_class": "yes"}},
                 "evaluation.positive_class", "only for classification", id="positive-class-reg"),
    pytest.param({"evaluation": {"holdout": 1.0}}, "evaluation.holdout", "less than 1",
                 id="holdout-one"),
    pytest.param({"text": {"ngram_range": [1, 2]}}, "text", "ngram_range: bigrams", id="ngrams"),
    pytest.param({"text": {"sublinear_tf": True}}, "text", "sublinear_tf: sublinear",
                 id="sublinear-tf"),
    pytest.param({"text": {"token_pattern": r"\w+"}}, "text", "token_pattern: custom token",
                 id="token-pattern"),
    pytest.param({"text": {"analyzer": "char_wb"}}, "text", "analyzer: character", id="analyzer"),
    pytest.param({"evaluation": {"primary": "r2"}}, "evaluation.primary",
                 "'r2' is not a classification metric; known: accuracy", id="primary-other-task"),
    pytest.param({**REGRESSION, "evaluation": {"primary": "roc_auc"}}, "evaluation.primary",
                 "'roc_auc' is not a regression metric; known: mae, rmse, r2",
                 id="primary-classification-metric"),
    pytest.param({"promotion": {"metric": "roc_auc"}}, "promotion",
                 "`promotion.metric` was replaced by `evaluation.primary`", id="promotion-metric"),
    pytest.param({"promotion": {"margin": -0.1}}, "promotion.margin", "greater than or equal",
                 id="negative-margin"),
    pytest.param({**REGRESSION, "promotion": {"allow_new_classes": True}},
                 "promotion.allow_new_classes", "only for classification", id="new-classes-reg"),
]
# fmt: on


@pytest.mark.parametrize(("changes", "field", "message"), BAD)
def test_wrong_spec_names_field_and_problem(
    changes: dict[str, Any], field: str, message: str
) -> None:
    problems = problems_of(changes)
    assert len(problems) == 1, problems
    assert problems[0][0] == field
    assert message in problems[0][1]


def test_every_problem_is_reported_at_once() -> None:
    changes = {"estimator": {"type": "Ridge"}, "features": {"a": "numeric", "y": "numeric"}}
    problems = problems_of({**changes, "drop": ["a"]})
    assert [field for field, _ in problems] == ["estimator.type", "features.y", "drop"]


def test_target_feature_with_space_in_name_names_field() -> None:
    problems = problems_of({"target": "size cm", "features": {"size cm": "numeric"}})
    assert problems == [("features.size cm", "the target cannot also be a feature")]


def test_not_a_mapping_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(["name", "m"], source="inline")
    assert info.value.problems == [("(spec)", "must be a YAML mapping of fields")]
    assert str(info.value).startswith("inline is invalid")


def test_tolerance_loosened_with_reason_is_accepted() -> None:
    spec = parse_spec(raw(tolerance={"atol": 1e-3, "reason": "trees sum in float32"}))
    assert spec.tolerance == ToleranceSpec(atol=1e-3, reason="trees sum in float32")
    assert ToleranceSpec(atol=1e-5, rtol=0).reason is None  # tightening needs no reason


def test_text_unigrams_are_accepted() -> None:
    spec = parse_spec(raw(text={"ngram_range": [1, 1], "min_df": 2}))
    assert spec.text == TextSpec(min_df=2)
    assert not hasattr(spec.text, "ngram_range")


def test_text_sublinear_tf_false_is_accepted() -> None:
    spec = parse_spec(raw(text={"sublinear_tf": False}))
    assert spec.text == TextSpec()


# A value of each refused TF-IDF option that skl2onnx converts into different answers
UNFAITHFUL_TFIDF = {
    "ngram_range": [1, 2],
    "sublinear_tf": True,
    "token_pattern": r"\w+",
    "analyzer": "char",
    "tokenizer": "str.split",
    "preprocessor": "str.lower",
    "strip_accents": "ascii",
}


def test_every_refused_tfidf_option_is_tried() -> None:
    assert set(UNFAITHFUL_TFIDF) == set(TFIDF_OPTIONS)


@pytest.mark.parametrize("key", sorted(TFIDF_OPTIONS))
def test_text_follows_the_export_rule_for_tfidf_options(key: str) -> None:
    """The spec refuses what the export of a fitted TfidfVectorizer refuses, for one reason."""
    assert parse_spec(raw(text={key: TFIDF_OPTIONS[key].default})).text == TextSpec()
    problems = problems_of({"text": {key: UNFAITHFUL_TFIDF[key]}})
    assert problems == [("text", f"{key}: {TFIDF_OPTIONS[key].why}; remove it")]


def test_spec_defaults() -> None:
    spec = parse_spec(raw(features={"a": "numeric", "t": "text"}))
    assert spec.task is Task.classification
    assert spec.features == {"a": FeatureKind.numeric, "t": FeatureKind.text}
    assert spec.has_text
    assert (spec.evaluation.holdout, spec.tolerance.atol, spec.tolerance.rtol) == (0.2, 1e-4, 1e-6)
    assert spec.gate == [] and spec.drop == [] and spec.data.paths == []
    assert (spec.promotion.margin, spec.promotion.allow_new_classes) == (0.0, False)


@pytest.mark.parametrize(
    ("changes", "primary"),
    [
        pytest.param({}, "roc_auc", id="classification-no-gate"),
        pytest.param(REGRESSION, "r2", id="regression-no-gate"),
        pytest.param({"gate": ["accuracy >= 0.8", "roc_auc >= 0.9"]}, "accuracy", id="first-gate"),
        pytest.param({**REGRESSION, "gate": ["mae <= 5"]}, "mae", id="first-gate-regression"),
        pytest.param(
            {"gate": ["accuracy >= 0.8"], "evaluation": {"primary": "log_loss"}},
            "log_loss",
            id="named",
        ),
    ],
)
def test_primary_metric(changes: dict[str, Any], primary: str) -> None:
    """`evaluation.primary`, else the first gate rule's metric, else the task's key metric."""
    assert parse_spec(raw(**changes)).primary_metric == primary


def test_key_metric_and_lower_is_better_are_defined_once() -> None:
    from training.report import sentences

    assert (key_metric(Task.classification), key_metric(Task.regression)) == ("roc_auc", "r2")
    assert sentences.LOWER_IS_BETTER is LOWER_IS_BETTER
    assert {"log_loss", "mae", "rmse"} == LOWER_IS_BETTER
    assert set(metrics_for(Task.classification) + metrics_for(Task.regression)) >= LOWER_IS_BETTER


# --- load_spec on files ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        pytest.param("name: [m\ntask: x\n", "(file)", "not valid YAML", id="yaml-syntax"),
        pytest.param("- name\n- task\n", "(spec)", "must be a YAML mapping", id="yaml-list"),
        pytest.param("just a string\n", "(spec)", "must be a YAML mapping", id="yaml-scalar"),
        pytest.param("", "(spec)", "must be a YAML mapping", id="empty-file"),
    ],
)
def test_load_spec_bad_file(tmp_path: Path, content: str, field: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0][0] == field
    assert message in info.value.problems[0][1]
    assert str(path) in str(info.value)


def test_load_spec_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    [(field, message)] = info.value.problems
    assert field == "(file)"
    assert message.startswith(f"cannot read {path}")


def test_load_spec_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError):
        load_spec(path)


# --- gates ---------------------------------------------------------------------------------


def test_gate_list_of_strings() -> None:
    spec = parse_spec(raw(gate=["roc_auc >= 0.9", "log_loss<0.5", "f1 > 1e-1", "recall <= 1"]))
    assert spec.gate == [
        GateRule(metric="roc_auc", op=">=", threshold=0.9),
        GateRule(metric="log_loss", op="<", threshold=0.5),
        GateRule(metric="f1", op=">", threshold=0.1),
        GateRule(metric="recall", op="<=", threshold=1.0),
    ]
    texts = ["roc_auc >= 0.9", "log_loss < 0.5", "f1 > 0.1", "recall <= 1"]
    assert [str(r) for r in spec.gate] == texts


def test_gate_mapping_form() -> None:
    spec = parse_spec(raw(gate={"roc_auc": 0.9, "log_loss": "< 0.4"}))
    assert spec.gate == [
        GateRule(metric="roc_auc", op=">=", threshold=0.9),  # a bare number is a minimum
        GateRule(metric="log_loss", op="<", threshold=0.4),
    ]
    spec = parse_spec(raw(**REGRESSION, gate={"mae": "<= 5", "r2": -0.5}))
    assert spec.gate == [
        GateRule(metric="mae", op="<=", threshold=5.0),
        GateRule(metric="r2", op=">=", threshold=-0.5),
    ]


# fmt: off
HOLDS = [
    (">=", 0.81, True), (">=", 0.8, True), (">=", 0.79, False),
    (">", 0.81, True), (">", 0.8, False),
    ("<=", 0.79, True), ("<=", 0.8, True), ("<=", 0.81, False),
    ("<", 0.79, True), ("<", 0.8, False),
    (">=", None, False), ("<=", None, False), (">", None, False), ("<", None, False),
]
# fmt: on


@pytest.mark.parametrize(("op", "value", "expected"), HOLDS)
def test_gate_rule_holds(op: str, value: float | None, expected: bool) -> None:
    assert GateRule.parse(f"accuracy {op} 0.8").holds(value) is expected


# --- make_estimator -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_make_estimator_builds_every_known_estimator(name: str) -> None:
    estimator = make_estimator(name, {})
    expected = CalibratedClassifierCV if name == "LinearSVC" else ESTIMATORS[name].cls()
    assert type(estimator) is expected


def test_make_estimator_uses_exactly_the_params() -> None:
    forest = make_estimator("RandomForestClassifier", {"n_estimators": 7, "max_depth": 3})
    assert isinstance(forest, RandomForestClassifier)
    params = forest.get_params()
    assert (params["n_estimators"], params["max_depth"], params["random_state"]) == (7, 3, None)


def test_make_estimator_unknown_name() -> None:
    with pytest.raises(SpecError) as info:
        make_estimator("SVC", {})
    [(field, message)] = info.value.problems
    assert field == "estimator.type"
    assert "unknown estimator 'SVC'" in message


def test_make_estimator_unknown_params_are_named() -> None:
    with pytest.raises(SpecError) as info:
        make_estimator("LogisticRegression", {"C": 1.0, "n_estimators": 5, "alpha": 0.1})
    assert info.value.problems == [
        ("estimator.params.alpha", "LogisticRegression has no parameter 'alpha'"),
        ("estimator.params.n_estimators", "LogisticRegression has no parameter 'n_estimators'"),
    ]


@pytest.mark.parametrize(
    ("name", "params", "mentions"),
    [
        ("LogisticRegression", {"C": -1}, "'C'"),
        ("RandomForestClassifier", {"n_estimators": "many"}, "'n_estimators'"),
        ("Ridge", {"alpha": -2.0}, "'alpha'"),
        ("LinearSVC", {"C": 0}, "'C'"),  # checked before it is wrapped for calibration
    ],
)
def test_make_estimator_invalid_value(name: str, params: dict[str, Any], mentions: str) -> None:
    with pytest.raises(SpecError) as info:
        make_estimator(name, params)
    [(field, message)] = info.value.problems
    assert field == "estimator.params"
    assert mentions in message


@pytest.mark.parametrize("probabilities", [None, "calibrated"])
def test_linear_svc_is_calibrated_by_default(probabilities: str | None) -> None:
    model = make_estimator("LinearSVC", {"C": 0.5}, probabilities)
    assert isinstance(model, CalibratedClassifierCV)
    assert model.method == "sigmoid"
    assert isinstance(model.estimator, LinearSVC)
    assert model.estimator.C == 0.5


def test_linear_svc_scores_is_plain() -> None:
    model = make_estimator("LinearSVC", {"C": 0.5}, "scores")
    assert type(model) is LinearSVC
    assert model.C == 0.5


def test_a_feature_may_carry_a_label_for_reports() -> None:
    spec = parse_spec(
        raw(features={"a": {"kind": "numeric", "label": " bill length "}, "b": "categorical"})
    )
    assert spec.features == {"a": FeatureKind.numeric, "b": FeatureKind.categorical}
    assert spec.labels == {"a": "bill length"}
    # the resolved spec (kept in kiln.json's provenance) parses back to the same
    assert parse_spec(spec.model_dump(mode="json")) == spec
    assert parse_spec(raw()).labels == {}


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        ({"kind": "numeric", "lable": "x"}, "unknown: lable"),
        ({"label": "x"}, "give a kind"),
        ({"kind": "numeric", "label": "  "}, "features.a.label: a non-empty text"),
        ({"kind": "numeric", "label": 3}, "features.a.label: a non-empty text"),
    ],
)
def test_a_wrong_feature_label_is_refused(feature: dict[str, Any], message: str) -> None:
    problems = problems_of({"features": {"a": feature}})
    assert any(message in text for _, text in problems), problems


def test_a_label_names_one_named_feature() -> None:
    problems = problems_of({"features": {"*": {"kind": "numeric", "label": "every other"}}})
    assert any("a label names one column" in text for _, text in problems)
    assert problems_of({"labels": {"zz": "unknown"}}) == [
        ("labels.zz", "a label for a column that is not a named feature")
    ]
