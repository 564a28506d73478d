"""Run one function over many images: in this process, on a pool of processes, or on Ray.

:func:`map_images` is what ``svdk compress`` (many inputs), ``svdk bench``
and the label step of training run on. It yields ``(index, value)`` pairs in
input order whatever finishes first, so every engine writes the same results
files in the same order::

    engine="local", jobs=1    this process, one item after another
    engine="local", jobs=N    N worker processes (forkserver), a window of
                              2N items in flight
    engine="ray"              a Ray Data map over the items on a Ray cluster
                              (``address``, else ``$RAY_ADDRESS``, else a
                              local Ray of ``jobs`` CPUs started for the run)

Failures never sink the run:

- an exception raised by ``func`` comes back as a :class:`Failure` value in
  that item's place;
- a worker process that dies (killed, out of memory, a crash in native
  code) is replaced and its items are run again: by the local engine up to
  ``retries`` times per item (then the item is a :class:`Failure`), by Ray
  Data as its tasks are (Ray Data retries a task whose worker died without
  limit); an item is never yielded twice.

Errors the user causes before any work starts raise :class:`EngineError`
(a :class:`svdk.OptionError`): Ray not installed, a cluster that does not
answer, an unknown engine, ``jobs`` below 1.

Ray is imported only when ``engine="ray"`` is asked for; ``import svdk``
never loads it (install it with ``pip install 'svdk[ray]'``).
"""

from __future__ import annotations

import os
import pickle
import socket
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from ._errors import OptionError
from ._quiet import native_stderr_silenced

__all__ = [
    "ENGINES",
    "EngineError",
    "Failure",
    "add_options",
    "check_options",
    "positive_int",
    "describe",
    "map_images",
    "usable_cores",
]

#: The engines :func:`map_images` knows.
ENGINES = ("local", "ray")

#: How long (seconds) a Ray address may take to accept a connection.
CONNECT_TIMEOUT = 5.0


class EngineError(OptionError):
    """The engine cannot run as asked (Ray missing, cluster unreachable, bad ``jobs``)."""


@dataclass(frozen=True)
class Failure:
    """An item whose function raised instead of returning.

    Attributes
    ----------
    message : str
        What went wrong, in one line (``"TypeName: message"`` unless the
        exception is one of svdk's own, whose message says it all, or an
        :class:`OSError` naming its file).
    error : str
        The exception's type name, e.g. ``"ImageError"`` or ``"WorkerDied"``.
    """

    message: str
    error: str

    def __str__(self) -> str:
        return self.message


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1 (``--jobs 0`` is a command-line error)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def add_options(parser, *, jobs_dest: str = "jobs", jobs_aliases: tuple[str, ...] = (), what: str = "inputs") -> None:
    """Add ``--engine``, ``--jobs`` (with ``jobs_aliases``, stored as ``jobs_dest``) and ``--address``.

    One set of options for every command that maps work over images
    (``svdk compress``, ``svdk bench``, ``python -m training.train`` and
    ``training.labels``); :func:`check_options` checks them after parsing.
    """
    g = parser.add_argument_group(f"engine (many {what})")
    g.add_argument("--engine", choices=ENGINES, default="local",
                   help="local: a pool of --jobs processes (default); ray: a Ray cluster (pip install 'svdk[ray]')")
    g.add_argument("--jobs", *jobs_aliases, dest=jobs_dest, type=positive_int, default=None, metavar="N",
                   help="workers (default: the usable cores; 1 runs in this process)")
    g.add_argument("--address", metavar="HOST:PORT",
                   help="the Ray cluster's head (default $RAY_ADDRESS, else a local Ray started for the run)")


def check_options(parser, args) -> None:
    """After parsing: a command-line error (status 2) for options that do not go together."""
    if args.address and args.engine != "ray":
        parser.error("--address goes with --engine ray")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask), at least 1.

    Examples
    --------
    >>> usable_cores() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _failure(exc: BaseException) -> Failure:
    from ._errors import SvdkError

    if isinstance(exc, SvdkError) or type(exc).__module__.split(".")[0] == "svdk":
        message = str(exc)  # svdk's own errors say what and where
    elif isinstance(exc, OSError) and exc.filename and exc.strerror:
        message = f"{exc.filename}: {exc.strerror}"
    else:
        message = f"{type(exc).__name__}: {exc}"
    return Failure(" ".join(message.split()) or type(exc).__name__, type(exc).__name__)


def _call(func: Callable, item: Any) -> Any:
    """``func(item)``, or the :class:`Failure` it raised (runs in a worker)."""
    try:
        return func(item)
    except Exception as exc:
        return _failure(exc)


#: The environment variable that limits svdk to one thread per call
#: (:mod:`svdk._threads` reads it; pool workers get it from their caller).
NUM_THREADS_ENV = "SVDK_NUM_THREADS"


