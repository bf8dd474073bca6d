"""The batcher with tiny fake models: rows are counted, requests kept apart, limits hold."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from kiln.errors import Overloaded
from service.batching import Batcher, BatchStats, Columns, Outputs


def double(columns: Columns) -> Outputs:
    """The 'sum model': doubles x; remembers nothing."""
    return {"y": columns["x"] * 2}


def slow(seconds: float) -> Callable[[Columns], Outputs]:
    def run(columns: Columns) -> Outputs:
        time.sleep(seconds)
        return double(columns)

    return run


def busy(per_call: float, per_row: float = 0.0) -> Callable[[Columns], Outputs]:
    """A model that uses the CPU for ``per_call`` plus ``per_row`` seconds a row (the
    batcher times calls in CPU time, which a sleep does not use)."""

    def run(columns: Columns) -> Outputs:
        until = time.thread_time() + per_call + per_row * len(columns["x"])
        while time.thread_time() < until:
            pass
        return double(columns)

    return run


def failing(columns: Columns) -> Outputs:
    """The 'error model': fails any call that contains a negative x."""
    if (columns["x"] < 0).any():
        raise ValueError("negative input")
    return double(columns)


def rows(*values: float) -> Columns:
    return {"x": np.array(values, dtype=np.float32)}


def run_async(factory: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(factory())  # type: ignore[arg-type]


def make(
    run: Callable[[Columns], Outputs] = double, **limits: Any
) -> tuple[Batcher, list[BatchStats]]:
    seen: list[BatchStats] = []
    options = {"max_batch_rows": 8, "max_wait_ms": 20.0, "max_queue_rows": 1000, **limits}
    return Batcher("m", run, on_batch=seen.append, **options), seen


def test_concurrent_requests_share_calls_and_get_their_own_rows_back() -> None:
    batcher, seen = make(slow(0.01))

    async def go() -> list[Outputs]:
        requests = [batcher.predict(rows(i, i + 0.5), 2) for i in range(12)]
        results = await asyncio.gather(*requests)
        await batcher.close()
        return results

    results = run_async(go)
    for i, result in enumerate(results):
        assert result["y"].tolist() == [2 * i, 2 * i + 1]
    assert sum(s.rows for s in seen) == 24
    assert len(seen) < 12  # merged: fewer calls than requests
    assert max(s.requests for s in seen) > 1
    assert all(s.rows <= 8 for s in seen)


def test_a_request_is_never_merged_past_the_row_limit() -> None:
    batcher, seen = make(max_batch_rows=10)

    async def go() -> None:
        await asyncio.gather(*(batcher.predict(rows(*range(6)), 6) for _ in range(5)))
        await batcher.close()

    run_async(go)
    assert [s.rows for s in seen] == [6] * 5  # 6 + 6 > 10: each runs alone


def test_a_large_request_is_split_into_calls_and_rejoined_in_order() -> None:
    batcher, seen = make(max_batch_rows=16)

    async def go() -> Outputs:
        result = await batcher.predict(rows(*range(50)), 50)
        await batcher.close()
        return result

    result = run_async(go)
    assert result["y"].tolist() == [2.0 * v for v in range(50)]
    assert sorted(s.rows for s in seen) == [2, 16, 16, 16]


def test_a_bad_request_does_not_fail_the_others_in_its_batch() -> None:
    batcher, _ = make(failing)

    async def go() -> list[Any]:
        results = await asyncio.gather(
            batcher.predict(rows(1), 1),
            batcher.predict(rows(-1), 1),
            batcher.predict(rows(3), 1),
            return_exceptions=True,
        )
        await batcher.close()
        return results

    good, bad, other = run_async(go)
    assert good["y"].tolist() == [2.0] and other["y"].tolist() == [6.0]
    assert isinstance(bad, ValueError)


def test_under_concurrent_traffic_a_request_waits_at_most_max_wait() -> None:
    batcher, seen = make(max_wait_ms=30.0)

    async def go() -> float:
        await asyncio.gather(*(batcher.predict(rows(i), 1) for i in range(3)))  # concurrent
        started = time.perf_counter()
        await batcher.predict(rows(1), 1)  # waits for company that does not come
        await batcher.close()
        return time.perf_counter() - started

    elapsed = run_async(go)
    assert seen[0].requests == 3
    assert 0.025 <= seen[-1].waits[0] < 0.5
    assert elapsed < 0.5


def test_a_lone_client_is_not_kept_waiting() -> None:
    batcher, seen = make(max_wait_ms=200.0)

    async def go() -> float:
        started = time.perf_counter()
        for i in range(5):  # one request at a time: never any company
            await batcher.predict(rows(i), 1)
        await batcher.close()
        return time.perf_counter() - started

    assert run_async(go) < 0.2  # five waits of 200 ms would take a second
    assert all(s.requests == 1 and s.waits[0] < 0.05 for s in seen)


def test_the_rest_of_a_lone_clients_split_request_is_not_kept_waiting() -> None:
    batcher, seen = make(max_wait_ms=200.0, max_batch_rows=4)

    async def go() -> float:
        started = time.perf_counter()
        for _ in range(3):  # one request at a time, each split into three chunks
            out = await batcher.predict(rows(*range(10)), 10)
            assert out["y"].tolist() == [2.0 * i for i in range(10)]
        await batcher.close()
        return time.perf_counter() - started

    # a chunk waiting for company after the one before it would take 200 ms each time
    assert run_async(go) < 0.2
    assert [s.rows for s in seen] == [4, 4, 2] * 3
    assert all(s.waits[0] < 0.05 for s in seen)


def test_requests_arriving_during_a_call_join_the_next_without_waiting() -> None:
    batcher, seen = make(slow(0.05), max_wait_ms=0.0, max_batch_rows=64)

    async def go() -> None:
        first = asyncio.ensure_future(batcher.predict(rows(0), 1))
        await asyncio.sleep(0.01)  # the first call is running now
        await asyncio.gather(first, *(batcher.predict(rows(i), 1) for i in range(1, 6)))
        await batcher.close()

    run_async(go)
    assert [s.rows for s in seen] == [1, 5]


def test_queue_over_its_limit_is_refused_as_overloaded() -> None:
    gate = threading.Event()

    def blocked(columns: Columns) -> Outputs:
        gate.wait(5)
        return double(columns)

    batcher, _ = make(blocked, max_batch_rows=4, max_wait_ms=0.0, max_queue_rows=6)

    async def go() -> list[Any]:
        running = asyncio.ensure_future(batcher.predict(rows(1, 2, 3, 4), 4))
        await asyncio.sleep(0.02)  # the first call holds the model
        queued = [asyncio.ensure_future(batcher.predict(rows(1, 2, 3), 3)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="6 rows already queued"):
            await batcher.predict(rows(9), 1)
        gate.set()
        results = await asyncio.gather(running, *queued)
        await batcher.close()
        return results

    results = run_async(go)
    assert [len(r["y"]) for r in results] == [4, 3, 3]
    assert batcher.queued_rows == 0


def test_batching_off_runs_every_request_alone_in_order() -> None:
    batcher, seen = make(slow(0.01), merge=False, max_wait_ms=50.0)

    async def go() -> list[Outputs]:
        results = await asyncio.gather(*(batcher.predict(rows(i), 1) for i in range(6)))
        big = await batcher.predict(rows(*range(20)), 20)  # still split at max_batch_rows
        await batcher.close()
        return [*results, big]

    started = time.perf_counter()
    results = run_async(go)
    assert [r["y"].tolist() for r in results[:6]] == [[2 * i] for i in range(6)]
    assert results[6]["y"].tolist() == [2 * i for i in range(20)]
    assert [s.requests for s in seen] == [1] * 6 + [1, 1, 1]
    assert [s.rows for s in seen][-3:] == [8, 8, 4]
    assert time.perf_counter() - started < 0.3  # no max_wait_ms when nothing can join


def held(gate: threading.Event) -> Callable[[Columns], Outputs]:
    """A model that holds its call until ``gate`` is set: the queue fills behind it."""

    def run(columns: Columns) -> Outputs:
        gate.wait(5)
        return double(columns)

    return run


def test_a_request_that_does_not_fit_whole_is_refused_with_nothing_queued() -> None:
    """All or nothing: a 10-row request (3 chunks of 4) where 6 rows are free is refused
    before any chunk is queued, and nothing of it ever runs."""
    gate = threading.Event()
    batcher, seen = make(held(gate), max_batch_rows=4, max_wait_ms=0.0, max_queue_rows=10)

    async def go() -> None:
        running = asyncio.ensure_future(batcher.predict(rows(1, 2, 3, 4), 4))
        await asyncio.sleep(0.02)  # the first call holds the model; nothing queued
        queued = asyncio.ensure_future(batcher.predict(rows(1, 2, 3, 4), 4))
        await asyncio.sleep(0)
        assert batcher.queued_rows == 4
        with pytest.raises(Overloaded, match="4 rows already queued, no room for 10 more"):
            await batcher.predict(rows(*range(10)), 10)
        assert batcher.queued_rows == 4  # none of its chunks was queued
        gate.set()
        await asyncio.gather(running, queued)
        await batcher.close()

    run_async(go)
    assert [s.rows for s in seen] == [4, 4]  # no chunk of the refused request ran


def test_an_idle_model_takes_a_request_larger_than_the_queue() -> None:
    batcher, seen = make(max_batch_rows=4, max_queue_rows=6)

    async def go() -> Outputs:
        result = await batcher.predict(rows(*range(10)), 10)
        await batcher.close()
        return result

    assert run_async(go)["y"].tolist() == [2.0 * v for v in range(10)]
    assert [s.rows for s in seen] == [4, 4, 2]


def test_a_cancelled_request_runs_none_of_its_chunks_that_wait() -> None:
    """The caller goes away (its timeout cancels it) while its chunks queue behind a held
    call: they are dropped, never run, and their room is given back."""
    gate = threading.Event()
    batcher, seen = make(held(gate), max_batch_rows=4, max_wait_ms=0.0)

    async def go() -> None:
        running = asyncio.ensure_future(batcher.predict(rows(1, 2, 3, 4), 4))
        await asyncio.sleep(0.02)
        doomed = asyncio.ensure_future(batcher.predict(rows(*range(12)), 12))
        await asyncio.sleep(0)
        assert batcher.queued_rows == 12
        doomed.cancel()
        await asyncio.sleep(0)
        gate.set()
        await running
        after = await batcher.predict(rows(5), 1)
        assert after["y"].tolist() == [10.0]
        await batcher.close()

    run_async(go)
    assert [s.rows for s in seen] == [4, 1]
    assert batcher.queued_rows == 0


def test_a_failing_chunk_cancels_the_chunks_of_its_request_not_run_yet() -> None:
    batcher, seen = make(failing, max_batch_rows=2, max_wait_ms=0.0, merge=False)

    async def go() -> None:
        with pytest.raises(ValueError, match="negative"):
            await batcher.predict(rows(-1, 1, 2, 3, 4, 5), 6)
        await asyncio.sleep(0.05)
        await batcher.close()

    run_async(go)
    assert seen == []  # the first chunk failed; the other two never ran
    assert batcher.queued_rows == 0


def test_reserved_room_counts_against_the_queue_until_given_back() -> None:
    gate = threading.Event()
    batcher, _ = make(held(gate), max_batch_rows=4, max_wait_ms=0.0, max_queue_rows=10)

    async def go() -> None:
        running = asyncio.ensure_future(batcher.predict(rows(1), 1))
        await asyncio.sleep(0.02)
        reservation = batcher.reserve(8)  # a body being read
        assert batcher.reserved_rows == 8
        with pytest.raises(Overloaded, match="8 rows already queued"):
            batcher.reserve(3)
        with pytest.raises(Overloaded):
            await batcher.predict(rows(1, 2, 3), 3)
        reservation.release()
        reservation.release()  # once only
        assert batcher.reserved_rows == 0
        forgotten = batcher.reserve(5)
        assert forgotten.held
        del forgotten  # a path that never gave it back: collected, given back
        assert batcher.reserved_rows == 0
        gate.set()
        await running
        await batcher.close()

    run_async(go)


def on_thread(run: Callable[[Columns], Outputs]) -> tuple[Callable[[Columns], Outputs], list[bool]]:
    """``run``, noting for each call whether it ran on the event loop's thread."""
    loop_thread = threading.get_ident()
    where: list[bool] = []

    def noted(columns: Columns) -> Outputs:
        where.append(threading.get_ident() == loop_thread)
        return run(columns)

    return noted, where


