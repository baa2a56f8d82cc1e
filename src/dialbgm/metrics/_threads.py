"""The statistics on one BLAS thread, so that their last digits do not depend on the machine.

OpenBLAS splits a matrix product over as many threads as there are cores, and the split changes
how the sums round: the bootstrap intervals of a 24-cell × 1,200-item comparison moved in the
16th digit between one and two threads. One thread gives the same digits on a laptop and on a
64-core server, and the products are small enough that a second thread buys little (its workers
spun on the other core after them, measured: half the bootstrap's CPU time). The limit is set
through threadpoolctl for the span of the block only: the environment is left alone, so a
local model server started later keeps its own threads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    import numpy  # noqa: F401  (loaded first: the limit applies to the libraries loaded when it is set)
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped, import-not-found, unused-ignore]

    with threadpool_limits(limits=1, user_api="blas"):
        yield