def _worker_threads() -> str:
    """``SVDK_NUM_THREADS`` for pool workers: the caller's, else 1 (the
    workers already fill the cores; svdk's own second thread would compete)."""
    return os.environ.get(NUM_THREADS_ENV, "1")


def _call_in_worker(func: Callable, item: Any, threads: str) -> Any:
    """:func:`_call` in a pool's worker process, with ``SVDK_NUM_THREADS``
    set to the caller's :func:`_worker_threads` (workers may outlive a
    change of the caller's environment)."""
    os.environ[NUM_THREADS_ENV] = threads
    return _call(func, item)


def map_images(
    func: Callable[[Any], Any],
    items: Sequence[Any],
    *,
    engine: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    retries: int = 3,
    on_result: Callable[[int, Any], None] | None = None,
) -> Iterator[tuple[int, Any]]:
    """Apply ``func`` to every item; yield ``(index, value)`` in input order.

    Parameters
    ----------
    func : callable
        A picklable function of one item (a module-level function, or a
        :func:`functools.partial` of one). It runs in other processes, and on
        Ray in other machines: whatever it reads (files, the svdk package)
        must be there too.
    items : sequence
        Picklable items: image paths, pixel arrays, tuples of settings.
    engine : {"local", "ray"}, optional
        Where to run (see the module docstring). Default ``"local"``.
    jobs : int, optional
        Workers. Default: the usable cores (:func:`usable_cores`) for the
        local engine and a local Ray; on a Ray cluster, no limit (every CPU
        of the cluster). ``jobs=1`` with the local engine runs in this
        process.
    address : str, optional
        The Ray cluster to connect to (``host:port`` of its head, or
        ``ray://host:port``); default ``$RAY_ADDRESS``, else a local Ray is
        started for the run and stopped after it. Only for ``engine="ray"``.
    retries : int, optional
        How many times the local engine runs again an item whose worker
        process died (default 3); past that the item is a :class:`Failure`.
    on_result : callable, optional
        Called as ``on_result(index, value)`` in this process as soon as an
        item is done, in the order they finish: the place to checkpoint.

    Yields
    ------
    index : int
        Position of the item in ``items``; 0, 1, 2, ... in order, each once.
    value : object
        ``func(item)``, or a :class:`Failure` if it raised.

    Raises
    ------
    EngineError
        Unknown engine, ``jobs`` below 1, Ray not installed, or a Ray
        address that does not answer within :data:`CONNECT_TIMEOUT` seconds.

    Examples
    --------
    >>> list(map_images(abs, [-1, 2, -3], jobs=1))
    [(0, 1), (1, 2), (2, 3)]
    >>> [str(v) for _, v in map_images(int, ["7", "x"], jobs=1)]
    ['7', "ValueError: invalid literal for int() with base 10: 'x'"]
    """
    if engine not in ENGINES:
        raise EngineError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise EngineError(f"jobs must be a whole number of at least 1; got {jobs!r}")
    if address is not None and engine != "ray":
        raise EngineError(f"an address ({address}) is for --engine ray; got engine {engine!r}")
    items = list(items)
    done = on_result or (lambda index, value: None)
    if engine == "ray":
        return _in_order(_ray(func, items, jobs, address), len(items), done)
    jobs = jobs or usable_cores()
    if jobs == 1 or len(items) <= 1:
        return _in_order(_serial(func, items), len(items), done)
    return _in_order(_pool(func, items, jobs, retries), len(items), done)


def _in_order(finished: Iterator[tuple[int, Any]], n: int, on_result) -> Iterator[tuple[int, Any]]:
    """Release ``(index, value)`` pairs in index order, each index once."""
    held: dict[int, Any] = {}
    seen: set[int] = set()
    nxt = 0
    for index, value in finished:
        if index in seen:  # a retried task that finished twice: counted once
            continue
        seen.add(index)
        on_result(index, value)
        held[index] = value
        while nxt in held:
            yield nxt, held.pop(nxt)
            nxt += 1
    if nxt != n:  # an engine that lost an item is a bug, never a silent gap
        missing = sorted(set(range(n)) - seen)
        raise RuntimeError(f"the engine returned no result for items {missing[:10]}")


def _serial(func, items):
    for index, item in enumerate(items):
        yield index, _call(func, item)


def _context():
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    # The server imports svdk (numpy, SciPy, scikit-image) once; workers fork from it
    # ready to go, and a later pool in this process reuses the server.
    context.set_forkserver_preload(["svdk"])
    return context


