"""The rank predictor in the codec: the shipped model, bad model files, the cnn policies."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from skimage.metrics import structural_similarity

import svdk
from svdk._codec import reconstruct, to_uint8
from svdk.predictor import DEFAULT_MODEL, ModelError, PatchLayout, RankPredictor, luma, patches

keras = pytest.importorskip("keras", reason="these tests load Keras models: pip install 'svdk[keras]'")

IMAGES = ("astronaut", "coffee", "camera")


@pytest.fixture(scope="module")
def predictor():
    return RankPredictor.load()


def test_import_svdk_does_not_load_keras():
    code = (
        "import sys, svdk; assert 'cnn' in svdk.policies.names(); "
        "heavy = [m for m in ('keras', 'tensorflow', 'datasets') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_model_is_small_and_records_its_patch_layout(predictor):
    assert DEFAULT_MODEL.is_file() and DEFAULT_MODEL.stat().st_size <= 2_000_000
    config = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert config["format"] == "svdk-rank-predictor" and config["version"] == 2
    layout = config["patches"]
    assert layout["size"] == 64 and layout["sampling"] == "grid" and layout["resolution"] in ("work", "native")
    assert config["input_shape"] == [layout["count"], 64, 64, 1]
    assert predictor.layout == PatchLayout(**layout)


def test_native_patches_at_a_reference_area_see_a_large_photo_at_the_training_scale():
    """A photo twice BSDS500's size each way gives the patches of its half-size version; BSDS500's own stay."""
    from PIL import Image

    layout = PatchLayout(resolution="native", area=481 * 321)
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, (321, 481, 3), dtype=np.uint8)
    np.testing.assert_array_equal(patches(small, layout), patches(small, PatchLayout(resolution="native")))
    big = np.asarray(Image.fromarray(small).resize((962, 642), Image.BICUBIC))
    half = np.asarray(Image.fromarray(big).resize((481, 321), Image.BICUBIC))
    np.testing.assert_array_equal(patches(big, layout), patches(half, PatchLayout(resolution="native")))


def test_work_patches_tile_the_256x256_luma():
    """16 patches of the 256x256 version are the whole of its luma, nothing resampled."""
    from svdk.predictor import resize_work

    work = resize_work("example:chelsea")
    x = patches(work, PatchLayout())
    rows = [np.concatenate(list(x[r * 4 : r * 4 + 4, ..., 0]), axis=1) for r in range(4)]
    np.testing.assert_allclose(np.concatenate(rows, axis=0), np.clip(luma(work) / 255, 0, 1), atol=1e-6)


@pytest.mark.parametrize("name", IMAGES)
def test_predictions_are_in_range_and_grow_with_the_target(predictor, name):
    image = svdk.load_image(f"example:{name}").color
    top = min(image.shape[:2])
    ks = [predictor.predict(image, t) for t in np.linspace(0.6, 0.995, 30)]
    assert all(1 <= k <= top for k in ks)
    assert ks == sorted(ks) and ks[-1] > ks[0]


def test_prediction_is_close_to_the_exact_rank(predictor):
    """Not a bound on accuracy (the report measures it): a guard against a broken model."""
    image = svdk.load_image("example:astronaut").color
    exact = svdk.encode(image, quality="ssim:0.9").ranks[0]
    assert exact / 3 <= predictor.predict(image, 0.9) <= exact * 3


def _copy_model(tmp_path, name="m"):
    dst = tmp_path / f"{name}.keras"
    shutil.copy(DEFAULT_MODEL, dst)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def test_missing_model_file(tmp_path):
    path = tmp_path / "nothing.keras"
    with pytest.raises(ModelError, match="nothing.keras: no such model file"):
        RankPredictor.load(path)


def test_missing_config(tmp_path):
    path = _copy_model(tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match=r"m\.json: missing"):
        RankPredictor.load(path)


def test_corrupt_model_file(tmp_path):
    path = _copy_model(tmp_path)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ModelError, match=r"m\.keras: not a loadable Keras 3 model file"):
        RankPredictor.load(path)
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(ModelError, match=r"m\.keras: not a loadable Keras 3 model file"):
        RankPredictor.load(path)


def test_corrupt_config(tmp_path):
    path = _copy_model(tmp_path)
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match=r"m\.json: not a readable JSON configuration"):
        RankPredictor.load(path)


def test_other_version(tmp_path):
    path = _copy_model(tmp_path)
    cfg = json.loads(path.with_suffix(".json").read_text())
    cfg["version"] = 99
    path.with_suffix(".json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=r"m\.json: model configuration version 99; this svdk reads versions 1 and 2"):
        RankPredictor.load(path)


def _whole_image_model(tmp_path, **config):
    """A model of the kind svdk shipped before the patch network (version 1: one 64x64 input)."""
    inp = keras.Input((64, 64, 1))
    out = keras.layers.Dense(5, bias_initializer="ones")(keras.layers.GlobalAveragePooling2D()(inp))
    path = tmp_path / "whole.keras"
    keras.Model(inp, out).save(path)
    base = {"format": "svdk-rank-predictor", "version": 1, "input_shape": [64, 64, 1],
            "targets": [0.8, 0.85, 0.9, 0.95, 0.98], "output": "log_k", "features": []}
    path.with_suffix(".json").write_text(json.dumps({**base, **config}))
    return path


def test_a_whole_image_model_of_the_old_kind_still_loads(tmp_path):
    old = RankPredictor.load(_whole_image_model(tmp_path))
    assert old.layout is None and old.runtime == "keras"
    assert 1 <= old.predict("example:camera", 0.9) <= 512
    _whole_image_model(tmp_path, patches=PatchLayout().to_json())
    with pytest.raises(ModelError, match="a version 1 configuration .a whole-image model. with a patch layout"):
        RankPredictor.load(tmp_path / "whole.keras")


def _with_config(path, **change):
    cfg = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**cfg, **change}))


def test_a_model_whose_patch_layout_does_not_match_is_refused(tmp_path):
    path = _copy_model(tmp_path)
    layout = json.loads(path.with_suffix(".json").read_text())["patches"]
    n = layout["count"]
    other = 9 if n != 9 else 4
    _with_config(path, patches={**layout, "count": other}, input_shape=[other, 64, 64, 1])
    with pytest.raises(ModelError, match=rf"m\.keras: the model takes inputs of shape \[{n}, 64, 64, 1\]; expected "
                       rf"\[{other}, 64, 64, 1\] \({other} patches of 64x64, as its configuration's patch layout says"):
        RankPredictor.load(path)
    _with_config(path, patches={**layout, "count": other}, input_shape=[n, 64, 64, 1])
    with pytest.raises(ModelError, match=rf"m\.json: input shape \[{n}, 64, 64, 1\]; expected \[{other}, 64, 64, 1\] "
                       "for its patch layout"):
        RankPredictor.load(path)
    for change, message in (
        ({"resolution": "retina"}, "patch resolution must be one of work, native; got 'retina'"),
        ({"size": 32}, "patch size must be 64; got 32"),
        ({"count": 10}, "patch count must be a square number from 1 to 64"),
        ({"stride": 3}, r"unknown patch layout fields \['stride'\]"),
        ({"resolution": "work", "area": 1000}, "patch area must be a pixel count of at least 4096, with resolution"),
    ):
        _with_config(path, patches={**layout, **change}, input_shape=[n, 64, 64, 1])
        with pytest.raises(ModelError, match=r"m\.json: its patch layout cannot be used \(" + message):
            RankPredictor.load(path)
    _with_config(path, patches=None)
    with pytest.raises(ModelError, match=r"m\.json: its patch layout cannot be used"):
        RankPredictor.load(path)


def test_a_litert_file_whose_patch_layout_does_not_match_is_refused(tmp_path):
    pytest.importorskip("ai_edge_litert")
    path = _copy_model(tmp_path)
    shutil.copy(DEFAULT_MODEL.with_suffix(".tflite"), path.with_suffix(".tflite"))
    layout = json.loads(path.with_suffix(".json").read_text())["patches"]
    other = 9 if layout["count"] != 9 else 4
    _with_config(path, patches={**layout, "count": other}, input_shape=[other, 64, 64, 1])
    with pytest.raises(ModelError, match=r"m\.tflite: the model takes inputs of shapes .*does not match the "
                       "configuration"):
        RankPredictor.load(path, runtime="litert")


@pytest.mark.parametrize(
    "shape",
    [(1, 1), (1, 1, 3), (1, 1, 4), (2, 3, 3), (1, 900, 3), (700, 2), (63, 63, 3), (64, 300), (40, 1000, 4)],
)
def test_tiny_thin_and_alpha_images_get_a_prediction(predictor, shape):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    ks = [predictor.predict(image, t) for t in (0.8, 0.9, 0.98)]
    assert all(1 <= k <= min(shape[:2]) for k in ks) and ks == sorted(ks)
    if len(shape) == 3 and shape[2] == 4:  # alpha is dropped: the colour alone decides
        assert predictor.predict(image[..., :3], 0.9) == ks[1]


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 500, 4), (300, 2)])
def test_the_cnn_policies_on_an_image_too_small_for_ssim(shape):
    """cnn refuses with the exact search's sentence; cnn-only, which measures nothing, codes the prediction."""
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    with pytest.raises(svdk.OptionError, match="SSIM is undefined for a .* plane .a side under 3 pixels."):
        svdk.encode(image, quality="ssim:0.9", policy="cnn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", svdk.SvdkWarning)  # SVD does not compress 3 pixels: svdk says so
        enc = svdk.encode(image, quality="ssim:0.9", policy="cnn-only")
    assert 1 <= enc.ranks[0] <= min(shape[:2]) and enc.evaluations == 0


