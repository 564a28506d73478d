"""Hub distribution: publish a model with its card, pull it at a pinned revision, fall back offline.

The real ``huggingface_hub`` client talks to :class:`fakehub.FakeHub` on
127.0.0.1; a guard fails any test that opens a connection anywhere else.
The test marked ``network`` publishes to the real Hub and runs only with
``HF_TOKEN`` set.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

import svdk

from fakehub import FakeHub
from svdk import predictor as P
from svdk.predictor import DEFAULT_MODEL, ModelError, RankPredictor, resize_work, sha256_file

keras = pytest.importorskip("keras", reason="these tests load Keras models: pip install 'svdk[keras]'")
hf = pytest.importorskip("huggingface_hub", reason="Hub distribution needs pip install 'svdk[hub]'")
from huggingface_hub import constants  # noqa: E402

from hub import publish as hub_publish  # noqa: E402
from hub.card import RD_CODEC, RD_REFERENCE, CardError, _rd_figures  # noqa: E402

TOKEN = "hf_test_write"
RD = hub_publish.REPO / "results" / "bench-kodak" / "summary.json"
IMAGES = ("example:astronaut", "example:camera")
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port: connections are refused at once


# ----------------------------------------------------------------------------
# fixtures


_REAL_CONNECT = socket.socket.connect
_REAL_GETADDRINFO = socket.getaddrinfo
_REAL_HUB = {"ENDPOINT": constants.ENDPOINT, "HUGGINGFACE_CO_URL_TEMPLATE": constants.HUGGINGFACE_CO_URL_TEMPLATE}


_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_OUTSIDE: list[str] = []  # attempts to leave 127.0.0.1; the code under test may swallow the error, not this list


def _refuse(what: str):
    _OUTSIDE.append(what)
    raise ConnectionRefusedError(f"tests stay on 127.0.0.1; refused {what}")


def _loopback_connect(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOOPBACK:
        _refuse(f"a connection to {address}")
    return _REAL_CONNECT(sock, address)


def _loopback_getaddrinfo(host, *args, **kwargs):
    if host not in _LOOPBACK:
        _refuse(f"a lookup of {host!r}")
    return _REAL_GETADDRINFO(host, *args, **kwargs)


@pytest.fixture(scope="module", autouse=True)
def only_loopback():
    """No request leaves 127.0.0.1: a guard on connect, and a dead local address as the default Hub."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _loopback_connect)
        mp.setattr(socket, "getaddrinfo", _loopback_getaddrinfo)
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        mp.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
        mp.setattr(constants, "ENDPOINT", DEAD)
        mp.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", DEAD + "/{repo_id}/resolve/{revision}/{filename}")
        yield


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No default cache, saved token or model choice leaks into a test."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "default-cache"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    for var in ("SVDK_MODEL_REPO", "SVDK_MODEL_REVISION", "SVDK_RANK_MODEL", "HF_ENDPOINT", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(P._policies, "_DEFAULT", None)
    monkeypatch.setattr(P._policies, "_FAILED", None)
    yield
    outside, _OUTSIDE[:] = list(_OUTSIDE), []
    assert not outside, f"requests outside 127.0.0.1: {outside}"


@pytest.fixture(scope="module")
def hub():
    with FakeHub(tokens=[TOKEN]) as server:
        yield server


def _metrics(config: dict) -> dict:
    """A metrics.json as ``python -m training.train`` writes it (figures made up, shapes real)."""
    from training.evaluate import cv_summary

    rng = np.random.default_rng(7)
    targets = config["targets"]
    fold_maes = rng.uniform(5, 40, size=(5, len(targets))).tolist()
    test = {
        f"{t:.2f}": {
            "mae_k": float(rng.uniform(5, 40)),
            "bias_k": float(rng.uniform(-5, 5)),
            "mae_bytes_pct": float(rng.uniform(5, 30)),
            "reach": float(rng.uniform(0.3, 0.7)),
            "reach_minus_0.01": float(rng.uniform(0.6, 0.9)),
            "oracle_bytes_mean": 20000.0,
            "label_k_mean": 50.0,
        }
        for t in targets
    }
    return {
        "name": "compact",
        "arch": "compact",
        "features": False,
        "command": "python -m training.train --arch compact --out runs/compact",
        "targets": targets,
        "images": {"train+val": 300, "train+val with copies": 600, "test": 200},
        "test": test,
        "cv": cv_summary(fold_maes, targets),
        "cv_best_epochs": [40, 52, 47, 38, 61],
        "final_epochs": 47,
        "resolution": {"exponent": config["resolution_exponent"], "images": 300},
        "latency": {"predict_ms_median": 2.1, "network_ms_median": 0.9, "calls": 200},
        "model_bytes": DEFAULT_MODEL.stat().st_size,
        "params": config["params"],
        "seconds": 1234.5,
        "settings": {"arch": "compact", "limit": None, "folds": 5},
        "machine": {"python": "3.11", "cpu_count": 2, "tf_threads": 1},
        "label_code_hash": config["label_code_hash"],
    }


