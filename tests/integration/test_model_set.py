"""The served models' lifecycle (service/models.py) without a server: a newly promoted
version that cannot be opened is reported once, counted, and the old one keeps serving."""

from __future__ import annotations

import asyncio
import logging

import pytest
import yaml
from prometheus_client import CollectorRegistry

from kiln.production import promote
from kiln.store import get_model
from service.dataplane import DataPlane
from service.metrics import Metrics
from service.settings import ServingSettings
from tests.conftest import SPECS
from training.run import train
from training.spec import parse_spec

pytestmark = pytest.mark.integration
NAME = "lifecycle-wine"


def _versions() -> list[str]:
    raw = yaml.safe_load((SPECS / "wine.yaml").read_text())
    tags = []
    for trees in (5, 8):
        raw.update(
            name=NAME,
            estimator={"type": "RandomForestClassifier", "params": {"n_estimators": trees}},
        )
        tags.append(train(parse_spec(raw)).tag)
    return tags


def test_a_damaged_new_version_is_reported_once_and_the_old_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    old, new = _versions()
    promote(old, "first")
    registry = CollectorRegistry()
    plane = DataPlane.load(ServingSettings(models=[NAME], poll_seconds=0), Metrics(registry))
    assert plane.models[NAME].version == old.split(":")[1]

    promote(new, "better")
    onnx = get_model(new).onnx_path  # damaged after its promotion (a disk, a bad copy)
    onnx.write_bytes(onnx.read_bytes()[:-8])

    async def polls() -> list[list[str]]:
        return [await plane.refresh() for _ in range(3)]

    with caplog.at_level(logging.INFO, logger="kiln"):
        swapped = asyncio.run(polls())
    assert swapped == [[], [], []]
    assert plane.models[NAME].version == old.split(":")[1] and plane.ready
    lines = [r.getMessage() for r in caplog.records if "cannot swap in" in r.getMessage()]
    assert len(lines) == 1 and new in lines[0] and "sha256" in lines[0], lines
    failures = registry.get_sample_value("kiln_model_load_failures_total", {"model": NAME})
    assert failures == 1
    asyncio.run(plane.close())


def test_a_pinned_model_that_failed_serves_once_its_file_is_restored() -> None:
    old, _ = _versions()
    onnx = get_model(old).onnx_path
    good = onnx.read_bytes()
    onnx.write_bytes(good + b"\0")  # its sha256 no longer matches kiln.json
    registry = CollectorRegistry()
    plane = DataPlane.load(ServingSettings(models=[old], poll_seconds=0), Metrics(registry))
    assert NAME in plane.failed and not plane.ready
    assert asyncio.run(plane.refresh()) == [] and NAME in plane.failed  # still damaged

    onnx.write_bytes(good)
    assert asyncio.run(plane.refresh()) == [old]
    assert plane.ready and plane.failed == {} and plane.models[NAME].version == old.split(":")[1]
    assert registry.get_sample_value("kiln_model_ready", {"model": NAME}) == 1
    assert asyncio.run(plane.refresh()) == []  # pinned and serving: never reloaded


def test_a_problem_of_the_worker_keeps_it_out_of_service() -> None:
    old, _ = _versions()
    plane = DataPlane.load(ServingSettings(models=[old], poll_seconds=0))
    assert plane.ready
    plane.served.problems["metrics"] = "metrics directory /x is full"
    assert not plane.ready
    plane.served.problems.clear()
    assert plane.ready