@pytest.mark.parametrize("value", [0, 128, 255])
def test_flat_images_get_a_prediction_and_the_cnn_policy_meets_the_target(predictor, value):
    image = np.full((120, 200, 3), value, np.uint8)
    assert np.all(np.isfinite(predictor.log_ranks(image)))
    assert 1 <= predictor.predict(image, 0.9) <= 120
    enc = svdk.encode(image, quality="ssim:0.9", policy="cnn")
    assert _luma_ssim_of_file(enc.data, image) >= 0.9


@pytest.mark.parametrize("resolution, area", [("work", None), ("native", None), ("native", 481 * 321)])
@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 4), (5, 700, 3), (64, 64, 3), (1200, 1600)])
def test_patches_of_any_image_have_the_layout_shape(resolution, area, shape):
    layout = PatchLayout(count=9, resolution=resolution, area=area)
    x = patches(np.full(shape, 200, np.uint8), layout)
    assert x.shape == (9, 64, 64, 1) and x.dtype == np.float32
    assert np.all((x >= 0) & (x <= 1))


def test_model_trained_on_other_features(tmp_path):
    """A model whose feature list is not the one this svdk computes is refused, not fed wrong inputs."""
    path = _copy_model(tmp_path)
    from svdk.predictor import FEATURE_NAMES

    cfg = json.loads(path.with_suffix(".json").read_text())
    cfg["features"] = [("edge_density" if f == "edge_share" else f) for f in FEATURE_NAMES]
    path.with_suffix(".json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=r"m\.json: the model was trained on the features .*edge_density"):
        RankPredictor.load(path)


def test_other_input_shape(tmp_path):
    # a model made for 32x32 inputs, with a whole-image (version 1) configuration that claims 64x64
    inp = keras.Input((32, 32, 1))
    out = keras.layers.Dense(5)(keras.layers.Flatten()(inp))
    path = tmp_path / "small.keras"
    keras.Model(inp, out).save(path)
    cfg = {"format": "svdk-rank-predictor", "version": 1, "input_shape": [64, 64, 1],
           "targets": [0.8, 0.85, 0.9, 0.95, 0.98], "features": []}
    path.with_suffix(".json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=r"small\.keras: the model takes inputs of shape \[32, 32, 1\]; "
                       r"expected \[64, 64, 1\]"):
        RankPredictor.load(path)
    cfg["input_shape"] = [32, 32, 1]
    path.with_suffix(".json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=r"small\.json: input shape \[32, 32, 1\]; expected \[64, 64, 1\]"):
        RankPredictor.load(path)


def test_not_a_keras_suffix(tmp_path):
    with pytest.raises(ModelError, match="expected a Keras 3 model file ending in .keras"):
        RankPredictor.load(tmp_path / "model.h5")


def _luma_ssim_of_file(data: bytes, image: np.ndarray) -> float:
    header, factors, _ = svdk.format.unpack(data)
    fac, rec = factors[0], header.planes[0]
    return structural_similarity(
        luma(image).astype(np.float64), to_uint8(reconstruct(*fac[:2], rec.qstep, *fac[2:])).astype(np.float64),
        data_range=255,
    )


@pytest.mark.parametrize("target", [0.8, 0.9, 0.97])
@pytest.mark.parametrize("name", IMAGES)
def test_cnn_policy_always_meets_the_target(name, target):
    image = svdk.load_image(f"example:{name}").color
    enc = svdk.encode(image, quality=("ssim", target), policy="cnn")
    assert enc.policy == "cnn"
    assert _luma_ssim_of_file(enc.data, image) >= target
    assert "CNN-predicted" in enc.reason and f"{enc.evaluations} evaluations" in enc.reason
    exact = svdk.encode(image, quality=("ssim", target))
    if "exact search" not in enc.reason:  # one check and at most two corrections
        assert enc.evaluations <= 3
    assert enc.nbytes <= 1.5 * exact.nbytes  # the checked prediction stays near the smallest file


def test_cnn_policy_falls_back_to_the_exact_search_when_the_prediction_is_far_off(monkeypatch):
    from svdk import predictor as p

    image = svdk.load_image("example:coffee").color
    model = p.default_predictor()
    monkeypatch.setattr(model, "curve", lambda img: (model.targets, np.zeros(len(model.targets))))  # k = 1
    enc = svdk.encode(image, quality="ssim:0.95", policy="cnn")
    assert "exact search" in enc.reason
    assert enc.ranks[0] == svdk.encode(image, quality="ssim:0.95").ranks[0]
    assert _luma_ssim_of_file(enc.data, image) >= 0.95


def test_cnn_only_uses_the_prediction_alone(predictor):
    image = svdk.load_image("example:astronaut").color
    enc = svdk.encode(image, quality="ssim:0.9", policy="cnn-only")
    assert enc.evaluations == 0
    assert enc.ranks[0] == predictor.predict(image, 0.9)
    assert "not checked" in enc.reason


def test_cnn_policy_needs_an_ssim_target():
    with pytest.raises(svdk.OptionError, match="policy .cnn. takes ssim targets; got psnr:30"):
        svdk.encode("example:camera", quality="psnr:30", policy="cnn")


def test_cli_policy_flag(tmp_path, capsys):
    from svdk.cli import main

    out = tmp_path / "a.svdk"
    assert main(["compress", "example:camera", "-o", str(out), "--quality", "ssim:0.9", "--policy", "cnn", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["policy"] == "cnn" and out.is_file()
    assert main(["compress", "example:camera", "-o", str(out), "-f", "--policy", "nope"]) != 0
    assert "unknown rank policy 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["astronaut", "camera", "coffee"])
def test_contrast_feature_is_scikit_images_glcm_contrast(name):
    """The model was trained on graycoprops' contrast; the direct formula must give the same number."""
    from skimage import data
    from skimage.feature import graycomatrix, graycoprops

    from svdk.predictor import FEATURE_NAMES, hand_features

    image = getattr(data, name)()
    y = luma(image if image.ndim == 3 else np.stack([image] * 3, axis=-1))
    y8 = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    glcm = graycomatrix(y8 // 4, distances=[1], angles=[0, np.pi / 2], levels=64, symmetric=True, normed=True)
    expected = graycoprops(glcm, "contrast").mean()
    feats = hand_features(None, y=y)
    assert feats[FEATURE_NAMES.index("glcm_contrast")] == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------
# the light runtime: LiteRT, no TensorFlow


def test_litert_and_keras_predict_the_same_ranks():
    pytest.importorskip("ai_edge_litert")
    from svdk.predictor import RankPredictor, resize_work

    lite, keras_ = RankPredictor.load(runtime="litert"), RankPredictor.load(runtime="keras")
    assert (lite.runtime, keras_.runtime) == ("litert", "keras")
    for name in ("astronaut", "coffee", "chelsea", "camera", "rocket", "immunohistochemistry"):
        work = resize_work(f"example:{name}")
        np.testing.assert_allclose(lite.log_ranks(work), keras_.log_ranks(work), atol=1e-4, rtol=0)
        for t in (0.8, 0.9, 0.95):
            assert lite.predict(f"example:{name}", t) == keras_.predict(f"example:{name}", t)


def test_the_default_runtime_is_litert_and_the_choice_is_honoured(monkeypatch, tmp_path):
    pytest.importorskip("ai_edge_litert")
    import shutil

    from svdk.predictor import DEFAULT_MODEL, ModelError, RankPredictor

    assert RankPredictor.load().runtime == "litert"
    assert "LiteRT" in RankPredictor.shipped().describe()
    monkeypatch.setenv("SVDK_PREDICTOR_RUNTIME", "keras")
    assert RankPredictor.load().runtime == "keras"
    monkeypatch.setenv("SVDK_PREDICTOR_RUNTIME", "onnx")
    with pytest.raises(ModelError, match="runtime must be one of auto, litert, keras; got 'onnx'"):
        RankPredictor.load()
    monkeypatch.delenv("SVDK_PREDICTOR_RUNTIME")
    # a model without its LiteRT file runs with Keras, or says what is missing when LiteRT is asked for
    for suffix in (".keras", ".json"):
        shutil.copy(DEFAULT_MODEL.with_suffix(suffix), tmp_path / f"m{suffix}")
    assert RankPredictor.load(tmp_path / "m.keras").runtime == "keras"
    with pytest.raises(ModelError, match=r"m.tflite: missing; export it with 'python -m training.export"):
        RankPredictor.load(tmp_path / "m.keras", runtime="litert")
    # one that is not the file the configuration recorded is refused
    data = bytearray(DEFAULT_MODEL.with_suffix(".tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "m.tflite").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the litert_sha256 recorded"):
        RankPredictor.load(tmp_path / "m.keras")


def test_export_writes_a_checked_litert_file(tmp_path):
    pytest.importorskip("ai_edge_litert")
    import json
    import shutil

    from svdk.predictor import DEFAULT_MODEL, RankPredictor, export_litert, sha256_file

    for suffix in (".keras", ".json"):
        shutil.copy(DEFAULT_MODEL.with_suffix(suffix), tmp_path / f"m{suffix}")
    config = json.loads((tmp_path / "m.json").read_text())
    config.pop("litert_sha256", None)
    (tmp_path / "m.json").write_text(json.dumps(config))
    out = export_litert(tmp_path / "m.keras")
    assert out == tmp_path / "m.tflite"
    assert json.loads((tmp_path / "m.json").read_text())["litert_sha256"] == sha256_file(out)
    p = RankPredictor.load(tmp_path / "m.keras")
    assert p.runtime == "litert" and p.predict("example:coffee", 0.9) == RankPredictor.load(runtime="keras").predict(
        "example:coffee", 0.9)


def test_a_litert_file_that_outputs_nan_fails_the_export_check():
    """NaN compares false with everything: the check must not take it for agreement."""
    from svdk.predictor._litert import largest_difference

    nan = lambda *inputs: np.full((1, 5), np.nan)  # noqa: E731
    zero = lambda *inputs: np.zeros((1, 5))  # noqa: E731
    assert largest_difference(zero, nan, 8, n=3) == float("inf")
    assert largest_difference(zero, zero, 8, n=3) == 0.0


def test_a_litert_file_the_configuration_does_not_vouch_for_never_runs(tmp_path):
    """A stale model.tflite left beside a new model (no litert_sha256 in its JSON) is not used."""
    pytest.importorskip("ai_edge_litert")
    import json
    import shutil

    from svdk.predictor import DEFAULT_MODEL, ModelError, RankPredictor

    for suffix in (".keras", ".tflite"):
        shutil.copy(DEFAULT_MODEL.with_suffix(suffix), tmp_path / f"m{suffix}")
    config = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    del config["litert_sha256"]
    (tmp_path / "m.json").write_text(json.dumps(config))
    assert RankPredictor.load(tmp_path / "m.keras").runtime == "keras"
    with pytest.raises(ModelError, match="records no litert_sha256"):
        RankPredictor.load(tmp_path / "m.keras", runtime="litert")
