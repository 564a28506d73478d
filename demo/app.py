"""The Gradio app: drop a photo, see what SVD compression does to it and how it compares.

:func:`build_demo` returns the :class:`gradio.Blocks`; ``app.py`` at the
repository root launches it. The work is done by :class:`App`, whose methods
are the handlers: plain functions of a few values that return plain values
(:class:`Page`), unit-tested without a browser. Gradio wiring stays in
:func:`build_demo`.

Endpoints
---------
``/compress`` (public API)
    image in; target SSIM, mode, layout, automatic rank, the three manual
    ranks and the tune (``"psnr"`` or ``"ssim"``, tiled layout) have defaults. Returns the decoded PNG, the metrics (JSON: svdk's
    figures, every file compared, the rate-distortion points) and the
    ``.svdk`` file. Errors come back as a :class:`gradio.Error` with svdk's
    message.
``/compress_many`` (public API)
    up to 8 images in (:data:`demo.batch.MAX_IMAGES`), then target SSIM, mode,
    layout and tune with the same defaults; returns one JSON document (each image's
    figures or its message, the means, the rate-distortion curves averaged at
    equal bpp: :func:`demo.batch.summary_json`). More than 8 images raise a
    :class:`gradio.Error`; a broken one gets its own message.
The page's own events (compress, example, share, open a link, the rank
explorer, the batch panel) are private. The rank explorer keeps each
comparison's decomposition on the server (:mod:`demo.explore`); the page
holds only a random token for it.

Caps
----
Uploads up to 25 MB (``SVDK_APP_MAX_UPLOAD_BYTES``); images above one
megapixel are downscaled with a notice (``SVDK_APP_MAX_PIXELS``); see
:mod:`demo.inputs`, :mod:`demo.model` and :mod:`demo.pipeline`.
"""


import atexit
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

import svdk

from . import batch, charts
from .explore import Explorer, ExplorerStore
from .inputs import MAX_UPLOAD_BYTES, SSIM_RANGE, TUNES, AppError, Settings, prepare
from .model import Model, load_model
from .pipeline import Report, run
from .share import ShareStore, query_for, settings_from_query

__all__ = ["App", "Page", "build_demo", "launch_options", "CONCURRENCY", "CSS"]

log = logging.getLogger("svdk.app")

#: Comparisons running at once (one event queue for the page and the API).
CONCURRENCY = int(os.environ.get("SVDK_APP_CONCURRENCY", 2))
#: Requests waiting beyond the running ones before new ones are turned away.
QUEUE_SIZE = int(os.environ.get("SVDK_APP_QUEUE_SIZE", 64))
#: Result files of a request are deleted after this many seconds.
KEEP_SECONDS = 1800

INTRO = """\
# svdk: image compression by truncated SVD

Drop a photo (or pick an example). svdk keeps the strongest singular components of each colour
plane, stores them in a small `.svdk` file and decodes it back. A small CNN predicts the rank that
reaches your target SSIM; svdk checks the prediction and corrects it. Then the same image goes
through JPEG and WebP **at the same size** and **at the same SSIM**: SVD usually loses, and this page
shows by how much.
"""

SUMMARY_HEADERS = ["svdk", "value"]
TABLE_HEADERS = ["codec", "matched on", "quality", "bytes", "bpp", "PSNR (dB)", "SSIM", "note"]
NAMES = {"svdk": "svdk", "png": "PNG", "jpeg": "JPEG", "webp": "WebP", "avif": "AVIF"}
EXT = {"jpeg": "jpg", "webp": "webp", "avif": "avif"}
POLICY_NOTES = {"cnn": "rank predicted by the CNN, then checked", "quality": "rank from the exact SSIM search",
                "fixed": "ranks given by hand",
                ("cnn", "tiled"): "component count predicted from the tile spectrum, then checked",
                ("quality", "tiled"): "component count from the exact SSIM search"}


@dataclass
class Page:
    """What a page handler shows. ``error`` set: only ``status`` is meaningful."""

    status: str
    error: bool = False
    slider: tuple[str, str] | None = None
    summary: list[list[str]] | None = None
    table: list[list] | None = None
    svdk_path: str | None = None
    png_path: str | None = None
    gallery: list[tuple[str, str]] | None = None
    progressive: list[tuple[str, str]] | None = None
    rd_figure: object | None = None
    spectrum_figure: object | None = None
    last: dict | None = None  # what Share stores
    inputs: dict | None = None  # input values to show (when a link was opened)
    explorer: dict | None = None  # token, maximum, label, image, caption of the rank explorer
    query: str | None = None  # the link's query string (when a link was opened)
    report: Report | None = field(default=None, repr=False)


def _fmt_db(x: float | None) -> str:
    if x is None:
        return "-"
    return "lossless" if x == float("inf") else f"{x:.2f}"


