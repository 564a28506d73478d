"""The Gradio app: its handlers as plain functions, the share store, and the
launched server driven through ``/compress`` with ``gradio_client``.

The browser test (tests/test_app_browser.py) reuses the server started here.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np
import pytest
from PIL import Image

import svdk
from svdk import baselines

pytest.importorskip("gradio", reason="the app needs pip install 'svdk[app]'")
pytest.importorskip("plotly", reason="the app needs pip install 'svdk[app]'")

from demo import inputs, pipeline  # noqa: E402
from demo.app import CSS, App, Workdir, parse_ranks  # noqa: E402
from demo.inputs import AppError, Settings, prepare  # noqa: E402
from demo.model import Model  # noqa: E402
from demo.pipeline import run  # noqa: E402
from svdk.baselines import Probe  # noqa: E402
from svdk.metrics import Scorer  # noqa: E402
from demo.share import ShareError, ShareStore, query_for, settings_from_query  # noqa: E402

NO_MODEL = Model(None, "no model (tests)")
# Gradio's queue calls pandas APIs that pandas 3 deprecates; nothing to do with the app.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def photo(height=96, width=128) -> np.ndarray:
    """A crop of scikit-image's chelsea: a real photo, small enough to be quick."""
    return np.ascontiguousarray(svdk.load_image("example:chelsea").color[60 : 60 + height, 150 : 150 + width])


def save(tmp_path: Path, name: str, image, fmt: str = "PNG", **kw) -> str:
    path = tmp_path / name
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path, fmt, **kw)
    return str(path)


@pytest.fixture
def app(tmp_path):
    return App(model=NO_MODEL, store=ShareStore(tmp_path / "shares"), workdir=Workdir(tmp_path / "work"))