def _report(metrics: dict) -> dict:
    """A results/predictor.json as ``python -m training.report`` writes it (baselines only)."""
    shift = {"constant": 2.0, "energy": 1.4, "features": 1.1}
    models = {}
    for name, factor in shift.items():
        models[name] = {
            "kind": "baseline",
            "description": f"the {name} baseline",
            "test": {t: {**m, "mae_k": m["mae_k"] * factor} for t, m in metrics["test"].items()},
            "cv": {t: {**m, "mae_k_mean": m["mae_k_mean"] * factor} for t, m in metrics["cv"].items()},
        }
    return {"name": "rank predictor on BSDS500", "models": models}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder with the shipped (really trained) model, as ``training.train --out`` lays it out."""
    run = tmp_path_factory.mktemp("run") / "compact"
    run.mkdir()
    shutil.copy(DEFAULT_MODEL, run / "model.keras")
    config = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    (run / "model.json").write_text(json.dumps(config, indent=2))
    metrics = _metrics(config)
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (run.parent / "predictor.json").write_text(json.dumps(_report(metrics)))
    return run


def _publish(hub, run, repo_id, *extra):
    argv = ["--repo-id", repo_id, "--run", str(run), "--endpoint", hub.endpoint, "--token", TOKEN,
            "--report", str(run.parent / "predictor.json"), *extra]
    return hub_publish.main(argv)


@pytest.fixture(scope="module")
def published(hub, run_dir):
    """``me/rank`` published once; its commit id as ``main`` printed it."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = _publish(hub, run_dir, "me/rank", "--revision-note", "first model")
    assert status == 0, err.getvalue()
    commit = out.getvalue().strip()
    return {"repo": "me/rank", "commit": commit, "stderr": err.getvalue()}


def _same_predictions(a: RankPredictor, b: RankPredictor) -> None:
    for name in IMAGES:
        work = resize_work(name)
        np.testing.assert_array_equal(a.log_ranks(work), b.log_ranks(work))
        assert a.predict(name, 0.9) == b.predict(name, 0.9)


def _copy_repo(hub, src: str, commit: str, dst: str, **replace) -> str:
    files = {path: stored.data for path, stored in hub.repos[src].commits[commit].items()}
    return hub.add_commit(dst, {**files, **replace})


# ----------------------------------------------------------------------------
# publish, pull at the printed revision, offline from the cache


def test_publish_prints_the_commit_it_created(hub, published):
    repo = hub.repos["me/rank"]
    assert published["commit"] == repo.branches["main"]
    assert set(repo.commits[published["commit"]]) == {"model.keras", "model.json", "metrics.json", "README.md"}
    assert f"published me/rank at commit {published['commit']}" in published["stderr"]


def test_pull_at_the_printed_revision_predicts_like_the_local_model(hub, published, run_dir, tmp_path):
    local = RankPredictor.load(run_dir / "model.keras")
    pulled = RankPredictor.from_pretrained(
        "me/rank", revision=published["commit"], cache_dir=tmp_path, endpoint=hub.endpoint
    )
    assert pulled.source == {
        "source": "hub",
        "repo": "me/rank",
        "revision": published["commit"],
        "sha256": sha256_file(run_dir / "model.keras"),
        "path": pulled.source["path"],
    }
    assert str(tmp_path) in pulled.source["path"]
    assert ("HEAD", f"/me/rank/resolve/{published['commit']}/model.keras") in hub.requests
    assert "me/rank at " + published["commit"] in pulled.describe() and "Hugging Face Hub" in pulled.describe()
    assert pulled.layout is not None and pulled.layout == local.layout  # the patch layout travels in model.json
    _same_predictions(local, pulled)