def _fmt_ssim(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _page_tune(layout: str, tune: str) -> str:
    """The page's tune control applies to the tiled layout (its label says so); the global layout has none."""
    return tune if layout == "tiled" else "psnr"


def _layout_words(settings: Settings) -> str:
    """``"global layout"``, ``"tiled layout"`` or ``"tiled layout tuned for SSIM"``."""
    tuned = f" tuned for {settings.tune.upper()}" if settings.tune != "psnr" else ""
    return f"{settings.layout} layout{tuned}"


def _safe_stem(name: str | None) -> str:
    stem = Path(name or "image").stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"
    return stem[:60]


def parse_ranks(auto: bool, y, u, v) -> tuple[int, ...] | None:
    """Manual ranks from the page's three number fields (None: automatic)."""
    if auto:
        return None
    out = []
    for name, k in (("Y", y), ("U", u), ("V", v)):
        if k is None or isinstance(k, bool):
            raise AppError(f"give a rank for {name} (a whole number of at least 1), or switch on automatic rank")
        try:
            f = float(k)
        except (TypeError, ValueError):
            raise AppError(f"the rank for {name} must be a whole number; got {k!r}") from None
        if not f.is_integer():
            raise AppError(f"the rank for {name} must be a whole number; got {k!r}")
        out.append(int(f))
    return tuple(out)


class Workdir:
    """Per-request folders for result files, deleted after :data:`KEEP_SECONDS`."""

    def __init__(self, root: str | os.PathLike | None = None):
        if root:
            self.root = Path(root)
            self.root.mkdir(parents=True, exist_ok=True)
        else:  # our own temporary folder: gone when the server stops
            self.root = Path(tempfile.mkdtemp(prefix="svdk-app-"))
            atexit.register(shutil.rmtree, self.root, ignore_errors=True)
        self._lock = threading.Lock()

    def new(self) -> Path:
        self.prune()
        return Path(tempfile.mkdtemp(prefix="req-", dir=self.root))

    def prune(self, age: float = KEEP_SECONDS) -> None:
        now = time.time()
        with self._lock:
            for d in self.root.glob("req-*"):
                try:
                    if now - d.stat().st_mtime > age:
                        shutil.rmtree(d, ignore_errors=True)
                except FileNotFoundError:
                    pass

    def example(self, name: str) -> Path:
        """A PNG of a scikit-image example (written once, outside the repository)."""
        path = self.root / "examples" / f"{name}.png"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            image = svdk.load_image(f"example:{name}").merged()
            tmp = path.with_name(f".{name}.{threading.get_ident()}.png")
            Image.fromarray(image).save(tmp, "PNG")
            os.replace(tmp, path)
        return path


#: Writes the page's PNGs (zlib releases the GIL) while the table and charts are built.
_WRITER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="svdk-png")


def _save_png(path: Path, image: np.ndarray, level: int = 1) -> str:
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    Image.fromarray(image).save(path, "PNG", compress_level=level)
    return str(path)


