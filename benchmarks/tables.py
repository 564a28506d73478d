"""Print the README's tables from the committed results: ``python -m benchmarks.tables``.

Every figure the README quotes comes from a JSON file in ``results/``, made
by the command named in that file; this script only formats them, so the
README can be checked against (or regenerated from) the JSON at any time.
``--only NAME`` prints one table (speed, rd, rd-bsds500, predictor, kodak, coding, app, cli,
tiled-model, tiled-eval, tiled-speed, tune, tune-choice);
``--write README.md`` replaces, in that file, the text between each
``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` with the table;
``--results DIR`` reads another results folder (a trial run's, say:
``svdk bench ... --out DIR/bench-kodak``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent.parent / "results"
_RESULTS: list[Path] = []  # the folder --results names, while main runs


def _results() -> Path:
    return _RESULTS[-1] if _RESULTS else RESULTS


def _load(name: str) -> dict | None:
    path = _results() / name
    if not path.is_file():
        print(f"note: {path} is missing; run the command that makes it (see benchmarks/README.md)", file=sys.stderr)
        return None
    return json.loads(path.read_text())


def _f(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def speed() -> str:
    d = _load("codec_speed.json")
    if d is None:
        return ""
    fig = d["figures"]
    rows = [
        ("compress, ranks 64/16/16", "compress_ms", "ratio_compress_to_jpeg_encode", "JPEG q75 encode"),
        ("decompress", "decompress_ms", "ratio_decompress_to_jpeg_decode", "JPEG decode"),
        ("`quality` policy, SSIM 0.90 on luma", "quality_ms", "ratio_quality_to_jpeg_encode", "JPEG q75 encode"),
        ("the same, tiled layout", "tiled_quality_ms", "ratio_tiled_quality_to_jpeg_encode", "JPEG q75 encode"),
        ("decompress that tiled file", "tiled_decompress_ms", "ratio_tiled_decompress_to_jpeg_decode", "JPEG decode"),
    ]
    out = [
        f"`{d['command'].strip()}`, {d['machine']['cpu_count']} cores, median over {d['images']} Kodak images "
        f"of each image's median of {d['repeats']} runs:",
        "",
        "| operation | svdk | target | ratio to Pillow | Pillow reference |",
        "|---|---|---|---|---|",
    ]
    def met(f):
        return "" if f.get("pass") is None else (" (met)" if f["pass"] else " (**missed**)")

    for label, key, ratio, ref in rows:
        if key not in fig:  # a run from before the figure existed
            continue
        f, r = fig[key], fig[ratio]
        target = f"{f['target']} ms{met(f)}" if f.get("target") else ""
        rtarget = f" (target {r['target']}x{met(r)})" if r.get("target") else ""
        out.append(f"| {label} | {f['value']:.1f} ms | {target} | {r['value']:.1f}x{rtarget} | {ref}: "
                   f"{fig['jpeg_encode_ms' if 'encode' in ref else 'jpeg_decode_ms']['value']:.1f} ms |")
    big, mem = fig["large_compress_s"], fig["large_peak_delta_mb"]
    out.append(f"| 12 MP (4000x3000) compress, luma rank 200 | {big['value']:.2f} s | {big['target']} s"
               f"{' (met)' if big['pass'] else ' (**missed**)'} | | peak memory +{mem['value']:.0f} MB "
               f"(target {mem['target']}) |")
    out.append("")
    out.append(f"The `quality` policy used {fig['quality_evaluations']['value']:.0f} SSIM evaluations (median); the "
               f"randomized SVD costs {fig['rsvd_psnr_loss_rgb_db']['value']:.3f} dB PSNR against an exact SVD at "
               "luma rank 64.")
    return "\n".join(out)


RANGES = ("0.25-1", "0.1-0.3")
#: What the rate-distortion tables say about each codec's settings, by name.
ANCHORS = {
    "jpeg": "Pillow's JPEG, 4:2:0, optimized Huffman tables: the reference",
    "jpegli": "jpegli (pyjpegli), 4:2:0",
    "webp": "Pillow's WebP, method 4",
    "avif": "Pillow's AVIF, default speed",
    "jxl": "JPEG XL (libjxl), effort 7",
}


def _bd_rows(codec: dict) -> dict | None:
    """A codec's Bjøntegaard figures by measure and range, from either summary layout.

    Summaries made before the 0.1-0.3 bpp range and MS-SSIM have only the
    PSNR figures over 0.25-1.0 bpp, at the codec's top level.
    """
    if "bd" in codec:
        return codec["bd"]
    if "bd_psnr_db" not in codec:
        return None
    return {"psnr-rgb": {"0.25-1": {
        "bd_rate_percent": codec.get("bd_rate_percent"), "bd_rate_images": codec.get("bd_rate_images"),
        "bd_quality_db": codec.get("bd_psnr_db"), "bd_quality_images": codec.get("bd_images"),
    }}}


def rd(folder: str = "bench-kodak") -> str:
    d = _load(f"{folder}/summary.json")
    if d is None:
        return ""
    try:
        return _rd(d)
    except (KeyError, TypeError, ValueError) as exc:
        raise SystemExit(
            f"{_results() / folder / 'summary.json'} is not an 'svdk bench' summary this script can read "
            f"({type(exc).__name__}: {exc}); rerun the command it names: {d.get('command') or 'svdk bench'}"
        ) from None


def _rd(d: dict) -> str:
    n = len(d["images"])
    ref = d["reference"]
    old = not any("bd" in c for c in d["codecs"].values())
    ms = d.get("ms_ssim") or {}
    notes = {"partial": False, "overlap": False}

    def count(v, m):  # "[0/n]" too: a "-" that says no image covers it
        return "" if m is None or m == n else f" [{m}/{n}]"

    def rate(row):
        if row is None:
            return "n/a"
        v = row.get("bd_rate_percent")
        share = row.get("bd_rate_overlap")
        cell = _f(v, "+.1f") + ("" if v is None else " %") + count(v, row.get("bd_rate_images"))
        notes["partial"] |= bool(count(v, row.get("bd_rate_images")))
        if v is not None and share is not None and share < 0.9:
            notes["overlap"] = True
            cell += f" (on {100 * share:.0f} %)"
        return cell

    def db(row):
        if row is None:
            return "n/a"
        v = row.get("bd_quality_db")
        notes["partial"] |= bool(count(v, row.get("bd_quality_images")))
        return _f(v, "+.2f") + ("" if v is None else " dB") + count(v, row.get("bd_quality_images"))

    def at(c, bpp):
        v, m = c.get(f"psnr_at_{bpp}_bpp"), c.get(f"psnr_at_{bpp}_bpp_images", n)
        notes["partial"] |= bool(count(v, m))
        return _f(v, ".2f") + count(v, m)

    rows = {name: (c, _bd_rows(c)) for name, c in d["codecs"].items() if name != "png"}
    out = [
        f"`{d['command']}` ({n} images; against {ANCHORS.get(ref, ref)}; each figure per image, then "
        "averaged; BD-rate: the bits saved (negative) or spent for the same quality; BD in dB: the "
        "quality gained at the same rate):",
        "",
        "| codec | BD-rate, 0.25-1 bpp | BD-PSNR, 0.25-1 bpp | BD-rate, 0.1-0.3 bpp | BD-PSNR, 0.1-0.3 bpp "
        "| PSNR at 0.25 bpp | at 0.5 bpp | at 1 bpp |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, (c, bd) in rows.items():
        psnr = (bd or {}).get("psnr-rgb", {})
        out.append(f"| {name} | " + " | ".join(x for r in RANGES for x in (rate(psnr.get(r)), db(psnr.get(r))))
                   + f" | {at(c, '0.25')} | {at(c, '0.5')} | {at(c, '1')} |")
    if any("ms-ssim-rgb" in (bd or {}) for _, bd in rows.values()):
        out += [
            "",
            "MS-SSIM (RGB; TensorFlow's `tf.image.ssim_multiscale`), compared in dB, `-10 log10(1 - MS-SSIM)`:",
            "",
            "| codec | BD-rate, 0.25-1 bpp | BD-MS-SSIM dB, 0.25-1 bpp | BD-rate, 0.1-0.3 bpp "
            "| BD-MS-SSIM dB, 0.1-0.3 bpp |",
            "|---|---|---|---|---|",
        ]
        for name, (_, bd) in rows.items():
            msr = (bd or {}).get("ms-ssim-rgb", {})
            out.append(f"| {name} | " + " | ".join(x for r in RANGES for x in (rate(msr.get(r)), db(msr.get(r))))
                       + " |")
    footer = []
    if notes["partial"]:
        footer.append("`[m/n]`: over the m of the n images whose curves cover that range or reach that rate (a "
                      "codec's lowest setting can be above it); never extrapolated.")
    if notes["overlap"]:
        footer.append("`(on x %)`: the codec's curve spans only x % of JPEG's quality interval over that range (even "
                      "its lowest setting is above the interval's low end, or its highest below the top), so its "
                      "BD-rate is the mean over that part only.")
    if old:
        footer.append("This summary predates the 0.1-0.3 bpp range, MS-SSIM and the jpegli and JPEG XL anchors "
                      "(`n/a`); the command above, rerun, gives them.")
    elif ms and not ms.get("measured", True):
        footer.append(f"MS-SSIM {ms.get('note', 'was not measured')}.")
    for name, why in (d.get("skipped") or {}).items():
        footer.append(f"{name}: not run ({why}).")
    if footer:
        out += [""] + [" ".join(footer)]
    return "\n".join(out)


def predictor() -> str:
    d = _load("predictor.json")
    if d is None:
        return ""
    from training.report import table

    checks = d.get("checks") or {}
    lines = [table(d), ""]
    shipped = [n for n, r in d["models"].items() if r.get("shipped")]
    lines.append(f"Shipped in `svdk/models`: {', '.join(shipped) or 'none of these runs'}.")
    if d.get("default_choice"):
        lines.append(f"The report's choice: {d['default_choice']['why']}.")
    if d.get("machine"):
        m = d["machine"]
        lines.append(f"Latency measured on {m['cpu']}, {m['cpu_count']} cores shared with other jobs.")
    for name, c in checks.items():
        r, e, lat = c["vs_constant_at_0.90"], c["beats_energy_at_0.90"], c["latency_ms"]
        lines.append(
            f"- `{name}` at 0.90: {r['ratio']:.2f} x the constant baseline's error (target {r['target']}: "
            f"{'met' if r['met'] else 'missed'}); {'beats' if e['met'] else 'does not beat'} the energy rule "
            f"({e['model']:.1f} against {e['energy']:.1f}); one prediction {lat['value']:.1f} ms "
            f"(target {lat['target']}: {'met' if lat['met'] else 'missed'})"
            + (f", {ratio:.1f} x Pillow's JPEG encode of the same image timed alongside"
               if (ratio := (d["models"][name].get("latency") or {}).get("predict_vs_jpeg_encode")) else "")
        )
    return "\n".join(lines)


def kodak() -> str:
    d = _load("predictor_kodak.json")
    if d is None:
        return ""
    out = [
        f"`{d['command'].strip()}` (model `{d['model']}`):",
        "",
        "| target | exact: evals, s | `cnn`: reach, bytes vs exact, evals, s, time saved | "
        "`cnn-only`: reach (t-0.01), SSIM min, bytes vs exact |",
        "|---|---|---|---|",
    ]
    for t, s in d["summary"].items():
        e, c, o = s["exact"], s["cnn"], s["cnn-only"]
        out.append(
            f"| {t} | {e['evaluations_mean']:.1f}, {e['seconds_mean']:.2f} | {c['reach']:.2f}, "
            f"x{c['bytes_vs_exact_mean']:.3f}, {c['evaluations_mean']:.1f}, {c['seconds_mean']:.2f}, "
            f"{c['time_saved_pct']:.0f} % | {o['reach']:.2f} ({o['reach_minus_0.01']:.2f}), {o['ssim_min']:.3f}, "
            f"x{o['bytes_vs_exact_mean']:.3f} |"
        )
    return "\n".join(out)


def coding() -> str:
    d = _load("global_coding.json")
    if d is None:
        return ""
    labels = {
        "v1": "format 1.0: one step per plane, delta, zlib",
        "v1-lzma": "the same integers, LZMA",
        "steps": "a step per component, delta, zlib",
        "steps-lzma": "a step per component, delta, LZMA",
        "v2": "format 2.0: a step per component, DCT, rANS over band models",
        "v2-step1.2": "format 2.0, step factor 1.2",
        "v2-step2.0": "format 2.0, step factor 2.0",
    }
    base = d["summary"]["v1"]["bd_psnr_db"]
    out = [
        f"`{d['command'].strip()}` ({len(d['images'])} images; BD-PSNR against JPEG over 0.25-1.0 bpp, "
        "per image then averaged):",
        "",
        "| variant | step factor | BD-PSNR vs JPEG | gain over format 1.0 |",
        "|---|---|---|---|",
    ]
    for name, row in d["summary"].items():
        out.append(
            f"| {labels.get(name, name)} | {row['factor']:g} | {row['bd_psnr_db']:+.2f} dB | "
            f"{row['bd_psnr_db'] - base:+.2f} dB |"
        )
    return "\n".join(out)


def tiled_coding() -> str:
    d = _load("tiled_coding.json")
    if d is None:
        return ""
    labels = {
        "v2": "format 2.0: one step per plane, LZMA",
        "ctx": "entropy coder 3 (rANS, context models) instead of LZMA",
        "deblock": "and the deblocking filter",
        "refine": "and the least-squares refinement of the factors",
        "v3": "format 3.0: and its step factor",
        "lowstep": "and a coarser step at low rates (below 0.4 to 0.8 luma components per tile)",
    }
    out = [
        f"`{d['command'].strip()}` ({len(d['images'])} images, the tiled layout; BD-PSNR against JPEG over "
        "0.25-1.0 bpp, per image then averaged; each row adds one part):",
        "",
        "| variant | step factor | BD-PSNR vs JPEG | gain over the row above |",
        "|---|---|---|---|",
    ]
    before = None
    for name, row in d["summary"].items():
        gain = "" if before is None else f"{row['bd_psnr_db'] - before:+.2f} dB"
        factor = f"{row['step']:g}" if row.get("low", row["step"]) == row["step"] else f"{row['low']:g} to {row['step']:g}"
        out.append(f"| {labels.get(name, name)} | {factor} | {row['bd_psnr_db']:+.2f} dB | {gain} |")
        before = row["bd_psnr_db"]
    return "\n".join(out)


def app() -> str:
    d = _load("app_speed.json")
    if d is None:
        return ""
    c = d["concurrent"]

    def row(label, f):
        target = f.get("target") or ""
        ok = "" if f.get("pass") is None else (" (met)" if f["pass"] else " (**missed**)")
        return f"| {label} | {f['value']} {f['unit']} | {target}{ok} |"

    return "\n".join([
        f"`{d['command'].strip()}`, the shipped model, Kodak images ({d['settings']}):",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        row("start-up: process start to first request served", d["startup_s"]),
        row("one request with the full comparison, server side (median, new images)", d["request_s"]),
        row("the same image again at another target", d["request_warm_s"]),
        *([row("tiled layout: one request, server side (median, other new images)", d["tiled_request_s"])]
          if "tiled_request_s" in d else []),
        *([row("rank explorer in Chromium: slider moved to new image drawn (median)", d["slider_ms"])]
          if "slider_ms" in d else []),
        row("client round trip", d["roundtrip_s"]),
        row("server CPU time per request (all threads)", d["cpu_s_per_request"]),
        f"| {c['clients']} clients x {c['requests_per_client']} requests | {len(c['errors'])} errors, p95 "
        f"{c['p95_s']:.1f} s, peak memory {c['peak_rss_mb']:.0f} MB | no error"
        f"{' (met)' if not c['errors'] else ' (**missed**)'} |",
    ])


def cli() -> str:
    d = _load("cli_speed.json")
    if d is None:
        return ""
    m, r = d["median_s"], d["ratio_to_pillow_jpeg"]
    target = d["ratio_cnn_litert_to_quality"]
    labels = {
        "quality": "`svdk compress photo.png` (default `quality` policy, exact search)",
        "cnn (LiteRT)": "`... --policy cnn`, LiteRT (the default runtime)",
        "cnn (Keras)": "`... --policy cnn`, `SVDK_PREDICTOR_RUNTIME=keras` (imports TensorFlow)",
        "pillow jpeg": "reference: a Python process writing the photo as JPEG with Pillow",
    }
    out = [
        f"`{d['command'].strip()}`, {d['machine']['cpu_count']} cores, one process per photo (start-up "
        f"included), median over {len(d['images'])} Kodak images x {d['repeats']} runs:",
        "",
        "| command | wall time | ratio to Pillow's JPEG process |",
        "|---|---|---|",
    ]
    out += [f"| {labels[name]} | {m[name]:.2f} s | {r[name]:.1f}x |" for name in labels]
    ok = " (met)" if target["pass"] else " (**missed**)"
    out += ["", f"`--policy cnn` with LiteRT takes {target['value']:.2f} times the default policy's time "
            f"(target {target['target']}{ok}); with Keras {d['ratio_cnn_keras_to_quality']:.2f} times."]
    return "\n".join(out)


def tiled_model() -> str:
    d = _load("tiled_predictor.json")
    if d is None:
        return ""
    out = [
        f"`{d['command'].strip()}`, BSDS500 test split at native size ({d['images']['test']} images; "
        f"{d['params']} parameters, {d['tflite_bytes'] / 1e3:.0f} kB as LiteRT):",
        "",
        "| target | error in log n: model | SSIM proxy alone | constant per tile | model: median / p90 of abs(n/n_exact - 1) |",
        "|---|---|---|---|---|",
    ]
    for t, s in d["test"].items():
        m = s["model"]
        out.append(f"| {t} | {m['mae_log_n']:.3f} | {s['proxy_alone']['mae_log_n']:.3f} | "
                   f"{s['constant_per_tile']['mae_log_n']:.3f} | {100 * m['median_rel_error']:.1f} % / "
                   f"{100 * m['p90_rel_error']:.1f} % |")
    return "\n".join(out)


def tiled_eval() -> str:
    runs = [("Kodak (24, 768x512)", "predictor_kodak_tiled.json"),
            ("BSDS500 test (481x321)", "predictor_bsds500_test_tiled.json"),
            ("scikit-image photos", "predictor_examples_tiled.json")]
    out = [
        "| images | target | exact: evaluations (median), s (mean) | `cnn`: target reached, evaluations (median), "
        "bytes vs exact (mean), time vs exact (median) | `cnn-only`: reached (t-0.01), bytes vs exact |",
        "|---|---|---|---|---|",
    ]
    commands = []
    for label, name in runs:
        d = _load(name)
        if d is None:
            continue
        commands.append(f"`{d['command'].strip()}`")
        for t, s in d["summary"].items():
            e, c, o = s["exact"], s["cnn"], s["cnn-only"]
            out.append(
                f"| {label} | {t} | {e['evaluations_median']:.0f}, {e['seconds_mean']:.3f} | {c['reached']}, "
                f"{c['evaluations_median']:.0f}, x{c['bytes_vs_exact_mean']:.3f}, x{c['time_vs_exact_median']:.2f} | "
                f"{o['reached']} ({o['reach_minus_0.01']:.2f}), x{o['bytes_vs_exact_mean']:.3f} |"
            )
    return ", ".join(commands) + ":\n\n" + "\n".join(out) if commands else ""


def tiled_speed() -> str:
    d = _load("tiled_speed.json")
    if d is None:
        return ""
    s = d["summary"]
    if "cnn_to_jpeg_target" in s:
        ok = "met" if s["cnn_to_jpeg_met"] else "**missed**"
        verdict = (
            f"`cnn` takes {s['cnn_to_jpeg_per_image']:.1f}x JPEG's encode (median of per-image ratios; target "
            f"<= {s['cnn_to_jpeg_target']:.0f}x, 0.6 of the 90x the exact search took when the goal was set "
            f"({ok})) and {s['cnn_to_quality']:.2f} times today's exact search"
        )
    else:  # a run from before the target was written as JPEG's multiple
        ok = "met" if s["cnn_to_quality_met"] else "**missed**"
        verdict = (
            f"`cnn` takes {s['cnn_to_quality']:.2f} times the exact search's time (median of per-image ratios; "
            f"target <= {s['cnn_to_quality_target']} ({ok}))"
        )
    return "\n".join([
        f"`{d['command'].strip()}`, {d['machine']['cpu_count']} cores (load average "
        f"{d['machine']['load_average_1_5_15min'][0]}), median over {d['images']} Kodak images of each image's "
        f"median of {d['repeats']} runs:",
        "",
        "| tiled encode at SSIM 0.90 on luma | time | ratio to Pillow's JPEG q75 encode | SSIM evaluations (median) |",
        "|---|---|---|---|",
        f"| exact search (`quality`) | {s['quality_ms']:.1f} ms | {s['quality_to_jpeg']:.1f}x | "
        f"{s['quality_evaluations_median']:.0f} |",
        f"| predicted and checked (`cnn`) | {s['cnn_ms']:.1f} ms | {s['cnn_to_jpeg']:.1f}x | "
        f"{s['cnn_evaluations_median']:.0f} |",
        f"| what neither can save: the tile SVDs (`svdk.Encoder`) | {s['decompose_ms']:.1f} ms | "
        f"{s['decompose_ms'] / s['jpeg_ms']:.1f}x | |",
        f"| ... and packing the file (`Encoder.pack`) | {s['pack_ms']:.1f} ms | {s['pack_ms'] / s['jpeg_ms']:.1f}x | |",
        "",
        f"{verdict}, for files {100 * (s['cnn_bytes_vs_quality_median'] - 1):.1f} % "
        f"larger (median); decomposing and packing alone are {100 * s['fixed_share']:.0f} % of the exact "
        "search's time.",
    ])


def tune() -> str:
    d = _load("tune.json")
    if d is None:
        return ""
    labels = {"kodak": "Kodak-24", "bsds500-test": "BSDS500 test", "scikit-image": "scikit-image (4)"}
    out = [
        f"`{d['command'].strip()}` (the tiled layout at SSIM targets on luma, `tune=\"ssim\"` against the default):",
        "",
        "| images | target | file size, tuned for SSIM / default: median (mean) | files smaller | targets met "
        "(both tunes) | PSNR-RGB change (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for name, summary in d["summary"].items():
        for t, r in summary.items():
            out.append(
                f"| {labels.get(name, name)} | {t} | x{r['size_ratio_median']:.3f} (x{r['size_ratio_mean']:.3f}) | "
                f"{r['smaller']}/{r['images']} | {r['targets_met']}/{r['images']} | "
                f"{r['psnr_change_db_mean']:+.2f} dB |"
            )
    return "\n".join(out)


def tune_choice() -> str:
    d = _load("tune_choice.json")
    if d is None:
        return ""
    labels = {"kodak": "Kodak (12)", "bsds500-test": "BSDS500 test (12)", "scikit-image": "scikit-image (4)"}
    sets = list(d["summary"])
    out = [
        f"`{d['command'].strip()}` (BD-rate against JPEG over 0.25-1 bpp, PSNR / MS-SSIM, per image then averaged; "
        "`ssim` is what svdk writes):",
        "",
        "| variant | SSIM_MASKING | SSIM_MASKING_C | step factors | "
        + " | ".join(labels.get(n, n) for n in sets) + " |",
        "|---|---|---|---|" + "---|" * len(sets),
    ]
    for variant, (tune, masking, constant, steps) in d["variants"].items():
        cells = []
        for n in sets:
            r = d["summary"][n][variant]
            cells.append(f"{_f(r['psnr 0.25-1'], '+.1f')} % / {_f(r['ms-ssim 0.25-1'], '+.1f')} %")
        knobs = ("-", "-", "1.25-1.5") if tune == "psnr" else (f"{masking:g}", f"{constant:g}",
                                                                f"{steps[0]:g}-{steps[1]:g}")
        out.append(f"| {variant} | " + " | ".join(knobs) + " | " + " | ".join(cells) + " |")
    return "\n".join(out)


TABLES = {
    "speed": speed,
    "rd": rd,
    "rd-bsds500": lambda: rd("bench-bsds500-test"),
    "predictor": predictor,
    "kodak": kodak,
    "coding": coding,
    "tiled-coding": tiled_coding,
    "app": app,
    "cli": cli,
    "tiled-model": tiled_model,
    "tiled-eval": tiled_eval,
    "tiled-speed": tiled_speed,
    "tune": tune,
    "tune-choice": tune_choice,
}


def write(path: Path, tables: dict[str, str]) -> list[str]:
    """Replace each marked block of ``path`` with its table; return the names replaced."""
    text = path.read_text()
    done = []
    for name, table in tables.items():
        pattern = re.compile(rf"(<!-- table:{name} -->\n).*?(<!-- /table:{name} -->)", re.S)
        if table and pattern.search(text):
            text = pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text)
            done.append(name)
    path.write_text(text)
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tables", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=sorted(TABLES))
    p.add_argument("--write", metavar="FILE", help="replace the marked tables in FILE (the README)")
    p.add_argument("--results", metavar="DIR", type=Path, default=RESULTS,
                   help="the results folder to read (default: the repository's results/)")
    args = p.parse_args(argv)
    _RESULTS.append(args.results)
    try:
        tables = {name: fn() for name, fn in TABLES.items() if not args.only or name == args.only}
    finally:
        _RESULTS.pop()
    if args.write:
        done = write(Path(args.write), tables)
        print(f"updated {', '.join(done) or 'no'} tables in {args.write}")
        return 0
    for name, text in tables.items():
        if text:
            print(f"<!-- {name} -->\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