def test_uploaded_configuration_records_the_weights_checksum(hub, published, run_dir):
    files = hub.repos["me/rank"].commits[published["commit"]]
    config = json.loads(files["model.json"].data)
    assert config["weights_sha256"] == sha256_file(run_dir / "model.keras")
    assert files["model.keras"].data == (run_dir / "model.keras").read_bytes()
    assert config["targets"] == json.loads((run_dir / "model.json").read_text())["targets"]
    assert config["patches"] == json.loads((run_dir / "model.json").read_text())["patches"]


def test_model_card_is_filled_from_the_run(hub, published, run_dir):
    card = hub.repos["me/rank"].commits[published["commit"]]["README.md"].data.decode()
    meta = hf.ModelCard(card).data
    assert meta.library_name == "keras" and "svdk" in meta.tags
    assert "${" not in card
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cv = metrics["cv"]["0.90"]
    assert f"| 0.90 | {cv['mae_k_mean']:.1f} ± {cv['mae_k_std']:.1f} |" in card
    assert f"| 0.90 | {metrics['test']['0.90']['mae_k']:.1f} |" in card
    assert "BSDS500" in card and "300 train+val images (600 with" in card
    config = json.loads((run_dir / "model.json").read_text())
    layout = config["patches"]
    # the shipped model averages two patch networks (python -m training.ensemble)
    names = ", ".join(f"`{m['run']}`" for m in config["ensemble"])
    assert f"It averages the `log k` of 2 networks trained apart ({names})." in card
    assert f"Each reads {layout['count']} grayscale 64x64 patches of the luma" in card
    assert "`patches` records the layout" in card
    for name in ("constant", "energy", "features"):
        assert f"| {name} | " in card
    rd = json.loads(RD.read_text())
    ours, jpeg = rd["codecs"][RD_CODEC], rd["codecs"][RD_REFERENCE]
    for bpp in ("0.25", "0.5", "1"):
        o, r = ours[f"psnr_at_{bpp}_bpp"], jpeg[f"psnr_at_{bpp}_bpp"]
        gap = f"{abs(o - r):.1f} dB {'behind' if o < r else 'ahead'} at {bpp} bpp ({o:.1f} dB against {r:.1f} dB"
        assert gap in card
    assert f"over 0.25-1 bpp is {ours['bd_psnr_db']:+.2f} dB" in card
    assert f"On the {len(rd['images'])} Kodak images" in card and f"`{rd['command']}`" in card
    if all(ours[f"psnr_at_{b}_bpp"] < jpeg[f"psnr_at_{b}_bpp"] for b in ("0.25", "0.5", "1")):
        assert "has a lower PSNR than Pillow's JPEG at every rate measured" in card
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(snippet.strip().splitlines()) == 5


def _rd_summary(**ours) -> dict:
    """A made-up ``svdk bench`` summary of three images: svdk 1 dB behind JPEG at every rate unless told."""
    rates = ("0.25", "0.5", "1")
    jpeg = {f"psnr_at_{b}_bpp": 30.0 + i for i, b in enumerate(rates)}
    row = {f"psnr_at_{b}_bpp": 29.0 + i for i, b in enumerate(rates)}
    for codec in (jpeg, row):
        codec.update({f"psnr_at_{b}_bpp_images": 3 for b in rates}, bd_psnr_db=0.0, bd_images=3)
    row.update(bd_psnr_db=-1.0, **ours)
    return {"reference": "jpeg", "bd_range_bpp": [0.25, 1.0], "codecs": {RD_CODEC: row, RD_REFERENCE: jpeg},
            "images": ["a.png", "b.png", "c.png"], "command": "svdk bench somewhere"}


