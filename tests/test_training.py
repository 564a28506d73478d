"""The training package: exact labels, label-preserving augmentation, the CLI end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

import svdk
from svdk import policies
from svdk.predictor import luma, resize_work
from _support import plane_values
from training.labels import TARGETS, LabelStore, brighten, code_hash, label_image

DIHEDRAL = {
    "fliplr": np.fliplr,
    "flipud": np.flipud,
    "rot90": np.rot90,
    "rot270": lambda a: np.rot90(a, 3),
    "transpose": lambda a: np.swapaxes(a, 0, 1),
}


@pytest.fixture(scope="module")
def images():
    return {name: resize_work(f"example:{name}") for name in ("astronaut", "coffee")}


_LABELS: dict = {}


def _labels(images, name):
    """Labels of one test image at every target, computed once per session."""
    if name not in _LABELS:
        _LABELS[name] = label_image(images[name])["k"]
    return _LABELS[name]


def _ssim(ref, dec):
    return structural_similarity(ref.astype(np.float64), dec.astype(np.float64), data_range=255)


@pytest.mark.parametrize("name, target", [("astronaut", 0.85), ("coffee", 0.95)])
def test_label_is_the_smallest_rank_reaching_the_target(images, name, target):
    """k meets the target and k - 1 does not, measured with scikit-image itself."""
    for img in (images[name],):
        k = label_image(img, [target])["k"][0]
        encoder = svdk.Encoder(img)
        choice = policies.get("quality")(encoder, ("ssim", target))
        assert choice.ranks[0] == k
        y = luma(img)  # the plane the encoder scores, computed apart
        assert _ssim(y, encoder.reconstruct(k)) >= target
        assert _ssim(y, encoder.reconstruct(k - 1)) < target
        # and the file svdk writes for this target decodes to a luma plane that meets it
        enc = svdk.encode(img, quality=("ssim", target))
        assert enc.ranks[0] == k
        decoded_luma = np.clip(np.rint(plane_values(enc.data)[0]), 0, 255)  # the spec's own reader
        assert _ssim(luma(img), decoded_luma) >= target


def test_chroma_ranks_follow_the_codec_rule(images):
    rec = label_image(images["coffee"])
    for k, ranks in zip(rec["k"], rec["ranks"]):
        c = max(1, int(k * svdk.CHROMA_RANK_FRACTION + 0.5))
        assert ranks == [k, c, c]
    assert rec["k"] == sorted(rec["k"])  # a higher target never needs fewer components


@pytest.mark.parametrize("name", sorted(DIHEDRAL))
def test_flips_and_right_angle_rotations_keep_singular_values_and_labels(images, name):
    op = DIHEDRAL[name]
    for img in images.values():
        moved = np.ascontiguousarray(op(img))
        s0 = np.linalg.svd(luma(img).astype(np.float64), compute_uv=False)
        s1 = np.linalg.svd(luma(moved).astype(np.float64), compute_uv=False)
        np.testing.assert_allclose(s1, s0, rtol=1e-9, atol=1e-6 * s0[0])
    img = images["astronaut"]
    assert label_image(np.ascontiguousarray(op(img)))["k"] == _labels(images, "astronaut")


def test_brightness_changes_the_label(images):
    img = images["astronaut"]
    assert label_image(brighten(img, 0.7))["k"] != _labels(images, "astronaut")


def test_label_cache_is_keyed_by_code_and_pixels(tmp_path, images):
    store = LabelStore(tmp_path, TARGETS, processes=1)
    assert store.path.name == f"labels-{code_hash(TARGETS)}.json"
    first = store.labels([images["coffee"]])
    assert store.path.is_file()
    again = LabelStore(tmp_path, TARGETS, processes=1)
    assert again.labels([images["coffee"]]) == first  # read back, not recomputed
    assert code_hash((0.5, 0.9)) != code_hash(TARGETS)


def test_label_cache_key_covers_every_module_a_label_runs_through(tmp_path, monkeypatch):
    """An edit anywhere in the code that computes a label starts a new cache, and a module the
    codec starts importing joins the key without anyone listing it."""
    import shutil

    from training import labels

    copy = tmp_path / "svdk"
    shutil.copytree(labels._SVDK, copy)
    monkeypatch.setattr(labels, "_SVDK", copy)
    names = {p.name for p in labels.label_modules()}
    # what the encoder really runs, seen from the interpreter: every svdk module its call loads
    code = ("import sys, numpy as np, svdk; before = set(sys.modules); "
            "svdk.Encoder(np.zeros((16, 16, 3), np.uint8)).encode(quality='ssim:0.9'); "
            "print(sorted(m for m in sys.modules if m.startswith('svdk.') and m not in before))")
    loaded_late = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded_late.strip() == "[]"  # nothing is imported lazily behind the key's back
    assert {"_encoder.py", "_codec.py", "_tiled.py", "policies.py", "metrics.py", "_image.py", "format.py",
            "_entropy.py"} <= names
    base, outcomes = labels.code_hash(), labels.outcome_hash()
    for path in labels.label_modules():
        original = path.read_bytes()
        path.write_bytes(original + b"\n# an edit\n")
        assert labels.code_hash() != base and labels.outcome_hash() != outcomes, path.name
        path.write_bytes(original)
    assert labels.code_hash() == base
    (copy / "_fresh.py").write_text("X = 1\n")
    codec = copy / "_codec.py"
    codec.write_text(codec.read_text().replace("import numpy as np\n", "import numpy as np\n\nfrom . import _fresh\n", 1))
    assert "_fresh.py" in {p.name for p in labels.label_modules()} and labels.code_hash() != base


def _tiny_bsds(root):
    """A BSDS500-shaped folder of small images cut from scikit-image's photos."""
    rng = np.random.default_rng(0)
    sources = [svdk.load_image(f"example:{n}").color for n in ("astronaut", "coffee", "chelsea")]
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        (root / split).mkdir(parents=True)
        for j in range(n):
            src = sources[rng.integers(len(sources))]
            y, x = rng.integers(0, 200), rng.integers(0, 200)
            crop = src[y : y + 120, x : x + 160]
            Image.fromarray(crop).save(root / split / f"{split}{j}.jpg", quality=90)


