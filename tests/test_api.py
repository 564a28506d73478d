"""The public API as a program built on svdk sees it: the encoder, options, errors, the house rules."""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import svdk
from svdk import policies

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::svdk.SvdkWarning")


# ----------------------------------------------------------------------------
# the encoder


@pytest.mark.parametrize("options", [{}, {"mode": "rgb"}, {"tiled": True}, {"tiled": True, "tile_size": 16}])
def test_encoder_packs_the_files_encode_writes(kodak_crop, options):
    encoder = svdk.Encoder(kodak_crop, **options)
    for k in (3, 17, 40):
        ranks = encoder.ranks_for(k)
        data = encoder.pack(ranks)
        if options.get("tiled"):
            # the largest count that fits (another count can give a file of the same size)
            fitted = svdk.encode(kodak_crop, size=len(data), **options)
            assert fitted.components[0] >= k and fitted.nbytes <= len(data)
            assert encoder.pack(fitted.components) == fitted.data
        else:
            assert data == svdk.compress(kodak_crop, ranks=ranks, **options)
    # a search on the same encoder writes what a fresh encode writes
    again = encoder.encode(quality="ssim:0.9")
    fresh = svdk.encode(kodak_crop, quality="ssim:0.9", **options)
    assert again.data == fresh.data and again.components == fresh.components


def test_encoder_score_is_what_the_quality_policy_measured(kodak_crop):
    encoder = svdk.Encoder(kodak_crop)
    result = encoder.encode(quality="ssim:0.88")
    k = result.ranks[0]
    assert result.measured == {"metric": "ssim", "plane": "Y", "value": encoder.score(k)}
    assert encoder.score(k) >= 0.88 > encoder.score(k - 1)
    assert result.predicted_rank is None and result.correction is None and result.model is None
    before = encoder.evaluations
    encoder.score(5, "psnr")
    assert encoder.evaluations == before + 1


def test_encoder_spectrum(kodak_crop):
    s = svdk.Encoder(kodak_crop).spectrum()
    assert len(s) == min(kodak_crop.shape[:2]) and np.all(np.diff(s) <= 1e-9 * s[0])
    y = svdk.predictor.luma(kodak_crop).astype(np.float64)
    np.testing.assert_allclose(s[:20], np.linalg.svd(y, compute_uv=False)[:20], rtol=1e-9)
    tiled = svdk.Encoder(kodak_crop, tiled=True).spectrum()
    assert tiled.min() > 1e-9 * tiled[0]  # no numerical noise at the end
    assert np.all(np.diff(tiled) <= 0)
    # tuned for SSIM: the first k values are those of the file at k (the explorer's energy kept)
    encoder = svdk.Encoder(kodak_crop, tiled=True, tune="ssim")
    tuned = encoder.spectrum()
    assert np.sort(tuned)[::-1] == pytest.approx(tiled) and np.any(np.diff(tuned) > 0)
    k = len(tuned) // 10
    ranks = encoder.planes[0].ranks(k)
    s = encoder.planes[0].s.astype(np.float64)
    kept = sum(float(np.sum(s[t, :r] ** 2)) for t, r in enumerate(ranks))
    assert kept == pytest.approx(float(np.sum(tuned[:k].astype(np.float64) ** 2)), rel=1e-12)


def test_ranks_mean_the_same_in_encoded_and_info(kodak_crop):
    for options in ({"rank": 12}, {"quality": "ssim:0.9", "tiled": True}):
        enc = svdk.encode(kodak_crop, **options)
        meta = svdk.info(enc.data)
        assert tuple(meta["ranks"]) == enc.ranks and tuple(meta["components"]) == enc.components
    assert enc.layout == "tiled" and max(enc.ranks) <= enc.tile < enc.components[0]


def test_compress_shows_the_signature_of_encode():
    enc, comp = inspect.signature(svdk.encode), inspect.signature(svdk.compress)
    assert list(comp.parameters.values()) == list(enc.parameters.values())
    assert all(p.kind is p.KEYWORD_ONLY for name, p in comp.parameters.items() if name != "image")


# ----------------------------------------------------------------------------
# options that explain themselves


@pytest.mark.parametrize(
    "options, says",
    [
        ({"quality": "ssim:0.9", "policy": "size"}, "policies for a quality target: cnn, cnn-only, quality"),
        ({"size": 3000, "policy": "quality"}, "policies for a size target: size"),
        ({"rank": 64, "policy": "energy"}, "policies for a ranks target: fixed"),
        ({"quality": "psnr:30", "policy": "cnn", "tiled": True}, "policies for a psnr target: quality"),
        ({"rank": 5, "tiled": True}, "the tiled layout takes an energy or quality or size target"),
        ({"quality": "psnr:30", "policy": "cnn"}, "policies for a psnr target: quality"),
        ({"policy": "size"}, "needs a size target"),
        ({"policy": "nope"}, "known: cnn, cnn-only, energy, fixed, quality, size"),
    ],
)
def test_options_that_do_not_fit_name_what_fits(options, says):
    with pytest.raises(svdk.OptionError) as err:
        svdk.encode("example:camera", **options)
    assert says in str(err.value)


