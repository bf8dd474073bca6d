"""Adaptive batching that counts rows: concurrent requests for one model share one call.

Why not BentoML's batching: its ``max_batch_size`` counts requests, not rows, so a few
large requests overrun a model's row limit; its ``max_latency_ms`` answers 503 to anything
queued past it; and it batches per API method, while Kiln serves many models through one
route. This batcher is the small piece that keeps the rules:

- a request is never merged into a batch past ``max_batch_rows``; a larger request is split
  into chunks that each run alone, and its answer is put back together in order;
- the first request of a batch waits at most ``max_wait_ms`` for others, and only while
  traffic is concurrent (the last call merged several requests, or others were queued): a
  lone client is never kept waiting for company that is not coming; requests that queue
  while a call is running join the next call without waiting at all;
- admission is all or nothing per request: at most ``max_queue_rows`` rows wait (queued, or
  reserved by requests whose bodies are still being read, :meth:`Batcher.reserve`), and a
  request that does not fit whole is refused with ``Overloaded`` before any of its chunks is
  queued; an idle model takes any request (``max_rows_per_request`` bounds it). Once queued,
  a request that fails or is cancelled (its timeout) cancels its chunks that have not run;
- if a merged call fails, each request in it is retried alone, so one request's failure is
  never another's;
- with ``merge=False`` (batching off) every request is its own call, in arrival order;
- a call that is expected to be short runs on the event loop itself, without the hand-off
  to the model's thread and back: its expected duration (the model's own, learnt from its
  recent calls: a part every call pays, from calls of at most ``SMALL_ROWS`` rows, and a
  part per row, from larger ones) is at most ``inline_max_ms``. Every other call, the first
  calls of a model (nothing is known of it yet), and every call of a model that is not
  quick, runs on the thread. The hand-off is not only the hop: the call's rows, written on
  the loop's core, are read on the thread's, and its outputs the other way, which on the
  benchmark's machine cost a 1,000-row call of the logistic regression about as much CPU as
  the call itself (masks and ONNX Runtime: 250 us on one core, 400 us across two), and
  answered a one-row request 0.5 against 0.3 ms. A call on the loop holds every other request
  for its duration, which the bound keeps short; for a quick model that costs less than the
  hand-off saves, under concurrent traffic too (docs/benchmarks.md has the figures).
  Durations are CPU time of the thread that ran the call, so waiting for the interpreter
  lock behind the loop does not count; a call that waits without the CPU (a GPU's) is not
  seen by it, so the data plane turns this off for models on another provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from kiln.errors import Overloaded

__all__ = ["SMALL_ROWS", "BatchStats", "Batcher", "Columns", "Outputs", "Reservation"]

SMALL_ROWS = 16
"""Calls of at most this many rows teach the part of a call's duration that every call pays;
larger ones, the part per row (see the module's docstring)."""
_LEARN = 0.2  # weight of the newest call in the averages of a call's duration

Columns = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]


@dataclass
class _Pending:
    columns: Columns
    rows: int
    future: asyncio.Future[Outputs]
    request: list[asyncio.Future[Outputs]]  # the futures of every chunk of its request
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class BatchStats:
    """Reported after each model call: for metrics."""

    rows: int
    requests: int
    waits: list[float]  # seconds each request waited before its call started
    seconds: float  # duration of the model call


class Reservation:
    """Room held in a model's queue for a request not yet decoded (:meth:`Batcher.reserve`).

    It is given back exactly once: when the request is queued (:meth:`Batcher.predict` takes
    it), by :meth:`release` (the request failed before that), or, as a safety net for a path
    that raised something unexpected, when the object is garbage-collected.
    """

    def __init__(self, batcher: Batcher, rows: int) -> None:
        self.batcher = batcher
        self.rows = rows
        self._give_back = weakref.finalize(self, batcher._unreserve, rows)

    @property
    def held(self) -> bool:
        return self._give_back.alive

    def release(self) -> None:
        """Give the room back (once; later calls do nothing)."""
        self._give_back()


