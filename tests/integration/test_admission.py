"""Admission on the real data plane (service/dataplane.py): a request is refused before its
body is read when its model's queue has no room for the rows its size suggests, the room is
reserved until the request is queued or refused, and refused rows are not counted."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from kiln.errors import InvalidInput, Overloaded
from kiln.records import decode_instances
from service.dataplane import Admission, DataPlane
from service.metrics import Metrics
from service.settings import ServingSettings
from tests.conftest import CHURN_ROW

pytestmark = pytest.mark.integration

ROW_BYTES = 200  # what the tests declare per row


def plane_for(served_models: dict[str, Any], **settings: Any) -> tuple[DataPlane, Metrics]:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    options = {"models": [served_models["churn"].tag], **settings}
    return DataPlane.load(ServingSettings(**options), metrics), metrics


def churn_columns(plane: DataPlane, rows: int) -> dict[str, np.ndarray]:
    columns, _ = decode_instances(
        {"instances": [CHURN_ROW] * rows}, plane.get("churn").features, max_rows=rows
    )
    return columns


def received(metrics: Metrics) -> float:
    return sum(s.value for m in metrics.rows.collect() for s in m.samples if "_total" in s.name)


def run(factory: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(factory())  # type: ignore[arg-type]


async def request(plane: DataPlane, rows: int, declared: int | None = None) -> Any:
    """One request as a route makes it, in its own task: admit, then infer."""
    await plane.admit("churn", None, str(declared if declared is not None else rows * ROW_BYTES))
    await asyncio.sleep(0)  # the body is read
    return await plane.infer("churn", churn_columns(plane, rows), rows)


def test_the_estimate_learns_bytes_per_row_from_admitted_requests(
    served_models: dict[str, Any],
) -> None:
    plane, _ = plane_for(served_models)

    async def go() -> None:
        assert plane.estimate_rows("churn", "json", 20_000) == 1  # nothing learned yet
        await request(plane, 100)  # 100 rows in 20,000 bytes
        assert plane.estimate_rows("churn", "json", 40_000) == 200
        assert plane.estimate_rows("churn", "v2-binary", 40_000) == 1  # learned apart
        assert plane.estimate_rows("churn", "json", None) == 1  # no Content-Length
        assert plane.estimate_rows("churn", "json", 10**12) == 10_000  # max_rows_per_request
        await plane.close()

    run(go)


def test_a_request_is_refused_before_its_body_when_the_reserved_room_is_taken(
    served_models: dict[str, Any],
) -> None:
    plane, metrics = plane_for(served_models, max_queue_rows=1_500)

    async def go() -> None:
        await request(plane, 10)  # learns 200 bytes per row
        batcher = plane.get("churn").batcher

        async def first() -> Admission:
            return await plane.admit("churn", None, 1_000 * ROW_BYTES)

        held = await asyncio.create_task(first())  # a body being read: 1,000 rows reserved
        assert batcher.reserved_rows == 1_000
        with pytest.raises(Overloaded, match="no room for 1000 more"):
            await asyncio.create_task(request(plane, 1_000))
        assert batcher.reserved_rows == 1_000 and batcher.queued_rows == 0
        assert await asyncio.create_task(request(plane, 400))  # 400 rows fit beside it
        held.reservation.release()
        answer = await asyncio.create_task(request(plane, 1_000))
        assert len(answer.outputs["label"]) == 1_000
        assert batcher.reserved_rows == 0
        await plane.close()

    run(go)
    assert received(metrics) == 10 + 400 + 1_000  # the refused request's rows are not counted


def test_a_body_refused_after_admission_gives_its_room_back(
    served_models: dict[str, Any],
) -> None:
    plane, _ = plane_for(served_models, max_queue_rows=1_000)

    async def go() -> None:
        await request(plane, 10)
        batcher = plane.get("churn").batcher

        async def refused_body() -> None:
            await plane.admit("churn", None, 900 * ROW_BYTES)
            assert batcher.reserved_rows == 900
            plane.record_error("churn", InvalidInput("the body is not valid JSON"))

        await asyncio.create_task(refused_body())
        assert batcher.reserved_rows == 0

        async def vanished() -> None:  # an unexpected way out: nothing gives it back but GC
            await plane.admit("churn", None, 900 * ROW_BYTES)
            raise RuntimeError("client went away")

        with pytest.raises(RuntimeError):
            await asyncio.create_task(vanished())
        await asyncio.sleep(0)  # the finished task is let go
        gc.collect()  # its exception's traceback makes a cycle
        assert batcher.reserved_rows == 0
        await plane.close()

    run(go)


def test_an_underestimated_request_is_checked_again_with_its_real_rows(
    served_models: dict[str, Any],
) -> None:
    """A body whose rows are smaller than the model's average is admitted on its estimate
    and queued with its real count; refused then if that does not fit, and not counted."""
    plane, metrics = plane_for(served_models, max_queue_rows=1_000)

    async def go() -> None:
        await request(plane, 10)

        async def hold(rows: int) -> Admission:
            return await plane.admit("churn", None, rows * ROW_BYTES)

        held = await asyncio.create_task(hold(600))
        # declared as 100 rows' bytes, holds 900 rows: admitted, then refused when queued
        with pytest.raises(Overloaded, match="no room for 900 more"):
            await asyncio.create_task(request(plane, 900, declared=100 * ROW_BYTES))
        held.reservation.release()
        await plane.close()

    run(go)
    assert received(metrics) == 10
