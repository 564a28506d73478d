"""The engines of :mod:`svdk.engine`: this process, ``--jobs 2`` and Ray give the same files.

``svdk compress`` with many inputs, ``svdk bench`` and ``python -m
training.labels`` run on a few small images with each engine (Ray: a local
Ray of 2 CPUs started here) and their outputs are compared byte for byte,
timings aside. Also: an unreadable image is named and the rest still runs
(exit 1); a worker that dies is replaced and its work run again, with
nothing missing or counted twice; a stopped benchmark resumes; bad
``--jobs``, a Ray address that does not answer and an empty folder are each
one clear line.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from svdk import bench, cli
from svdk.engine import EngineError, Failure, map_images

ENGINES = {"serial": ["--jobs", "1"], "jobs2": ["--jobs", "2"], "ray": ["--engine", "ray", "--jobs", "2"]}
TIMINGS = ("encoding_time", "decoding_time")


def _run(entry, argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = entry([str(a) for a in argv])
        except SystemExit as exc:
            status = exc.code
    return status, out.getvalue(), err.getvalue()


def _photos() -> dict[str, np.ndarray]:
    import skimage.data

    return {
        "astronaut": skimage.data.astronaut()[::6, ::6],  # 86x86
        "coffee": skimage.data.coffee()[::6, ::6],  # 67x100
        "chelsea": skimage.data.chelsea()[::5, ::5],  # 61x90
    }


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, list[Path]]:
    """Three small photos and one broken PNG (last in name order)."""
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for name, array in _photos().items():
        Image.fromarray(np.ascontiguousarray(array)).save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    (folder / "zbroken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return folder, sorted(paths) + [folder / "zbroken.png"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for this module; the engine uses it and leaves it running."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = pytest.importorskip("ray", reason="the Ray tests need pip install 'svdk[ray]'")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    # functions of this test module reach Ray's workers by value (they cannot import it)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def _engine_argv(name: str, request) -> list[str]:
    if name == "ray":
        request.getfixturevalue("local_ray")
    return ENGINES[name]


# ----------------------------------------------------------------------------
# map_images itself


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three is refused")
    return x * x


def _die_once(marker: str, x: int) -> int:
    """Kills its worker process the first time it sees 2 (the marker file says it did)."""
    if x == 2 and not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(1)
    return 10 * x


@pytest.mark.parametrize("jobs", [1, 2])
def test_results_come_in_input_order_with_failures_in_place(jobs):
    got = list(map_images(_square_or_fail, range(6), jobs=jobs))
    assert [i for i, _ in got] == list(range(6))
    assert [v for i, v in got if i != 3] == [0, 1, 4, 16, 25]
    assert got[3][1] == Failure("ValueError: three is refused", "ValueError")


def test_a_dead_local_worker_is_replaced_and_its_items_rerun(tmp_path):
    marker = tmp_path / "died"
    finished = []
    got = list(map_images(functools.partial(_die_once, str(marker)), range(8), jobs=2,
                          on_result=lambda i, v: finished.append(i)))
    assert marker.exists()  # a worker really died
    assert got == [(i, 10 * i) for i in range(8)]
    assert sorted(finished) == list(range(8))  # each reported once


def _always_die_on_two(x: int) -> int:
    if x == 2:
        os._exit(1)
    return 10 * x


def test_an_item_that_always_kills_its_worker_fails_alone():
    got = list(map_images(_always_die_on_two, range(6), jobs=2, retries=1))
    assert [v for i, v in got if i != 2] == [0, 10, 30, 40, 50]  # the others ran with it, and again
    assert got[2] == (2, Failure("the worker process died while working on it (2 attempts)", "WorkerDied"))


@pytest.mark.slow
def test_a_ray_worker_killed_mid_run_is_retried(tmp_path, local_ray):
    marker = tmp_path / "died"
    finished = []
    got = list(map_images(functools.partial(_die_once, str(marker)), range(6), engine="ray", jobs=2,
                          on_result=lambda i, v: finished.append(i)))
    assert marker.read_text() == "died"
    assert got == [(i, 10 * i) for i in range(6)]  # nothing missing, nothing twice
    assert sorted(finished) == list(range(6))


def _svdk_threads(_item) -> str:
    from svdk import _threads

    return f"{os.environ.get('SVDK_NUM_THREADS')} {_threads.threads()}"


def test_pool_workers_keep_svdk_to_one_thread_each(monkeypatch):
    """The workers fill the cores; svdk's own second thread would compete with them."""
    monkeypatch.delenv("SVDK_NUM_THREADS", raising=False)
    assert {v for _, v in map_images(_svdk_threads, range(3), jobs=2)} == {"1 1"}
    monkeypatch.setenv("SVDK_NUM_THREADS", "2")  # a caller's own setting is kept
    assert {v.split()[0] for _, v in map_images(_svdk_threads, range(3), jobs=2)} == {"2"}
    assert "SVDK_NUM_THREADS" not in os.environ or os.environ["SVDK_NUM_THREADS"] == "2"