def _concat(parts: list[Columns]) -> Columns:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _slice(outputs: Outputs, start: int, stop: int) -> Outputs:
    return {name: array[start:stop] for name, array in outputs.items()}


class Batcher:
    """Queue and merge requests for one model; run merged calls on a worker thread."""

    def __init__(
        self,
        name: str,
        run: Callable[[Columns], Outputs],
        *,
        max_batch_rows: int,
        max_wait_ms: float,
        max_queue_rows: int,
        merge: bool = True,
        inline_max_ms: float = 0.0,
        on_batch: Callable[[BatchStats], None] = lambda _: None,
    ) -> None:
        self.name = name
        self._run = run
        self.max_batch_rows = max_batch_rows
        self.max_wait = max_wait_ms / 1000
        self.max_queue_rows = max_queue_rows
        self.merge = merge
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._reserved_rows = 0
        self._room: asyncio.Event | None = None  # set when rows leave: admissions wait on it
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"kiln-{name}")
        self._busy = False
        self._concurrent = False  # did the last call see company? then the next one waits
        self.inline_max = inline_max_ms / 1000
        self._per_call: float | None = None  # average CPU seconds of calls of <= SMALL_ROWS
        self._per_row: float | None = None  # and of a row past those, from larger calls
        self.inline_calls = 0  # calls run on the event loop (for tests and benchmarks)

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def reserved_rows(self) -> int:
        return self._reserved_rows

    def _check_room(self, rows: int) -> None:
        used = self._queued_rows + self._reserved_rows
        if used and used + rows > self.max_queue_rows:
            raise Overloaded(
                self.name,
                f"{used} rows already queued, no room for {rows} more "
                f"(the limit is {self.max_queue_rows})",
            )

    def reserve(self, rows: int) -> Reservation:
        """Hold room for ``rows`` rows of a request whose body is not read yet, or raise
        ``Overloaded``; the room counts against ``max_queue_rows`` until it is given back."""
        self._check_room(rows)
        self._reserved_rows += rows
        return Reservation(self, rows)

    async def reserve_within(self, rows: int, seconds: float) -> Reservation:
        """:meth:`reserve`, waiting up to ``seconds`` for room (rows leaving the queue)
        before ``Overloaded``. Nothing of the request is read meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            try:
                return self.reserve(rows)
            except Overloaded:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise
                if self._room is None:
                    self._room = asyncio.Event()
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), remaining)

    def _rows_left(self) -> None:
        if self._room is not None:
            self._room.set()

    def _unreserve(self, rows: int) -> None:
        self._reserved_rows -= rows
        self._rows_left()

    def submit(self, columns: Columns, rows: int) -> list[asyncio.Future[Outputs]]:
        """Admit a whole request or none of it: queue its chunks (one per ``max_batch_rows``)
        and return their futures, or raise ``Overloaded`` with nothing queued. (A request's
        own :class:`Reservation` is given back before, so it competes with its real rows.)"""
        self._check_room(rows)
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._serve(), name=f"kiln-batcher-{self.name}")
        futures: list[asyncio.Future[Outputs]] = []
        for start in range(0, rows, self.max_batch_rows):  # each chunk runs alone
            stop = min(start + self.max_batch_rows, rows)
            chunk = columns if stop - start == rows else _slice(columns, start, stop)
            pending = _Pending(chunk, stop - start, loop.create_future(), futures)
            self._queue.append(pending)
            futures.append(pending.future)
        self._queued_rows += rows
        assert self._wakeup is not None
        self._wakeup.set()
        return futures

    async def predict(self, columns: Columns, rows: int) -> Outputs:
        """Run ``rows`` rows through the model, batched with whatever else is waiting."""
        return await self.gather(self.submit(columns, rows))

    @staticmethod
    async def gather(futures: list[asyncio.Future[Outputs]]) -> Outputs:
        """The answer of a submitted request, its chunks re-joined in order. If one chunk
        fails, or the caller is cancelled, its chunks that have not run are cancelled
        (``_take`` drops them), so no work is done for an answer nobody gets."""
        try:
            if len(futures) == 1:
                return await futures[0]
            parts = await asyncio.gather(*futures)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}

    def _take(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        while self._queue and rows + self._queue[0].rows <= self.max_batch_rows:
            item = self._queue.popleft()
            if item.future.cancelled():  # the request failed or went away
                self._queued_rows -= item.rows
                continue
            batch.append(item)
            rows += item.rows
            if not self.merge:
                break
        self._queued_rows -= rows
        self._rows_left()
        return batch

    async def _serve(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            first = self._queue[0]
            wait = self.max_wait if self.merge and self._concurrent else 0.0
            deadline = first.queued_at + wait
            while (
                sum(p.rows for p in self._queue) < self.max_batch_rows
                and (remaining := deadline - time.perf_counter()) > 0
            ):
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch = self._take()
            self._concurrent = self._saw_company(batch)
            if batch:
                self._busy = True
                try:
                    await self._call(loop, batch)
                finally:
                    self._busy = False

    def _saw_company(self, batch: list[_Pending]) -> bool:
        """Whether this call had company: it merged requests, or another request is queued.
        The rest of a split request is not company: a lone client's second chunk would
        otherwise wait ``max_wait_ms`` for requests that are not coming (a lone client's
        1,000-row requests: 214 requests/s against 341 without the wait, docs/benchmarks.md)."""
        if len(batch) > 1:
            return True
        own = batch[0].request if batch else None
        return any(p.request is not own for p in self._queue)

    def expected_seconds(self, rows: int) -> float | None:
        """How long a call of ``rows`` rows is expected to take (CPU seconds); None while
        calls of its size have not been timed."""
        if rows <= SMALL_ROWS:
            return self._per_call
        if self._per_row is None:
            return None
        return (self._per_call or 0.0) + self._per_row * rows

    def _inline(self, rows: int) -> bool:
        """Whether a call of ``rows`` rows runs on the loop (the module's docstring)."""
        expected = self.expected_seconds(rows)
        return self.inline_max > 0 and expected is not None and expected <= self.inline_max

    def _timed(self, merged: Columns, rows: int) -> Outputs:
        """The model's call, its duration learnt (either thread)."""
        started = time.thread_time()
        outputs = self._run(merged)
        took = time.thread_time() - started
        if rows <= SMALL_ROWS:
            known = self._per_call
            self._per_call = took if known is None else known + _LEARN * (took - known)
        else:
            per_row = max(0.0, took - (self._per_call or 0.0)) / rows
            known = self._per_row
            self._per_row = per_row if known is None else known + _LEARN * (per_row - known)
        return outputs

    async def _call(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        merged = _concat([p.columns for p in batch])
        rows = sum(p.rows for p in batch)
        try:
            if self._inline(rows):
                self.inline_calls += 1
                outputs = self._timed(merged, rows)
            else:
                outputs = await loop.run_in_executor(self._executor, self._timed, merged, rows)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0].future.done():
                    batch[0].future.set_exception(exc)
                for sibling in batch[0].request:  # the request has failed: none of it runs
                    sibling.cancel()
                return
            for pending in batch:  # isolate the failure: each request alone
                await self._call(loop, [pending])
            return
        seconds = time.perf_counter() - started
        start = 0
        for pending in batch:
            if not pending.future.done():
                pending.future.set_result(_slice(outputs, start, start + pending.rows))
            start += pending.rows
        self._on_batch(
            BatchStats(rows, len(batch), [started - p.queued_at for p in batch], seconds)
        )

    async def drain(self) -> None:
        """Wait until everything queued so far has been answered."""
        while self._queue or self._busy:
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False)