def test_card_of_an_average_names_its_members_their_training_and_their_folds(run_dir):
    from hub.card import render_card

    config = json.loads((run_dir / "model.json").read_text())
    metrics = {**json.loads((run_dir / "metrics.json").read_text()), "cv": None, "final_epochs": None,
               "command": "python -m training.ensemble runs/a runs/b --out runs/ab"}
    metrics["members"] = [
        {"run": "a", "features": False, "command": "python -m training.train --out runs/a", "final_epochs": 25,
         "cv": {"0.90": {"mae_k_mean": 11.1, "mae_k_std": math.nan, "folds": [11.1]}}, "cv_folds_run": "1 of 5"},
        {"run": "b", "features": True, "command": "python -m training.train --features --out runs/b",
         "final_epochs": 18, "cv": None, "cv_folds_run": None},
    ]
    config = {**config, "ensemble": [{"run": "a", "features": False}, {"run": "b", "features": True}]}
    card = render_card("me/avg", config, metrics, _rd_summary())
    assert "It averages the `log k` of 2 networks trained apart (`a`, `b`)." in card
    assert "`b` also reads 8 hand-crafted scikit-image features" in card
    assert "Joined with `python -m training.ensemble runs/a runs/b --out runs/ab`" in card
    assert "`a` was trained with `python -m training.train --out runs/a` (25 epochs" in card
    assert "`b` was trained with `python -m training.train --features --out runs/b` (18 epochs" in card
    assert "(not run for the average)" in card and "`a`: 11.1 at 0.90 (1 of 5). `b`: n/a at 0.90 (no folds)." in card
    assert "None" not in card.split("## Training data", 1)[1].split("## Baselines", 1)[0]


def test_card_jpeg_figures_say_behind_only_when_behind_at_every_rate():
    behind = _rd_figures(_rd_summary())
    assert behind["jpeg_verdict"] == "has a lower PSNR than Pillow's JPEG at every rate measured"
    assert behind["jpeg_gap"].startswith("1.0 dB behind at 0.25 bpp (29.0 dB against 30.0 dB); ")
    assert (behind["bd_psnr"], behind["bd_range"], behind["rd_images"]) == ("-1.00 dB", "0.25-1", "3")
    assert behind["rd_command"] == "svdk bench somewhere"
    mixed = _rd_figures(_rd_summary(**{"psnr_at_1_bpp": 32.5, "psnr_at_1_bpp_images": 2, "bd_images": 2}))
    assert mixed["jpeg_verdict"] == "compares with Pillow's JPEG as follows"
    assert "0.5 dB ahead at 1 bpp (32.5 dB against 32.0 dB; svdk over 2 and JPEG over 3 of the 3 images)" in (
        mixed["jpeg_gap"]
    )
    assert mixed["bd_psnr"] == "-1.00 dB (2 of the 3 images)"
    assert _rd_figures({**_rd_summary(), "command": None})["rd_command"] == "svdk bench"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["codecs"].pop(RD_CODEC), f"lacks '{RD_CODEC}'"),
        (lambda s: s["codecs"][RD_CODEC].pop("bd_psnr_db"), "lacks 'bd_psnr_db'"),
        (lambda s: s["codecs"][RD_REFERENCE].update({"psnr_at_0.5_bpp": None}),
         "psnr_at_0.5_bpp for jpeg (it is null)"),
        (lambda s: s.update(reference="webp"), "its reference is 'webp'"),
    ],
)
def test_card_refuses_a_summary_without_the_jpeg_figures(change, message):
    summary = _rd_summary()
    change(summary)
    with pytest.raises(CardError, match="regenerate it with 'svdk bench'") as info:
        _rd_figures(summary)
    assert message in str(info.value)


def test_publish_with_an_incomplete_summary_names_the_command(hub, run_dir, tmp_path, capsys):
    """The committed summary with svdk's row taken out: one line that says how to regenerate it."""
    rd = json.loads(RD.read_text())
    del rd["codecs"][RD_CODEC]
    (tmp_path / "summary.json").write_text(json.dumps(rd))
    assert _publish(hub, run_dir, "me/incomplete", "--rd", str(tmp_path / "summary.json")) == 1
    err = capsys.readouterr().err
    assert err.startswith("hub.publish: error: the rate-distortion summary lacks") and err.count("\n") == 1
    assert "regenerate it with 'svdk bench'" in err and "me/incomplete" not in hub.repos


