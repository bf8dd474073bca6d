"""What the data plane counts (service/dataplane.py): each label a model answers, per row,
whether a request is one row or many (counted class by class), and the rows received."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kiln.records import decode_instances
from service.dataplane import DataPlane
from service.metrics import Metrics
from service.settings import ServingSettings
from tests.conftest import CHURN_ROW

pytestmark = pytest.mark.integration


def _predictions(metrics: Metrics) -> dict[str, float]:
    return {
        sample.labels["class"]: sample.value
        for sample in metrics.predictions.collect()[0].samples
        if sample.name.endswith("_total")
    }


def test_every_answered_label_is_counted_once_per_row(served_models: dict[str, Any]) -> None:
    metrics = Metrics(CollectorRegistry())
    plane = DataPlane.load(ServingSettings(models=[served_models["churn"].tag]), metrics)
    served = plane.get("churn")
    # rows that answer both classes: one request of one row, one of 300 (past the rows from
    # which labels are counted class by class)
    stays = {**CHURN_ROW, "tenure_months": 70, "support_calls": 0, "contract": "two_year",
             "monthly_charge": 20.0}  # fmt: skip
    rows = [CHURN_ROW if i % 3 else stays for i in range(300)]

    async def go() -> list[Any]:
        answered = []
        try:
            for request in (rows[:1], rows):
                columns, count = decode_instances(
                    {"instances": request}, served.features, max_rows=len(request)
                )
                answer = await plane.infer("churn", columns, count)
                answered += answer.outputs["label"].tolist()
        finally:
            await plane.close()
        return answered

    answered = asyncio.run(go())
    assert len(set(answered)) == 2, "the rows should answer both classes"
    expected = {str(label): float(n) for label, n in Counter(answered).items()}
    assert _predictions(metrics) == expected
    received = [s.value for s in metrics.rows.collect()[0].samples if s.name.endswith("_total")]
    assert received == [301.0]
