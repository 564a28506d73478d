"""Print the README's tables from the committed results: ``python -m benchmarks.tables``.

Every figure the README quotes comes from a JSON file in ``results/``, made
by the command named in that file; this script only formats them, so the
README can be checked against (or regenerated from) the JSON at any time.
``--only NAME`` prints one table (speed, rd, rd-bsds500, predictor, kodak, coding, app, cli);
``--write README.md`` replaces, in that file, the text between each
``<!-- table:NAME -->`` and ``<!-- /table:NAME -->`` with the table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent.parent / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / name
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
    ]
    out = [
        f"`{d['command'].strip()}`, {d['machine']['cpu_count']} cores, median over {d['images']} Kodak images "
        f"of each image's median of {d['repeats']} runs:",
        "",
        "| operation | svdk | target | ratio to Pillow | Pillow reference |",
        "|---|---|---|---|---|",
    ]
    for label, key, ratio, ref in rows:
        f = fig[key]
        ok = "" if f.get("pass") is None else (" (met)" if f["pass"] else " (**missed**)")
        out.append(f"| {label} | {f['value']:.1f} ms | {f['target']} ms{ok} | {fig[ratio]['value']:.1f}x | {ref}: "
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


def rd(folder: str = "bench-kodak") -> str:
    d = _load(f"{folder}/summary.json")
    if d is None:
        return ""
    out = [
        f"`{d['command']}` ({len(d['images'])} images; BD against JPEG over {d['bd_range_bpp'][0]}-"
        f"{d['bd_range_bpp'][1]} bpp, averaged per image):",
        "",
        "| codec | BD-PSNR vs JPEG | BD-rate vs JPEG | PSNR at 0.25 bpp | at 0.5 bpp | at 1 bpp |",
        "|---|---|---|---|---|---|",
    ]
    n = len(d["images"])

    def at(c, bpp):
        v, m = c.get(f"psnr_at_{bpp}_bpp"), c.get(f"psnr_at_{bpp}_bpp_images", n)
        return _f(v, ".2f") + ("" if m == n or v is None else f" [{m}/{n}]")

    partial = False
    for name, c in d["codecs"].items():
        if name == "png":
            continue
        partial |= any(c.get(f"psnr_at_{b}_bpp_images", n) != n for b in ("0.25", "0.5", "1"))
        out.append(
            f"| {name} | {_f(c.get('bd_psnr_db'), '+.2f')} dB | {_f(c.get('bd_rate_percent'), '+.1f')} % | "
            f"{at(c, '0.25')} | {at(c, '0.5')} | {at(c, '1')} |"
        )
    if partial:
        out += ["", "`[m/n]`: only m of the n images reach that rate (a codec's lowest setting is above it); "
                "the mean is over those m, never extrapolated."]
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


TABLES = {
    "speed": speed,
    "rd": rd,
    "rd-bsds500": lambda: rd("bench-bsds500-test"),
    "predictor": predictor,
    "kodak": kodak,
    "coding": coding,
    "app": app,
    "cli": cli,
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
    args = p.parse_args(argv)
    tables = {name: fn() for name, fn in TABLES.items() if not args.only or name == args.only}
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
