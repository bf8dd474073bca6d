"""The metadata document: round trip, and schema versions checked on load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kiln.artifact import (
    HOLDOUT_FILE,
    HOLDOUT_READABLE_VERSIONS,
    HOLDOUT_SCHEMA_VERSION,
    METADATA_FILE,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    FeatureKind,
    Holdout,
    ModelMetadata,
    OriginKind,
    Stage,
    read_holdout,
    read_metadata,
    write_holdout,
    write_metadata,
)
from kiln.errors import ArtifactError

TESTDATA = Path(__file__).resolve().parents[1] / "testdata"


def _copy(version: int, tmp_path: Path, kind: str = "metadata", name: str = METADATA_FILE) -> Path:
    """``tmp_path`` holding testdata's ``<kind>-v<version>.json`` under the store's ``name``."""
    shutil.copy(TESTDATA / f"{kind}-v{version}.json", tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("version", READABLE_VERSIONS)
def test_every_readable_version_loads(version: int, tmp_path: Path) -> None:
    """A document written by each schema version this code claims to read still loads."""
    meta = read_metadata(_copy(version, tmp_path))
    assert meta.schema_version == version
    assert meta.tag.startswith(f"{meta.name}:")
    assert meta.stage in Stage


def test_current_version_is_readable() -> None:
    assert SCHEMA_VERSION in READABLE_VERSIONS


def test_round_trip_is_lossless(tmp_path: Path) -> None:
    original = read_metadata(_copy(SCHEMA_VERSION, tmp_path))
    out = tmp_path / "again"
    out.mkdir()
    write_metadata(original, out)
    again = read_metadata(out)
    assert again == original
    assert json.loads((out / METADATA_FILE).read_text()) == json.loads(original.model_dump_json())


def test_fixture_describes_a_mixed_model(tmp_path: Path) -> None:
    meta = read_metadata(_copy(1, tmp_path))
    kinds = {f.kind for f in meta.features}
    assert kinds == {FeatureKind.numeric, FeatureKind.categorical}
    plan = next(f for f in meta.features if f.name == "plan")
    assert plan.dtype == "string" and plan.categories and "" in plan.categories
    assert meta.feature_stats["age"].missing > 0


def test_version_1_is_a_spec_trained_model_whose_quality_was_measured(tmp_path: Path) -> None:
    meta = read_metadata(_copy(1, tmp_path))
    assert meta.schema_version == 1
    assert meta.origin is None and not meta.imported  # absent: trained from a spec
    assert meta.quality_measured and meta.evaluation.metrics


def test_version_1_is_written_back_without_version_2_fields(tmp_path: Path) -> None:
    meta = read_metadata(_copy(1, tmp_path))
    out = tmp_path / "again"
    out.mkdir()
    written = json.loads((write_metadata(meta, out)).read_text())
    assert "origin" not in written and "measured" not in written["evaluation"]
    assert read_metadata(out) == meta


def test_version_2_records_where_an_imported_model_came_from(tmp_path: Path) -> None:
    meta = read_metadata(_copy(2, tmp_path))
    assert meta.schema_version == 2 and meta.imported
    assert meta.origin is not None and meta.origin.kind is OriginKind.import_
    assert meta.origin.format == "joblib" and meta.origin.sha256 and meta.origin.source
    assert "scikit-learn" in meta.origin.loaded_with
    assert meta.origin.model_class == "sklearn.pipeline.Pipeline"
    assert meta.quality_measured and meta.evaluation.holdout_rows == meta.verification.rows
    assert meta.data[0].rows == meta.verification.rows  # the sample's fingerprint


def test_version_2_without_labels_says_no_quality_was_measured(tmp_path: Path) -> None:
    raw = json.loads((TESTDATA / "metadata-v2.json").read_text())
    raw["evaluation"].update(metrics={}, baseline={}, measured=False, confusion_matrix=None)
    (tmp_path / METADATA_FILE).write_text(json.dumps(raw))
    meta = read_metadata(tmp_path)
    assert not meta.quality_measured and meta.evaluation.metrics == {}


@pytest.mark.parametrize(
    "change",
    [{"origin": {"kind": "spec"}}, {"evaluation": {"measured": True}}],
    ids=["origin", "evaluation.measured"],
)
def test_version_1_with_a_version_2_field_is_refused(change: dict, tmp_path: Path) -> None:
    raw = json.loads((TESTDATA / "metadata-v1.json").read_text())
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if isinstance(raw.get(key), dict) else value
    (tmp_path / METADATA_FILE).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="fields of a later schema"):
        read_metadata(tmp_path, "churn:abc")


def test_version_2_with_a_reference_is_refused(tmp_path: Path) -> None:
    raw = json.loads((TESTDATA / "metadata-v2.json").read_text())
    raw["reference"] = json.loads((TESTDATA / "metadata-v3.json").read_text())["reference"]
    (tmp_path / METADATA_FILE).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match=r"later schema: reference \(schema 3\)"):
        read_metadata(tmp_path, "shop-orders:abc")


def test_version_3_carries_the_training_reference(tmp_path: Path) -> None:
    meta = read_metadata(_copy(3, tmp_path))
    assert meta.reference is not None
    numeric = [f.name for f in meta.features if f.kind is FeatureKind.numeric]
    for name in numeric:
        ref = meta.reference.features[name]
        assert ref.bins.edges is not None and ref.low is not None and ref.high is not None
        assert abs(sum(ref.bins.shares) - 1) < 1e-4
    assert meta.reference.prediction is not None and meta.reference.prediction.categories


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": SCHEMA_VERSION + 1}, "newer Kiln"),
        ({"schema_version": 0}, "no longer read"),
        ({"schema_version": "1"}, "no integer schema_version"),
        ({"origin": {"kind": "downloaded"}}, "does not match schema"),
        ({"schema_version": True}, "no integer schema_version"),
        ({"task": "clustering"}, "does not match schema"),
        ({"unexpected": 1}, "does not match schema"),
    ],
)
def test_wrong_documents_are_refused(change: dict, message: str, tmp_path: Path) -> None:
    raw = json.loads((TESTDATA / f"metadata-v{SCHEMA_VERSION}.json").read_text())
    raw.update(change)
    (tmp_path / METADATA_FILE).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match=message) as caught:
        read_metadata(tmp_path, "churn:abc")
    assert "churn:abc" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "missing"),
        (b"{not json", "unreadable"),
        (b"\xff\xfe\x00", "unreadable"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
def test_unreadable_documents_are_refused(
    content: bytes | None, message: str, tmp_path: Path
) -> None:
    if content is not None:
        (tmp_path / METADATA_FILE).write_bytes(content)
    with pytest.raises(ArtifactError, match=message):
        read_metadata(tmp_path)


def test_metadata_is_immutable(tmp_path: Path) -> None:
    meta = read_metadata(_copy(1, tmp_path))
    with pytest.raises(ValueError, match="frozen"):
        meta.name = "other"  # type: ignore[misc]
    assert isinstance(meta, ModelMetadata)


def test_version_4_carries_feature_labels(tmp_path: Path) -> None:
    meta = read_metadata(_copy(4, tmp_path))
    labels = {f.name: f.label for f in meta.features if f.label}
    assert labels == {"tenure_months": "months as a subscriber"}
    assert all(f.label is None for f in read_metadata(_copy(3, tmp_path)).features)


def test_version_3_with_a_feature_label_is_refused(tmp_path: Path) -> None:
    raw = json.loads((TESTDATA / "metadata-v3.json").read_text())
    raw["features"][2]["label"] = "data used (GB)"
    (tmp_path / METADATA_FILE).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match=r"later schema: features.label \(schema 4\)"):
        read_metadata(tmp_path, "churn:abc")


def test_version_3_is_written_back_without_feature_labels(tmp_path: Path) -> None:
    meta = read_metadata(_copy(3, tmp_path))
    out = tmp_path / "again"
    out.mkdir()
    written = json.loads(write_metadata(meta, out).read_text())
    assert all("label" not in f for f in written["features"]) and "reference" in written
    assert read_metadata(out) == meta


# -- holdout.json ----------------------------------------------------------------------------


def _holdout(version: int, tmp_path: Path) -> Path:
    return _copy(version, tmp_path, "holdout", HOLDOUT_FILE)


@pytest.mark.parametrize("version", HOLDOUT_READABLE_VERSIONS)
def test_every_readable_holdout_version_loads(version: int, tmp_path: Path) -> None:
    doc = read_holdout(_holdout(version, tmp_path))
    assert doc is not None and doc.schema_version == version
    assert doc.rows == len(doc.y_true) == len(doc.y_pred)


def test_holdout_version_1_has_no_evidence_and_version_2_has_it(tmp_path: Path) -> None:
    assert HOLDOUT_SCHEMA_VERSION == 2
    old = read_holdout(_holdout(1, tmp_path))
    assert old is not None and old.evidence is None
    new = read_holdout(_holdout(2, tmp_path))
    assert new is not None and new.evidence is not None
    tenure = next(e for e in new.evidence if e.feature == "tenure_months")
    assert [b.label for b in tenure.bands] == ["under 6", "6 to 23", "24 or more"]
    assert tenure.bands[0].high == tenure.bands[1].low == 6
    assert sum(b.rows for b in tenure.bands) == tenure.rows


def test_holdout_version_1_with_evidence_is_refused(tmp_path: Path) -> None:
    raw = json.loads((TESTDATA / "holdout-v1.json").read_text())
    raw["evidence"] = json.loads((TESTDATA / "holdout-v2.json").read_text())["evidence"]
    (tmp_path / HOLDOUT_FILE).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match=r"later schema: evidence \(schema 2\)"):
        read_holdout(tmp_path, "churn:abc")


@pytest.mark.parametrize("version", HOLDOUT_READABLE_VERSIONS)
def test_holdout_round_trip_keeps_to_its_version(version: int, tmp_path: Path) -> None:
    doc = read_holdout(_holdout(version, tmp_path))
    assert doc is not None
    out = tmp_path / "again"
    out.mkdir()
    written = json.loads(write_holdout(doc, out).read_text())
    assert ("evidence" in written) is (version >= 2)
    assert read_holdout(out) == doc


def test_a_newer_holdout_is_refused(tmp_path: Path) -> None:
    raw = Holdout(holdout_rows=1, rows=1, y_true=[1.0], y_pred=[1.0]).model_dump()
    raw["schema_version"] = HOLDOUT_SCHEMA_VERSION + 1
    (tmp_path / HOLDOUT_FILE).write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="newer Kiln"):
        read_holdout(tmp_path, "diabetes:abc")