def test_bad_engine_settings_are_engine_errors():
    with pytest.raises(EngineError, match="at least 1; got 0"):
        list(map_images(abs, [1], jobs=0))
    with pytest.raises(EngineError, match="'spark'"):
        list(map_images(abs, [1], engine="spark"))


def test_without_ray_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(EngineError, match=re.escape("pip install 'svdk[ray]'")):
        list(map_images(abs, [1], engine="ray"))


def test_import_svdk_does_not_load_ray():
    code = "import sys, svdk, svdk.cli, svdk.engine, svdk.bench; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------
# svdk compress


def _without_seconds(text: str) -> str:
    return re.sub(r", [0-9.]+ s$", "", text, flags=re.M)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["jobs2", "ray"])
def test_compress_gives_the_bytes_and_lines_of_one_process(engine, photos, tmp_path, request):
    folder, paths = photos
    runs = {}
    for name in ("serial", engine):
        out = tmp_path / name
        out.mkdir()
        status, stdout, stderr = _run(cli.main, ["compress", *paths, "--out-dir", out, "--quality", "ssim:0.85",
                                                 *_engine_argv(name, request)])
        runs[name] = (status, _without_seconds(stdout).replace(str(out), "OUT"), stderr, out)
    a, b = runs["serial"], runs[engine]
    assert a[0] == b[0] == 1  # the broken file fails the run at the end ...
    assert a[1] == b[1] and a[1].count("\n") == 3  # ... after the three others, in input order
    for status, stdout, stderr, out in (a, b):
        assert "svdk: error:" in stderr and "zbroken.png" in stderr and "Traceback" not in stderr
        assert "1 of 4 files failed" in stderr
        assert sorted(p.name for p in out.iterdir()) == ["astronaut.svdk", "chelsea.svdk", "coffee.svdk"]
    for f in a[3].iterdir():
        assert (b[3] / f.name).read_bytes() == f.read_bytes()


@pytest.mark.parametrize("entry, argv", [
    (cli.main, ["compress", "x.png", "y.png", "--jobs", "0"]),
    (cli.main, ["compress", "x.png", "y.png", "--jobs", "-2"]),
    (bench.main, [".", "--jobs", "0"]),
])
def test_jobs_below_one_is_a_usage_error(entry, argv):
    status, stdout, stderr = _run(entry, argv)
    assert status == 2
    assert "--jobs" in stderr and "Traceback" not in stderr


def test_labels_jobs_below_one_is_a_usage_error():
    from training import labels

    status, _, stderr = _run(labels.main, ["--jobs", "0"])
    assert status == 2 and "--jobs" in stderr


def test_an_unreachable_ray_address_is_one_line_naming_it(photos, tmp_path):
    pytest.importorskip("ray")
    _, paths = photos
    status, stdout, stderr = _run(cli.main, ["compress", *paths[:2], "--out-dir", tmp_path, "--rank", "4",
                                             "--engine", "ray", "--address", "127.0.0.1:1"])
    assert status == 1 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("svdk: error: "), stderr
    assert "127.0.0.1:1" in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("server", ["http/1", "silent"])
def test_an_address_where_something_else_listens_is_one_line_in_seconds(photos, tmp_path, server, monkeypatch):
    """ray.init would retry a server that answers but is no Ray for minutes."""
    import socket
    import threading
    import time

    pytest.importorskip("ray")
    from svdk import engine

    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1.0)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.recv(64)
            if server == "http/1":
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            else:
                time.sleep(3)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    _, paths = photos
    status, stdout, stderr = _run(cli.main, ["compress", *paths[:2], "--out-dir", tmp_path, "--rank", "4",
                                             "--engine", "ray", "--address", f"127.0.0.1:{port}"])
    listener.close()
    lines = stderr.strip().splitlines()
    assert status == 1 and len(lines) == 1 and "not a Ray cluster" in lines[0] and f"127.0.0.1:{port}" in lines[0]


def test_address_needs_the_ray_engine(photos, tmp_path):
    _, paths = photos
    status, _, stderr = _run(cli.main, ["compress", *paths[:2], "--address", "127.0.0.1:1"])
    assert status == 2 and "--engine ray" in stderr


# ----------------------------------------------------------------------------
# svdk bench