def test_a_registered_policy_declares_what_it_takes(kodak_crop):
    @policies.register("tiny-size", target="size", layouts=("global",))
    def tiny(encoder, budget):
        return policies.RankChoice(encoder.ranks_for(1), "rank 1 whatever the budget")

    try:
        assert svdk.encode(kodak_crop, size=100, policy="tiny-size").ranks[0] == 1
        assert policies.info("tiny-size").target == "size"
        with pytest.raises(svdk.OptionError, match="policy .tiny-size. takes a size target"):
            svdk.encode(kodak_crop, quality="ssim:0.9", policy="tiny-size")
    finally:
        policies._REGISTRY.pop("tiny-size")


def test_a_missing_file_is_also_a_file_not_found_error(tmp_path):
    missing = tmp_path / "nowhere.png"
    for call in (lambda: svdk.encode(missing), lambda: svdk.info(tmp_path / "x.svdk"),
                 lambda: svdk.decompress_file(tmp_path / "x.svdk", tmp_path / "x.png")):
        with pytest.raises(FileNotFoundError) as err:
            call()
        assert isinstance(err.value, svdk.SvdkError) and "no such file" in str(err.value)
    with pytest.raises(svdk.ImageError):  # still what it was before
        svdk.encode(missing)
    with pytest.raises(svdk.FormatError):
        svdk.info(tmp_path / "x.svdk")


# ----------------------------------------------------------------------------
# the rank predictor's fields, and naming the shipped model


def test_cnn_reports_its_prediction_in_fields():
    pytest.importorskip("ai_edge_litert", reason="the cnn policy runs with pip install 'svdk[model]'")
    enc = svdk.encode("example:astronaut", quality="ssim:0.9", policy="cnn")
    assert enc.predicted_rank is not None and enc.predicted_rank >= 1
    assert enc.correction in ("met", "lowered", "raised", "exact search")
    assert "shipped with svdk" in enc.model
    assert enc.measured["value"] >= 0.9
    only = svdk.encode("example:astronaut", quality="ssim:0.9", policy="cnn-only")
    assert only.correction == "unchecked" and only.ranks[0] == only.predicted_rank == enc.predicted_rank


def test_the_shipped_model_is_named_from_any_folder(tmp_path, monkeypatch):
    pytest.importorskip("ai_edge_litert", reason="the cnn policy runs with pip install 'svdk[model]'")
    from svdk.predictor import ModelError, RankPredictor

    monkeypatch.chdir(tmp_path)
    assert RankPredictor.shipped().source["source"] == "shipped"
    assert RankPredictor.from_pretrained("shipped").source["source"] == "shipped"
    with pytest.raises(ModelError, match=r"RankPredictor.shipped\(\)"):
        RankPredictor.from_pretrained("svdk/models", local_files_only=True)
    # a local folder that exists wins over a Hub repo id of the same spelling
    local = tmp_path / "svdk" / "models"
    local.mkdir(parents=True)
    for name in (svdk.predictor.DEFAULT_MODEL.name, svdk.predictor.DEFAULT_MODEL.with_suffix(".json").name):
        (local / name).write_bytes((svdk.predictor.DEFAULT_MODEL.parent / name).read_bytes())
    assert RankPredictor.from_pretrained("svdk/models").source["source"] == "file"


# ----------------------------------------------------------------------------
# the house: public names only outside svdk, no import cycles inside it