def test_card_snippet_runs_as_written(hub, published, monkeypatch):
    """The card's five lines, run against the test Hub (the default endpoint pointed at it)."""
    card = hub.repos["me/rank"].commits[published["commit"]]["README.md"].data.decode()
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    template = hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    scope = {}
    exec(card.split("```python\n", 1)[1].split("```", 1)[0], scope)
    assert scope["predictor"].source["source"] == "hub" and scope["predictor"].source["repo"] == "me/rank"
    assert scope["data"][:4] == b"SVDK" and svdk.info(scope["data"])["ranks"][0] == scope["k"]


def test_card_without_baseline_report_says_so(hub, run_dir):
    status = hub_publish.main(["--repo-id", "me/no-report", "--run", str(run_dir), "--endpoint", hub.endpoint,
                               "--token", TOKEN, "--report", str(run_dir / "absent.json")])
    assert status == 0
    card = hub.repos["me/no-report"].commits[hub.repos["me/no-report"].branches["main"]]["README.md"].data
    assert b"Not included: no baseline report was given" in card


def test_pull_again_offline_from_the_cache(hub, published, run_dir, tmp_path, monkeypatch):
    online = RankPredictor.from_pretrained("me/rank", cache_dir=tmp_path, endpoint=hub.endpoint)  # main
    assert online.source["revision"] == published["commit"]
    asked = len(hub.requests)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for revision in (published["commit"], None):  # the commit, and main through the ref the cache keeps
        offline = RankPredictor.from_pretrained("me/rank", revision=revision, cache_dir=tmp_path,
                                                endpoint=hub.endpoint)
        assert offline.source["source"] == "cache"
        assert offline.source["revision"] == published["commit"]
        assert offline.source["sha256"] == online.source["sha256"]
    assert len(hub.requests) == asked
    _same_predictions(online, offline)


def test_unreachable_hub_falls_back_to_the_cache(hub, published, tmp_path, caplog):
    RankPredictor.from_pretrained("me/rank", revision=published["commit"], cache_dir=tmp_path,
                                  endpoint=hub.endpoint)
    with caplog.at_level(logging.WARNING, logger="svdk.predictor"):
        pulled = RankPredictor.from_pretrained("me/rank", revision=published["commit"], cache_dir=tmp_path,
                                               endpoint=DEAD)
    assert pulled.source["source"] == "cache"
    assert "could not be reached" in caplog.text and "trying the local Hugging Face cache" in caplog.text


def test_local_folder_takes_the_same_call(run_dir):
    pulled = RankPredictor.from_pretrained(run_dir)
    assert pulled.source["source"] == "file" and pulled.source["path"] == str(run_dir / "model.keras")
    assert pulled.source["sha256"] == sha256_file(run_dir / "model.keras")
    with pytest.raises(ModelError, match="no such model file"):
        RankPredictor.from_pretrained(run_dir.parent / "nothing-here.keras")
    assert RankPredictor.from_pretrained(DEFAULT_MODEL.parent).source["source"] == "shipped"


# ----------------------------------------------------------------------------
# default_predictor: Hub, then cache, then the shipped model


def _use_repo(monkeypatch, repo, revision, endpoint, cache):
    monkeypatch.setenv("SVDK_MODEL_REPO", repo)
    if revision:
        monkeypatch.setenv("SVDK_MODEL_REVISION", revision)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(P._policies, "_DEFAULT", None)
    monkeypatch.setattr(P._policies, "_FAILED", None)


def test_default_predictor_hub_then_cache_then_shipped(hub, published, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="svdk.predictor")
    cache = tmp_path / "cache"
    _use_repo(monkeypatch, "me/rank", published["commit"], hub.endpoint, cache)
    first = P.default_predictor()
    assert first.source["source"] == "hub" and first.source["revision"] == published["commit"]
    assert P.default_predictor() is first  # chosen once
    assert f"using rank predictor me/rank at {published['commit']} from the Hugging Face Hub" in caplog.text

    caplog.clear()
    _use_repo(monkeypatch, "me/rank", published["commit"], DEAD, cache)
    assert P.default_predictor().source["source"] == "cache"
    assert "rank predictor from the Hub not used" in caplog.text

    caplog.clear()
    _use_repo(monkeypatch, "me/rank", published["commit"], DEAD, tmp_path / "empty-cache")
    chosen = P.default_predictor()
    assert chosen.source["source"] == "shipped" and chosen.source["sha256"] == sha256_file(DEFAULT_MODEL)
    assert "is not in the local Hugging Face cache" in caplog.text
    assert "trying the model shipped with svdk" in caplog.text
    assert "using rank predictor shipped with svdk" in caplog.text


