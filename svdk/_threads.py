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
"""

from __future__ import annotations

import os
import threading
from typing import Callable


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def split(work: Callable[[range], list], n: int, large: bool) -> list:
    """``work(range(n))``, with the first half of the items in a second
    thread and the rest in this one when ``large`` and the machine has at
    least two cores. ``work`` returns a list with one result per item; an
    exception in either half is raised here."""
    if not large or n < 2 or cores() < 2:
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
