"""Batch scoring (`kiln predict`, training/batch.py) on real models from the test store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kiln import Predictor
from kiln.artifact import CheckMode
from kiln.errors import DataError, InputRejected, InvalidInput, ModelNotFound
from tests.conftest import REPO
from training.batch import score_file

pytestmark = pytest.mark.integration
CHURN_CSV = REPO / "training" / "data" / "churn.csv"
KILN = [sys.executable, "-m", "training"]


@pytest.fixture(scope="module")
def churn_tag(served_models: dict[str, Any]) -> str:
    return str(served_models["churn"].tag)


@pytest.fixture(scope="module")
def churn(churn_tag: str) -> Predictor:
    return Predictor.from_store(churn_tag)


def read(path: Path, id_column: str = "customer_id") -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={id_column: str}, keep_default_na=False, na_values=[""])


def churn_frame() -> pd.DataFrame:
    return pd.read_csv(CHURN_CSV, dtype={"customer_id": str})


def expected(predictor: Predictor, frame: pd.DataFrame) -> dict[str, Any]:
    """What the service answers for these rows (the Predictor has the same validation)."""
    return predictor.predict(frame[[f.name for f in predictor.metadata.features]])


def assert_scores_match(scores: pd.DataFrame, predictor: Predictor, rows: pd.DataFrame) -> None:
    answer = expected(predictor, rows)
    assert scores["prediction"].tolist() == answer["predictions"]
    for cls in predictor.metadata.classes or []:
        got = scores[f"probability_{cls}"].to_numpy(dtype=np.float32)
        want = np.array([p[str(cls)] for p in answer["probabilities"]], dtype=np.float32)
        np.testing.assert_array_equal(got, want)  # float32 values written without loss


def kiln(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BENTOML_HOME": os.environ["BENTOML_HOME"], "NO_COLOR": "1"}
    return subprocess.run(
        [*KILN, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_scores_churn_with_ids_and_probabilities(
    churn_tag: str, churn: Predictor, tmp_path: Path, suffix: str
) -> None:
    output = tmp_path / f"scores{suffix}"
    summary = score_file(churn_tag, CHURN_CSV, output)
    assert (summary.rows, summary.scored, summary.rejected) == (3000, 3000, 0)
    assert summary.id_column == "customer_id" and summary.model == churn_tag
    scores = read(output)
    assert list(scores.columns) == [
        "customer_id",
        "prediction",
        "probability_no",
        "probability_yes",
    ]
    frame = churn_frame()
    assert frame[churn.metadata.features[2].name].isna().any()  # missing values among them
    assert scores["customer_id"].tolist() == frame["customer_id"].tolist()
    probabilities = scores[["probability_no", "probability_yes"]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    sample = np.random.default_rng(0).choice(len(frame), 300, replace=False)
    sample.sort()
    assert_scores_match(scores.iloc[sample], churn, frame.iloc[sample])
    rejects = pd.read_csv(summary.rejects)
    assert summary.rejects == tmp_path / "scores.rejects.csv"
    assert rejects.empty and list(rejects.columns)[:3] == ["customer_id", "row", "reason"]
    assert summary.findings == {} and summary.warnings == tmp_path / "scores.warnings.csv"
    assert read(summary.warnings).empty  # written under warn (the default), header only
    files = {p.name for p in tmp_path.iterdir()}
    # no temporary file left
    assert files == {f"scores{suffix}", "scores.rejects.csv", "scores.warnings.csv"}


def bad_file(tmp_path: Path) -> Path:
    """60 churn rows with bad values in rows 4, 11, 21 and 31 (1-based)."""
    frame = churn_frame().head(60).astype(object)
    frame.loc[3, "age"] = "abc"
    frame.loc[10, "monthly_charge"] = "inf"
    frame.loc[20, "data_gb"] = "1e39"  # beyond float32
    frame.loc[30, "tenure_months"] = "-Infinity"
    frame.loc[30, "support_calls"] = "two"
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    return path


def test_bad_rows_go_to_rejects_with_reasons(
    churn_tag: str, churn: Predictor, tmp_path: Path
) -> None:
    path = bad_file(tmp_path)
    summary = score_file(churn_tag, path, tmp_path / "out.csv", chunk_rows=16)
    assert (summary.rows, summary.scored, summary.rejected) == (60, 56, 4)
    rejects = read(summary.rejects)
    source = churn_frame().head(60)
    assert rejects["row"].tolist() == [4, 11, 21, 31]
    assert rejects["customer_id"].tolist() == source["customer_id"].iloc[[3, 10, 20, 30]].tolist()
    assert rejects["reason"].tolist() == [
        "age: 'abc' is not a number",
        "monthly_charge: inf is not a finite float32 number",
        "data_gb: 1e+39 is not a finite float32 number",
        "tenure_months: -inf is not a finite float32 number; support_calls: 'two' is not a number",
    ]
    assert rejects.loc[0, "age"] == "abc" and rejects.loc[0, "plan"] == source.loc[3, "plan"]
    scores = read(tmp_path / "out.csv")
    kept = source.drop(index=[3, 10, 20, 30])
    assert scores["customer_id"].tolist() == kept["customer_id"].tolist()  # order kept
    assert_scores_match(scores, churn, kept)


def test_chunk_boundaries_do_not_change_results(churn_tag: str, tmp_path: Path) -> None:
    path = bad_file(tmp_path)
    frame = pd.concat([pd.read_csv(path, dtype=str)] * 5 + [churn_frame().astype(str)])
    big = tmp_path / "big.csv"
    frame.to_csv(big, index=False)
    small = score_file(churn_tag, big, tmp_path / "a.csv", chunk_rows=7)
    whole = score_file(churn_tag, big, tmp_path / "b.csv", chunk_rows=50_000)
    assert (small.scored, small.rejected) == (whole.scored, whole.rejected) == (3280, 20)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    columns = ["customer_id", "row", "reason"]
    pd.testing.assert_frame_equal(read(small.rejects)[columns], read(whole.rejects)[columns])


def test_parquet_input_scores_like_csv(churn_tag: str, tmp_path: Path) -> None:
    frame = churn_frame()
    frame.to_parquet(tmp_path / "churn.parquet", row_group_size=1000)
    score_file(churn_tag, tmp_path / "churn.parquet", tmp_path / "p.csv", chunk_rows=777)
    score_file(churn_tag, CHURN_CSV, tmp_path / "c.csv")
    assert (tmp_path / "p.csv").read_bytes() == (tmp_path / "c.csv").read_bytes()


def test_parquet_column_types_are_read_like_the_service_reads_values(
    churn_tag: str, tmp_path: Path
) -> None:
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = churn_frame().head(200)
    columns = {name: pa.array(frame[name]) for name in frame.columns}
    columns["customer_id"] = pa.array(range(200), pa.int64())  # ids of any type: as strings
    columns["plan"] = columns["plan"].dictionary_encode()
    columns["monthly_charge"] = pa.array(
        [decimal.Decimal(str(v)) for v in frame["monthly_charge"]], pa.decimal128(8, 2)
    )
    pq.write_table(pa.table(columns), tmp_path / "typed.parquet")
    summary = score_file(churn_tag, tmp_path / "typed.parquet", tmp_path / "typed.csv")
    assert (summary.scored, summary.rejected) == (200, 0)
    frame.assign(customer_id=[str(i) for i in range(200)]).to_csv(tmp_path / "c.csv", index=False)
    score_file(churn_tag, tmp_path / "c.csv", tmp_path / "c-out.csv")
    assert (tmp_path / "typed.csv").read_bytes() == (tmp_path / "c-out.csv").read_bytes()


def test_slices_side_by_side_answer_like_one_call(
    churn_tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kiln.records import decode_instances
    from kiln.runtime import ModelRuntime
    from kiln.store import get_model
    from training.scoring import _Inference

    runtime = ModelRuntime(get_model(churn_tag), ["CPUExecutionProvider"], intra_op_threads=1)
    features = [(f.name, f.kind) for f in runtime.metadata.features]
    frame = churn_frame()[[name for name, _ in features]]
    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    columns, rows = decode_instances({"instances": records}, features, max_rows=10_000)
    monkeypatch.setattr(_Inference, "MIN_SLICE", 100)
    inference = _Inference(runtime, workers=4)
    try:
        sliced = inference.run(columns, rows)
    finally:
        inference.close()
    whole = runtime.run(columns)
    assert sliced.keys() == whole.keys()
    for name in whole:
        np.testing.assert_array_equal(sliced[name], whole[name])


def test_regression_output_has_prediction_only(
    served_models: dict[str, Any], tmp_path: Path
) -> None:
    from sklearn.datasets import load_diabetes

    tag = str(served_models["diabetes"].tag)
    frame = load_diabetes(as_frame=True).frame.drop(columns="target")
    frame.to_csv(tmp_path / "diabetes.csv", index=False)
    summary = score_file(tag, tmp_path / "diabetes.csv", tmp_path / "out.parquet")
    assert summary.id_column is None and summary.scored == len(frame) == 442
    scores = pd.read_parquet(tmp_path / "out.parquet")
    assert list(scores.columns) == ["prediction"]
    want = Predictor.from_store(tag).predict(frame)["predictions"]
    np.testing.assert_array_equal(scores["prediction"].to_numpy(np.float32), np.float32(want))


def test_id_column_is_detected_or_named(churn_tag: str, tmp_path: Path) -> None:
    frame = churn_frame().head(20).rename(columns={"customer_id": "id"})
    frame.insert(0, "batch_id", "b1")
    frame.to_csv(tmp_path / "in.csv", index=False)
    auto = score_file(churn_tag, tmp_path / "in.csv", tmp_path / "auto.csv")
    assert auto.id_column == "batch_id"  # the first id-like column in the file
    named = score_file(churn_tag, tmp_path / "in.csv", tmp_path / "named.csv", id_column="id")
    assert read(tmp_path / "named.csv", "id")["id"].tolist() == frame["id"].tolist()
    assert named.id_column == "id"
    with pytest.raises(DataError, match="no id column 'nope'"):
        score_file(churn_tag, tmp_path / "in.csv", tmp_path / "x.csv", id_column="nope")


def test_errors_before_scoring(churn_tag: str, tmp_path: Path) -> None:
    frame = churn_frame().drop(columns=["age", "plan"])
    frame.to_csv(tmp_path / "in.csv", index=False)
    with pytest.raises(DataError, match="no columns 'age', 'plan' for model churn"):
        score_file(churn_tag, tmp_path / "in.csv", tmp_path / "out.csv")
    with pytest.raises(DataError, match="file not found"):
        score_file(churn_tag, tmp_path / "missing.csv", tmp_path / "out.csv")
    with pytest.raises(ModelNotFound):
        score_file("no-such-model", CHURN_CSV, tmp_path / "out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # nothing written


def test_a_malformed_line_stops_the_run_and_leaves_no_output(
    churn_tag: str, tmp_path: Path
) -> None:
    lines = CHURN_CSV.read_text().splitlines()
    lines.insert(1500, lines[1500] + ",an extra field")  # shifted values: never scored
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="Expected 11 fields in line 1501, saw 12"):
        score_file(churn_tag, tmp_path / "in.csv", tmp_path / "out.csv", chunk_rows=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_cli_scores_and_counts_rejects(churn_tag: str, tmp_path: Path) -> None:
    path = bad_file(tmp_path)
    result = kiln(
        "predict", churn_tag, "--input", str(path), "--output", str(tmp_path / "out.parquet")
    )
    assert result.returncode == 0, result.stderr
    assert "scored 56 of 60 rows" in result.stdout and "4 rows rejected" in result.stdout
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == 56
    assert len(pd.read_csv(tmp_path / "out.rejects.csv")) == 4


def test_cli_errors_exit_2_or_3(churn_tag: str, tmp_path: Path) -> None:
    churn_frame().drop(columns=["age"]).to_csv(tmp_path / "in.csv", index=False)
    missing_column = kiln(
        "predict", churn_tag, "--input", str(tmp_path / "in.csv"), "-o", str(tmp_path / "o.csv")
    )
    assert missing_column.returncode == 2, missing_column.stderr
    assert "no column 'age'" in missing_column.stderr
    assert "Traceback" not in missing_column.stderr
    missing_file = kiln("predict", churn_tag, "-i", str(tmp_path / "x.csv"), "-o", "o.csv")
    assert missing_file.returncode == 2 and "file not found" in missing_file.stderr
    unknown = kiln("predict", "nope", "-i", str(CHURN_CSV), "-o", str(tmp_path / "o.csv"))
    assert unknown.returncode == 3 and "'nope' is not in the store" in unknown.stderr
    assert not (tmp_path / "o.csv").exists()


_MEMORY_PROBE = """
import resource, sys
from pathlib import Path
from training.batch import score_file

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

