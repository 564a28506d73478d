"""The tiled layout's predictor and ``policy="cnn"`` in the tiled layout.

What a user notices: the target is met (checked here with a fresh encoder's
score of the file's count, and on the luma of the decoded RGB file with the
reference SSIM, to within the 0.01 that chroma rounding can cost), the
prediction and what the check did are reported, few evaluations are spent,
the file stays near the exact search's, and odd images get a prediction or
one clear error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import svdk
from _support import luma, ssim_reference

pytest.importorskip("ai_edge_litert", reason="the tiled predictor runs with pip install 'svdk[model]'")
pytestmark = pytest.mark.filterwarnings("ignore::svdk.SvdkWarning")


def decoded_luma_ssim(data: bytes, image: np.ndarray) -> float:
    """SSIM of the luma of the decoded RGB file against the original's (reference implementation)."""
    return ssim_reference(luma(image), luma(svdk.decompress(data)))


@pytest.mark.parametrize("name,target", [("astronaut", 0.85), ("coffee", 0.95), ("rocket", 0.9)])
def test_tiled_cnn_meets_the_target_with_few_evaluations(name, target):
    image = svdk.load_image(f"example:{name}").color
    enc = svdk.encode(image, quality=("ssim", target), tiled=True, policy="cnn")
    assert (enc.policy, enc.layout) == ("cnn", "tiled")
    assert svdk.Encoder(image, tiled=True).score(enc.components[0]) >= target  # the file's count, measured anew
    assert enc.measured["value"] >= target
    assert decoded_luma_ssim(enc.data, image) >= target - 0.01
    assert enc.predicted_rank >= 1 and enc.correction in ("met", "lowered", "raised", "exact search")
    assert "tiled-layout predictor shipped with svdk" in enc.model and "LiteRT" in enc.model
    assert "predicted from the tile spectrum" in enc.reason and f"{enc.evaluations} evaluations" in enc.reason
    exact = svdk.encode(image, quality=("ssim", target), tiled=True)
    if enc.correction != "exact search":
        assert enc.evaluations <= 3 < exact.evaluations + 1
    assert enc.nbytes <= 1.15 * exact.nbytes
    assert svdk.decompress(enc.data).shape == image.shape  # the file reads back


def test_a_prediction_far_off_ends_in_the_exact_search(monkeypatch):
    model = svdk.predictor.default_tiled_predictor()
    monkeypatch.setattr(model, "curve", lambda enc: (model.targets, np.zeros(len(model.targets))))  # n = 1
    image = svdk.load_image("example:chelsea").color
    enc = svdk.encode(image, quality="ssim:0.9", tiled=True, policy="cnn")
    assert enc.correction == "exact search" and enc.predicted_rank == 1
    assert enc.components[0] == svdk.encode(image, quality="ssim:0.9", tiled=True).components[0]


def test_cnn_only_uses_the_prediction_alone():
    image = svdk.load_image("example:astronaut").color
    enc = svdk.encode(image, quality="ssim:0.9", tiled=True, policy="cnn-only")
    assert enc.evaluations == 0 and enc.correction == "unchecked"
    assert enc.components[0] == enc.predicted_rank
    model = svdk.predictor.default_tiled_predictor()
    assert abs(np.log(enc.predicted_rank / model.predict(image, 0.9)) - model.check_margin) < 0.01


def test_the_prediction_is_near_the_exact_count():
    """Within 15 % of the exact search's count on photos outside BSDS500 (the model alone, no check)."""
    model = svdk.predictor.default_tiled_predictor()
    for name in ("astronaut", "coffee", "chelsea"):
        encoder = svdk.Encoder(f"example:{name}", tiled=True)
        n = model.predict(encoder, 0.9)
        exact = encoder.encode(quality="ssim:0.9").components[0]
        assert abs(n / exact - 1) < 0.15, (name, n, exact)


@pytest.mark.parametrize(
    "image,says",
    [
        (np.zeros((1, 1, 3), np.uint8), "SSIM is undefined for a 1x1 plane"),
        (np.zeros((2, 300, 3), np.uint8), "SSIM is undefined for a 300x2 plane"),
    ],
)
def test_images_too_small_for_ssim_get_one_clear_error(image, says):
    with pytest.raises(svdk.OptionError, match=says):
        svdk.encode(image, quality="ssim:0.9", tiled=True, policy="cnn")


@pytest.mark.parametrize(
    "image",
    [
        np.full((64, 48, 3), 77, np.uint8),  # flat
        (np.add.outer(np.arange(3), np.arange(400)) % 251).astype(np.uint8),  # 3 pixels high, gray
        np.dstack([svdk.load_image("example:coffee").color[:50, :70], np.full((50, 70), 200, np.uint8)]),  # alpha
    ],
    ids=["flat", "thin", "alpha"],
)
def test_odd_images_get_a_prediction_and_meet_the_target(image):
    enc = svdk.encode(image, quality="ssim:0.9", tiled=True, policy="cnn")
    assert enc.predicted_rank >= 1 and enc.measured["value"] >= 0.9
    back = svdk.decompress(enc.data)
    assert back.shape == image.shape
    if image.ndim == 3 and image.shape[2] == 4:
        assert np.array_equal(back[..., 3], image[..., 3])  # alpha kept exactly


def test_another_tile_size_is_refused_with_what_to_do():
    with pytest.raises(svdk.OptionError, match=r"trained for 8x8 tiles; this encoder uses 16x16: use tile_size=8"):
        svdk.encode("example:camera", quality="ssim:0.9", tile_size=16, policy="cnn")


def test_a_model_of_another_feature_list_is_refused(tmp_path):
    from svdk.predictor import TILED_MODEL, ModelError, TiledPredictor

    for suffix in (".keras", ".json", ".tflite"):
        shutil.copy(TILED_MODEL.with_suffix(suffix), tmp_path / f"m{suffix}")
    assert TiledPredictor.load(tmp_path / "m.keras").runtime == "litert"
    config = json.loads((tmp_path / "m.json").read_text())
    config["features"] = config["features"][:-1]
    (tmp_path / "m.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="m.json: the model was trained on the features"):
        TiledPredictor.load(tmp_path / "m.keras")


def test_cli_entry_point_shows_the_prediction_beside_the_final_count(tmp_path):
    """The installed ``svdk`` command, as a user runs it (else ``python -m svdk``)."""
    exe = shutil.which("svdk", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "svdk"]
    env = {**os.environ, "PYTHONPATH": str(Path(svdk.__file__).resolve().parent.parent)}
    out = tmp_path / "a.svdk"
    proc = subprocess.run([*cmd, "compress", "example:chelsea", "-o", str(out), "--tiled", "--policy", "cnn",
                           "--quality", "ssim:0.9"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "components Y=" in proc.stdout and "(cnn: predicted " in proc.stdout
    assert "tiled-layout predictor shipped with svdk" in proc.stdout
    assert svdk.info(out)["layout"] == "tiled"
    proc = subprocess.run([*cmd, "compress", "example:chelsea", "-o", str(out), "-f", "--tiled", "--policy", "cnn",
                           "--json"], capture_output=True, text=True, timeout=120, env=env)
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rec["policy"] == "cnn" and rec["predicted_rank"] >= 1 and rec["correction"] in ("met", "lowered", "raised")