class App:
    """The handlers, with the model, the share store and the result folders they use."""

    def __init__(self, model: Model | None = None, store: ShareStore | None = None,
                 workdir: Workdir | None = None):
        self.model = model if model is not None else load_model()
        self.store = store if store is not None else ShareStore()
        self.workdir = workdir or Workdir()
        self.explorers = ExplorerStore()
        # Every comparison (page, API, opened link) takes a slot: at most CONCURRENCY at once.
        self._slots = threading.BoundedSemaphore(CONCURRENCY)

    # -- the comparison ------------------------------------------------------

    def _source(self, image, example: str | None):
        if example:
            if example not in svdk.EXAMPLES:
                raise AppError(f"unknown example {example!r}; choose one of: {', '.join(svdk.EXAMPLES)}")
            return f"example:{example}"
        return image

    def compare(self, image, example: str | None, settings: Settings, progress=None, name: str | None = None,
                *, page: bool = True) -> Page:
        """Prepare, run and (with ``page``) render; every failure becomes a message.

        Without ``page`` only the decoded PNG and the .svdk file are written
        (what the API returns), not the galleries, previews and charts.
        """
        try:
            source = self._source(image, example)
            if progress:
                progress(0.0, "reading the image")
            with self._slots:
                prepared = prepare(source)
                report = run(prepared, settings, self.model, progress=progress)
            name = name or (example or (Path(image).name if isinstance(image, str) else None))
            if not page:
                out = self.workdir.new()
                stem = _safe_stem(name)
                svdk_path = out / f"{stem}.svdk"
                svdk_path.write_bytes(report.encoded.data)
                png = _save_png(out / f"{stem}-svdk.png", report.decoded)
                return Page(status="", svdk_path=str(svdk_path), png_path=png, report=report)
            return self.render(report, example=example, name=name)
        except svdk.SvdkError as exc:
            return Page(status=f"**Could not compare:** {exc}", error=True)
        except Exception:  # the page must get a message, never a traceback
            log.exception("comparison failed")
            return Page(
                status="**Something went wrong on the server** while comparing this image (it is in the "
                "server log). Try another image or other settings.",
                error=True,
            )

    def render(self, report: Report, *, example: str | None = None, name: str | None = None) -> Page:
        out = self.workdir.new()
        enc = report.encoded
        stem = _safe_stem(name)
        writes = []

        def save_png(path: Path, image: np.ndarray) -> str:
            writes.append(_WRITER.submit(_save_png, path, image))
            return str(path)

        original = save_png(out / f"{stem}-original.png", report.prepared.pixels.merged())
        decoded = save_png(out / f"{stem}-svdk.png", report.decoded)
        svdk_path = out / f"{stem}.svdk"
        svdk_path.write_bytes(enc.data)

        s = report.summary()
        png = s["png_bytes"]
        names = {"gray": ("gray",), "rgb": ("R", "G", "B"), "ycbcr": ("Y", "Cb", "Cr")}[enc.mode]
        ranks = ", ".join(f"{n}={k}" for n, k in zip(names, enc.components))
        if enc.layout == "tiled":
            ranks = f"{ranks} components over {enc.tile}x{enc.tile} tiles"
        if report.predicted is not None and enc.layout == "tiled":
            predicted = (f"{report.predicted} luma components (from the tile spectrum, before checking; "
                         f"then {enc.correction})")
        elif report.predicted is not None:
            predicted = f"{report.predicted} (CNN, luma, before checking; then {enc.correction})"
        elif report.settings.auto:
            predicted = "- (exact search)" if report.policy == "quality" else "-"
        else:
            predicted = "- (ranks given by hand)"
        summary = [
            ["bytes", f"{enc.nbytes:,}"],
            ["bits per pixel", f"{enc.bpp:.3f}"],
            ["PSNR (dB)", _fmt_db(s["psnr"] if s["psnr"] is not None else float("inf"))],
            ["SSIM (RGB)", _fmt_ssim(s["ssim"])],
            ["vs PNG", f"{s['ratio_vs_png']:.2f}x smaller than PNG ({png:,} bytes)" if png else "-"],
            ["predicted rank", predicted],
            ["final rank", ranks],
            ["time", f"encode {report.timings['encode']:.2f} s; with the comparison {report.timings['total']:.2f} s"],
        ]
        table = []
        for r in report.rows:
            table.append([
                NAMES.get(r.codec, r.codec),
                r.match if r.match != "-" else "this file",
                "-" if r.quality is None else r.quality,
                "-" if r.bytes is None else r.bytes,
                "-" if r.bpp is None else round(r.bpp, 3),
                _fmt_db(r.psnr),
                _fmt_ssim(r.ssim),
                r.note if r.codec != "svdk" else POLICY_NOTES.get((report.policy, enc.layout), POLICY_NOTES.get(report.policy, report.policy)),
            ])

        def caption(label, nbytes, psnr, ssim):
            return f"{label}: {nbytes:,} bytes, {_fmt_db(psnr)} dB, SSIM {_fmt_ssim(ssim)}"

        gallery = [(decoded, caption("svdk", enc.nbytes, report.rows[0].psnr, report.rows[0].ssim))]
        for r in report.rows:
            key = f"{r.codec} {r.match}"
            if key in report.files:
                path = out / f"{stem}-{r.codec}-{r.match.replace(' ', '-').lower()}.{EXT[r.codec]}"
                path.write_bytes(report.files[key])
                gallery.append((str(path), caption(f"{NAMES[r.codec]} q{r.quality}, {r.match}", r.bytes, r.psnr, r.ssim)))
        progressive = []
        what = "rank" if enc.layout == "global" else "rank per tile"
        for p in report.previews:
            if p.image is report.decoded:
                path = decoded
                cap = f"{what} {p.rank}: the whole file, {_fmt_db(p.psnr)} dB, SSIM {_fmt_ssim(p.ssim)}"
            else:
                path = save_png(out / f"{stem}-first-{p.rank}.png", p.image)
                cap = f"first {p.rank} component{'s' if p.rank > 1 else ''} ({what} {p.rank}): {_fmt_db(p.psnr)} dB"
            progressive.append((path, cap))

        notes = "".join(f"\n* {n}" for n in report.notes)
        status = (
            f"**{report.prepared.width}x{report.prepared.height}**, target SSIM {report.settings.target:g}, "
            f"{enc.mode}, {_layout_words(report.settings)}: **{enc.nbytes:,} bytes** ({enc.bpp:.3f} bpp), "
            f"PSNR {_fmt_db(report.rows[0].psnr)} dB, SSIM {_fmt_ssim(report.rows[0].ssim)}.\n\n"
            f"How the ranks were chosen: {enc.reason}{notes}"
        )
        last = {
            "image": original,
            "example": example or None,
            "settings": report.settings.to_dict(),
            "notes": list(report.prepared.notes),
        }
        rd_figure, spectrum_figure = charts.rate_distortion(report), charts.spectrum(report)
        for w in writes:
            w.result()  # every file the page names is written
        explorer = None
        if report.encoder is not None and report.scorer is not None:
            ex = Explorer(report.encoder, enc, report.scorer, out, report.spectrum_label)
            view = ex.seed(decoded, report.rows[0].psnr, report.rows[0].ssim)
            explorer = {"token": self.explorers.put(ex), "maximum": ex.maximum, "label": ex.what,
                        "image": decoded, "caption": view.caption}
        return Page(
            status=status,
            slider=(original, decoded),
            summary=summary,
            table=table,
            svdk_path=str(svdk_path),
            png_path=decoded,
            gallery=gallery,
            progressive=progressive,
            rd_figure=rd_figure,
            spectrum_figure=spectrum_figure,
            last=last,
            explorer=explorer,
            report=report,
        )

    # -- handlers --------------------------------------------------------------

    def compress_page(self, image, example, target, mode, layout, auto, rank_y, rank_u, rank_v,
                      progress=None, tune="psnr") -> Page:
        """The page's Compress button (also run on upload and on picking an example). ``tune``
        applies to the tiled layout (the page's control says so; the global layout ignores it)."""
        try:
            settings = Settings(float(target) if target is not None else 0.9, mode, layout,
                                parse_ranks(bool(auto), rank_y, rank_u, rank_v), _page_tune(layout, tune))
        except (svdk.SvdkError, TypeError, ValueError) as exc:
            return Page(status=f"**Could not compare:** {exc}", error=True)
        if not image and not example:
            return Page(status="Upload a photo or pick an example to start.", error=True)
        return self.compare(image, example, settings, progress)

    def compress_api(self, image, target=0.9, mode="ycbcr", layout="global", auto=True,
                     rank_y=64, rank_u=16, rank_v=16, tune="psnr") -> tuple[str, dict, str]:
        """``/compress``: (decoded PNG path, metrics, .svdk path); raises :class:`AppError` with a message."""
        if not image:
            raise AppError("no image: send an image file")
        t0 = time.perf_counter()
        settings = Settings(float(target), mode, layout, parse_ranks(bool(auto), rank_y, rank_u, rank_v), tune)
        page = self.compare(image, None, settings, page=False)
        if page.error:
            raise AppError(page.status.replace("**Could not compare:** ", "").replace("**", ""))
        metrics = page.report.to_dict()
        # reading the upload, the comparison, writing the decoded PNG and the .svdk file
        metrics["timings"]["handler"] = round(time.perf_counter() - t0, 4)
        return page.png_path, metrics, page.svdk_path

    def share(self, last: dict | None) -> tuple[str, str]:
        """Store what the page shows; ``(query string or "", message)``."""
        if not last or not last.get("image"):
            return "", "Compress an image first; then Share makes a link to that comparison."
        try:
            settings = Settings.from_dict(last["settings"])
            if last.get("example"):
                return query_for(last["example"], settings), (
                    "Link ready (an example: the link holds everything, nothing is stored)."
                )
            path = Path(last["image"])
            if not path.is_file():
                return "", "This comparison has expired on the server; compress the image again, then share."
            with Image.open(path) as im:
                image = np.asarray(im)
            share_id = self.store.put(image, settings, last.get("notes"))
        except svdk.SvdkError as exc:
            return "", f"Could not share: {exc}"
        except OSError as exc:
            log.exception("share store failed")
            return "", f"Could not share: the link store is not writable ({exc.strerror or exc})."
        return f"?share={share_id}", (
            "Link ready. It keeps this image and these settings on the server until the store needs room "
            "for newer links."
        )

    def open_link(self, params: dict, progress=None) -> Page | None:
        """The comparison a URL asks for (``?share=ID`` or ``?example=...``); None if it asks for none."""
        try:
            what, settings = settings_from_query(params)
            if what is None:
                return None
            if what.startswith("share:"):
                image, settings, meta = self.store.get(what.split(":", 1)[1])
                page = self.compare(image, None, settings, progress, name="shared")
                example = None
            else:
                example = what.split(":", 1)[1]
                page = self.compare(None, example, settings, progress)
        except svdk.SvdkError as exc:
            return Page(status=f"**Could not open this link:** {exc}", error=True)
        if not page.error:
            page.inputs = {
                "image": page.slider[0],
                "example": example,
                "target": settings.target,
                "mode": settings.mode,
                "layout": settings.layout,
                "tune": settings.tune,
                "auto": settings.auto,
                "ranks": list(settings.ranks or ()),
            }
            page.query = (f"?share={what.split(':', 1)[1]}" if what.startswith("share:")
                          else query_for(example, settings))
            if what.startswith("share:"):
                page.last = {**page.last, "example": None, "notes": meta.get("notes") or []}
                then = "".join(f"\n* {n}" for n in meta.get("notes") or [])
                page.status = ("Opened a shared comparison." + (f" When it was shared:{then}" if then else "")
                               + "\n\n" + page.status)
        return page

    # -- several images -------------------------------------------------------

    def compare_many(self, files, target=0.9, mode="ycbcr", layout="global", progress=None, tune="psnr"
                     ) -> tuple[list[batch.Item], str]:
        """Compare each file (automatic rank); ``(items, message)``. One broken file gets its own message.

        More than :data:`demo.batch.MAX_IMAGES` files are refused as a whole, with a message.
        """
        paths = [f for f in (files or []) if f]
        if not paths:
            return [], "Drop up to 8 photos to compare them together."
        if len(paths) > batch.MAX_IMAGES:
            return [], (f"**{len(paths)} files: the batch takes up to {batch.MAX_IMAGES} images.** "
                        f"Remove {len(paths) - batch.MAX_IMAGES} and compare again.")
        try:
            settings = Settings(float(target) if target is not None else 0.9, mode, layout, None, tune)
        except (svdk.SvdkError, TypeError, ValueError) as exc:
            return [], f"**Could not compare:** {exc}"
        items = []
        for i, path in enumerate(paths):
            name = Path(str(path)).name
            if progress:
                progress(i / len(paths), f"image {i + 1} of {len(paths)}: {name}")
            try:
                with self._slots:
                    report = run(prepare(str(path)), settings, self.model)
                report.encoder = report.scorer = None  # the batch keeps figures, not decompositions
                items.append(batch.Item(name, report))
            except svdk.SvdkError as exc:
                items.append(batch.Item(name, error=str(exc)))
            except Exception:
                log.exception("batch comparison failed on %s", name)
                items.append(batch.Item(name, error="something went wrong on the server with this image "
                                        "(it is in the server log)"))
        ok = sum(it.report is not None for it in items)
        failed = [it for it in items if it.report is None]
        message = (f"**{ok} of {len(items)} image{'s' * (len(items) > 1)} compared** (target SSIM "
                   f"{settings.target:g}, {settings.mode}, {_layout_words(settings)}, automatic rank).")
        if failed:
            message += "".join(f"\n* **{it.name}**: {it.error}" for it in failed)
        return items, message

    def compress_many_page(self, files, target, mode, layout, progress=None, tune="psnr"):
        """The batch panel: ``(message, table rows or None, chart or None)`` (``tune``: as on the page)."""
        items, message = self.compare_many(files, target, mode, layout, progress, _page_tune(layout, tune))
        if not any(it.report is not None for it in items):
            return message, None, None
        return message, batch.table(items), batch.figure(items)

    def compress_many_api(self, files, target=0.9, mode="ycbcr", layout="global", tune="psnr") -> dict:
        """``/compress_many``: the JSON of :func:`demo.batch.summary_json`; :class:`AppError` when nothing can run."""
        items, message = self.compare_many(files, target, mode, layout, tune=tune)
        if not items:
            raise AppError(message.replace("**", ""))
        return batch.summary_json(items)

    # -- the rank explorer ---------------------------------------------------

    def explore(self, token, k) -> tuple[str | None, str, bool]:
        """The explorer's slider at ``k``: ``(image path or None, caption, error)``."""
        if not token:
            return None, "Compress an image first; then drag k to see what each component adds.", True
        try:
            view = self.explorers.get(token).view(k)
        except svdk.SvdkError as exc:
            return None, f"**Explorer:** {exc}", True
        except Exception:
            log.exception("explorer failed")
            return None, "**Explorer:** something went wrong on the server (it is in the server log).", True
        return view.image_path, view.caption, False

    def explore_chart(self, token, k):
        """The spectrum chart with the explorer's position marked (None: nothing to draw)."""
        try:
            ex = self.explorers.get(token)
            k = ex.check(k)
        except svdk.SvdkError:
            return None
        return charts.spectrum_figure(ex.singular_values, ex.spectrum_label, tile=ex.tile if ex.layout == "tiled" else 0,
                                      chosen=ex.maximum, position=k)

    def pick_example(self, name: str | None) -> str | None:
        return str(self.workdir.example(name)) if name in svdk.EXAMPLES else None