def test_training_cli_end_to_end(tmp_path):
    pytest.importorskip("keras")
    pytest.importorskip("datasets")
    from svdk.predictor import RankPredictor
    from training.train import main

    data = tmp_path / "bsds"
    _tiny_bsds(data)
    out = tmp_path / "run"
    rc = main([
        "--data", str(data), "--folds", "2", "--epochs", "1", "--batch", "8", "--processes", "1",
        "--cache", str(tmp_path / "cache"), "--out", str(out), "--no-latency",
    ])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {f"{t:.2f}" for t in TARGETS}
    assert len(metrics["cv"]["0.90"]["folds"]) == 2
    assert metrics["images"] == {"train+val": 5, "train+val with copies": 10, "test": 2}
    config = json.loads((out / "model.json").read_text())
    assert config["targets"] == list(TARGETS) and config["input_shape"] == [64, 64, 1]
    predictor = RankPredictor.load(out / "model.keras")
    k = predictor.predict(data / "test" / "test0.jpg", 0.9)
    assert 1 <= k <= 120


def test_patch_network_trains_and_records_its_layout(tmp_path):
    """A tiny smoke run of the patch network: the model it writes loads, records its layout, and predicts."""
    pytest.importorskip("keras")
    pytest.importorskip("datasets")
    from svdk.predictor import PatchLayout, RankPredictor
    from training.train import main

    data = tmp_path / "bsds"
    _tiny_bsds(data)
    out = tmp_path / "run"
    rc = main([
        "--arch", "patch", "--features", "--patches", "9", "--pool", "attention", "--data", str(data),
        "--folds", "0", "--epochs", "1", "--batch", "8", "--processes", "1", "--cache", str(tmp_path / "cache"),
        "--out", str(out), "--no-latency",
    ])
    assert rc == 0
    config = json.loads((out / "model.json").read_text())
    assert config["version"] == 2 and config["input_shape"] == [9, 64, 64, 1]
    assert config["patches"] == {"size": 64, "count": 9, "sampling": "grid", "resolution": "work"}
    predictor = RankPredictor.load(out / "model.keras")
    assert predictor.layout == PatchLayout(count=9)
    assert 1 <= predictor.predict(data / "test" / "test0.jpg", 0.9) <= 120
    assert main(["--arch", "patch", "--patches", "10", "--data", str(data), "--out", str(out)]) == 2