def test_default_predictor_without_repo_uses_the_shipped_model_or_the_file(run_dir, monkeypatch):
    assert P.default_predictor().source["source"] == "shipped"
    monkeypatch.setattr(P._policies, "_DEFAULT", None)
    monkeypatch.setattr(P._policies, "_FAILED", None)
    monkeypatch.setenv("SVDK_RANK_MODEL", str(run_dir / "model.keras"))
    source = P.default_predictor().source
    assert source["source"] == "file" and source["path"] == str(run_dir / "model.keras")
    assert source["sha256"] == sha256_file(run_dir / "model.keras")


# ----------------------------------------------------------------------------
# refused downloads


@pytest.mark.parametrize("how", ["model served", "model committed", "config served"])
def test_tampered_download_is_refused_and_the_fallback_used(hub, published, tmp_path, monkeypatch, caplog, how):
    """``model served``: the server sends other bytes than the sha256 it announces for model.keras.
    ``model committed``: the announced sha256 is honest, but model.json recorded another one.
    ``config served``: model.json is not the file whose git blob id the server announces."""
    files = hub.repos["me/rank"].commits[published["commit"]]
    altered = bytearray(files["model.keras"].data)
    altered[len(altered) // 2] ^= 0xFF
    repo = "me/tampered-" + how.replace(" ", "-")
    if how == "model served":
        commit = _copy_repo(hub, "me/rank", published["commit"], repo)
        hub.tamper(repo, "model.keras", bytes(altered))
        name, expected = "model.keras", "sha256 [0-9a-f]{64} does not match the checksum the Hub announced"
    elif how == "model committed":
        commit = _copy_repo(hub, "me/rank", published["commit"], repo, **{"model.keras": bytes(altered)})
        name, expected = "model.keras", "sha256 [0-9a-f]{64} does not match the weights_sha256 recorded in model.json"
    else:
        commit = _copy_repo(hub, "me/rank", published["commit"], repo)
        hub.tamper(repo, "model.json", files["model.json"].data.replace(b'"targets"', b'"targets" '))
        name, expected = "model.json", "git blob id [0-9a-f]{40} does not match the checksum the Hub announced"
    with pytest.raises(ModelError, match=f"{name} of {repo} at {commit}: {expected}"):
        RankPredictor.from_pretrained(repo, revision=commit, cache_dir=tmp_path, endpoint=hub.endpoint)
    snapshot = tmp_path / ("models--" + repo.replace("/", "--")) / "snapshots" / commit
    assert not (snapshot / name).exists()  # removed from the cache, not picked up later

    caplog.set_level(logging.INFO, logger="svdk.predictor")
    _use_repo(monkeypatch, repo, commit, hub.endpoint, tmp_path)
    assert P.default_predictor().source["source"] == "shipped"
    assert "rank predictor from the Hub not used" in caplog.text and "does not match" in caplog.text


def test_private_repo_needs_the_token(hub, run_dir, tmp_path):
    assert _publish(hub, run_dir, "me/private", "--private") == 0
    with pytest.raises(ModelError, match=r"me/private: no such model repo on \S+ \(or it is private"):
        RankPredictor.from_pretrained("me/private", cache_dir=tmp_path, endpoint=hub.endpoint)
    pulled = RankPredictor.from_pretrained("me/private", cache_dir=tmp_path, endpoint=hub.endpoint, token=TOKEN)
    assert pulled.source["source"] == "hub" and pulled.source["repo"] == "me/private"


def test_a_whole_image_model_of_the_old_kind_still_loads_from_the_hub(hub, tmp_path):
    """A repo published before the patch network (configuration version 1, one 64x64 input) still loads."""
    inp = keras.Input((64, 64, 1))
    out = keras.layers.Dense(5, bias_initializer="ones")(keras.layers.GlobalAveragePooling2D()(inp))
    path = tmp_path / "old.keras"
    keras.Model(inp, out).save(path)
    config = {"format": "svdk-rank-predictor", "version": 1, "input_shape": [64, 64, 1],
              "targets": [0.8, 0.85, 0.9, 0.95, 0.98], "output": "log_k", "features": []}
    commit = hub.add_commit("me/old", {"model.keras": path.read_bytes(), "model.json": json.dumps(config).encode()})
    old = RankPredictor.from_pretrained("me/old", revision=commit, cache_dir=tmp_path / "c", endpoint=hub.endpoint)
    assert old.layout is None and 1 <= old.predict("example:camera", 0.9) <= 512


def test_wrong_input_shape_is_refused(hub, published, tmp_path):
    inp = keras.Input((32, 32, 1))
    out = keras.layers.Dense(5)(keras.layers.Flatten()(inp))
    path = tmp_path / "small.keras"
    keras.Model(inp, out).save(path)
    config = json.loads(hub.repos["me/rank"].commits[published["commit"]]["model.json"].data)
    config.pop("weights_sha256")
    commit = _copy_repo(hub, "me/rank", published["commit"], "me/small",
                        **{"model.keras": path.read_bytes(), "model.json": json.dumps(config).encode()})
    with pytest.raises(ModelError, match=r"model\.keras: the model takes inputs of shape \[32, 32, 1\]"):
        RankPredictor.from_pretrained("me/small", revision=commit, cache_dir=tmp_path / "c", endpoint=hub.endpoint)


@pytest.mark.parametrize(
    "repo, revision, message",
    [
        ("me/nothing", None, "me/nothing: no such model repo on http://127.0.0.1:"),
        ("me/rank", "v9", "me/rank on http://127.0.0.1:[0-9]+ has no revision 'v9'"),
        ("me/other", None, r"me/other at main on .* holds no svdk rank-predictor model: model.json and model.keras "
                           r"missing \(found: README.md, pytorch_model.bin\)"),
        ("not a repo!", None, "'not a repo!' is neither a local folder nor a valid Hub repo id"),
    ],
)
def test_bad_repo_gives_one_clear_message(hub, published, tmp_path, monkeypatch, caplog, repo, revision, message):
    hub.add_commit("me/other", {"README.md": b"# another model\n", "pytorch_model.bin": b"\0\1\2"})
    with pytest.raises(ModelError, match=message):
        RankPredictor.from_pretrained(repo, revision=revision, cache_dir=tmp_path, endpoint=hub.endpoint)
    caplog.set_level(logging.WARNING, logger="svdk.predictor")
    _use_repo(monkeypatch, repo, revision, hub.endpoint, tmp_path)
    assert P.default_predictor().source["source"] == "shipped"
    assert "trying the model shipped with svdk" in caplog.text


# ----------------------------------------------------------------------------
# publish: bad input


@pytest.mark.parametrize(
    "case, status, message",
    [
        ("no token", 1, "no Hugging Face token: pass --token, set HF_TOKEN"),
        ("bad token", 1, "failed: the Hub refused the token (HTTP 401)"),
        ("bad repo id", 2, "--repo-id must be OWNER/NAME"),
        ("no run", 2, "not a training run folder (model.keras, model.json, metrics.json missing)"),
        ("no rd", 1, "absent-rd.json: missing; the rate-distortion summary is made by"),
        ("no args", 2, "the following arguments are required: --repo-id, --run"),
    ],
)
def test_publish_bad_input_gives_one_line(hub, run_dir, monkeypatch, capsys, case, status, message):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    argv = {
        "no token": ["--repo-id", "me/x", "--run", str(run_dir)],
        "bad token": ["--repo-id", "me/x", "--run", str(run_dir), "--token", "hf_wrong"],
        "bad repo id": ["--repo-id", "just-a-name", "--run", str(run_dir), "--token", TOKEN],
        "no run": ["--repo-id", "me/x", "--run", str(run_dir.parent / "nope"), "--token", TOKEN],
        "no rd": ["--repo-id", "me/x", "--run", str(run_dir), "--token", TOKEN,
                  "--rd", str(run_dir / "absent-rd.json")],
        "no args": [],
    }[case]
    common = ["--endpoint", hub.endpoint, "--report", str(run_dir.parent / "predictor.json")]
    assert hub_publish.main(argv + common if argv else argv) == status
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.startswith("hub.publish: error: ") and err.count("\n") == 1 and message in err
    assert "me/x" not in hub.repos


def test_importing_svdk_does_not_load_huggingface_hub():
    code = (
        "import sys, svdk, svdk.predictor; "
        "assert 'huggingface_hub' not in sys.modules and 'keras' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------
# the real Hub


@pytest.mark.network
@pytest.mark.skipif(not os.environ.get("HF_TOKEN"), reason="publishes to the real Hugging Face Hub: set HF_TOKEN")
def test_publish_and_pull_on_the_real_hub(run_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _REAL_CONNECT)
    monkeypatch.setattr(socket, "getaddrinfo", _REAL_GETADDRINFO)
    for name, value in _REAL_HUB.items():
        monkeypatch.setattr(constants, name, value)
    owner = hf.HfApi(endpoint="https://huggingface.co").whoami()["name"]
    repo = f"{owner}/svdk-rank-predictor-test"
    status = hub_publish.main(["--repo-id", repo, "--run", str(run_dir), "--private",
                               "--endpoint", "https://huggingface.co", "--revision-note", "svdk test run"])
    assert status == 0
    commit = capsys.readouterr().out.strip()
    pulled = RankPredictor.from_pretrained(repo, revision=commit, cache_dir=tmp_path,
                                           endpoint="https://huggingface.co")
    assert pulled.source["source"] == "hub" and pulled.source["revision"] == commit
    _same_predictions(RankPredictor.load(run_dir / "model.keras"), pulled)


def test_a_run_with_its_litert_file_is_pulled_and_runs_without_keras(hub, run_dir, tmp_path, capsys):
    """training.train writes model.tflite; publish uploads it, from_pretrained pulls and checks it."""
    pytest.importorskip("ai_edge_litert")
    lite_run = tmp_path / "lite"
    shutil.copytree(run_dir, lite_run)
    shutil.copy(DEFAULT_MODEL.with_suffix(".tflite"), lite_run / "model.tflite")
    assert _publish(hub, lite_run, "me/rank-lite") == 0
    commit = capsys.readouterr().out.strip()
    assert "model.tflite" in hub.repos["me/rank-lite"].commits[commit]
    pulled = RankPredictor.from_pretrained("me/rank-lite", revision=commit, cache_dir=tmp_path / "c", endpoint=hub.endpoint)
    assert pulled.runtime == "litert" and "LiteRT" in pulled.describe()
    local = RankPredictor.load(run_dir / "model.keras", runtime="keras")
    for name in IMAGES:
        np.testing.assert_allclose(pulled.log_ranks(resize_work(name)), local.log_ranks(resize_work(name)), atol=1e-4)
        assert pulled.predict(name, 0.9) == local.predict(name, 0.9)
    # offline, the cached LiteRT file is used again
    again = RankPredictor.from_pretrained("me/rank-lite", revision=commit, cache_dir=tmp_path / "c", local_files_only=True)
    assert again.source["source"] == "cache" and again.runtime == "litert"
    # a LiteRT file that is not the one model.json recorded is refused
    bad = bytearray((lite_run / "model.tflite").read_bytes())
    bad[len(bad) // 2] ^= 0xFF
    bad_commit = _copy_repo(hub, "me/rank-lite", commit, "me/rank-lite-bad", **{"model.tflite": bytes(bad)})
    with pytest.raises(ModelError, match="does not match the litert_sha256 recorded"):
        RankPredictor.from_pretrained("me/rank-lite-bad", revision=bad_commit, cache_dir=tmp_path / "d",
                                      endpoint=hub.endpoint)


def test_publish_refuses_a_litert_file_that_is_not_the_models(hub, run_dir, tmp_path, capsys):
    pytest.importorskip("ai_edge_litert")
    stale = tmp_path / "stale"
    shutil.copytree(run_dir, stale)
    data = bytearray(DEFAULT_MODEL.with_suffix(".tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (stale / "model.tflite").write_bytes(bytes(data))
    assert _publish(hub, stale, "me/rank-stale") == 1
    err = capsys.readouterr().err
    assert "does not match the litert_sha256 recorded" in err and "me/rank-stale" not in hub.repos