def test_a_short_lone_call_runs_on_the_loop_once_the_model_is_known_quick() -> None:
    run, on_loop = on_thread(double)
    batcher, seen = make(run, inline_max_ms=5.0)

    async def go() -> list[Outputs]:
        answers = [await batcher.predict(rows(i, i + 1), 2) for i in range(5)]
        await batcher.close()
        return answers

    answers = run_async(go)
    # the first call is timed on the model's thread; then, quick and alone, on the loop
    assert on_loop == [False, True, True, True, True]
    assert batcher.inline_calls == 4 and len(seen) == 5
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer["y"], [2 * i, 2 * i + 2])


def test_quick_calls_run_on_the_loop_with_company_and_when_large() -> None:
    run, on_loop = on_thread(double)
    batcher, seen = make(run, inline_max_ms=5.0, max_batch_rows=1000)

    async def go() -> None:
        await batcher.predict(rows(1), 1)  # learns what every call costs: on the thread
        await asyncio.gather(*(batcher.predict(rows(i), 1) for i in range(6)))  # company
        await batcher.predict(rows(*range(17)), 17)  # the first large call: on the thread
        await batcher.predict(rows(*range(17)), 17)  # now known quick per row
        answer = await batcher.predict(rows(*range(900)), 900)
        np.testing.assert_array_equal(answer["y"], 2 * np.arange(900))
        await batcher.close()

    run_async(go)
    assert [s.requests for s in seen] == [1, 6, 1, 1, 1]  # the company was merged
    assert on_loop == [False, True, False, True, True] and batcher.inline_calls == 3
    assert batcher.expected_seconds(900) is not None and batcher.expected_seconds(900) < 0.005