tag, small, big, out = sys.argv[1:5]
score_file(tag, Path(small), Path(out) / "small.csv", chunk_rows=5000)  # imports, model, arenas
before = peak_mib()
summary = score_file(tag, Path(big), Path(out) / "big.parquet", chunk_rows=5000)
print(summary.scored, peak_mib() - before)
"""


@pytest.mark.slow
def test_memory_stays_bounded_whatever_the_file_size(churn_tag: str, tmp_path: Path) -> None:
    frame = churn_frame()
    big = tmp_path / "big.csv"
    for i in range(100):  # 300,000 rows, about 19 MB
        frame.assign(customer_id=frame["customer_id"] + f"-{i}").to_csv(
            big, mode="a", header=i == 0, index=False
        )
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, churn_tag, str(CHURN_CSV), str(big), str(tmp_path)],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    scored, growth_mib = result.stdout.split()
    assert int(scored) == 300_000
    # Scoring the whole file at once grows the peak by about 285 MiB (measured); chunk by
    # chunk it is about 13 MiB whatever the number of rows.
    assert float(growth_mib) < 60, f"peak RSS grew by {float(growth_mib):.0f} MiB"


# --- input checks: rows unlike the training data (kiln/checks.py) --------------------------


def drifted_frame() -> pd.DataFrame:
    """60 churn rows: a new plan in row 5, a negative charge and a capitalised plan in row 9,
    an age of 500 in row 15 and no contract (never missing in training) in row 25 (1-based)."""
    frame = churn_frame().head(60).astype(object)
    frame.loc[4, "plan"] = "Atlantis"
    frame.loc[8, "monthly_charge"] = -5200.0
    frame.loc[8, "plan"] = "Fiber"
    frame.loc[14, "age"] = 500
    frame.loc[24, "contract"] = None
    return frame


def drifted_file(tmp_path: Path) -> Path:
    """:func:`drifted_frame`, and a value the value rules refuse in row 20."""
    frame = drifted_frame()
    frame.loc[19, "age"] = "abc"
    path = tmp_path / "drifted.csv"
    frame.to_csv(path, index=False)
    return path


FOUND = {
    ("plan", "unseen_category"): 2,
    ("monthly_charge", "out_of_range"): 1,
    ("age", "out_of_range"): 1,
    ("contract", "missing"): 1,
}


def predictor_warnings(churn: Predictor, rows: list[int]) -> list[dict[str, Any]]:
    """The Predictor's warnings for these rows (0-based) of :func:`drifted_frame`, one at a
    time, with the file's row (1-based) as ``row``."""
    frame = drifted_frame()
    features = [f.name for f in churn.metadata.features]
    found = []
    for i in rows:
        answer = churn.predict(frame[features].iloc[[i]].astype(object))
        found += [{**w, "row": i + 1} for w in answer.get("warnings", [])]
    return found


