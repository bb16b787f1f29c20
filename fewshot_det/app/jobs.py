"""Model work off the event loop: one worker thread runs jobs in order, the page polls.

Every call into the model (teaching a class, detecting, a review run) is a job, so the
web server's event loop never waits on the model and the page stays responsive; one
worker means two jobs never use the model at once (a class being taught while a folder
is detected would otherwise race on the prototypes). A job reports progress and stops at
its next ``job.check_cancelled()`` once cancelled.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

logger = logging.getLogger(__name__)

KEEP_JOBS = 100  # finished jobs kept for polling, downloads and reviews (the oldest go first)


class Cancelled(Exception):
    """Raised inside a job by ``check_cancelled`` once the page asked to cancel it."""


class Job:
    """One piece of model work and what the page sees of it.

    Attributes:
        id, kind: its handle and what it does ("teach", "detect", "review", ...).
        status: "queued" | "running" | "done" | "failed" | "cancelled".
        done, total: progress (images; total 0 when unknown).
        result: the job function's return value once done (JSON for the page).
        data: what the job keeps for later requests and the page does not see (a review
            run's detections, a detection run's results list).
        error: the message shown on the page when failed.
    """

    def __init__(self, kind: str, total: int = 0):
        self.id = uuid.uuid4().hex[:12]
        self.kind = kind
        self.status = "queued"
        self.done, self.total = 0, int(total)
        self.result: Any = None
        self.data: Any = None
        self.error = ""
        self.started = self.finished = None
        self._cancel = threading.Event()

    def progress(self, done: int, total: Optional[int] = None) -> None:
        self.done = int(done)
        if total is not None:
            self.total = int(total)

    def cancel(self) -> None:
        self._cancel.set()

    def check_cancelled(self) -> None:
        """Raise ``Cancelled`` when the page asked to cancel."""
        if self._cancel.is_set():
            raise Cancelled()

    def to_json(self, with_result: bool = True) -> dict:
        out = {"id": self.id, "kind": self.kind, "status": self.status, "done": self.done,
               "total": self.total, "error": self.error,
               "seconds": round((self.finished or time.time()) - self.started, 3)
               if self.started else 0.0}
        if with_result and self.status == "done":
            out["result"] = self.result
        return out


class JobRunner:
    """Runs job functions ``fn(job) -> result`` one at a time on a worker thread.

    A ``ValueError`` / ``KeyError`` / ``FileNotFoundError`` raised by a job is the user's
    (a bad box, a name taken, an unreadable photo): its message becomes ``job.error``.
    Anything else is logged with its traceback and shown as an internal error; the
    worker goes on with the next job either way.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fewshot-app-model")
        self._jobs: "OrderedDict[str, Job]" = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, kind: str, fn: Callable[[Job], Any], total: int = 0) -> Job:
        job = Job(kind, total)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS:
                oldest = next(iter(self._jobs.values()))
                if oldest.status in ("queued", "running"):
                    break
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job, fn)
        return job

    def _run(self, job: Job, fn: Callable[[Job], Any]) -> None:
        job.started = time.time()
        try:
            job.check_cancelled()
            job.status = "running"
            job.result = fn(job)
            job.status = "done"
        except Cancelled:
            job.status = "cancelled"
        except (ValueError, KeyError, FileNotFoundError) as e:
            job.error = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
            job.status = "failed"
        except Exception as e:  # keep the worker alive; the page gets a message
            logger.exception("job %s (%s) failed", job.id, job.kind)
            job.error = f"internal error ({type(e).__name__}: {e}); see the server's log"
            job.status = "failed"
        finally:
            job.finished = time.time()

    def get(self, job_id: str) -> Job:
        """Raises ``KeyError`` naming the id."""
        with self._lock:
            if job_id not in self._jobs:
                raise KeyError(f"no job {job_id!r} (finished jobs are kept for a while only)")
            return self._jobs[job_id]

    def shutdown(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