def test_two_patch_runs_join_into_one_model_averaging_their_log_k(tmp_path, capsys):
    """training.ensemble: one model whose log k is the mean of its members', which svdk loads like any
    rank predictor (LiteRT and Keras); runs that read different patch layouts are refused."""
    pytest.importorskip("keras")
    pytest.importorskip("datasets")
    from svdk.predictor import PatchLayout, RankPredictor
    from training.ensemble import main as join_runs
    from training.train import main

    data = tmp_path / "bsds"
    _tiny_bsds(data)
    common = ["--arch", "patch", "--patches", "4", "--resolution", "native", "--data", str(data), "--folds", "0",
              "--epochs", "1", "--batch", "8", "--processes", "1", "--cache", str(tmp_path / "cache"),
              "--no-latency"]
    assert main([*common, "--out", str(tmp_path / "pixels")]) == 0
    assert main([*common, "--features", "--seed", "1", "--out", str(tmp_path / "features")]) == 0
    out = tmp_path / "joined"
    rc = join_runs([str(tmp_path / "pixels"), str(tmp_path / "features"), "--data", str(data), "--cache",
                    str(tmp_path / "cache"), "--area", "5000", "--out", str(out), "--no-latency"])
    assert rc == 0, capsys.readouterr().err
    config = json.loads((out / "model.json").read_text())
    assert [m["run"] for m in config["ensemble"]] == ["pixels", "features"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {"0.80", "0.85", "0.90", "0.95", "0.98"} and metrics["cv"] is None

    image = data / "test" / "test0.jpg"
    members = [RankPredictor.load(tmp_path / name / "model.keras") for name in ("pixels", "features")]
    joined = RankPredictor.load(out / "model.keras")
    assert joined.layout == PatchLayout(count=4, resolution="native", area=5000) and joined.features
    # the members read the photo resized to the joined model's area (the test images are 48x40)
    wanted = np.mean([m.run(joined.inputs(image)[: len(m.inputs(image))]) for m in members], axis=0)
    np.testing.assert_allclose(joined.run(joined.inputs(image)), wanted, atol=1e-4)
    keras_joined = RankPredictor.load(out / "model.keras", runtime="keras")
    np.testing.assert_allclose(keras_joined.log_ranks(image), joined.log_ranks(image), atol=1e-4)

    assert main([*common, "--patches", "9", "--out", str(tmp_path / "nine")]) == 0
    assert join_runs([str(tmp_path / "pixels"), str(tmp_path / "nine"), "--out", str(tmp_path / "bad")]) == 2
    assert "differ in patches" in capsys.readouterr().err
    # two members reading the features must standardize them alike: they share one input
    other = tmp_path / "features-other"
    shutil.copytree(tmp_path / "features", other)
    cfg = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**cfg, "feature_std": [2 * v for v in cfg["feature_std"]]}))
    assert join_runs([str(tmp_path / "features"), str(other), "--out", str(tmp_path / "bad")]) == 2
    assert "standardize their features differently" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # nothing written for a refused join


def test_training_without_data_says_where_to_get_it(tmp_path, capsys):
    from training.train import main

    missing = tmp_path / "nowhere" / "bsds500"
    assert main(["--data", str(missing), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "BSDS500" in err and "BIDS/BSDS500" in err


def test_default_data_folder_is_shared_bsds500():
    from training.data import DEFAULT_DATA

    assert DEFAULT_DATA.parts[-3:] == ("shared", "data", "bsds500")