# ----------------------------------------------------------------------------
# Gradio


#: elem_ids of the gr.Image inputs whose uploads reach the handler as the file sent (see below).
_PASS_THROUGH: set[str] = set()


def _pass_upload_through(image_component) -> None:
    """Make a gr.Image hand its handler the uploaded file's path as sent.

    gr.Image opens uploads with Pillow before the handler runs, so an empty,
    corrupt or non-image file fails there with Gradio's raw error (naming the
    server's temporary path); svdk's reader explains such files, and the
    handler shows its message. Gradio rebuilds a session's copy of a
    component whenever an event updates it (``gr.skip()`` included), so an
    override on the instance is lost: the class's ``preprocess`` is wrapped
    once, and passes through only for components whose ``elem_id`` is
    registered here (a gr.Image subclass would make Gradio write a .pyi file
    next to this module at import time).
    """
    import gradio as gr

    if not image_component.elem_id or image_component.type != "filepath":
        raise ValueError("the pass-through needs a gr.Image with an elem_id and type='filepath'")
    _PASS_THROUGH.add(image_component.elem_id)
    original = gr.Image.preprocess
    if getattr(original, "_svdk_pass_through", False):
        return

    def preprocess(self, payload):
        if self.elem_id in _PASS_THROUGH and self.type == "filepath" and payload is not None:
            # A FileData, or (from a browser's upload) a plain dict {'path': ..., 'url': ...}
            get = payload.get if isinstance(payload, dict) else (lambda name: getattr(payload, name, None))
            path, url = get("path"), get("url")
            if path and not str(url or "").startswith("data:"):
                return str(path)
        return original(self, payload)

    preprocess._svdk_pass_through = True
    gr.Image.preprocess = preprocess