def test_slow_calls_and_calls_slow_for_their_rows_stay_on_the_thread() -> None:
    slow_run, slow_on_loop = on_thread(busy(0.01))  # 10 ms calls: past inline_max_ms
    slow_batcher, _ = make(slow_run, inline_max_ms=5.0)

    async def alone() -> None:
        for i in range(3):
            await slow_batcher.predict(rows(i), 1)
        await slow_batcher.close()

    run_async(alone)
    assert slow_on_loop == [False, False, False] and slow_batcher.inline_calls == 0

    # 20 us a row: a small call is quick, 500 rows are not (10 ms)
    per_row_run, per_row_on_loop = on_thread(busy(0.0, 20e-6))
    per_row, _ = make(per_row_run, inline_max_ms=5.0, max_batch_rows=1000)

    async def growing() -> None:
        for _ in range(2):
            await per_row.predict(rows(1), 1)
        for _ in range(3):
            await per_row.predict(rows(*range(500)), 500)
        await per_row.close()

    run_async(growing)
    assert per_row_on_loop == [False, True, False, False, False]
    expected = per_row.expected_seconds(500)
    assert expected is not None and expected > 0.008


def test_inline_off_and_a_failing_inline_call() -> None:
    run, on_loop = on_thread(failing)
    off, _ = make(run, inline_max_ms=0.0)
    on, _ = make(failing, inline_max_ms=5.0)

    async def go() -> None:
        for _ in range(3):
            await off.predict(rows(1), 1)
        await on.predict(rows(1), 1)
        with pytest.raises(ValueError, match="negative input"):
            await on.predict(rows(-1), 1)  # on the loop: its own error, nothing else hurt
        np.testing.assert_array_equal((await on.predict(rows(3), 1))["y"], [6])
        await off.close()
        await on.close()

    run_async(go)
    assert on_loop == [False, False, False] and off.inline_calls == 0
    assert on.inline_calls == 2