def _no_timings(out: Path) -> dict:
    files = {}
    for f in sorted(out.glob("*.json")):
        rec = json.loads(f.read_text())
        for key in ("seconds", "command", "engine", "machine"):
            rec.pop(key, None)
        for rows in [rec.get("results", {}), *rec.get("per_image", {}).values()]:
            for key in TIMINGS:
                rows.pop(key, None)
        files[f.name] = rec
    return files


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["jobs2", "ray"])
def test_bench_writes_the_results_of_one_process(engine, photos, tmp_path, request):
    folder, _ = photos
    base = [folder, "--codecs", "svdk-global-ycbcr,jpeg", "--points", "3"]
    got = {}
    for name in ("serial", engine):
        status, stdout, stderr = _run(bench.main, [*base, "--out", tmp_path / name, *_engine_argv(name, request)])
        assert status == 1  # zbroken.png
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "zbroken.png" in lines[0] and lines[0].startswith("svdk bench: error: ")
        got[name] = _no_timings(tmp_path / name)
        assert not (tmp_path / name / bench.PARTIAL).exists()
    assert got["serial"] == got[engine]
    summary = got["serial"]["summary.json"]
    assert set(summary["failed"]) == {"svdk-global-ycbcr/zbroken.png", "jpeg/zbroken.png"}
    assert got["serial"]["jpeg.json"]["images"] == ["astronaut", "chelsea", "coffee"]


def test_a_stopped_bench_resumes_from_what_it_finished(photos, tmp_path):
    folder, paths = photos
    out = tmp_path / "out"
    out.mkdir()
    # as if a run had finished jpeg on astronaut before it was stopped (a marked value shows reuse)
    key = bench._partial_key(("jpeg", str(paths[0]), 2, True))  # True: MS-SSIM measured, as by default
    rows = {k: [0.5, 1.5] for k in ("bpp", "psnr-rgb", "ms-ssim-rgb", "ssim", *TIMINGS)}
    (out / bench.PARTIAL).write_text(json.dumps({"key": key, "rows": rows}) + "\n" + '{"key": "cut sh')
    argv = [folder, "--codecs", "jpeg", "--points", "2", "--images", "2", "--out", out, "--jobs", "1"]
    status, _, stderr = _run(bench.main, [*argv, "--resume"])
    assert status == 0, stderr
    res = json.loads((out / "jpeg.json").read_text())
    assert res["per_image"]["astronaut"]["bpp"] == [0.5, 1.5]  # kept, not run again
    assert res["per_image"]["chelsea"]["bpp"][0] != 0.5  # run
    assert not (out / bench.PARTIAL).exists()
    status, _, stderr = _run(bench.main, argv)  # without --resume everything runs
    assert json.loads((out / "jpeg.json").read_text())["per_image"]["astronaut"]["bpp"] != [0.5, 1.5]


# ----------------------------------------------------------------------------
# training labels


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> Path:
    """A BSDS500-like folder: train/ (2 photos and a broken file), val/ (1), test/ (1)."""
    folder = tmp_path_factory.mktemp("bsds")
    arrays = list(_photos().items())
    layout = {"train": arrays[:2], "val": arrays[2:], "test": [("astronaut2", arrays[0][1][::-1])]}
    for split, items in layout.items():
        (folder / split).mkdir()
        for name, array in items:
            Image.fromarray(np.ascontiguousarray(array)).save(folder / split / f"{name}.png")
    (folder / "train" / "zbroken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return folder


@pytest.mark.slow
def test_labels_are_the_same_on_every_engine(splits, tmp_path, request):
    from training import labels

    caches = {}
    for name in ENGINES:
        cache = tmp_path / name
        status, stdout, stderr = _run(labels.main, ["--data", splits, "--cache", cache,
                                                    *_engine_argv(name, request)])
        assert status == 1, stderr  # the broken file, named ...
        assert "zbroken.png" in stderr and stderr.count("svdk: error:") == 1 and "Traceback" not in stderr
        assert stdout.startswith("10 images labelled")  # ... and the others labelled: 3 + 3 copies + 1 + 3 native
        caches[name] = json.loads(next(cache.glob("labels-*.json")).read_text())
    assert len(caches["serial"]) == 10
    assert caches["serial"] == caches["jobs2"] == caches["ray"]
    # the cache is the one training reads: every image of its label step is there
    from training.data import load_images

    store = labels.LabelStore(tmp_path / "serial", processes=1)
    images = labels.images_to_label(load_images(splits, errors=[]))
    assert all(labels.pixel_key(p) in store.data["labels"] for p in images)
    status, stdout, _ = _run(labels.main, ["--data", splits, "--cache", tmp_path / "serial", "--jobs", "1"])
    assert "(10 already cached)" in stdout  # a second run resumes from the cache: nothing to do


def test_labels_of_an_empty_folder_say_so(tmp_path):
    from training import labels

    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
    status, stdout, stderr = _run(labels.main, ["--data", tmp_path, "--cache", tmp_path / "cache"])
    assert status == 1 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "no images" in lines[0] and str(tmp_path) in lines[0]


def test_a_real_ray_head_passes_the_address_check(local_ray):
    """The check that refuses other servers must accept Ray's own head."""
    from svdk import engine

    engine._check_reachable(local_ray.get_runtime_context().gcs_address)
