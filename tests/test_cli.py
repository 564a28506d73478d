"""The svdk command line, in-process through main() and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import svdk
from svdk.cli import main


@pytest.fixture
def photo(tmp_path) -> Path:
    """A small colour photo (a crop of scikit-image's astronaut) as a PNG file."""
    import skimage.data

    path = tmp_path / "photo.png"
    Image.fromarray(skimage.data.astronaut()[100:196, 150:278]).save(path)
    return path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_compress_decompress_info_roundtrip(photo, tmp_path, capsys):
    out_file = tmp_path / "a.svdk"
    code, out, err = run(["compress", photo, "-o", out_file, "--rank", "12"], capsys)
    assert code == 0, err
    assert "Y=12" in out and "bpp" in out and "PSNR" in out
    assert out_file.read_bytes()[:4] == b"SVDK"

    code, out, err = run(["info", out_file], capsys)
    assert code == 0
    assert "96x128" not in out and "128x96" in out  # width x height
    assert "ranks 12, 3, 3" in out
    assert f"{out_file.stat().st_size} bytes" in out

    png = tmp_path / "a.png"
    code, out, err = run(["decompress", out_file, "-o", png], capsys)
    assert code == 0, err
    decoded = np.asarray(Image.open(png))
    assert decoded.shape == (96, 128, 3)
    assert np.array_equal(decoded, svdk.decompress(out_file.read_bytes()))


def test_json_records_are_machine_readable(photo, tmp_path, capsys):
    code, out, err = run(
        ["compress", photo, "--out-dir", tmp_path, "--quality", "psnr:28", "--json"], capsys
    )
    assert code == 0, err
    rec = json.loads(out)
    assert rec["policy"] == "quality"
    assert set(rec["ranks"]) == {"Y", "Cb", "Cr"}
    assert rec["bytes"] == (tmp_path / "photo.svdk").stat().st_size
    assert rec["bpp"] == pytest.approx(8 * rec["bytes"] / (96 * 128))
    for key in ("psnr", "ssim", "seconds", "reason"):
        assert key in rec

    code, out, err = run(["info", tmp_path / "photo.svdk", "--json"], capsys)
    info = json.loads(out)
    assert info["ranks"][0] == rec["ranks"]["Y"]
    assert info["bytes"] == rec["bytes"]


def test_compare_table_and_json(photo, capsys):
    code, out, err = run(["compare", photo, "--rank", "16"], capsys)
    assert code == 0, err
    for word in ("svdk", "png", "jpeg", "same size", "same SSIM"):
        assert word in out
    code, out, err = run(["compare", photo, "--rank", "16", "--json"], capsys)
    rec = json.loads(out)
    svdk_bytes = rec["svdk"]["bytes"]
    same_size = [r for r in rec["rows"] if r["match"] == "same size" and r["bytes"] is not None]
    assert same_size and all(r["bytes"] <= svdk_bytes for r in same_size)
    same_ssim = [r for r in rec["rows"] if r["match"] == "same SSIM" and r["ssim"] is not None]
    assert same_ssim and all(r["ssim"] >= rec["svdk"]["ssim"] for r in same_ssim)


def test_many_inputs_keep_going_and_fail_at_the_end(photo, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run(
        ["compress", bad, photo, empty, tmp_path / "missing.png", "--out-dir", out_dir, "--rank", "4"], capsys
    )
    assert code == 1
    assert (out_dir / "photo.svdk").exists()
    errors = [line for line in err.splitlines() if line.startswith("svdk: error:")]
    assert len(errors) == 3
    assert "not an image" in err and "empty" in err and "no such file" in err
    assert "Traceback" not in err
    assert "3 of 4 files failed" in err


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"PNG? no", "not an .svdk file"),
        (b"SVDK\x04\x00" + bytes(40), "version 4"),
    ],
)
def test_decompress_bad_files_say_why(tmp_path, capsys, data, words):
    src = tmp_path / "x.svdk"
    src.write_bytes(data)
    code, out, err = run(["decompress", src, "-o", tmp_path / "x.png"], capsys)
    assert code == 1
    assert words in err
    assert not (tmp_path / "x.png").exists()


def test_truncated_file_is_refused_and_nothing_is_written(photo, tmp_path, capsys):
    data = svdk.compress(str(photo), rank=8)
    src = tmp_path / "t.svdk"
    src.write_bytes(data[: len(data) // 2])
    code, out, err = run(["decompress", src, "-o", tmp_path / "t.png"], capsys)
    assert code == 1 and "truncated" in err
    assert not (tmp_path / "t.png").exists()


def test_existing_output_is_not_overwritten_without_force(photo, tmp_path, capsys):
    dst = tmp_path / "keep.svdk"
    dst.write_bytes(b"precious")
    code, out, err = run(["compress", photo, "-o", dst, "--rank", "4"], capsys)
    assert code == 1 and "--force" in err
    assert dst.read_bytes() == b"precious"
    code, out, err = run(["compress", photo, "-o", dst, "--rank", "4", "--force"], capsys)
    assert code == 0
    assert dst.read_bytes()[:4] == b"SVDK"


def test_failed_encode_leaves_no_partial_output(photo, tmp_path, capsys):
    dst = tmp_path / "x.svdk"
    code, out, err = run(["compress", photo, "-o", dst, "--rank", "5000"], capsys)
    assert code == 1
    assert "rank must be in [1, 96] for a 128x96 image; got 5000" in err
    assert not dst.exists()
    assert list(tmp_path.iterdir()) == [photo]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--quality", "ssim:1.5"], "(0, 1]"),
        (["--quality", "mse:3"], "unknown quality metric"),
        (["--size", "10"], "budget of 10 bytes"),
        (["--size", "lots"], "size must look like"),
        (["--ranks", "8,4"], "3 plane(s)"),
        (["--energy", "1.5"], "(0, 1]"),
        (["--tune", "ssim"], "tune='ssim' applies to the tiled layout"),
    ],
)
def test_bad_options_are_one_clear_line(photo, tmp_path, capsys, args, words):
    code, out, err = run(["compress", photo, "--out-dir", tmp_path, *args], capsys)
    assert code == 1
    assert words in err
    assert len(err.strip().splitlines()) == 1


