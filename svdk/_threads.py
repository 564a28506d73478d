"""Two threads for the encoder's large array loops.

NumPy releases the GIL inside its loops (ufuncs, LAPACK), so splitting a
list of independent items between two threads runs them on two cores. Each
item is computed exactly as it would be alone, and results come back in the
items' order, so nothing svdk writes or measures depends on the split.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

_pool: ThreadPoolExecutor | None = None


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of its parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def split(work: Callable[[range], list], n: int, large: bool) -> list:
    """``work(range(n))``: the first half of the items in a second thread and
    the rest in this one when ``large`` and the machine has two cores.
    ``work`` returns a list with one result per item."""
    global _pool
    if not large or n < 2 or cores() < 2:
        return work(range(n))
    if _pool is None:
        _pool = ThreadPoolExecutor(2, thread_name_prefix="svdk")
    half = (n + 1) // 2
    first = _pool.submit(work, range(half))
    rest = work(range(half, n))
    return first.result() + rest

