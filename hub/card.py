"""The model card of a published rank predictor: our template filled from a run's figures.

:func:`render_card` fills :data:`TEMPLATE` (``hub/card_template.md``, a
:class:`string.Template` with ``${name}`` fields) from:

* the model's configuration (``model.json``),
* the run's ``metrics.json`` (written by ``python -m training.train``): data,
  test metrics, cross-validation, latency,
* the rate-distortion summary ``results/bench-kodak/summary.json`` (written
  by ``svdk bench``, the same file the README's table is printed from): how
  svdk compares with JPEG,
* optionally ``results/predictor.json`` (written by ``python -m
  training.report``): the baselines.

No figure is written into the template itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from string import Template

from svdk import SvdkError
from svdk.bench import TARGET_BPP

__all__ = ["render_card", "CardError", "TEMPLATE", "RD_CODEC", "RD_REFERENCE", "RD_COMMAND"]

TEMPLATE = Path(__file__).with_name("card_template.md")
#: The codec and the reference compared in the card's limitations: the benchmark's
#: name for what ``svdk.compress`` writes by default (global layout, ycbcr 4:2:0),
#: against the reference its BD figures are computed against.
RD_CODEC = "svdk-global-ycbcr"
RD_REFERENCE = "jpeg"
#: Regenerates the summary; also the command named when its own record lacks one.
RD_COMMAND = "svdk bench"


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
    choice = report.get("default_choice")
    if choice:
        text += f"\n\nThe model svdk ships by default, and why (from the same report): {choice['why']}."
    limit = (metrics.get("settings") or {}).get("limit")
    if limit:
        text += (
            f" This model's run used `--limit {limit}` (a subset of each split), so its figures and the "
            "baselines' are not measured on the same images."
        )
    return text


def _float(value) -> float | None:
    """``value`` as a float; ``None`` (JSON ``null``: no image covers that rate) stays ``None``."""
    return None if value is None else float(value)


def _rd_missing(what: str) -> CardError:
    return CardError(
        f"the rate-distortion summary lacks {what} (expected reference {RD_REFERENCE!r}, bd_range_bpp, and "
        f"codecs.{RD_CODEC} and codecs.{RD_REFERENCE} with psnr_at_<rate>_bpp and its _images count at "
        f"{', '.join(f'{b:g}' for b in TARGET_BPP)} bpp, and bd_psnr_db and bd_images for {RD_CODEC}); "
        f"regenerate it with '{RD_COMMAND}'"
    )


def _rd_figures(rd: dict) -> dict[str, str]:
    """The card's comparison of :data:`RD_CODEC` with JPEG, from an ``svdk bench`` summary.

    The summary keeps only each codec's mean PSNR at each rate, so the gap is
    the difference of two means. When the two means are not over the same
    images (a curve that does not reach a rate leaves its image out), the
    sentence says over how many each is, rather than pass the difference off
    as a like-for-like one. A figure that is missing or ``null`` is an error:
    the card states no comparison it cannot back with the file.
    """
    if rd.get("reference") != RD_REFERENCE:
        raise _rd_missing(f"figures against {RD_REFERENCE!r} (its reference is {rd.get('reference')!r})")
    try:
        codecs = rd["codecs"]
        ours, ref = codecs[RD_CODEC], codecs[RD_REFERENCE]
        bd_low, bd_high = (float(v) for v in rd["bd_range_bpp"])
        points = []
        for bpp in TARGET_BPP:
            key = f"psnr_at_{bpp:g}_bpp"
            points.append(
                (bpp, _float(ours[key]), _float(ref[key]), int(ours[f"{key}_images"]), int(ref[f"{key}_images"]))
            )
        bd_psnr, bd_images = _float(ours["bd_psnr_db"]), int(ours["bd_images"])
    except KeyError as exc:
        raise _rd_missing(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise _rd_missing(f"a usable value ({exc})") from None
    for bpp, o, r, _, _ in points:
        if o is None or r is None:  # no image's curve reaches that rate
            raise _rd_missing(f"psnr_at_{bpp:g}_bpp for {RD_CODEC if o is None else RD_REFERENCE} (it is null)")
    if bd_psnr is None:
        raise _rd_missing(f"bd_psnr_db for {RD_CODEC} (it is null)")
    images = rd.get("images")
    n_images = len(images) if isinstance(images, list) and images else max(p[4] for p in points)

    def phrase(bpp, o, r, n_ours, n_ref):
        gap = o - r
        text = f"{abs(gap):.1f} dB {'behind' if gap < 0 else 'ahead'} at {bpp:g} bpp ({o:.1f} dB against {r:.1f} dB"
        if n_ours != n_images or n_ref != n_images:
            text += f"; svdk over {n_ours} and JPEG over {n_ref} of the {n_images} images"
        return text + ")"

    behind = all(o < r for _, o, r, _, _ in points)
    bd_note = "" if bd_images == n_images else f" ({bd_images} of the {n_images} images)"
    return {
        "jpeg_verdict": (
            "has a lower PSNR than Pillow's JPEG at every rate measured"
            if behind
            else "compares with Pillow's JPEG as follows"
        ),
        "jpeg_gap": "; ".join(phrase(*p) for p in points),
        "bd_psnr": f"{bd_psnr:+.2f} dB{bd_note}",
        "bd_range": f"{bd_low:g}-{bd_high:g}",
        "rd_codec": RD_CODEC,
        "rd_command": (rd.get("command") or RD_COMMAND).strip(),
        "rd_images": str(n_images),
    }


def _features_text(config: dict) -> str:
    n = len(config.get("features") or ())
    return f"{n} hand-crafted scikit-image features of the 256x256 luma"


def _input(config: dict) -> tuple[str, str]:
    """(what the network reads, in a sentence; the input shape described) from the model's configuration."""
    features = f" and {_features_text(config)}" if config.get("features") else ""
    layout = config.get("patches")
    if not layout:
        return (
            f"It reads the image as one 64x64 grayscale input{features}.",
            "64x64 luma in [0, 1], from the 256x256 bicubic resize averaged over 4x4 blocks",
        )
    side = round(layout["count"] ** 0.5)
    if layout["resolution"] == "work":
        of = "the 256x256 bicubic resize"
    elif layout.get("area"):
        of = f"the image resized to about {layout['area']:,} pixels, the training images' size"
    else:
        of = "the image at its native size"
    pool = config.get("pool", "?")
    trunk = config.get("trunk", "?")
    members = config.get("ensemble")
    if members:
        with_features = [f"`{m['run']}`" for m in members if m.get("features")]
        names = ", ".join(f"`{m['run']}`" for m in members)
        reads = (
            f"It averages the `log k` of {len(members)} networks trained apart ({names}). Each reads {layout['count']} grayscale {layout['size']}x{layout['size']} "
            f"patches of the luma ({side}x{side} grid, edge to edge, of {of}), runs one shared convolutional trunk "
            f"(`{trunk}`) over each patch and pools across patches (`{pool}`)"
            + (f"; {' and '.join(with_features)} also reads {_features_text(config)}." if with_features else ".")
        )
    else:
        reads = (
            f"It reads {layout['count']} grayscale {layout['size']}x{layout['size']} patches of the luma ({side}x{side} "
            f"grid, edge to edge, of {of}){features}, runs one shared convolutional trunk (`{trunk}`) over each patch "
            f"and pools across patches (`{pool}`)."
        )
    return (
        reads,
        f"{layout['count']} patches of {layout['size']}x{layout['size']} luma in [0, 1]; `patches` records the layout "
        f"({side}x{side} {layout['sampling']} of {of}), and svdk refuses a model whose layout it cannot cut",
    )


