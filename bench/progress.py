"""Progress reporting without global state in the math: a context-local rich Progress.

The CLI installs a :class:`rich.progress.Progress` with :func:`use`; library code opens tasks with
:func:`task`, which is a no-op when nothing is installed (Python API, tests).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

_current: contextvars.ContextVar[Any] = contextvars.ContextVar("bench_progress", default=None)


class Task:
    """Handle on one progress bar; ``advance(n, **fields)`` updates it (fields e.g. loss=0.12)."""

    def __init__(self, progress: Any, task_id: Any):
        self._progress, self._id = progress, task_id

    def advance(self, n: float = 1, **fields: Any) -> None:
        if self._progress is not None:
            extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in fields.items())
            self._progress.update(self._id, advance=n, info=extra)


@contextlib.contextmanager
def use(progress: Any) -> Iterator[Any]:
    token = _current.set(progress)
    try:
        yield progress
    finally:
        _current.reset(token)


@contextlib.contextmanager
def task(description: str, total: float | None) -> Iterator[Task]:
    """A progress bar for the duration of the ``with`` block (removed when it ends)."""
    progress = _current.get()
    if progress is None:
        yield Task(None, None)
        return
    task_id = progress.add_task(description, total=total, info="")
    try:
        yield Task(progress, task_id)
    finally:
        progress.remove_task(task_id)
