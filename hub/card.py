"""The model card of a published rank predictor: our template filled from a run's figures.

:func:`render_card` fills :data:`TEMPLATE` (``hub/card_template.md``, a
:class:`string.Template` with ``${name}`` fields) from:

* the model's configuration (``model.json``),
* the run's ``metrics.json`` (written by ``python -m training.train``): data,
  test metrics, cross-validation, latency,
* the rate-distortion summary of ``results/rd_kodak.json`` (written by
  ``python -m benchmarks.rd_kodak``): how svdk compares with JPEG,
* optionally ``results/predictor.json`` (written by ``python -m
  training.report``): the baselines.

No figure is written into the template itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from string import Template

from svdk import SvdkError

__all__ = ["render_card", "CardError", "TEMPLATE", "RD_CODEC", "RD_REFERENCE"]

TEMPLATE = Path(__file__).with_name("card_template.md")
#: The codec and the reference compared in the card's limitations.
RD_CODEC = "svdk-ycbcr"
RD_REFERENCE = "jpeg"


class CardError(SvdkError):
    """A file the card is made from lacks a figure the card needs."""


def _num(value, fmt: str = ".1f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, fmt)


def _test_table(test: dict) -> str:
    rows = [
        "| target SSIM | MAE k | mean bias k | MAE % bytes | reach | reach at target - 0.01 |",
        "|---|---|---|---|---|---|",
    ]
    for t, m in test.items():
        rows.append(
            f"| {t} | {_num(m.get('mae_k'))} | {_num(m.get('bias_k'), '+.1f')} | {_num(m.get('mae_bytes_pct'))} "
            f"| {_num(m.get('reach'), '.2f')} | {_num(m.get('reach_minus_0.01'), '.2f')} |"
        )
    return "\n".join(rows)


def _cv(cv: dict | None) -> tuple[str, str]:
    """(description, table) of the cross-validation figures."""
    if not cv:
        return "not run", "No cross-validation in this run (`--folds` 0 or 1)."
    n = max(len(m.get("folds", [])) for m in cv.values())
    rows = ["| target SSIM | MAE k, mean ± std over folds | per fold |", "|---|---|---|"]
    for t, m in cv.items():
        folds = ", ".join(_num(v) for v in m.get("folds", []))
        rows.append(f"| {t} | {_num(m.get('mae_k_mean'))} ± {_num(m.get('mae_k_std'))} | {folds} |")
    return f"{n}-fold, grouped by source image", "\n".join(rows)


def _baselines(report: dict | None, metrics: dict) -> str:
    if report is None:
        return (
            "Not included: no baseline report was given. `python -m training.report` fits the three "
            "baselines (constant median rank, svdk's energy rule with tuned fractions, ridge regression on "
            "hand-crafted features) on the same data and writes `results/predictor.json`; publish with "
            "`--report results/predictor.json` to include them."
        )
    targets = list(metrics["test"])
    middle = targets[len(targets) // 2]  # 0.90 on the shipped grid: the CV column shows one target
    head = "| model | " + " | ".join(f"test MAE k at {t}" for t in targets) + f" | CV MAE k at {middle} |"
    rows = [head, "|---" * (len(targets) + 2) + "|"]

    def row(name, test, cv):
        mid = (cv or {}).get(middle)
        cv_text = f"{_num(mid['mae_k_mean'])} ± {_num(mid['mae_k_std'])}" if mid else "-"
        cells = " | ".join(_num(test.get(t, {}).get("mae_k")) for t in targets)
        return f"| {name} | {cells} | {cv_text} |"

    rows.append(row("**this model**", metrics["test"], metrics.get("cv")))
    described = []
    for name, entry in report.get("models", {}).items():
        if entry.get("kind") == "baseline":
            rows.append(row(name, entry["test"], entry.get("cv")))
            described.append(f"`{name}`: {entry.get('description', '')}")
    if not described:
        raise CardError("the baseline report lists no baselines (models of kind 'baseline')")
    text = "\n".join(rows) + "\n\n" + "; ".join(described) + ". Fitted on the same train+val images and "
    text += "evaluated on the same test split, by `python -m training.report` (`results/predictor.json`)."
    limit = (metrics.get("settings") or {}).get("limit")
    if limit:
        text += (
            f" This model's run used `--limit {limit}` (a subset of each split), so its figures and the "
            "baselines' are not measured on the same images."
        )
    return text


def _rd_figures(rd: dict) -> tuple[str, str, str, int]:
    """(verdict, gap sentence, command, images) comparing svdk with JPEG at each target bpp of the summary."""
    try:
        summary = rd["summary"]
        ours, ref = summary["codecs"][RD_CODEC], summary["codecs"][RD_REFERENCE]
        points, n_images = [], math.inf
        for bpp in summary["target_bpp"]:
            key = next(k for k in ours if float(k) == float(bpp))
            gap = ours[key]["gap_to_jpeg_db"]
            ref_key = next(k for k in ref if float(k) == float(bpp))
            points.append((float(bpp), gap, ours[key]["psnr-rgb"], ref[ref_key]["psnr-rgb"]))
            n_images = min(n_images, ours[key].get("gap_n_images", ours[key]["n_images"]))
    except (KeyError, TypeError, ValueError, StopIteration) as exc:
        raise CardError(
            f"the rate-distortion summary lacks {exc} (expected summary.codecs.{RD_CODEC} and "
            f".{RD_REFERENCE} with psnr-rgb and gap_to_jpeg_db at each of summary.target_bpp); regenerate "
            "it with 'python -m benchmarks.rd_kodak'"
        ) from None
    if not points or any(g is None for _, g, _, _ in points):
        raise CardError(f"the rate-distortion summary has no JPEG gap for {RD_CODEC}; regenerate it")
    sentence = "; ".join(
        f"{abs(g):.1f} dB {'behind' if g < 0 else 'ahead'} at {b:g} bpp ({o:.1f} dB against {r:.1f} dB)"
        for b, g, o, r in points
    )
    behind = all(g < 0 for _, g, _, _ in points)
    verdict = (
        "has a lower PSNR than Pillow's JPEG at every rate measured"
        if behind
        else "compares with Pillow's JPEG as follows"
    )
    return verdict, sentence, rd.get("command", "python -m benchmarks.rd_kodak").strip(), n_images


def render_card(repo_id: str, config: dict, metrics: dict, rd: dict, report: dict | None = None) -> str:
    """The model card (Markdown with YAML metadata) for ``repo_id``."""
    images = metrics.get("images") or {}
    tv, tv_all, n_test = images.get("train+val"), images.get("train+val with copies"), images.get("test")
    copies = f" ({tv_all} with one brightness-changed copy of each)" if tv_all and tv_all != tv else ""
    limit = (metrics.get("settings") or {}).get("limit")
    latency = metrics.get("latency")
    machine = metrics.get("machine") or {}
    verdict, gap, rd_command, rd_images = _rd_figures(rd)
    cv_line, cv_table = _cv(metrics.get("cv"))
    values = {
        "repo_id": repo_id,
        "arch": config.get("arch", "small"),
        "params": f"{metrics.get('params', config.get('params', 0)):,}",
        "model_kb": _num(metrics.get("model_bytes", 0) / 1000, ".0f"),
        "targets": ", ".join(f"{t:g}" for t in config["targets"]),
        "format": config["format"],
        "version": config["version"],
        "input_shape": "x".join(str(v) for v in config["input_shape"]),
        "output": config.get("output", "log_k"),
        "svdk_version": config.get("svdk_version", "?"),
        "keras_version": config.get("keras_version", "?"),
        "label_code_hash": config.get("label_code_hash", "?"),
        "images_line": (
            f"{tv} train+val images{copies} for training and cross-validation, and {n_test} test images "
            "held out for one final evaluation."
        ),
        "subset_note": (
            f"**This run used only the first {limit} images of each split (`--limit {limit}`): a quick run, "
            "not a model trained on the whole dataset.**"
            if limit
            else ""
        ),
        "command": metrics.get("command", "python -m training.train"),
        "final_epochs": metrics.get("final_epochs", "?"),
        "n_test": n_test,
        "test_table": _test_table(metrics["test"]),
        "cv_line": cv_line,
        "cv_table": cv_table,
        "baselines": _baselines(report, metrics),
        "latency_line": (
            f"One prediction (batch 1, CPU, after warm-up, median of {latency.get('calls', '?')} calls) took "
            f"{_num(latency.get('predict_ms_median'), '.2f')} ms with its preprocessing and "
            f"{_num(latency.get('network_ms_median'), '.2f')} ms for the network alone, on the training machine "
            f"({machine.get('cpu_count', '?')} CPUs, TensorFlow on one thread)."
            if latency
            else "Not measured in this run (`--no-latency`)."
        ),
        "jpeg_verdict": verdict,
        "jpeg_gap": gap,
        "rd_command": rd_command,
        "rd_images": rd_images,
    }
    return Template(TEMPLATE.read_text()).substitute(values)