def build_demo(app: App | None = None):
    """The Blocks of the app (model loaded now, once). Launch with :func:`launch_options`."""
    import gradio as gr

    app = app or App()
    lo, hi = SSIM_RANGE
    with gr.Blocks(title="svdk: SVD image compression", delete_cache=(300, 900), analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        gr.Markdown(f"**Model:** {app.model.description}", elem_id="model-info")
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                image_in = gr.Image(label="Image", type="filepath", sources=["upload", "clipboard"],
                                    height=280, elem_id="input-image")
                _pass_upload_through(image_in)
                example_dd = gr.Dropdown(choices=list(svdk.EXAMPLES), value=None, label="...or an example photo (scikit-image)",
                                         elem_id="example")
                example_state = gr.State(None)
                target = gr.Slider(lo, hi, value=0.9, step=0.01, label="Target SSIM (luma)", elem_id="target")
                mode = gr.Radio(["ycbcr", "rgb"], value="ycbcr", label="Colour mode",
                                info="ycbcr: luma + 4:2:0 chroma at a quarter of the rank; rgb: each channel its own rank")
                layout = gr.Radio(["global", "tiled"], value="global", label="Layout",
                                  info="global: one SVD per plane; tiled: an SVD per 8x8 tile")
                tune = gr.Radio(list(TUNES), value="psnr", label="Tiled layout tuned for", elem_id="tune",
                                info="psnr: the largest components; ssim: more faint detail in flat regions, "
                                     "a smaller file at the same SSIM, lower PSNR")
                auto = gr.Checkbox(True, label="Automatic rank (CNN prediction, then checked)")
                with gr.Row():
                    rank_y = gr.Number(64, precision=0, minimum=1, label="rank Y (or R)", min_width=80,
                                       elem_id="rank-y")
                    rank_u = gr.Number(16, precision=0, minimum=1, label="rank U (or G)", min_width=80,
                                       elem_id="rank-u")
                    rank_v = gr.Number(16, precision=0, minimum=1, label="rank V (or B)", min_width=80,
                                       elem_id="rank-v")
                gr.Markdown("Manual ranks apply when automatic rank is off (global layout).")
                run_btn = gr.Button("Compress", variant="primary", elem_id="run")
                with gr.Row():
                    share_btn = gr.Button("Share", elem_id="share")
                share_query = gr.Textbox(visible=False)
                share_url = gr.Textbox(label="Link to this comparison", interactive=False, buttons=["copy"],
                                       elem_id="share-url")
                share_msg = gr.Markdown(elem_id="share-msg")
            with gr.Column(scale=2):
                status = gr.Markdown("Upload a photo or pick an example to start.", elem_id="status")
                with gr.Row(equal_height=False):
                    slider = gr.ImageSlider(label="original | svdk (drag)", type="filepath", interactive=False,
                                            elem_id="slider", min_width=280)
                    with gr.Column(min_width=280):
                        explorer_image = gr.Image(label="rank explorer: the image at k", type="filepath",
                                                  interactive=False, elem_id="explorer-image", format="png")
                        explorer_k = gr.Slider(1, 2, value=2, step=1, label="k (compress an image first)",
                                               interactive=False, elem_id="explorer-k")
                        explorer_caption = gr.Markdown(
                            "Drag k to rebuild the image from its first k components.", elem_id="explorer-caption")
                summary = gr.Dataframe(headers=SUMMARY_HEADERS, interactive=False, elem_id="summary", wrap=True,
                                       column_widths=["30%", "70%"])
                with gr.Row():
                    svdk_file = gr.File(label=".svdk file", elem_id="svdk-file")
                    png_file = gr.File(label="decoded PNG", elem_id="png-file")
        table = gr.Dataframe(headers=TABLE_HEADERS, interactive=False, label="svdk, PNG, JPEG and WebP on this image",
                             elem_id="table", wrap=True)
        gallery = gr.Gallery(label="svdk beside JPEG and WebP at the same size and at the same SSIM",
                             columns=5, height=320, object_fit="contain", elem_id="gallery")
        progressive = gr.Gallery(label="Progressive: decoded from the same .svdk file, first components only",
                                 columns=4, height=320, object_fit="contain", elem_id="progressive")
        with gr.Row():
            rd_plot = gr.Plot(label="rate-distortion", elem_id="rd-plot")
            spec_plot = gr.Plot(label="spectrum", elem_id="spectrum-plot")
        with gr.Accordion(f"Several images at once (up to {batch.MAX_IMAGES}): one table, one averaged chart",
                          open=True, elem_id="batch"):
            gr.Markdown("Each photo is compared as above (automatic rank, the target, colour mode and layout "
                        "chosen on the left); a file that cannot be read gets its own message.")
            batch_files = gr.File(label=f"photos (up to {batch.MAX_IMAGES})", file_count="multiple",
                                  file_types=["image"], type="filepath", elem_id="batch-files")
            batch_btn = gr.Button("Compare all", elem_id="batch-run")
            batch_status = gr.Markdown(elem_id="batch-status")
            batch_table = gr.Dataframe(headers=batch.TABLE_HEADERS, interactive=False, wrap=True,
                                       label="every image: svdk, PNG, and JPEG/WebP at svdk's size and SSIM; means last",
                                       elem_id="batch-table")
            batch_plot = gr.Plot(label="rate-distortion, averaged over the images", elem_id="batch-rd")
        last_state = gr.State(None)
        explorer_state = gr.State(None)  # a token: the explorer itself stays on the server (demo.explore)
        # The API endpoint: the same inputs, plain outputs.
        with gr.Row(visible=False):
            api_btn = gr.Button("compress (API)")
            api_image = gr.Image(label="decoded", format="png", type="filepath")
            api_metrics = gr.JSON(label="metrics")
            api_file = gr.File(label=".svdk file")
            api_many_btn = gr.Button("compress many (API)")
            api_many_files = gr.File(label="images", file_count="multiple", type="filepath")
            api_many_out = gr.JSON(label="metrics of every image")

        results = [status, slider, summary, table, svdk_file, png_file, gallery, progressive, rd_plot, spec_plot,
                   last_state, explorer_state, explorer_k, explorer_image, explorer_caption, share_url, share_msg]
        inputs = [image_in, example_state, target, mode, layout, auto, rank_y, rank_u, rank_v, tune]
        input_values = [image_in, example_dd, example_state, target, mode, layout, auto, rank_y, rank_u, rank_v,
                        tune]

        def page_values(page: Page):
            # A new comparison (or a failed one) replaces everything, the explorer and the old link too.
            if page.error:
                gr.Warning(re.sub(r"\*\*", "", page.status))
                return [page.status, None, None, None, None, None, None, None, None, None, None,
                        None, gr.update(interactive=False, label="k (compress an image first)"), None, "", "", ""]
            e = page.explorer
            return [page.status, page.slider, page.summary, page.table, page.svdk_path, page.png_path, page.gallery,
                    page.progressive, page.rd_figure, page.spectrum_figure, page.last,
                    e["token"], gr.update(minimum=1, maximum=e["maximum"], value=e["maximum"], interactive=True,
                                          label=f"k: {e['label']} (1 to {e['maximum']:,}, this file)"),
                    e["image"], e["caption"], "", ""]

        def on_explore(token, k):
            image, caption, error = app.explore(token, k)
            return (gr.skip() if error else image), caption

        def on_explore_chart(token, k):
            fig = app.explore_chart(token, k)
            return gr.skip() if fig is None else fig

        def on_compress(image, example, t, m, lay, a, y, u, v, tu, progress=gr.Progress()):
            return page_values(app.compress_page(image, example, t, m, lay, a, y, u, v,
                                                 progress=lambda f, d: progress(f, desc=d), tune=tu))

        def on_example(name):
            return app.pick_example(name), name

        def on_load(request: gr.Request, progress=gr.Progress()):
            page = app.open_link(dict(request.query_params), progress=lambda f, d: progress(f, desc=d))
            if page is None:
                return [gr.skip()] * (len(input_values) + len(results) + 1)
            if page.error:
                return [gr.skip()] * len(input_values) + page_values(page) + [""]
            i = page.inputs
            r = (i["ranks"] + [None, None, None])[:3]
            values = [i["image"], i["example"], i["example"], i["target"], i["mode"], i["layout"], i["auto"],
                      r[0] or gr.skip(), r[1] or gr.skip(), r[2] or gr.skip(), i["tune"]]
            out = values + page_values(page)
            out[len(input_values) + results.index(share_msg)] = "The link of this page: it opens this comparison."
            return out + [page.query or ""]

        def on_api(image, t, m, lay, a, y, u, v, tu):
            try:
                return app.compress_api(image, t, m, lay, a, y, u, v, tu)
            except svdk.SvdkError as exc:
                raise gr.Error(str(exc)) from None

        common = {"concurrency_id": "svdk", "concurrency_limit": CONCURRENCY}

        def on_batch(files, t, m, lay, tu, progress=gr.Progress()):
            message, rows, fig = app.compress_many_page(files, t, m, lay, progress=lambda f, d: progress(f, desc=d),
                                                        tune=tu)
            if rows is None:
                gr.Warning(re.sub(r"\*\*", "", message.split("\n")[0]))
            return message, rows, fig

        def on_api_many(files, t, m, lay, tu):
            try:
                return app.compress_many_api(files, t, m, lay, tu)
            except svdk.SvdkError as exc:
                raise gr.Error(str(exc)) from None

        batch_inputs = [batch_files, target, mode, layout, tune]
        batch_outputs = [batch_status, batch_table, batch_plot]
        batch_btn.click(on_batch, batch_inputs, batch_outputs, api_visibility="private", **common)
        batch_files.upload(on_batch, batch_inputs, batch_outputs, api_visibility="private", **common)
        api_many_btn.click(on_api_many, [api_many_files, target, mode, layout, tune], api_many_out,
                           api_name="compress_many", **common)
        run_btn.click(on_compress, inputs, results, api_visibility="private", **common)
        image_in.upload(lambda: (None, None), None, [example_state, example_dd], queue=False,
                        api_visibility="private").then(
            on_compress, inputs, results, api_visibility="private", **common)
        image_in.clear(lambda: (None, None), None, [example_state, example_dd], queue=False, api_visibility="private")
        example_dd.input(on_example, example_dd, [image_in, example_state], api_visibility="private").then(
            on_compress, inputs, results, api_visibility="private", **common)
        share_btn.click(app.share, last_state, [share_query, share_msg], api_visibility="private").then(
            None, share_query, share_url, api_visibility="private",
            js="(q) => q ? window.location.origin + window.location.pathname + q : ''")
        # Not in the "svdk" queue group: a plain visit must not wait behind comparisons (a link's
        # comparison still waits for one of App's slots).
        link_js = "(q) => q ? window.location.origin + window.location.pathname + q : ''"
        demo.load(on_load, None, input_values + results + [share_query], api_visibility="private",
                  concurrency_limit=None).then(None, share_query, share_url, api_visibility="private", js=link_js)
        manual = [rank_y, rank_u, rank_v]
        auto.change(lambda a: [gr.update(interactive=not a)] * 3, auto, manual, queue=False, api_visibility="private")
        demo.load(lambda a: [gr.update(interactive=not a)] * 3, auto, manual, queue=False, api_visibility="private")

        def on_setting(image, example, t, m, lay, a, y, u, v, tu, progress=gr.Progress()):
            # A new layout, mode or tune redraws the comparison at once (when there is an image to compare).
            if not image and not example:
                return [gr.skip()] * len(results)
            return on_compress(image, example, t, m, lay, a, y, u, v, tu, progress)

        for control in (layout, mode):
            control.input(on_setting, inputs, results, api_visibility="private", **common)

        def on_tune(image, example, t, m, lay, a, y, u, v, tu, progress=gr.Progress()):
            # the tune changes the tiled layout only
            if lay != "tiled":
                return [gr.skip()] * len(results)
            return on_setting(image, example, t, m, lay, a, y, u, v, tu, progress)

        tune.input(on_tune, inputs, results, api_visibility="private", **common)
        explorer_k.input(on_explore, [explorer_state, explorer_k], [explorer_image, explorer_caption],
                         api_visibility="private", trigger_mode="always_last", concurrency_id="explore",
                         concurrency_limit=CONCURRENCY, show_progress="hidden")
        explorer_k.release(on_explore_chart, [explorer_state, explorer_k], spec_plot, api_visibility="private",
                           trigger_mode="always_last", concurrency_id="explore", concurrency_limit=CONCURRENCY,
                           show_progress="hidden")
        api_btn.click(on_api, [image_in, target, mode, layout, auto, rank_y, rank_u, rank_v, tune],
                      [api_image, api_metrics, api_file], api_name="compress", **common)
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


#: The page's CSS (Gradio 6 takes it in ``launch()``): whole gallery captions, and no
#: horizontal scrolling on a phone.
CSS = """
#gallery .caption-label, #progressive .caption-label {
  white-space: normal; max-width: 100%; text-overflow: clip;
}
@media (max-width: 640px) {
  #gallery .grid-container, #progressive .grid-container { --grid-cols: 2 !important; }
  #gallery .caption-label, #progressive .caption-label { font-size: 11px; }
}
"""


def launch_options() -> dict:
    """Keyword arguments of ``demo.launch()``: address from the environment, the upload cap, the CSS."""
    opts = {"max_file_size": MAX_UPLOAD_BYTES, "show_error": True, "css": CSS}
    name = os.environ.get("GRADIO_SERVER_NAME")
    port = os.environ.get("GRADIO_SERVER_PORT")
    opts["server_name"] = name or "127.0.0.1"
    opts["server_port"] = int(port) if port else 7860
    return opts