@pytest.fixture
def drifted(tmp_path: Path) -> Path:
    return drifted_file(tmp_path)


def test_warn_scores_the_rows_and_lists_each_finding(
    churn_tag: str, churn: Predictor, tmp_path: Path, drifted: Path
) -> None:
    summary = score_file(churn_tag, drifted, tmp_path / "out.csv", chunk_rows=16)
    assert summary.input_checks is CheckMode.warn  # the model's own mode
    assert (summary.rows, summary.scored, summary.rejected) == (60, 59, 1)  # "abc" only
    assert summary.findings == FOUND
    assert summary.findings_text() == (
        "plan unseen category 2 rows, age out of range 1 row, contract missing 1 row, "
        "monthly_charge out of range 1 row"
    )
    assert summary.warnings == tmp_path / "out.warnings.csv"
    warned = read(summary.warnings)
    assert list(warned.columns) == ["customer_id", "row", "feature", "value", "reason", "message"]
    source = churn_frame().head(60)
    assert warned["row"].tolist() == [5, 9, 9, 15, 25]
    assert warned["customer_id"].tolist() == source["customer_id"].iloc[[4, 8, 8, 14, 24]].tolist()
    assert warned["feature"].tolist() == ["plan", "monthly_charge", "plan", "age", "contract"]
    # as checked: the numbers as the JSON route's warnings carry them, whatever the chunk
    assert warned["value"].tolist()[:4] == ["Atlantis", "-5200.0", "Fiber", "500.0"]
    assert pd.isna(warned["value"][4])  # missing: an empty field
    assert warned["reason"].tolist() == [
        "unseen_category",
        "out_of_range",
        "unseen_category",
        "out_of_range",
        "missing",
    ]
    # the same findings, in the same words, as the Predictor (and so the JSON route) gives
    want = predictor_warnings(churn, [4, 8, 14, 24])
    assert [(w["row"], w["feature"], w["reason"], w["message"]) for w in want] == list(
        warned[["row", "feature", "reason", "message"]].itertuples(index=False, name=None)
    )
    assert warned["message"][0].startswith("'Atlantis' was never seen in training (seen: ")
    scores = read(tmp_path / "out.csv")
    kept = source.drop(index=[19])
    assert scores["customer_id"].tolist() == kept["customer_id"].tolist()  # all scored