def test_usage_errors_exit_2(photo, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(photo), "--rank", "4", "--quality", "ssim:0.9"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(photo), str(photo), "-o", "x.svdk"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(photo), "--tiled", "--tune", "mse"])
    assert exc.value.code == 2


def test_max_rank_gives_a_progressive_preview(photo, tmp_path, capsys):
    src = tmp_path / "p.svdk"
    run(["compress", photo, "-o", src, "--rank", "24"], capsys)
    original = np.asarray(Image.open(photo))
    errs = []
    for j in (1, 4, 24):
        dst = tmp_path / f"p{j}.png"
        code, _, err = run(["decompress", src, "-o", dst, "--max-rank", j], capsys)
        assert code == 0, err
        errs.append(np.mean((np.asarray(Image.open(dst)).astype(float) - original) ** 2))
    assert errs[0] > errs[1] > errs[2]


def test_help_on_every_command():
    for cmd in ("compress", "decompress", "info", "compare"):
        proc = subprocess.run(
            [sys.executable, "-m", "svdk", cmd, "--help"], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0
        assert "usage: svdk " + cmd in proc.stdout


def test_real_subprocess_with_example_input(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "svdk", "compress", "example:coffee", "--rank", "20", "--json", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["ranks"] == {"Y": 20, "Cb": 5, "Cr": 5}
    assert (tmp_path / "coffee.svdk").stat().st_size == rec["bytes"]
    proc = subprocess.run(
        [sys.executable, "-m", "svdk", "decompress", str(tmp_path / "nope.svdk"), "-o", str(tmp_path / "n.png")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr


def test_out_dir_is_created(photo, tmp_path, capsys):
    out = tmp_path / "new" / "deeper"
    code, _, err = run(["compress", photo, "--rank", "8", "--out-dir", out], capsys)
    assert code == 0, err
    assert (out / "photo.svdk").is_file()
    with pytest.raises(SystemExit) as exc:  # a file where the folder should be
        main(["compress", str(photo), "--out-dir", str(photo)])
    assert exc.value.code == 2


def test_top_level_help_lists_every_command_and_avif():
    proc = subprocess.run([sys.executable, "-m", "svdk", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for word in ("compress", "decompress", "info", "compare", "bench", "AVIF"):
        assert word in proc.stdout, word


def test_a_psnr_target_prints_the_luma_figure_it_is_about(photo, tmp_path, capsys):
    code, out, err = run(["compress", photo, "--quality", "psnr:30", "--out-dir", tmp_path], capsys)
    assert code == 0, err
    luma = float(out.split("luma PSNR ")[1].split(" dB")[0])
    assert luma >= 30  # the target holds where it is measured, whatever the RGB figure beside it
    code, out, _ = run(["compress", photo, "--quality", "psnr:30", "--out-dir", tmp_path, "-f", "--json"], capsys)
    rec = json.loads(out)
    assert rec["measured"]["metric"] == "psnr" and rec["measured"]["plane"] == "Y"
    assert rec["measured"]["value"] == pytest.approx(luma, abs=0.005)


def test_the_cnn_line_names_the_prediction_and_the_model(photo, tmp_path, capsys):
    pytest.importorskip("ai_edge_litert")
    code, out, err = run(["compress", photo, "--policy", "cnn", "--out-dir", tmp_path], capsys)
    assert code == 0, err
    assert "(cnn: predicted " in out and "rank predictor shipped with svdk" in out


def test_tiled_lines_count_components(photo, tmp_path, capsys):
    code, out, err = run(["compress", photo, "--tiled", "--out-dir", tmp_path], capsys)
    assert code == 0, err
    assert "components Y=" in out
    code, out, _ = run(["info", tmp_path / "photo.svdk"], capsys)
    assert "largest tile ranks" in out and "components kept" in out


def test_tune_ssim_writes_the_library_s_file(photo, tmp_path, capsys):
    code, out, err = run(["compress", photo, "--tiled", "--tune", "ssim", "-o", tmp_path / "t.svdk"], capsys)
    assert code == 0, err
    written = (tmp_path / "t.svdk").read_bytes()
    assert written == svdk.compress(str(photo), tiled=True, tune="ssim")
    code, out, err = run(["compress", photo, "--tiled", "--tune", "ssim", "--json", "-f", "-o", tmp_path / "t.svdk"],
                         capsys)
    assert code == 0 and json.loads(out)["tune"] == "ssim"
    assert written != svdk.compress(str(photo), tiled=True)