def _pool(func, items, jobs: int, retries: int):
    """A process pool; a pool broken by a dead worker is replaced and its items rerun.

    Every item that was running when the pool broke is run again, alone, so
    that only the item that kills its worker uses up its ``retries``.
    """
    todo = list(range(len(items)))  # in order, not yet submitted
    threads = _worker_threads()
    attempts = [0] * len(items)
    while todo:
        pool = ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=_context())
        running: dict = {}
        broken = False
        try:
            while todo or running:
                while todo and len(running) < 2 * jobs and not broken:
                    # an item run again after a crash runs alone, so that a crash is its own
                    if running and (attempts[todo[0]] > 0 or any(attempts[i] > 1 for i in running.values())):
                        break
                    try:
                        future = pool.submit(_call_in_worker, func, items[todo[0]], threads)
                    except BrokenProcessPool:  # a worker died before a future said so
                        broken = True
                        break
                    index = todo.pop(0)
                    attempts[index] += 1
                    running[future] = index
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = running.pop(future)
                    try:
                        value = future.result()
                    except BrokenProcessPool:
                        broken = True
                        if attempts[index] > retries:
                            yield index, Failure(
                                f"the worker process died while working on it ({attempts[index]} attempts)",
                                "WorkerDied",
                            )
                        else:
                            todo.insert(0, index)
                        continue
                    yield index, value
                if broken and not running:
                    todo.sort()
                    break
        finally:
            pool.shutdown(wait=not broken, cancel_futures=True)


# ----------------------------------------------------------------------------
# Ray


def _import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing phones home
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError("--engine ray needs Ray: pip install 'svdk[ray]'") from None
    return ray


def _check_reachable(address: str) -> None:
    """Fail in seconds, naming the address, when nothing listens there.

    (``ray.init`` itself retries for minutes before it gives up.)
    """
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise EngineError(f"cannot read the Ray address {address!r}: expected host:port, e.g. 10.0.0.5:6379")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT) as conn:
            speaks_grpc = _answers_http2(conn)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EngineError(
            f"cannot reach the Ray cluster at {address} ({reason}); start one with 'ray start --head' "
            "on that machine, or leave out --address to run a local Ray"
        ) from None
    if not speaks_grpc:
        raise EngineError(
            f"something answers at {address}, but it is not a Ray cluster (Ray's head speaks gRPC there); "
            "check the address and port (the head's is 6379 unless 'ray start --head --port' said otherwise)"
        )


#: An HTTP/2 client's first bytes: the connection preface and an empty SETTINGS frame.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _answers_http2(conn: socket.socket) -> bool:
    """Whether the server on ``conn`` answers an HTTP/2 greeting as one (Ray's head is a gRPC server).

    An HTTP/2 server's first frame is its SETTINGS frame (type 4 in the
    frame header's fourth byte). Anything else (an HTTP/1 reply, a closed
    connection, silence until the timeout) is not Ray; ``ray.init`` would
    otherwise retry such a server for minutes.
    """
    try:
        conn.sendall(_HTTP2_HELLO)
        head = b""
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:
        return False
    return head[3] == 0x04


def _connect(ray, address: str | None, jobs: int | None) -> bool:
    """Connect to (or start) Ray; True when this call started it."""
    import logging

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _check_reachable(address)
    if ray.is_initialized():  # the caller's Ray: used as it is, left running
        return False
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    if address:
        try:
            with native_stderr_silenced():  # Ray's C++ retry warnings, one a second
                ray.init(address=address, **quiet)
        except Exception as exc:
            raise EngineError(f"cannot connect to the Ray cluster at {address} ({type(exc).__name__}: {exc})") from None
        return True
    try:
        ray.init(num_cpus=jobs or usable_cores(), include_dashboard=False, **quiet)
    except Exception as exc:
        raise EngineError(f"cannot start a local Ray ({type(exc).__name__}: {exc})") from None
    return True


def _ray(func, items, jobs: int | None, address: str | None):
    """A Ray Data map: one block per item (up to 2000 blocks), one CPU per task."""
    if not items:
        return
    ray = _import_ray()
    started = _connect(ray, address, jobs)
    try:
        import logging

        import ray.data

        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        rows = [{"index": i, "item": pickle.dumps(item)} for i, item in enumerate(items)]
        ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), 2000))
        threads = _worker_threads()

        def step(row: dict) -> dict:
            value = _call_in_worker(func, pickle.loads(row["item"]), threads)
            return {"index": row["index"], "value": pickle.dumps(value)}

        ds = ds.map(step, num_cpus=1, concurrency=jobs)
        for row in ds.iter_rows():
            yield int(row["index"]), pickle.loads(row["value"])
    finally:
        if started:
            ray.shutdown()


def describe(engine: str, jobs: int | None, address: str | None = None) -> str:
    """One line saying where work runs, for progress messages and results files."""
    if engine == "ray":
        where = address or os.environ.get("RAY_ADDRESS") or "a local Ray"
        return f"ray ({where}, {jobs or 'all'} CPUs)"
    jobs = jobs or usable_cores()
    return "local (this process)" if jobs == 1 else f"local ({jobs} processes)"