def test_reject_sends_the_rows_to_the_rejects_file(
    churn_tag: str, churn: Predictor, tmp_path: Path, drifted: Path
) -> None:
    summary = score_file(
        churn_tag, drifted, tmp_path / "out.csv", input_checks="reject", chunk_rows=16
    )
    assert summary.input_checks is CheckMode.reject and summary.warnings is None
    assert (summary.rows, summary.scored, summary.rejected) == (60, 55, 5)
    assert summary.findings == FOUND  # counted in every mode
    rejects = read(summary.rejects)
    assert rejects["row"].tolist() == [5, 9, 15, 20, 25]
    want = {w["row"]: w for w in predictor_warnings(churn, [4, 14, 24])}
    assert rejects["reason"][0] == f"plan: {want[5]['message']}"
    assert rejects["reason"][1].startswith("monthly_charge: -5200.0 is below the range seen")
    assert "; plan: 'Fiber' was never seen in training" in rejects["reason"][1]
    assert rejects["reason"][2] == f"age: {want[15]['message']}"
    assert rejects["reason"][3] == "age: 'abc' is not a number"
    assert rejects["reason"][4] == "contract: is missing, and was never missing in training"
    assert rejects["reason"][4] == f"contract: {want[25]['message']}"
    assert rejects.loc[0, "plan"] == "Atlantis"  # the row's values as read
    # the Predictor's 422 for the same row names the same feature with the same words
    features = [f.name for f in churn.metadata.features]
    with pytest.raises(InputRejected) as caught:
        Predictor(churn.runtime.stored, input_checks="reject").predict(
            drifted_frame()[features].iloc[[14]]
        )
    assert caught.value.message == f"feature 'age', row 0: {want[15]['message']}"
    scores = read(tmp_path / "out.csv")
    kept = churn_frame().head(60).drop(index=[4, 8, 14, 19, 24])
    assert scores["customer_id"].tolist() == kept["customer_id"].tolist()
    assert_scores_match(scores, churn, kept)
    assert not (tmp_path / "out.warnings.csv").exists()


