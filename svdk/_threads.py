"""A second thread for large array loops (the tiled encoder, SSIM).

NumPy releases the GIL inside its loops (ufuncs, LAPACK), so splitting a
list of independent items between two threads runs them on two cores. Each
item is computed exactly as it would be alone, and results come back in the
items' order, so nothing svdk writes or measures depends on the split.

Each :func:`split` starts its own short-lived thread and joins it before
returning: no pool outlives a call, so nested or concurrent calls cannot
wait on each other, and a process that forks has no threads of svdk's
running. Starting a thread costs well under a millisecond, against
milliseconds of work per call.

A program that runs several encodes at once (the app, svdk's process
pools) sets ``SVDK_NUM_THREADS=1``: a second thread per encode would only
compete with its own.
"""

from __future__ import annotations

import os
import threading
from typing import Callable

from .engine import NUM_THREADS_ENV as ENV
from .engine import usable_cores as cores


def threads() -> int:
    """Threads one call of svdk may use: 2 on a machine with two or more
    cores, 1 where ``SVDK_NUM_THREADS`` is 1."""
    value = os.environ.get(ENV, "").strip()
    limit = 2
    if value:
        if not value.isdigit() or int(value) < 1:
            from ._errors import OptionError

            raise OptionError(f"{ENV} must be a whole number of at least 1; got {value!r}")
        limit = int(value)
    return min(limit, 2, cores())


def split(work: Callable[[range], list], n: int, large: bool) -> list:
    """``work(range(n))``, with the first half of the items in a second
    thread and the rest in this one when ``large`` and :func:`threads`
    allows two. ``work`` returns a list with one result per item; an
    exception in either half is raised here."""
    if threads() < 2 or not large or n < 2:  # (the setting checked on every call)
        return work(range(n))
    half = (n + 1) // 2
    box: dict = {}

    def first() -> None:
        try:
            box["result"] = work(range(half))
        except BaseException as exc:  # raised again in the calling thread
            box["error"] = exc

    thread = threading.Thread(target=first, name="svdk-split", daemon=True)
    thread.start()
    try:
        rest = work(range(half, n))
    finally:
        thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"] + rest
