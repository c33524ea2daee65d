"""Stage 5 of a run: where units run. ``local`` (this process, one after the other) or ``ray``.

An executor maps a module-level function over a list of items, with arguments shared by all
calls, and yields the results as they complete. It knows nothing about shifts or detectors.

``ray`` starts a local Ray instance sized to the machine, or joins a running cluster
(``address``). The shared arguments go to the object store once; each item is one Ray task
that asks for ``threads`` CPUs and limits torch to that many threads, and for ``gpus`` GPUs
when the run computes on CUDA (one per task: Ray then gives the task its own device as
``cuda:0``, where the shared CUDA tensors unpickle). Plugin files are loaded
in the worker before anything is unpickled, so components they register travel like built-ins.
Install it with ``pip install 'shiftbench[ray]'``.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from bench.errors import BenchError

EXECUTORS = ("local", "ray")


class LocalExecutor:
    """Runs every call here, in order; what ``bench run`` does by default."""

    name = "local"

    def map(self, fn: Callable[..., Any], items: list[Any], shared: dict[str, Any],
            plugins: tuple[str, ...] = (), gpus: float = 0) -> Iterator[Any]:
        for item in items:
            yield fn(item, **shared)


@dataclass
class RayExecutor:
    """Runs every call as a Ray task; ``address`` None starts a local instance."""

    address: str | None = None
    #: CPUs (and torch threads) per task
    threads: int = 1
    #: CPUs of a local instance; None = all of this machine's
    num_cpus: int | None = None
    name: str = field(default="ray", init=False)

    def map(self, fn: Callable[..., Any], items: list[Any], shared: dict[str, Any],
            plugins: tuple[str, ...] = (), gpus: float = 0) -> Iterator[Any]:
        ray = _import_ray()
        started = not ray.is_initialized()
        if started:
            try:
                if self.address is None:
                    ray.init(num_cpus=self.num_cpus or os.cpu_count() or 1,
                             include_dashboard=False, log_to_driver=False,
                             configure_logging=False)
                else:
                    ray.init(address=self.address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a local instance"
                raise BenchError(f"cannot start Ray ({where}): {str(exc).splitlines()[0]}") from None
        try:
            shared_ref = ray.put(pickle.dumps(shared))
            task = ray.remote(**self.task_resources(gpus))(_ray_call)
            pending = [task.remote(fn, shared_ref, pickle.dumps(item), plugins, self.threads)
                       for item in items]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield pickle.loads(ray.get(done[0]))
        finally:
            if started:
                ray.shutdown()

    def task_resources(self, gpus: float = 0) -> dict[str, float]:
        """What each task asks Ray for: ``threads`` CPUs, and ``gpus`` GPUs when not 0."""
        return {"num_cpus": self.threads, **({"num_gpus": gpus} if gpus else {})}


def _ray_call(fn: Callable[..., Any], shared: bytes, item: bytes, plugins: tuple[str, ...],
              threads: int) -> bytes:
    """One task on a Ray worker: set the worker up, then call ``fn(item, **shared)``.

    Arguments arrive pickled so that plugin files are loaded before their classes are needed.
    """
    import torch

    from bench.plugins import load_plugin_files

    torch.set_num_threads(threads)
    load_plugin_files(plugins)
    return pickle.dumps(fn(pickle.loads(item), **pickle.loads(shared)))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchError("--executor ray needs Ray: pip install 'shiftbench[ray]'") from None
    return ray


def make_executor(name: str, *, address: str | None = None, threads: int = 1,
                  num_cpus: int | None = None) -> LocalExecutor | RayExecutor:
    """The executor called ``name`` (``local`` or ``ray``); checks what it needs now."""
    if name == "local":
        if address is not None:
            raise BenchError("--ray-address needs --executor ray")
        return LocalExecutor()
    if name == "ray":
        _import_ray()
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise BenchError(f"--threads-per-worker must be an integer >= 1, got {threads!r}")
        return RayExecutor(address=address, threads=threads, num_cpus=num_cpus)
    raise BenchError(f"unknown executor {name!r}: choose {' or '.join(EXECUTORS)}")


__all__ = ["LocalExecutor", "RayExecutor", "make_executor", "EXECUTORS"]