def test_accept_only_counts(churn_tag: str, tmp_path: Path, drifted: Path) -> None:
    summary = score_file(churn_tag, drifted, tmp_path / "a.csv", input_checks=CheckMode.accept)
    assert (summary.scored, summary.rejected, summary.findings) == (59, 1, FOUND)
    assert summary.warnings is None and not (tmp_path / "a.warnings.csv").exists()
    score_file(churn_tag, drifted, tmp_path / "w.csv", input_checks="warn")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "w.csv").read_bytes()


def test_findings_do_not_depend_on_the_chunk_size(
    churn_tag: str, tmp_path: Path, drifted: Path
) -> None:
    big = tmp_path / "big.csv"
    pd.concat([pd.read_csv(drifted, dtype=str)] * 7).to_csv(big, index=False)
    small = score_file(churn_tag, big, tmp_path / "a.csv", chunk_rows=7)
    whole = score_file(churn_tag, big, tmp_path / "b.csv")
    assert small.findings == whole.findings == {k: 7 * v for k, v in FOUND.items()}
    assert (tmp_path / "a.warnings.csv").read_bytes() == (tmp_path / "b.warnings.csv").read_bytes()
    assert read(tmp_path / "a.warnings.csv")["row"].tolist()[-5:] == [365, 369, 369, 375, 385]


