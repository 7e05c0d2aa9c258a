"""Where fleet work runs: a Dask LocalCluster on this machine, or an existing cluster by address.

Tasks are whole vehicles (seconds each), so scheduling overhead is negligible and one thread
per worker process keeps the numba kernels from competing for cores.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..io import DataError

ADDRESS = re.compile(r"^(tcp|tls|ucx)://[^\s:/]+:\d{1,5}$")


@contextmanager
def dask_client(scheduler: str | None = None, workers: int = 1, processes: bool = True) -> Iterator:
    """A distributed Client: to `scheduler` (tcp://HOST:PORT) if given, else to a new LocalCluster of `workers`."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        if not ADDRESS.match(scheduler):
            raise ValueError(f"scheduler address {scheduler!r}: expected tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786)")
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        with client:
            yield client
        return
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@dataclass(frozen=True)
class _Failure:
    """Bad input met on a worker, carried back as data: DataError's constructor does not survive pickling."""

    source: str
    problem: str
    column: str | None
    row: int | None


def _guarded(fn: Callable, task: tuple, shared: tuple):
    try:
        return fn(*task, *shared)
    except DataError as exc:
        return _Failure(exc.source, exc.problem, exc.column, exc.row)


def map_with_progress(client, fn: Callable, tasks: Sequence[tuple], *shared, description: str) -> list:
    """fn(*task, *shared) for every task on the cluster, results in task order, a progress bar on stderr."""
    from distributed import as_completed

    n = len(tasks)
    futures = client.map(partial(_guarded, fn, shared=shared), list(tasks), pure=False)
    order = {f.key: n for n, f in enumerate(futures)}
    results: list = [None] * n
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        bar = progress.add_task(description, total=n)
        for future in as_completed(futures):
            result = future.result()
            if isinstance(result, _Failure):
                client.cancel(futures)
                raise DataError(result.source, result.problem, result.column, result.row)
            results[order[future.key]] = result
            progress.advance(bar)
    return results