def render_card(repo_id: str, config: dict, metrics: dict, rd: dict, report: dict | None = None) -> str:
    """The model card (Markdown with YAML metadata) for ``repo_id``."""
    images = metrics.get("images") or {}
    tv, tv_all, n_test = images.get("train+val"), images.get("train+val with copies"), images.get("test")
    copies = f" ({tv_all} with one brightness-changed copy of each)" if tv_all and tv_all != tv else ""
    limit = (metrics.get("settings") or {}).get("limit")
    latency = metrics.get("latency")
    machine = metrics.get("machine") or {}
    cv_line, cv_table = _cv(metrics.get("cv"))
    members = metrics.get("members") or []
    if members:  # an average of runs (python -m training.ensemble): their training, their CV
        trained_line = (
            f"Joined with `{metrics.get('command')}` (nothing fitted: the members' weights, an unweighted mean). "
            + " ".join(
                f"`{m['run']}` was trained with `{m.get('command')}` ({m.get('final_epochs', '?')} epochs in the "
                "final fit on train+val)."
                for m in members
            )
        )
        cv_line = "not run for the average"
        cv_table = "The members' folds kept no predictions, so the average has no cross-validation figure. " + " ".join(
            f"`{m['run']}`: {_num((m.get('cv') or {}).get('0.90', {}).get('mae_k_mean'))} at 0.90"
            f" ({m.get('cv_folds_run') or 'no folds'})."
            for m in members
        )
    else:
        trained_line = (
            f"Trained with `{metrics.get('command', 'python -m training.train')}` "
            f"({metrics.get('final_epochs', '?')} epochs in the final fit on train+val)."
        )
    values = {
        "repo_id": repo_id,
        "arch": config.get("arch", "small"),
        "params": f"{metrics.get('params', config.get('params', 0)):,}",
        "model_kb": _num(metrics.get("model_bytes", 0) / 1000, ".0f"),
        "targets": ", ".join(f"{t:g}" for t in config["targets"]),
        "format": config["format"],
        "version": config["version"],
        "input_shape": "x".join(str(v) for v in config["input_shape"]),
        "reads_line": _input(config)[0],
        "input_desc": _input(config)[1],
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
        "trained_line": trained_line,
        "n_test": n_test,
        "test_table": _test_table(metrics["test"]),
        "cv_line": cv_line,
        "cv_table": cv_table,
        "baselines": _baselines(report, metrics),
        "latency_line": (
            f"One prediction (batch 1, CPU, after warm-up, median of {latency.get('calls', '?')} calls"
            + (f", a {latency['image']} image" if latency.get("image") else "")
            + (f", run with {'LiteRT' if latency['runtime'] == 'litert' else 'Keras'}" if latency.get("runtime") else "")
            + f") took {_num(latency.get('predict_ms_median'), '.2f')} ms with its preprocessing (resize, "
            f"{'patches' if config.get('patches') else 'input'}, features) and "
            f"{_num(latency.get('network_ms_median'), '.2f')} ms for the network alone, on the training machine "
            f"({machine.get('cpu') + ', ' if machine.get('cpu') else ''}{machine.get('cpu_count', '?')} CPUs, "
            "shared with other jobs; one thread). An absolute time holds for one machine only."
            if latency
            else "Not measured in this run (`--no-latency`)."
        ),
        **_rd_figures(rd),
    }
    return Template(TEMPLATE.read_text()).substitute(values)