def test_the_models_own_mode_is_the_default(
    churn_tag: str, tmp_path: Path, drifted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    import training.batch
    from kiln.resolve import resolve

    stored = resolve(churn_tag)
    assert stored.metadata.reference is not None
    reference = stored.metadata.reference.model_copy(update={"checks": CheckMode.reject})
    strict = dataclasses.replace(
        stored, metadata=stored.metadata.model_copy(update={"reference": reference})
    )
    monkeypatch.setattr(training.batch, "resolve", lambda ref, warn=None: strict)
    summary = score_file(churn_tag, drifted, tmp_path / "out.csv")
    assert (summary.input_checks, summary.rejected) == (CheckMode.reject, 5)
    lenient = score_file(churn_tag, drifted, tmp_path / "out.csv", input_checks="accept")
    assert (lenient.input_checks, lenient.rejected) == (CheckMode.accept, 1)


def test_an_id_column_named_like_a_warnings_column(churn_tag: str, tmp_path: Path) -> None:
    churn_frame().head(5).rename(columns={"customer_id": "value"}).to_csv(
        tmp_path / "in.csv", index=False
    )
    with pytest.raises(DataError, match="the id column 'value' has the name of an output"):
        score_file(churn_tag, tmp_path / "in.csv", tmp_path / "o.csv", id_column="value")
    done = score_file(
        churn_tag, tmp_path / "in.csv", tmp_path / "o.csv", id_column="value", input_checks="accept"
    )
    assert done.scored == 5
    with pytest.raises(InvalidInput, match="'loud' is not an input-check mode"):
        score_file(churn_tag, tmp_path / "in.csv", tmp_path / "o.csv", input_checks="loud")


def test_cli_summary_names_the_findings_and_the_warnings_file(
    churn_tag: str, tmp_path: Path, drifted: Path
) -> None:
    out = tmp_path / "out.csv"
    warn = kiln("predict", churn_tag, "-i", str(drifted), "-o", str(out), "--chunk-rows", "16")
    assert warn.returncode == 0, warn.stderr
    assert (
        "input checks (warn): plan unseen category 2 rows, age out of range 1 row, contract "
        "missing 1 row, monthly_charge out of range 1 row (each finding in "
        f"{tmp_path / 'out.warnings.csv'})"
    ) in warn.stdout
    assert "scored 59 of 60 rows" in warn.stdout and "1 rows rejected" in warn.stdout
    assert len(read(tmp_path / "out.warnings.csv")) == 5
    named = tmp_path / "elsewhere" / "w.csv"
    elsewhere = kiln(
        "predict", churn_tag, "-i", str(drifted), "-o", str(out), "--warnings", str(named)
    )
    assert elsewhere.returncode == 0 and f"each finding in {named}" in elsewhere.stdout
    assert len(read(named)) == 5
    reject = kiln(
        "predict", churn_tag, "-i", str(drifted), "-o", str(out), "--input-checks", "reject"
    )
    assert reject.returncode == 0, reject.stderr
    assert "input checks (reject): plan unseen category 2 rows" in reject.stdout
    assert "scored 55 of 60 rows" in reject.stdout and "5 rows rejected" in reject.stdout
    assert "each finding" not in reject.stdout
    accept = kiln(
        "predict", churn_tag, "-i", str(drifted), "-o", str(out), "--input-checks", "accept"
    )
    assert accept.returncode == 0, accept.stderr
    assert "input checks (accept): plan unseen category 2 rows" in accept.stdout
    assert "scored 59 of 60 rows" in accept.stdout
    clean = kiln("predict", churn_tag, "-i", str(CHURN_CSV), "-o", str(out))
    assert "input checks (warn): every row like the training data" in clean.stdout
    wrong = kiln("predict", churn_tag, "-i", str(drifted), "-o", str(out), "--input-checks", "loud")
    assert wrong.returncode == 2 and "'loud' is not one of" in wrong.stderr
