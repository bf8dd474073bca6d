"""Input checks on the real data plane (service/dataplane.py) when requests share a batch:
under ``accept`` and ``warn`` the checks run once per merged batch, yet each finding is
counted once, and each request is told of its own rows only, numbered as it sent them, in
the words a request checked alone gets (kiln/checks.py). ``reject`` refuses a request
before it is queued, and the requests batched beside it are answered."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from kiln.checks import InputChecks
from kiln.errors import InputRejected
from kiln.records import decode_instances
from service.dataplane import DataPlane, Inference
from service.metrics import Metrics
from service.settings import ServingSettings
from tests.conftest import CHURN_ROW

pytestmark = pytest.mark.integration

GOOD = {**CHURN_ROW, "data_gb": 12.0}
BAD = {**GOOD, "support_calls": -99_999_999, "region": "Mars"}  # out of range, unseen


def plane_for(
    served_models: dict[str, Any], mode: str, **settings: Any
) -> tuple[DataPlane, Metrics]:
    metrics = Metrics(CollectorRegistry())
    options = {"models": [served_models["churn"].tag], "input_checks": mode, **settings}
    return DataPlane.load(ServingSettings(**options), metrics), metrics


def columns_of(plane: DataPlane, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    columns, _ = decode_instances(
        {"instances": rows}, plane.get("churn").features, max_rows=len(rows)
    )
    return columns


def counted(metrics: Metrics) -> dict[tuple[str, str], float]:
    """(feature, reason) -> the input-check counters' value."""
    found: dict[tuple[str, str], float] = {}
    for reason, family in metrics.input_checks.items():
        for sample in family.collect()[0].samples:
            if sample.name.endswith("_total"):
                found[(sample.labels["feature"], reason)] = sample.value
    return found


def batches(metrics: Metrics) -> tuple[float, float]:
    """(model calls, rows) the batch-size histogram saw."""
    samples = {s.name: s.value for s in metrics.batch_rows.collect()[0].samples}
    return samples["kiln_batch_rows_count"], samples["kiln_batch_rows_sum"]


async def concurrently(plane: DataPlane, requests: list[list[dict[str, Any]]]) -> list[Any]:
    """Each request in its own task, all queued before the batcher takes any: one batch."""

    async def one(rows: list[dict[str, Any]]) -> Inference:
        return await plane.infer("churn", columns_of(plane, rows), len(rows))

    try:
        return await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)
    finally:
        await plane.close()


# 12 requests of 1 to 4 rows; every third holds bad rows at different places
REQUESTS = [[GOOD] * (i % 4) + [BAD] * (i % 3 == 0) + [GOOD] * (1 + i % 2) for i in range(12)]


def expected(plane: DataPlane, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a request checked alone is told."""
    _, findings, _ = InputChecks(plane.get("churn").metadata).inspect(columns_of(plane, rows))
    return [f.as_dict() for f in findings]


def test_warn_checks_a_merged_batch_once_and_tells_each_request_its_own_rows(
    served_models: dict[str, Any],
) -> None:
    plane, metrics = plane_for(served_models, "warn")
    wanted = [expected(plane, rows) for rows in REQUESTS]
    answers = asyncio.run(concurrently(plane, REQUESTS))

    assert batches(metrics) == (1, sum(map(len, REQUESTS)))  # one merged call
    for rows, answer, want in zip(REQUESTS, answers, wanted, strict=True):
        assert isinstance(answer, Inference)
        assert [f.as_dict() for f in answer.warnings] == want
        assert answer.warning_count == len(want)
        assert len(answer.outputs["label"]) == len(rows)
        assert set(answer.outputs) == {"label", "probabilities"}  # the flags are taken out
    bad_rows = sum(r.count(BAD) for r in REQUESTS)
    assert bad_rows == 4
    assert counted(metrics) == {
        ("support_calls", "out_of_range"): bad_rows,
        ("region", "unseen_category"): bad_rows,
    }
    # the rows of a request with a bad row are named by its own numbering
    assert [w["row"] for w in wanted[3]] == [3, 3]


def test_accept_counts_a_merged_batch_and_says_nothing(served_models: dict[str, Any]) -> None:
    plane, metrics = plane_for(served_models, "accept")
    answers = asyncio.run(concurrently(plane, REQUESTS))

    assert batches(metrics)[0] == 1
    assert all(isinstance(a, Inference) and a.warning_count == 0 for a in answers)
    assert counted(metrics) == {
        ("support_calls", "out_of_range"): 4,
        ("region", "unseen_category"): 4,
    }


def test_reject_refuses_the_bad_requests_before_the_batch_and_answers_the_rest(
    served_models: dict[str, Any],
) -> None:
    plane, metrics = plane_for(served_models, "reject")
    answers = asyncio.run(concurrently(plane, REQUESTS))

    refused = [i for i, a in enumerate(answers) if isinstance(a, InputRejected)]
    assert refused == [i for i, rows in enumerate(REQUESTS) if BAD in rows]
    assert "feature 'support_calls', row" in str(answers[3])
    good = [rows for rows in REQUESTS if BAD not in rows]
    assert batches(metrics) == (1, sum(map(len, good)))  # the refused rows never ran
    assert counted(metrics)[("region", "unseen_category")] == 4


def test_a_request_split_into_chunks_is_told_of_a_bad_row_in_a_later_chunk(
    served_models: dict[str, Any],
) -> None:
    plane, metrics = plane_for(served_models, "warn", batch={"max_batch_rows": 4})
    rows = [GOOD] * 9 + [BAD] + [GOOD]  # row 9 is in the third chunk of four rows
    (answer,) = asyncio.run(concurrently(plane, [rows]))

    assert batches(metrics) == (3, 11)
    assert [(w.row, w.feature) for w in answer.warnings] == [
        (9, "support_calls"),
        (9, "region"),
    ]
    assert counted(metrics)[("support_calls", "out_of_range")] == 1


def test_off_neither_checks_nor_counts(served_models: dict[str, Any]) -> None:
    plane, metrics = plane_for(served_models, "off")
    answers = asyncio.run(concurrently(plane, REQUESTS))

    assert all(isinstance(a, Inference) and a.warning_count == 0 for a in answers)
    assert counted(metrics) == {}
