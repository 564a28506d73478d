"""Speed of the Gradio app: start-up, one full comparison in each layout, the explorer, eight clients at once.

Run from the repository root::

    python -m benchmarks.app_speed             # about 4 minutes; writes results/app_speed.json
    python -m benchmarks.app_speed --images 2 --clients 2 --requests 2 --page-images 1   # a quick try

It starts ``python app.py`` in a subprocess (shipped model, ``HF_HUB_OFFLINE=1``,
a temporary share folder, a free port on 127.0.0.1) and talks to it through
``gradio_client``, as any API user would:

* ``startup_s``: from starting the process to the end of the first ``/compress``
  request (a Kodak image); ``http_ready_s``: to the first page served;
* ``request_s``: one ``/compress`` request with the full comparison (svdk with
  the CNN rank, PNG, JPEG and WebP at the same size and the same SSIM, the
  rate-distortion sweeps, spectrum, progressive previews, the decoded PNG and
  the .svdk file) on a Kodak image the app has not seen yet, server side: the
  handler's own time, reported in the metrics it returns. Median over
  ``--images`` images (kodim02, kodim03, ...; kodim01 served the start-up).
  ``request_warm_s``: each image again at ``--warm-target`` (the app keeps
  the PNG/JPEG/WebP results of recent images). ``roundtrip_s`` adds upload,
  queue and download;
  ``page_request_s``: the page's Compress handler (the same comparison, plus
  the gallery files, progressive previews and plotly charts), timed in this
  process after the server has stopped;
  ``cpu_s_per_request`` is the server process's CPU time per request, over
  both kinds, with the median of each (``cold_median_s``, ``warm_median_s``;
  the machine is shared: compare it with the load average recorded);
* ``tiled_request_s``: as ``request_s`` in the tiled layout, on ``--images``
  further Kodak images (new to the app); ``tiled_page_request_s``: the page
  handler, tiled (``--no-tiled`` skips both);
* ``slider_ms``: the rank explorer in Chromium (Playwright, ``/usr/bin/chromium``):
  the last Kodak image is uploaded on the page, then the explorer's slider is moved
  to 12 positions one after the other; each time, the milliseconds from the
  slider's ``input`` event to the new image loaded on the page (median;
  ``--no-browser`` skips it). tests/test_app_browser.py measures the same with
  the same code (:func:`slider_latencies`);
* ``concurrent``: ``--clients`` clients (threads, one ``gradio_client.Client``
  each) sending ``--requests`` requests each at once (client ``i``'s
  ``j``-th request is Kodak image ``i + j`` of those above, so most are
  images the app has seen): errors, p50/p95 latency,
  and the server's peak memory (``VmHWM``: the process's resident-set high-water
  mark from /proc, in MB of 10^6 bytes).

Kodak images are read from ``../shared/data/kodak`` (``--data`` elsewhere); they
are never copied into the repository.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from ._common import (
    DEFAULT_KODAK,
    REPO,
    RESULTS,
    DataMissing,
    display_path,
    kodak_paths,
    machine_info,
    write_json,
)

MB = 1e6
#: name: (unit, comparison, limit); None where the issue sets no target.
TARGETS = {
    "startup_s": ("s", "<=", 20.0),
    "request_s": ("s", "<=", 1.5),
    "page_request_s": ("s", "<=", 1.5),
    "request_warm_s": ("s", None, None),
    "concurrent_errors": ("", "==", 0),
    "slider_ms": ("ms", "<=", 250.0),
    "tiled_request_s": ("s", "<=", 1.5),
    "tiled_page_request_s": ("s", "<=", 1.5),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS", "VmHWM")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    i = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[i]


def figure(name: str, value, **extra) -> dict:
    unit, op, limit = TARGETS.get(name, ("s", None, None))
    ok = None
    if op == "<=":
        ok = value <= limit
    elif op == "==":
        ok = value == limit
    return {"value": value, "unit": unit, "target": f"{op} {limit}" if op else None, "pass": ok, **extra}


def start_server(port: int, share_dir: str, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_DISABLE_TELEMETRY="1",
        SVDK_SHARE_DIR=share_dir,
    )
    log = open(log_path, "wb")
    return subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with status {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the app did not answer at {url} within {timeout:.0f} s")


def compress(client, path: Path, target: float = 0.9, layout: str = "global") -> tuple[float, dict]:
    from gradio_client import handle_file

    t0 = time.perf_counter()
    _, metrics, _ = client.predict(handle_file(str(path)), target, "ycbcr", layout, api_name="/compress")
    return time.perf_counter() - t0, metrics


def page_timings(warmup: Path, paths: list[Path], tmp: Path, layout: str = "global") -> dict:
    """The page handler, in this process: median seconds over ``paths`` (new to it) after a warm-up."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from demo.app import App, Workdir
    from demo.share import ShareStore

    app = App(store=ShareStore(tmp / "page-shares"), workdir=Workdir(tmp / "page-work"))
    app.compress_page(str(warmup), None, 0.9, "ycbcr", "global", True, 64, 16, 16)
    times = {}
    for path in paths:
        t0 = time.perf_counter()
        page = app.compress_page(str(path), None, 0.9, "ycbcr", layout, True, 64, 16, 16)
        times[path.name] = round(time.perf_counter() - t0, 3)
        if page.error:
            raise RuntimeError(f"the page handler failed on {path.name}: {page.status}")
    print(f"page handler, {layout}: {', '.join(f'{k} {v:.2f} s' for k, v in times.items())}", file=sys.stderr)
    name = "page_request_s" if layout == "global" else f"{layout}_page_request_s"
    return figure(name, round(statistics.median(times.values()), 3), per_image=times,
                  what=f"the page's Compress handler in-process, {layout} layout: comparison, files, previews, "
                  "charts, the explorer")


