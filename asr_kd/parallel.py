"""Fan work out over utterances: local processes, or a Dask distributed cluster.

Stages that process utterances independently (synthesis, features, alignment,
decoding) take a ``concurrent.futures.Executor``, as Lhotse's feature extraction
does. :func:`make_executor` gives local worker processes by default, or a Dask
cluster's executor when a scheduler address is given (extra ``dask``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, as_completed
from typing import TypeVar

from tqdm.auto import tqdm

from asr_kd.errors import AsrKdError, ConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@contextlib.contextmanager
def make_executor(
    num_jobs: int = 1, dask_scheduler: str | None = None
) -> Iterator[Executor | None]:
    """An executor for per-utterance work, or ``None`` for in-process work.

    Args:
        num_jobs: local worker processes; 1 runs in the calling process.
        dask_scheduler: address of a running Dask scheduler (``tcp://host:8786``);
            when given, work goes to that cluster and ``num_jobs`` is ignored.
    """
    if dask_scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError(
                "--dask-scheduler needs the 'dask' extra: pip install 'asr-kd[dask]'"
            ) from None
        with Client(dask_scheduler) as client:
            logger.info("sending work to the Dask cluster at %s", dask_scheduler)
            yield client.get_executor()
        return
    if num_jobs < 1:
        raise ConfigError(f"num_jobs must be at least 1, got {num_jobs}")
    if num_jobs == 1:
        yield None
        return
    with ProcessPoolExecutor(num_jobs, initializer=_single_threaded) as pool:
        yield pool


def _single_threaded() -> None:
    """Worker start-up: one intra-op thread each, so N workers use N cores, not N x N;
    SIGTERM ends a worker at once (the command's own handler unwinds the parent)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch = sys.modules.get("torch")  # only when the parent uses it; importing costs seconds
    if torch is not None:
        torch.set_num_threads(1)


def map_progress(
    fn: Callable[[T], R],
    items: Sequence[T] | Iterable[T],
    executor: Executor | None,
    desc: str,
    total: int | None = None,
) -> list[R]:
    """``[fn(x) for x in items]`` on ``executor`` with a progress bar, in input order.

    An exception raised by ``fn`` propagates unchanged (after pending work is
    cancelled), so a worker's specific error reaches the user.
    """
    items = list(items)
    total = total if total is not None else len(items)
    with tqdm(total=total, desc=desc, unit="utt", leave=False) as bar:
        if executor is None:
            out = []
            for x in items:
                out.append(fn(x))
                bar.update()
            return out
        futures = {executor.submit(fn, x): i for i, x in enumerate(items)}
        results: list[R | None] = [None] * len(items)
        try:
            for fut in as_completed(futures):
                results[futures[fut]] = worker_result(fut)
                bar.update()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        return results  # type: ignore[return-value]


def worker_result(future: Future[R]) -> R:
    """``future.result()``; a worker process that died (killed by the system when memory
    ran out, or by a signal) is one error saying so, not ``BrokenProcessPool``."""
    try:
        return future.result()
    except BrokenExecutor:
        raise AsrKdError(
            "a worker process died while working (killed by a signal, or by the system when "
            "memory ran out: see dmesg); rerun with fewer --num-jobs or more memory"
        ) from None