# ----------------------------------------------------------------------------
# settings and the search helpers


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": 1.5}, "target SSIM must be a number in [0.5, 0.99]"),
        ({"target": float("nan")}, "target SSIM"),
        ({"mode": "cmyk"}, "colour mode must be one of ycbcr, rgb"),
        ({"layout": "mosaic"}, "layout must be one of global, tiled"),
        ({"ranks": (64, "x", 16)}, "ranks must be one to three whole numbers"),
        ({"layout": "tiled", "ranks": (64, 16, 16)}, "manual ranks apply to the global layout"),
        ({"layout": "tiled", "tune": "mse"}, "tune must be one of psnr, ssim"),
        ({"tune": "ssim"}, "tuning for SSIM applies to the tiled layout"),
    ],
)
def test_settings_refuse_bad_values(kwargs, message):
    with pytest.raises(AppError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Settings(**kwargs)


def test_parse_ranks():
    assert parse_ranks(True, None, None, None) is None
    assert parse_ranks(False, 64.0, 16, "8") == (64, 16, 8)
    with pytest.raises(AppError, match="rank for U must be a whole number"):
        parse_ranks(False, 64, 2.5, 8)
    with pytest.raises(AppError, match="give a rank for V"):
        parse_ranks(False, 64, 16, None)


@pytest.mark.parametrize("rank", [4, 12, 40])
@pytest.mark.parametrize("codec", [c for c in ("jpeg", "webp") if c in baselines.available()])
def test_the_app_matches_what_svdk_compare_matches(codec, rank):
    """The app's probe has measured other qualities first; its matches are still svdk compare's."""
    image = photo()
    enc = svdk.encode(image, rank=rank)
    _, target = svdk.compare.measure(image, svdk.decompress(enc.data))
    scorer = Scorer(image)
    probe = Probe(codec, image)
    for q in (*pipeline.SWEEP_QUALITIES, 12, 50, 90):  # what the app measures first, and more
        probe.score(q, scorer)
    expected_size = baselines.match_size(image, codec, enc.nbytes)
    expected_ssim = baselines.match_ssim(image, codec, target)
    assert probe.match_size(enc.nbytes) == (expected_size.quality if expected_size else None)
    assert probe.match_ssim(target, scorer) == (expected_ssim.quality if expected_ssim else None)


# ----------------------------------------------------------------------------
# input


def test_prepare_refuses_bad_files_with_messages(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_bytes(b"this is not an image at all")
    good = save(tmp_path, "good.png", photo())
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(Path(good).read_bytes()[:300])
    for path, message in [
        (empty, "the uploaded file is empty"),
        (text, "the file is not an image that Pillow can read"),
        (truncated, "the file is corrupt or truncated"),
        (tmp_path / "gone.png", "the uploaded file is gone"),
        ("", "no image"),
    ]:
        with pytest.raises(svdk.SvdkError, match=message):
            prepare(str(path) if path != "" else path)


def test_prepare_refuses_files_above_the_upload_cap(tmp_path, monkeypatch):
    path = save(tmp_path, "big.png", photo())
    monkeypatch.setattr(inputs, "MAX_UPLOAD_BYTES", 100)
    with pytest.raises(AppError, match=r"the app takes files up to 0\.0001 MB"):
        prepare(path)


def test_prepare_downscales_large_images_with_a_notice(tmp_path):
    path = save(tmp_path, "large.png", photo(96, 128))
    prepared = prepare(path, limit=3000)
    assert prepared.width * prepared.height <= 3000
    assert prepared.width / prepared.height == pytest.approx(128 / 96, rel=0.05)
    assert any("downscaled from 128x96" in n for n in prepared.notes)


def test_prepare_refuses_tiny_images(tmp_path):
    with pytest.raises(AppError, match="at least 8 pixels on each side"):
        prepare(save(tmp_path, "tiny.png", photo(5, 40)))


def _variants(tmp_path):
    rgb = photo(48, 64)
    gray = rgb.mean(axis=2).astype(np.uint8)
    rgba = np.dstack([rgb, np.linspace(0, 255, 64, dtype=np.uint8)[None, :].repeat(48, 0)])
    sixteen = Image.fromarray(gray.astype(np.uint16) * 257)
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    gif = tmp_path / "animated.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    return {
        "gray": (save(tmp_path, "gray.png", gray), 2, None),
        "rgba": (save(tmp_path, "rgba.png", rgba), 3, "alpha channel is stored losslessly"),
        "16-bit": (save(tmp_path, "sixteen.png", sixteen), 2, "reduced from 16 to 8 bits"),
        "cmyk": (save(tmp_path, "cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95), 3,
                 "converted from CMYK to RGB"),
        "animated": (str(gif), 3, "only the first is encoded"),
    }


@pytest.mark.parametrize("kind", ["gray", "rgba", "16-bit", "cmyk", "animated"])
def test_unusual_images_are_compared_with_a_note(app, tmp_path, kind):
    path, ndim, note = _variants(tmp_path)[kind]
    page = app.compress_page(path, None, 0.8, "ycbcr", "global", True, 64, 16, 16)
    assert not page.error, page.status
    assert page.report.decoded.ndim == ndim or kind == "rgba"
    if note:
        assert note in page.status
    assert Path(page.svdk_path).read_bytes()[:4] == b"SVDK"


# ----------------------------------------------------------------------------
# the comparison


@pytest.fixture(scope="module")
def report():
    return run(prepare(photo()), Settings(target=0.85), NO_MODEL)


def test_report_rows_keep_their_promises(report):
    svdk_row = report.rows[0]
    assert svdk_row.codec == "svdk" and svdk_row.ssim >= 0.8  # RGB SSIM, a little under the luma target
    assert report.encoded.reason.startswith("smallest ranks reaching ssim >= 0.85")
    by = {(r.codec, r.match): r for r in report.rows}
    assert by[("png", "lossless")].bytes > 0
    for codec in [c for c in ("jpeg", "webp") if c in baselines.available()]:
        same_size, same_ssim = by[(codec, "same size")], by[(codec, "same SSIM")]
        assert same_size.bytes <= svdk_row.bytes
        assert same_ssim.ssim >= svdk_row.ssim
        probe = Probe(codec, photo())
        assert probe.score(same_ssim.quality - 1, Scorer(photo()))[1] < svdk_row.ssim
        assert report.files[f"{codec} same SSIM"][:2] in (b"\xff\xd8", b"RI")


def test_report_curves_spectrum_and_previews(report):
    svdk_points = report.curves["svdk"]
    assert report.current in svdk_points
    assert [p.bytes for p in svdk_points] == sorted(p.bytes for p in svdk_points)
    assert svdk_points[0].psnr < svdk_points[-1].psnr
    for p in svdk_points:
        if p is not report.current:
            assert len(svdk.compress(photo(), rank=p.param)) == p.bytes  # the sweep's files are svdk's own
    assert len(report.spectrum) == 96 and np.all(np.diff(report.spectrum) <= 1e-6)
    ranks = [p.rank for p in report.previews]
    k = report.final_rank
    assert ranks == [j for j in (1, 5, 20) if j < k] + [k]
    assert [p.psnr for p in report.previews] == sorted(p.psnr for p in report.previews)
    assert report.previews[-1].image is report.decoded
    doc = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert doc["svdk"]["bytes"] == report.encoded.nbytes and doc["svdk"]["final_rank"] == report.final_rank


def test_kept_references_give_the_same_comparison(monkeypatch):
    prepared = prepare(photo())
    pipeline._CACHE.clear()
    cold = {t: run(prepared, Settings(target=t), NO_MODEL) for t in (0.8, 0.9)}
    pipeline._CACHE.clear()
    first = run(prepared, Settings(target=0.8), NO_MODEL)
    again = run(prepared, Settings(target=0.9), NO_MODEL)
    assert not first.timings["references_cached"] and again.timings["references_cached"]
    assert first.rows == cold[0.8].rows and again.rows == cold[0.9].rows
    assert again.curves["jpeg"] == sorted(again.curves["jpeg"], key=lambda p: p.param)
    # the chart's qualities and the files in the table are on the curve (search steps may differ)
    matched = {r.quality for r in again.rows if r.codec == "jpeg" and r.quality is not None}
    assert set(pipeline.SWEEP_QUALITIES) | matched <= set(p.param for p in again.curves["jpeg"])
    # what is kept per image is bytes and scores, not pixels
    assert all(c.decoded is None for refs in pipeline._CACHE.values() for probe in refs.probes.values()
               for c in probe._coded.values())
    monkeypatch.setattr(pipeline, "CACHE_IMAGES", 0)
    pipeline._CACHE.clear()
    run(prepared, Settings(target=0.8), NO_MODEL)
    assert not pipeline._CACHE


def test_manual_ranks_and_impossible_ranks(app):
    page = app.compress_page(None, "camera", 0.9, "ycbcr", "global", False, 30, 4, 4)
    assert not page.error
    assert page.report.encoded.ranks == (30,)  # grayscale: Y only
    page = app.compress_page(None, "coffee", 0.9, "ycbcr", "global", False, 900, 16, 16)
    assert page.error
    assert "rank of plane Y must be in [1, 400] for a 600x400 plane; got 900" in page.status


def test_tiled_layout_and_rgb_mode(app, tmp_path):
    path = save(tmp_path, "p.png", photo())
    whole = app.compress_page(path, None, 0.85, "ycbcr", "global", True, 0, 0, 0).report
    page = app.compress_page(path, None, 0.85, "ycbcr", "tiled", True, 64, 16, 16)
    assert not page.error and page.report.encoded.layout == "tiled"
    assert page.report.encoded.data != whole.encoded.data
    assert page.report.rows[0].ssim >= 0.8  # RGB SSIM, a little under the luma target
    assert "tiled layout" in page.status
    page = app.compress_page(path, None, 0.85, "rgb", "global", True, 64, 16, 16)
    assert not page.error and page.report.encoded.mode == "rgb"


def test_page_renders_files_galleries_and_figures(app):
    page = app.compress_page(None, "chelsea", 0.8, "ycbcr", "global", True, 64, 16, 16)
    assert not page.error
    original, decoded = page.slider
    assert np.array_equal(np.asarray(Image.open(decoded)), svdk.decompress(Path(page.svdk_path).read_bytes()))
    assert np.array_equal(np.asarray(Image.open(original)), svdk.load_image("example:chelsea").color)
    labels = [caption for _, caption in page.gallery]
    assert labels[0].startswith("svdk: ") and any("same size" in c for c in labels)
    assert all(" bytes, " in c and " dB, SSIM " in c for c in labels)
    assert len(page.progressive) == 4 and Path(page.progressive[0][0]).is_file()
    assert [row[0] for row in page.summary][:5] == ["bytes", "bits per pixel", "PSNR (dB)", "SSIM (RGB)", "vs PNG"]
    assert {t.name for t in page.rd_figure.data} >= {"svdk", "JPEG", "this file"}
    assert page.spectrum_figure.layout.yaxis.type == "log"


def test_bad_input_gives_a_message_not_an_exception(app, tmp_path):
    text = tmp_path / "x.png"
    text.write_bytes(b"GIF89a but not really")
    page = app.compress_page(str(text), None, 0.9, "ycbcr", "global", True, 64, 16, 16)
    assert page.error and "not an image" in page.status
    page = app.compress_page(None, None, 0.9, "ycbcr", "global", True, 64, 16, 16)
    assert page.error and "Upload a photo" in page.status
    page = app.compress_page(None, "coffee", 2.0, "ycbcr", "global", True, 64, 16, 16)
    assert page.error and "target SSIM" in page.status


def test_unexpected_failures_are_logged_and_reported(app, monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("demo.app.run", boom)
    page = app.compress_page(None, "coffee", 0.9, "ycbcr", "global", True, 64, 16, 16)
    assert page.error and "Something went wrong on the server" in page.status
    assert "disk on fire" not in page.status and "disk on fire" in caplog.text


# ----------------------------------------------------------------------------
# sharing


def test_share_an_upload_and_open_it_after_a_restart(app, tmp_path):
    path = save(tmp_path, "up.png", photo())
    page = app.compress_page(path, None, 0.85, "rgb", "global", True, 64, 16, 16)
    query, message = app.share(page.last)
    assert query.startswith("?share=") and "Link ready" in message
    share_id = query.split("=", 1)[1]
    assert len(share_id) == 22
    assert sorted(p.name for p in (tmp_path / "shares").iterdir()) == [f"{share_id}.json", f"{share_id}.png"]
    # a new server process: new App, new store object, same folder
    again = App(model=NO_MODEL, store=ShareStore(tmp_path / "shares"), workdir=Workdir(tmp_path / "work2"))
    opened = again.open_link({"share": share_id})
    assert not opened.error, opened.status
    assert opened.table == page.table and opened.summary[:4] == page.summary[:4]
    assert opened.inputs["mode"] == "rgb" and opened.inputs["target"] == 0.85


def test_nothing_is_stored_unless_shared(app, tmp_path):
    app.compress_page(save(tmp_path, "up.png", photo()), None, 0.85, "ycbcr", "global", True, 64, 16, 16)
    assert not (tmp_path / "shares").exists()


def test_share_an_example_needs_no_store(app, tmp_path):
    page = app.compress_page(None, "chelsea", 0.8, "ycbcr", "global", True, 64, 16, 16)
    query, _ = app.share(page.last)
    assert query == "?example=chelsea&quality=0.8&mode=ycbcr"
    assert not (tmp_path / "shares").exists()
    opened = app.open_link(dict(p.split("=") for p in query[1:].split("&")))
    assert opened.table == page.table


def test_share_without_a_comparison(app):
    assert app.share(None) == ("", "Compress an image first; then Share makes a link to that comparison.")


@pytest.mark.parametrize("bad", ["../../etc/passwd", "a/b", "A" * 21, "A" * 23, "A" * 21 + ".", "A" * 21 + "/", ""])
def test_malformed_share_ids_are_refused_before_the_store_is_touched(tmp_path, bad):
    touched = []

    class Watched(ShareStore):
        def _paths(self, share_id):
            touched.append(share_id)
            return super()._paths(share_id)

    store = Watched(tmp_path / "shares")
    with pytest.raises(ShareError, match="malformed"):
        store.get(bad)
    assert touched == []
    app = App(model=NO_MODEL, store=store, workdir=Workdir(tmp_path / "w"))
    page = app.open_link({"share": bad}) if bad else None
    if page is not None:
        assert page.error and "malformed" in page.status
    assert touched == []


def test_unknown_share_id_says_so(app):
    page = app.open_link({"share": "A" * 22})
    assert page.error and "does not exist" in page.status


def test_store_evicts_the_oldest_links(tmp_path):
    image = photo(32, 32)
    store = ShareStore(tmp_path, max_items=3)
    ids = []
    for i in range(5):
        ids.append(store.put(image, Settings(target=0.8 + i / 100)))
        time.sleep(0.01)
    assert [sid for _, sid, _ in store.entries()] == ids[2:]
    for old in ids[:2]:
        with pytest.raises(ShareError, match="does not exist"):
            store.get(old)
    assert store.get(ids[-1])[1].target == pytest.approx(0.84)
    size = store.entries()[0][2]
    small = ShareStore(tmp_path / "b", max_bytes=int(2.5 * size))
    kept = [small.put(image, Settings()) for _ in range(4)]
    assert [sid for _, sid, _ in small.entries()] == kept[2:]
    assert not list(tmp_path.glob("**/.*.tmp"))  # atomic writes leave nothing behind


def test_store_round_trips_pixels_exactly(tmp_path):
    rgba = np.dstack([photo(40, 50), np.full((40, 50), 7, np.uint8)])
    store = ShareStore(tmp_path)
    image, settings, meta = store.get(store.put(rgba, Settings(mode="rgb"), ["a note"]))
    assert np.array_equal(image, rgba) and settings.mode == "rgb" and meta["notes"] == ["a note"]


def test_url_parameters():
    assert settings_from_query({}) == (None, None)
    what, s = settings_from_query({"example": "coffee", "quality": "0.8", "mode": "rgb", "tiled": "1"})
    assert what == "example:coffee" and s == Settings(0.8, "rgb", "tiled")
    assert settings_from_query({"example": "astronaut", "ranks": "40,10,10"})[1].ranks == (40, 10, 10)
    with pytest.raises(AppError, match="unknown example 'moon'"):
        settings_from_query({"example": "moon"})
    with pytest.raises(AppError, match="quality in the link must be a number"):
        settings_from_query({"example": "coffee", "quality": "high"})
    with pytest.raises(ShareError, match="malformed"):
        settings_from_query({"share": "../x"})
    assert query_for("rocket", Settings(0.95, "ycbcr", "tiled")) == "?example=rocket&quality=0.95&mode=ycbcr&layout=tiled"
    tuned = Settings(0.95, "ycbcr", "tiled", tune="ssim")
    assert query_for("rocket", tuned).endswith("&layout=tiled&tune=ssim")
    assert settings_from_query({"example": "rocket", "quality": "0.95", "layout": "tiled", "tune": "ssim"})[1] == tuned
    assert Settings.from_dict(tuned.to_dict()) == tuned and Settings.from_dict({"layout": "tiled"}).tune == "psnr"
    with pytest.raises(AppError, match="tuning for SSIM applies to the tiled layout"):
        settings_from_query({"example": "rocket", "tune": "ssim"})


# ----------------------------------------------------------------------------
# the launched app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """The app with the shipped model on 127.0.0.1 at a free port: ``(url, app)``."""
    from demo.app import build_demo

    root = tmp_path_factory.mktemp("served")
    app = App(store=ShareStore(root / "shares"), workdir=Workdir(root / "work"))  # loads the model
    demo = build_demo(app)
    demo.launch(server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True, css=CSS)
    yield demo.local_url, app
    demo.close()


@pytest.fixture(scope="session")
def client(served):
    from gradio_client import Client

    return Client(served[0], verbose=False)


def test_app_says_which_model_it_uses(served):
    import urllib.request

    url, app = served
    assert app.model.predictor is not None
    html = urllib.request.urlopen(url, timeout=30).read().decode()
    assert app.model.description in html


def test_compress_endpoint(client, tmp_path):
    from gradio_client import handle_file

    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert "/compress" in api
    params = api["/compress"]["parameters"]
    assert [p["parameter_has_default"] for p in params][1:] == [True] * 8
    path = save(tmp_path, "in.png", photo())
    decoded, metrics, svdk_file = client.predict(handle_file(path), api_name="/compress")
    data = Path(svdk_file).read_bytes()
    assert np.array_equal(np.asarray(Image.open(decoded)), svdk.decompress(data))
    assert metrics["svdk"]["bytes"] == len(data) and metrics["svdk"]["policy"] == "cnn"
    assert metrics["svdk"]["predicted_rank"] >= 1 and metrics["svdk"]["final_rank"] == svdk.info(data)["ranks"][0]
    assert {r["codec"] for r in metrics["comparison"]} >= {"svdk", "png", "jpeg"}
    decoded, metrics, _ = client.predict(handle_file(path), 0.9, "ycbcr", "global", False, 20, 5, 5,
                                         api_name="/compress")
    assert metrics["svdk"]["ranks"] == [20, 5, 5] and metrics["svdk"]["predicted_rank"] is None
    # the tiled layout tuned for SSIM: the target still met, in fewer bytes than the default tune
    sizes = {}
    for tune in ("psnr", "ssim"):
        _, metrics, svdk_file = client.predict(handle_file(path), 0.9, "ycbcr", "tiled", True, 64, 16, 16, tune,
                                               api_name="/compress")
        sizes[tune] = Path(svdk_file).stat().st_size
        assert metrics["svdk"]["bytes"] == sizes[tune]
    assert sizes["ssim"] < sizes["psnr"]
    with pytest.raises(Exception, match="tuning for SSIM applies to the tiled layout"):
        client.predict(handle_file(path), 0.9, "ycbcr", "global", True, 64, 16, 16, "ssim", api_name="/compress")


def test_compress_endpoint_reports_bad_input_and_keeps_serving(client, tmp_path):
    from gradio_client import handle_file

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(Exception, match="corrupt or truncated|not an image"):
        client.predict(handle_file(str(bad)), api_name="/compress")
    with pytest.raises(Exception, match=r"rank of plane Y must be in \[1, 96\]"):
        client.predict(handle_file(save(tmp_path, "ok.png", photo())), 0.9, "ycbcr", "global", False, 500, 5, 5,
                       api_name="/compress")
    _, metrics, _ = client.predict(handle_file(save(tmp_path, "ok2.png", photo())), api_name="/compress")
    assert metrics["svdk"]["bytes"] > 0

def test_compress_many_endpoint(client, tmp_path):
    from gradio_client import handle_file

    good = save(tmp_path, "good.png", photo())
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    doc = client.predict([handle_file(good), handle_file(str(bad))], 0.85, api_name="/compress_many")
    assert doc["compared"] == 1 and doc["failed"] == 1
    assert doc["images"][0]["ok"] and doc["images"][0]["svdk"]["bytes"] > 0
    assert "not an image" in doc["images"][1]["error"] and "/tmp" not in doc["images"][1]["error"]
    with pytest.raises(Exception, match="up to 8 images"):
        client.predict([handle_file(good)] * 9, api_name="/compress_many")
    _, metrics, _ = client.predict(handle_file(good), api_name="/compress")  # still serving
    assert metrics["svdk"]["bytes"] > 0


def test_the_cnn_runs_once_per_request(monkeypatch):
    """The prediction the page shows is the one the policy used: one forward pass."""
    pytest.importorskip("ai_edge_litert")
    from demo.model import load_model

    model = load_model()
    assert model.predictor is not None, model.description
    calls = []
    cls = type(model.predictor)
    curve = cls.curve
    monkeypatch.setattr(cls, "curve", lambda self, image: calls.append(1) or curve(self, image))
    report = run(prepare(photo()), Settings(target=0.9), model)
    assert len(calls) == 1
    assert report.policy == "cnn" and report.predicted == report.encoded.predicted_rank is not None
    assert report.to_dict()["svdk"]["predicted_rank"] == report.predicted


def test_tiled_automatic_rank_shows_the_predicted_count_beside_the_final_one(tmp_path):
    pytest.importorskip("ai_edge_litert")
    tiled = svdk.predictor.default_tiled_predictor()
    app = App(model=Model(None, "tiled only (tests)", tiled), store=ShareStore(tmp_path / "shares"),
              workdir=Workdir(tmp_path / "work"))
    page = app.compress_page(save(tmp_path, "p.png", photo()), None, 0.9, "ycbcr", "tiled", True, 64, 16, 16)
    enc = page.report.encoded
    assert not page.error and (enc.policy, enc.layout) == ("cnn", "tiled")
    rows = dict(page.summary)
    assert rows["predicted rank"].startswith(f"{enc.predicted_rank} luma components (from the tile spectrum")
    assert enc.correction in rows["predicted rank"]
    assert rows["final rank"].startswith(f"Y={enc.components[0]}, ")
    assert "predicted from the tile spectrum, then checked" in page.status
    assert page.report.to_dict()["svdk"]["predicted_rank"] == enc.predicted_rank
    # the global layout without its model still runs the exact search
    page = app.compress_page(save(tmp_path, "p.png", photo()), None, 0.9, "ycbcr", "global", True, 64, 16, 16)
    assert page.report.policy == "quality"


def test_a_long_thin_image_that_downscaling_would_make_too_small_is_refused():
    wide = np.full((10, 120_000, 3), 128, np.uint8)  # 1.2 MP: brought to 1 MP it would be 9 pixels high
    with pytest.raises(AppError, match="under 8 pixels on a side"):
        prepare(wide, limit=100_000)


def test_a_model_that_cannot_load_is_described_without_server_details(monkeypatch, caplog):
    from demo import model as demo_model

    def broken():
        raise svdk.predictor.ModelError("/srv/secret/path/model.keras: no such model file; reinstall svdk")

    monkeypatch.setattr(svdk.predictor, "default_predictor", broken)
    m = demo_model.load_model()
    assert m.predictor is None and "/srv" not in m.description and "server log" in m.description
    assert "/srv/secret/path/model.keras" in caplog.text


# ----------------------------------------------------------------------------
# the rank explorer


@pytest.mark.parametrize("layout", ["global", "tiled"])
def test_explorer_values_along_the_slider(app, tmp_path, layout):
    path = save(tmp_path, "p.png", photo())
    page = app.compress_page(path, None, 0.85, "ycbcr", layout, True, 64, 16, 16)
    assert not page.error, page.status
    e = page.explorer
    enc = page.report.encoded
    assert e["maximum"] == enc.components[0] and e["image"] == page.png_path
    assert f"{enc.nbytes:,} bytes" in e["caption"]  # the file's own position: this file
    ex = app.explorers.get(e["token"])
    ks = sorted({1, max(1, e["maximum"] // 4), max(1, e["maximum"] // 2), e["maximum"]})
    views = [ex.view(k) for k in ks]
    reference = photo()
    for v in views:
        image = np.asarray(Image.open(v.image_path))
        if layout == "global":  # progressive: the first k components of the same file
            assert np.array_equal(image, svdk.decompress(enc.data, max_rank=v.k))
            assert v.numbers == v.k * (96 + 128 + 1)
        else:  # the file svdk writes at this count of components
            data = page.report.encoder.pack(page.report.encoder.ranks_for(v.k))
            assert np.array_equal(image, svdk.decompress(data)) and v.file_bytes == len(data)
            assert v.numbers == v.k * 17
        p, s = Scorer(reference)(image)
        assert (v.psnr, v.ssim) == pytest.approx((p, s))
        assert f"SSIM **{v.ssim:.4f}**" in v.caption and f"{v.file_bytes:,} bytes" in v.caption
    assert [v.energy for v in views] == sorted(v.energy for v in views) and 0 < views[0].energy <= 1
    assert views[-1].file_bytes == enc.nbytes
    assert [v.psnr for v in views] == sorted(v.psnr for v in views)
    if layout == "global" and len(views) > 2:  # a file with fewer components is smaller
        assert views[0].file_bytes < views[-2].file_bytes < enc.nbytes
    s = page.report.encoder.spectrum(plane=0)
    assert views[1].energy == pytest.approx(np.sum(s[: views[1].k] ** 2) / np.sum(s**2))
    image_path, caption, error = app.explore(e["token"], ks[1])
    assert not error and image_path == views[1].image_path and caption == views[1].caption
    fig = app.explore_chart(e["token"], ks[1])
    assert any(t.name.startswith("explorer") for t in fig.data) and any("energy kept" in t.name for t in fig.data)


def test_explorer_refuses_what_it_cannot_show(app, tmp_path):
    page = app.compress_page(save(tmp_path, "p.png", photo()), None, 0.85, "ycbcr", "global", True, 64, 16, 16)
    token, top = page.explorer["token"], page.explorer["maximum"]
    for bad in (0, top + 1, 2.5, "x", None, -3):
        image, caption, error = app.explore(token, bad)
        assert error and image is None and f"k must be a whole number in [1, {top}]" in caption
    assert not app.explore(token, top // 2)[2]  # still serving after the refusals
    image, caption, error = app.explore(None, 3)
    assert error and "Compress an image first" in caption
    image, caption, error = app.explore("not-a-token", 3)
    assert error and "expired" in caption
    # the request's files are deleted after KEEP_SECONDS: the explorer says it has expired
    app.workdir.prune(age=-1)
    image, caption, error = app.explore(token, 3)
    assert error and "expired" in caption and "/" not in caption
    assert app.explore_chart(token, 3) is None


def test_explorer_store_keeps_the_latest(app, tmp_path):
    app.explorers.limit = 2
    tokens = [app.compress_page(None, "camera", 0.8, "ycbcr", "global", False, k, 4, 4).explorer["token"]
              for k in (5, 6, 7)]
    assert app.explore(tokens[0], 2)[2] and not app.explore(tokens[2], 2)[2]


# ----------------------------------------------------------------------------
# several images at once


def test_batch_compares_the_good_files_and_names_the_broken_one(app, tmp_path):
    good = [save(tmp_path, "a.png", photo()), save(tmp_path, "b.png", photo(80, 112)[:, ::-1].copy())]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not an image at all")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    items, message = app.compare_many([good[0], str(broken), good[1], str(empty)], 0.85)
    assert [it.name for it in items] == ["a.png", "broken.png", "b.png", "empty.png"]
    assert [it.report is not None for it in items] == [True, False, True, False]
    assert "2 of 4 images compared" in message and "broken.png" in message and "not an image" in message
    assert "empty" in items[3].error and str(tmp_path) not in message
    message, rows, fig = app.compress_many_page([good[0], str(broken), good[1]], 0.85, "ycbcr", "global")
    by_image = {}
    for row in rows:
        by_image.setdefault(row[0], []).append(row)
    assert by_image["broken.png"][0][-1].startswith("the file is not an image")
    assert {r[1] for r in by_image["a.png"]} >= {"svdk", "PNG", "JPEG"}
    svdk_rows = [r for r in rows if r[1] == "svdk" and r[2] == "this file"]
    mean = [r for r in svdk_rows if r[0] == "mean of 2"][0]
    assert mean[4] == round((svdk_rows[0][4] + svdk_rows[1][4]) / 2)
    assert {t.name for t in fig.data} >= {"svdk", "JPEG", "these files (mean)"}
    doc = app.compress_many_api([good[0], str(broken), good[1]], 0.85)
    doc = json.loads(json.dumps(doc, allow_nan=False))
    assert doc["compared"] == 2 and doc["failed"] == 1
    assert doc["images"][1] == {"name": "broken.png", "ok": False, "error": items[1].error}
    assert doc["images"][0]["svdk"]["bytes"] == rows[0][4]
    curve = doc["rate_distortion_mean"]["jpeg"]
    assert len(curve["bpp"]) == len(curve["psnr"]) and curve["bpp"] == sorted(curve["bpp"])


def test_batch_averages_curves_at_equal_rates(app, tmp_path):
    from demo import batch

    reports = [run(prepare(photo()), Settings(target=0.85), NO_MODEL) for _ in range(2)]
    same = batch.average_curves(reports)
    one = batch.average_curves(reports[:1])
    assert same["jpeg"] == one["jpeg"]  # the mean of two equal curves is that curve
    c = one["jpeg"]
    pts = reports[0].curves["jpeg"]
    assert c["bpp"][0] == pytest.approx(min(p.bpp for p in pts), rel=1e-4)
    assert c["bpp"][-1] == pytest.approx(max(p.bpp for p in pts), rel=1e-4)


def test_batch_refuses_more_than_eight_files(app, tmp_path):
    paths = [save(tmp_path, f"p{i}.png", photo(32, 32)) for i in range(9)]
    items, message = app.compare_many(paths)
    assert items == [] and "9 files: the batch takes up to 8 images" in message
    with pytest.raises(AppError, match="up to 8 images"):
        app.compress_many_api(paths)
    assert app.compare_many([])[1].startswith("Drop up to 8 photos")