# ----------------------------------------------------------------------------
# the rank explorer in a real browser

CHROMIUM = os.environ.get("SVDK_CHROMIUM", "/usr/bin/chromium")
#: Debian's Chromium runs headless as root with these (see ../shared/ENVIRONMENT-NOTES.md).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Positions of the explorer's slider timed, as fractions of the file's k (each new to the server).
SLIDER_FRACTIONS = (0.5, 0.1, 0.75, 0.3, 0.05, 0.9, 0.6, 0.2, 0.4, 0.85, 0.15, 0.65)

#: Moves the explorer's slider to k (an ``input`` event, as a drag step sends) and resolves with the
#: milliseconds until the page shows a new, loaded image: server work, transfer and drawing.
SLIDER_JS = """async (k) => {
  const img = () => document.querySelector('#explorer-image img');
  const before = img() ? img().src : null;
  const range = document.querySelector('#explorer-k input[type=range]');
  const t0 = performance.now();
  range.value = k;
  range.dispatchEvent(new Event('input', {bubbles: true}));
  while (true) {
    const i = img();
    if (i && i.src !== before && i.complete && i.naturalWidth > 0) return performance.now() - t0;
    if (performance.now() - t0 > 20000) return -1;
    await new Promise(r => requestAnimationFrame(r));
  }
}"""


def explorer_maximum(page) -> int:
    """The explorer slider's top (the file's k), once a comparison is on the page."""
    page.wait_for_function(
        "() => { const r = document.querySelector('#explorer-k input[type=range]');"
        " return r && !r.disabled && Number(r.max) > 2; }", timeout=120_000)
    return int(page.locator("#explorer-k input[type=range]").get_attribute("max"))


def slider_latencies(page, fractions=SLIDER_FRACTIONS) -> dict[int, float]:
    """``{k: ms}``: from a slider change to the new image on the page, one position after the other."""
    top = explorer_maximum(page)
    out = {}
    for f in fractions:
        k = max(1, min(top - 1, round(f * top)))
        if k in out:
            continue
        caption = page.locator("#explorer-caption").inner_text()
        ms = page.evaluate(SLIDER_JS, k)
        if ms < 0:
            raise RuntimeError(f"no new image within 20 s after moving the explorer to k = {k}")
        out[k] = round(ms, 1)
        # the caption follows the image (same event); wait so that the next move starts from rest
        page.wait_for_function("(c) => document.querySelector('#explorer-caption').innerText !== c", arg=caption,
                               timeout=20_000)
    return out


