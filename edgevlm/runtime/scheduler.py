"""Continuous batching for concurrent callers: one worker thread drives a :class:`~edgevlm.runtime.batching.Batch`.

    sched = Scheduler(rt, max_batch=8, max_queue=32)
    job = sched.submit(rt.row("hallo welt", task="mt"), on_piece)  # on_piece(piece, finished) from the worker
    ...
    sched.close()

Between two decode steps the worker admits waiting rows (each prefilled alone,
up to ``max_batch`` rows decoding at once) and drops cancelled ones; finished
rows leave after the step that finished them. At most ``max_batch +
max_queue`` jobs are admitted or waiting: beyond that :meth:`Scheduler.submit`
raises :class:`Overloaded` at once instead of queueing.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from edgevlm.core.errors import ConfigError, EdgeVLMError, TaskError
from edgevlm.runtime.batching import Row


class Overloaded(EdgeVLMError):
    """Every batch row and queue slot is taken; try again later."""


class TaskBusy(TaskError):
    """A task cannot be removed while rows of it are decoding or waiting."""


@dataclass(eq=False)
class Job:
    """One submitted row and where its text goes (``on_piece(piece, finished)``, called from the worker thread;
    ``on_error(exception)`` if the worker could not run it)."""

    row: Row
    on_piece: Callable[[str, bool], None]
    on_error: Callable[[Exception], None] = field(default=lambda e: None)
    cancelled: bool = False


class Scheduler:
    """The worker thread and its bounded queue (see the module docstring)."""

    def __init__(self, rt, max_batch: int = 8, max_queue: int = 32):
        for name, v, low in (("max_batch", max_batch, 1), ("max_queue", max_queue, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {v!r}")
        self.rt, self.max_batch, self.max_queue = rt, max_batch, max_queue
        self._pending: collections.deque[Job] = collections.deque()
        self._active: list[Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._held = 0  # hold() callers: no prefill or step starts while > 0
        self._busy = threading.Lock()  # taken by the worker around each prefill + step
        self._refresh = False  # tasks were removed: the batch rebuilds its stacked adapters
        self.steps = 0  # decode steps run (for tests and monitoring)
        self.peak_rows = 0  # most rows decoded together
        self.cancels = 0  # cancel() calls (a client went away)
        self._thread = threading.Thread(target=self._loop, name="edgevlm-scheduler", daemon=True)
        self._thread.start()

    def submit(self, row: Row, on_piece, on_error=None) -> Job:
        """Queue ``row``; Overloaded when ``max_batch + max_queue`` jobs are already admitted or waiting."""
        job = Job(row, on_piece, on_error or (lambda e: None))
        row.handle = job
        with self._cond:
            if self._closed:
                raise Overloaded("the server is shutting down")
            t = row.task
            if t is not None and self.rt.tasks.get(t.name) is not t:
                raise TaskError(f"task {t.name!r} was removed")
            if len(self._pending) + len(self._active) >= self.max_batch + self.max_queue:
                raise Overloaded(f"busy: {self.max_batch} rows decoding and {self.max_queue} waiting; retry later")
            self._pending.append(job)
            self._cond.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Stop ``job`` (its row leaves at the next step boundary)."""
        with self._cond:
            job.cancelled = True
            self.cancels += 1
            self._cond.notify()

    @contextlib.contextmanager
    def hold(self):
        """Within this block no prefill or decode step starts (the one in progress has ended on entry);
        requests still queue or are refused as usual (maintenance, deterministic tests)."""
        with self._cond:
            self._held += 1
        try:
            with self._busy:
                pass
            yield self
        finally:
            with self._cond:
                self._held -= 1
                self._cond.notify()

    def remove_task(self, name: str):
        """Unload task ``name`` from the runtime unless a row of it is decoding or waiting (TaskBusy); waits for
        the step in progress, so a cancelled row of it leaves the batch before the next step uses its adapter."""
        with self._busy, self._cond:
            jobs = [j for j in (*self._pending, *self._active) if j.row.task is not None and j.row.task.name == name]
            if any(not j.cancelled for j in jobs):
                raise TaskBusy(f"task {name!r} has {len(jobs)} request(s) decoding or waiting; retry when they end")
            task = self.rt.remove_task(name)
            self._refresh = True
            return task

    @property
    def load(self) -> tuple[int, int]:
        """(rows decoding, jobs waiting)."""
        with self._cond:
            return len(self._active), len(self._pending)

    def close(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        batch = self.rt.batch()
        while True:
            with self._cond:
                while not self._closed and (self._held or (not self._pending and not self._active)):
                    self._cond.wait()
                if self._closed:
                    return
                admit = self._admit()
                refresh, self._refresh = self._refresh, False
            with self._busy:
                if refresh:
                    batch.refresh()
                batch = self._prefill(batch, admit)
                if len(batch):
                    batch = self._step(batch)

    def _admit(self) -> list[Job]:
        """Waiting jobs that fit into the batch now (called with the lock held); drops cancelled rows' jobs."""
        self._active = [j for j in self._active if not j.cancelled]  # their rows leave in _prefill
        admit = []
        while self._pending and len(self._active) + len(admit) < self.max_batch:
            job = self._pending.popleft()
            if not job.cancelled:
                admit.append(job)
        self._active += admit  # counted as decoding from here (remove_task sees them)
        return admit

    def _prefill(self, batch, admit: list[Job]):
        gone = [r for r in batch.rows if r.handle.cancelled]
        if gone:
            batch.remove(gone)
        for job in admit:
            try:
                batch.add(job.row)
            except Exception as e:  # a row that cannot run must not stop the others
                with self._cond:
                    self._active.remove(job)
                job.on_error(e)
        self.peak_rows = max(self.peak_rows, len(batch))
        return batch

    def _step(self, batch):
        try:
            events = batch.step()
        except Exception as e:  # the whole step failed: fail its rows, start a fresh batch
            for row in batch.rows:
                row.handle.on_error(e)
            with self._cond:
                self._active = []
            return self.rt.batch()
        self.steps += 1
        for row, piece, finished in events:
            if not row.handle.cancelled:
                row.handle.on_piece(piece, finished)
        with self._cond:
            self._active = [j for j in self._active if not j.row.finished]
        return batch