def _imports(path: Path):
    """Every ``(module, name)`` a file imports (name None for ``import module``), nested ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = path.parent.relative_to(ROOT).parts
                base = ".".join(package[: len(package) - node.level + 1] + ((base,) if base else ()))
            for alias in node.names:
                yield base, alias.name


def test_the_app_training_and_hub_use_only_public_svdk_names():
    offenders = []
    files = [ROOT / "app.py", *(p for d in ("demo", "training", "hub") for p in (ROOT / d).rglob("*.py"))]
    for path in files:
        for module, name in _imports(path):
            if not module.startswith("svdk"):
                continue
            parts = module.split(".") + ([name] if name else [])
            if any(part.startswith("_") for part in parts):
                offenders.append(f"{path.relative_to(ROOT)}: {module} {name or ''}")
        text = path.read_text()
        offenders += [f"{path.relative_to(ROOT)}: {m}" for m in re.findall(r"\b(?:svdk|predictor|baselines|metrics)\._[A-Za-z]\w*", text)]
    assert not offenders, offenders


def test_no_import_cycle_inside_svdk():
    graph = {}
    for path in (ROOT / "svdk").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        deps = set()
        for module, item in _imports(path):
            if not module.startswith("svdk"):
                continue
            full = f"{module}.{item}" if item else module
            target = full if (ROOT / Path(*full.split("."))).with_suffix(".py").exists() or (
                ROOT / Path(*full.split(".")) / "__init__.py").exists() else module
            if target != "svdk" and target != name:  # the package itself re-exports, it is the root
                deps.add(target)
        graph[name] = deps
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", " -> ".join([*trail, node])
        state[node] = "open"
        for dep in graph.get(node, ()):
            if not (node.startswith(dep + ".") or dep == "svdk.predictor" and node.startswith("svdk.predictor.")):
                visit(dep, [*trail, node])
        state[node] = "done"

    for node in graph:
        visit(node, [])
    assert "svdk._tiled" in graph["svdk._encoder"] and "svdk._codec" in graph["svdk._tiled"]


def test_import_svdk_stays_light():
    code = "import sys, svdk; print(sorted(m for m in ('keras', 'tensorflow', 'huggingface_hub', 'gradio', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "[]"


def test_encoder_refuses_what_does_not_fit(kodak_crop):
    encoder = svdk.Encoder(kodak_crop)
    for call, says in [
        (lambda: encoder.pack((8, 2)), "3 plane(s)"),
        (lambda: encoder.pack((0, 1, 1)), "rank of plane Y must be in [1, "),
        (lambda: encoder.score(10, "mse"), "unknown quality metric"),
        (lambda: encoder.score(10, plane=3), "plane must be an index in [0, 2]"),
        (lambda: encoder.spectrum(plane=-1), "plane must be an index"),
        (lambda: encoder.reconstruct(10_000), "must be in [1, "),
    ]:
        with pytest.raises(svdk.OptionError, match=re.escape(says)):
            call()
    tiled = svdk.Encoder(kodak_crop, tiled=True)
    with pytest.raises(svdk.OptionError, match="component count of plane Y"):
        tiled.pack((0, 1, 1))


def test_ranks_for_refuses_a_rank_the_image_does_not_have(kodak_crop):
    encoder = svdk.Encoder(kodak_crop)
    top = encoder.max_ranks[0]
    assert encoder.ranks_for(top)[0] == top
    for k in (0, top + 1, 2.5, True):
        with pytest.raises(svdk.OptionError, match=rf"rank must be in \[1, {top}\]"):
            encoder.ranks_for(k)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"mode": "rgb"},
        {"subsampling": "4:4:4", "tiled": True},
        {"tiled": True},
        {"tiled": True, "tune": "ssim"},
        {"tiled": True, "tile_size": 4, "mode": "rgb"},
        {"tiled": True, "tile_size": 16, "mode": "rgb", "tune": "ssim"},
    ],
)
def test_encoder_decoded_is_what_the_file_decodes_to(kodak_crop, options):
    """Encoder.decoded(ranks) equals svdk.decompress(Encoder.pack(ranks)) pixel for pixel: colour,
    odd sizes, gray and alpha, at low, middle and high ranks, asked before or after the file is packed."""
    rng = np.random.default_rng(5)
    odd = kodak_crop[:77, :90]
    alpha = np.concatenate([odd, rng.integers(0, 256, (*odd.shape[:2], 1), dtype=np.uint8)], axis=-1)
    gray = odd.mean(axis=2).astype(np.uint8)
    gray_alpha = np.stack([gray, alpha[..., 3]], axis=-1)
    for image in (odd, alpha, gray, gray_alpha):
        encoder = svdk.Encoder(image, **options)
        top = encoder.max_ranks[0]
        counts = sorted({1, max(1, top // 7), max(1, top // 2), top})
        # ranks_for's pairs, and per-plane ranks it would not give
        cases = [encoder.ranks_for(k) for k in counts]
        if len(encoder.planes) == 3:
            cases += [(top, 1, 1), (1, *encoder.max_ranks[1:])]
        for i, ranks in enumerate(cases):
            if i % 2:  # decoded first, then packed
                decoded = encoder.decoded(ranks)
                data = encoder.pack(ranks)
            else:
                data = encoder.pack(ranks)
                decoded = encoder.decoded(ranks)
            np.testing.assert_array_equal(decoded, svdk.decompress(data))
    with pytest.raises(svdk.OptionError, match="plane"):
        encoder.decoded((1, 1))