def browser_timings(url: str, path: Path) -> dict:
    """Upload ``path`` in Chromium, then time the explorer's slider: the ``slider_ms`` figure."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(url)
            page.wait_for_selector("#input-image input[type=file]", state="attached", timeout=120_000)
            page.locator("#input-image input[type=file]").set_input_files(str(path))
            times = slider_latencies(page)
        finally:
            browser.close()
    values = list(times.values())
    print(f"explorer slider in Chromium: median {statistics.median(values):.0f} ms over {len(values)} moves",
          file=sys.stderr)
    return figure("slider_ms", round(statistics.median(values), 1), image=path.name, per_k=times,
                  max_ms=max(values), what="the page in Chromium: from moving the explorer's slider to the new "
                  "image drawn (server decode, scores, PNG, transfer); global layout, the /compress defaults")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.app_speed", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_KODAK, help="folder with kodim01.png ... kodim24.png")
    p.add_argument("--images", type=int, default=8,
                   help="Kodak images timed one by one, after the one used for start-up (default 8)")
    p.add_argument("--warm-target", type=float, default=0.95,
                   help="each image is sent again with this target SSIM (default 0.95)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--requests", type=int, default=5, help="requests per concurrent client (default 5)")
    p.add_argument("--page-images", type=int, default=3,
                   help="Kodak images whose page handler is timed in this process (default 3; 0 skips)")
    p.add_argument("--no-tiled", dest="tiled", action="store_false",
                   help="skip the tiled layout (by default --images more Kodak images are timed tiled)")
    p.add_argument("--no-browser", dest="browser", action="store_false",
                   help="skip timing the rank explorer's slider in Chromium (needs playwright and Chromium)")
    p.add_argument("--output", type=Path, default=RESULTS / "app_speed.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # kodim01 for start-up, --images for the global layout, --images more for tiled, one for the browser
        paths = kodak_paths(args.data, min(24, 2 + args.images * (2 if args.tiled else 1)))
    except DataMissing as exc:
        print(f"app_speed: {exc}", file=sys.stderr)
        return 2
    from gradio_client import Client

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    tmp = Path(tempfile.mkdtemp(prefix="svdk-app-bench-"))
    log_path = tmp / "server.log"
    t_start = time.perf_counter()
    proc = start_server(port, str(tmp / "shares"), log_path)
    result: dict = {"machine": machine_info(), "server_log": None}
    try:
        wait_http(url, proc)
        http_ready = time.perf_counter() - t_start
        client = Client(url, verbose=False)
        first_s, first = compress(client, paths[0])
        startup = time.perf_counter() - t_start
        print(f"start-up: page after {http_ready:.1f} s, first request served after {startup:.1f} s", file=sys.stderr)

        # one request at a time: each image cold, then again with another target (the slider moved)
        handler, compare, roundtrip, warm = [], [], [], []
        cpu_cold, cpu_warm = [], []
        cpu0 = _cpu_seconds(proc.pid)
        per_image = {}
        for path in paths[1 : args.images + 1]:
            c = _cpu_seconds(proc.pid)
            rt, m = compress(client, path)
            cpu_cold.append(_cpu_seconds(proc.pid) - c)
            if m["timings"]["references_cached"]:
                raise RuntimeError(f"{path.name} was not cold: the app had it cached")
            handler.append(m["timings"]["handler"])
            compare.append(m["timings"]["total"])
            roundtrip.append(rt)
            c = _cpu_seconds(proc.pid)
            _, m2 = compress(client, path, target=args.warm_target)
            cpu_warm.append(_cpu_seconds(proc.pid) - c)
            warm.append(m2["timings"]["handler"])
            per_image[path.name] = {"cold": m["timings"]["handler"], "warm": m2["timings"]["handler"]}
            print(f"  {path.name}: {m['timings']['handler']:.2f} s server side ({rt:.2f} s round trip), "
                  f"rank {m['svdk']['final_rank']} (predicted {m['svdk']['predicted_rank']}); "
                  f"target {args.warm_target}: {m2['timings']['handler']:.2f} s", file=sys.stderr)
        cpu_per_request = (_cpu_seconds(proc.pid) - cpu0) / max(2 * len(handler), 1)
        load_sequential = [round(x, 2) for x in os.getloadavg()]

        # many clients at once, on the images of the global layout's sequence (most of them seen)
        global_paths = paths[: args.images + 1]
        latencies: list[float] = []
        errors: list[str] = []
        peak_rss = [0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                try:
                    peak_rss[0] = max(peak_rss[0], _proc_status(proc.pid).get("VmRSS", 0))
                except OSError:
                    pass
                time.sleep(0.2)

        def one_client(i: int):
            try:
                c = Client(url, verbose=False)
            except Exception as exc:  # counted, not raised: the figure is the error count
                errors.append(f"client {i}: {type(exc).__name__}: {exc}")
                return
            for j in range(args.requests):
                path = global_paths[(i + j) % len(global_paths)]
                try:
                    dt, _ = compress(c, path)
                    latencies.append(dt)
                except Exception as exc:
                    errors.append(f"client {i} request {j}: {type(exc).__name__}: {exc}")

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=one_client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        stop.set()
        watcher.join()
        status = _proc_status(proc.pid)
        print(f"{args.clients} clients x {args.requests} requests: {len(errors)} errors, "
              f"p95 {percentile(latencies, 95) if latencies else float('nan'):.1f} s, "
              f"peak RSS {status.get('VmHWM', 0) / MB:.0f} MB", file=sys.stderr)

        # the tiled layout, on images new to the app (after the clients: the app keeps the
        # references of its latest 8 images, and these would push out the ones the clients send)
        tiled_paths = paths[args.images + 1 : 2 * args.images + 1] if args.tiled else []
        tiled, tiled_per_image, tiled_policies = [], {}, set()
        for path in tiled_paths:
            _, m = compress(client, path, layout="tiled")
            if m["timings"]["references_cached"]:
                raise RuntimeError(f"{path.name} was not cold: the app had it cached")
            tiled.append(m["timings"]["handler"])
            tiled_per_image[path.name] = m["timings"]["handler"]
            tiled_policies.add(m["svdk"]["policy"])
            print(f"  tiled {path.name}: {m['timings']['handler']:.2f} s server side, "
                  f"{m['svdk']['final_rank']} luma components", file=sys.stderr)
        if tiled:
            result["tiled_request_s"] = figure(
                "tiled_request_s", round(statistics.median(tiled), 3), n=len(tiled), per_image=tiled_per_image,
                what=f"as request_s, tiled layout (component count chosen by the {' and '.join(sorted(tiled_policies))} "
                     "policy: cnn is the tiled predictor then its check, quality the exact SSIM search), "
                     "other Kodak images",
                policies=sorted(tiled_policies))
        if args.browser:
            result["slider_ms"] = browser_timings(url, paths[-1])


        result.update(
            {
                "command": "python -m benchmarks.app_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
                "data": display_path(args.data),
                "settings": "the /compress defaults: target SSIM 0.9, ycbcr, global layout, automatic (CNN) rank",
                "startup_s": figure("startup_s", round(startup, 2), http_ready_s=round(http_ready, 2),
                                    first_request_s=round(first_s, 2), image=paths[0].name),
                "request_s": figure(
                    "request_s",
                    round(statistics.median(handler), 3),
                    what="server side, an image the app has not seen: the /compress handler (read, encode, "
                    "PNG/JPEG/WebP matching, sweeps, spectrum, previews, decoded PNG and .svdk written)",
                    n=len(handler),
                    comparison_only_median_s=round(statistics.median(compare), 3),
                    per_image=per_image,
                ),
                "request_warm_s": figure(
                    "request_warm_s",
                    round(statistics.median(warm), 3),
                    what=f"the same image again with target SSIM {args.warm_target}: PNG/JPEG/WebP results kept",
                    n=len(warm),
                ),
                "roundtrip_s": figure("roundtrip_s", round(statistics.median(roundtrip), 3),
                                      what="client side: upload, queue, handler, download"),
                "cpu_s_per_request": figure("cpu_s_per_request", round(cpu_per_request, 3),
                                            what="server process CPU time (all threads) per sequential request",
                                            cold_median_s=round(statistics.median(cpu_cold), 3),
                                            warm_median_s=round(statistics.median(cpu_warm), 3)),
                "load_average_after_sequential": load_sequential,
                "concurrent": {
                    "clients": args.clients,
                    "requests_per_client": args.requests,
                    "requests_done": len(latencies),
                    "errors": errors,
                    "wall_s": round(wall, 2),
                    "p50_s": round(percentile(latencies, 50), 3) if latencies else None,
                    "p95_s": round(percentile(latencies, 95), 3) if latencies else None,
                    "max_s": round(max(latencies), 3) if latencies else None,
                    "peak_rss_mb": round(status.get("VmHWM", 0) / MB, 1),
                    "peak_rss_sampled_mb": round(peak_rss[0] / MB, 1),
                    "rss_after_mb": round(status.get("VmRSS", 0) / MB, 1),
                    "concurrency_limit": "SVDK_APP_CONCURRENCY (default 2) comparisons at a time",
                },
                "concurrent_errors": figure("concurrent_errors", len(errors)),
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
            }
        )
    except Exception as exc:
        print(f"app_speed: {type(exc).__name__}: {exc}; the server log is {log_path}", file=sys.stderr)
        return 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    if args.page_images > 0:
        result["page_request_s"] = page_timings(paths[0], paths[1 : args.page_images + 1], tmp)
        if args.tiled:
            first = args.images + 1
            result["tiled_page_request_s"] = page_timings(
                paths[0], paths[first : first + args.page_images], tmp, layout="tiled")
    write_json(args.output, result)
    print(f"wrote {display_path(args.output)}", file=sys.stderr)
    for name in ("startup_s", "request_s", "request_warm_s", "page_request_s", "tiled_request_s",
                 "tiled_page_request_s", "slider_ms", "roundtrip_s", "cpu_s_per_request", "concurrent_errors"):
        if name not in result:
            continue
        f = result[name]
        verdict = "" if f["pass"] is None else ("  ok" if f["pass"] else "  MISSED")
        print(f"{name:20s} {f['value']:>8} {f['unit']:2s} target {f['target']}{verdict}")
    c = result["concurrent"]
    print(f"{'concurrent':20s} p95 {c['p95_s']} s, peak RSS {c['peak_rss_mb']} MB, {len(c['errors'])} errors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
