"""The ``svdk`` command line: compress, decompress, info, compare, bench.

Every command takes many inputs, reports one line (or one JSON record with
``--json``) per file, keeps going when a file fails, and exits with status 1
if any failed (2 for a bad command line). Errors are one line on stderr;
set ``SVDK_DEBUG=1`` to see Python tracebacks.

``compress`` spreads many inputs over ``--jobs N`` processes (default: the
usable cores) or a Ray cluster (``--engine ray``, :mod:`svdk.engine`), with
the same output bytes and the same lines, in input order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from tqdm import tqdm

from ._quiet import native_stderr_silenced
from ._tiled import TUNES
from .engine import positive_int

__all__ = ["main"]


def _ranks(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 64,16,16; got {text!r}")


def _codec_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rank choice (one of; default --quality ssim:0.90)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--rank", type=int, metavar="K", help="one rank (luma in ycbcr; chroma gets a quarter)")
    x.add_argument("--ranks", type=_ranks, metavar="A,B,C", help="one rank per plane: Y,Cb,Cr or R,G,B")
    x.add_argument("--quality", metavar="ssim:T|psnr:DB", help="smallest ranks reaching this quality")
    x.add_argument("--size", metavar="BYTES", help="best quality within a byte budget, e.g. 30KB")
    x.add_argument("--energy", type=float, metavar="F", help="keep this fraction of spectral energy")
    g.add_argument(
        "--policy",
        metavar="NAME",
        help="rank policy for the target above, e.g. cnn (prediction, checked; with --tiled the component count) or cnn-only",
    )
    o = p.add_argument_group("coding")
    o.add_argument("--mode", choices=("ycbcr", "rgb"), default="ycbcr", help="colour planes (default ycbcr)")
    o.add_argument(
        "--subsampling", choices=("4:2:0", "4:4:4"), default="4:2:0", help="chroma subsampling in ycbcr mode"
    )
    o.add_argument("--qstep", type=float, metavar="STEP", help="quantization step of each plane's weakest kept component; stronger ones get finer steps (default: per plane)")
    o.add_argument(
        "--tiled",
        action="store_true",
        help="tiled layout: an SVD per tile, ranks per tile from one threshold (needs --quality, --size or --energy)",
    )
    o.add_argument("--tile-size", type=int, metavar="T", help="tile size for --tiled (default 8)")
    o.add_argument(
        "--tune",
        choices=TUNES,
        default="psnr",
        help="with --tiled: choose components for PSNR (default) or for SSIM "
        "(more faint detail in flat regions, a coarser step: smaller files at the same SSIM, lower PSNR)",
    )


def _options(args) -> dict:
    return dict(
        mode=args.mode,
        subsampling=args.subsampling,
        rank=args.rank,
        ranks=args.ranks,
        quality=args.quality,
        size=args.size,
        energy=args.energy,
        policy=args.policy,
        qstep=args.qstep,
        tiled=args.tiled,
        tile_size=args.tile_size,
        tune=args.tune,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svdk",
        description="Image compression by truncated SVD, measured against PNG, JPEG, WebP and AVIF.",
        epilog="Inputs may be image paths or example:NAME (astronaut, coffee, chelsea, camera, ...). "
        "'svdk COMMAND --help' lists a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("compress", help="images -> .svdk files", description="Compress images to .svdk files.")
    p.add_argument("inputs", nargs="+", metavar="IN", help="images to compress")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="OUT", help="output file (one input only)")
    out.add_argument("--out-dir", metavar="DIR", help="folder for the outputs (default: beside each input)")
    _codec_options(p)
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("--json", action="store_true", help="print one JSON record per file")
    from .engine import add_options

    add_options(p)

    p = sub.add_parser("decompress", help=".svdk files -> images", description="Decode .svdk files to images.")
    p.add_argument("inputs", nargs="+", metavar="IN.svdk")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", metavar="OUT.png", help="output image (one input only)")
    out.add_argument("--out-dir", metavar="DIR", help="folder for the outputs (default: beside each input)")
    p.add_argument("--max-rank", type=positive_int, metavar="J", help="decode only the first J components")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")

    p = sub.add_parser("info", help="show .svdk headers", description="Show the header of .svdk files.")
    p.add_argument("inputs", nargs="+", metavar="FILE.svdk")
    p.add_argument("--json", action="store_true", help="print one JSON record per file")

    p = sub.add_parser(
        "compare",
        help="svdk vs PNG, JPEG, WebP, AVIF on one image",
        description="Compress with svdk and compare with PNG, and JPEG/WebP/AVIF at the same size "
        "and at the same SSIM.",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE")
    _codec_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON record per file")
    # listed for --help; 'svdk bench ...' goes to svdk.bench before parsing
    sub.add_parser(
        "bench",
        help="rate-distortion of svdk, JPEG, WebP, AVIF and PNG on a folder (svdk bench --help)",
        add_help=False,
    )
    return parser


def _version() -> str:
    from . import __version__

    return __version__


class _Failure(Exception):
    pass


def _target(src: str, args, suffix: str) -> Path:
    if args.output:
        dst = Path(args.output)
    else:
        name = Path(src.split(":", 1)[1] if src.startswith("example:") else src).stem + suffix
        dst = Path(args.out_dir) / name if args.out_dir else (
            Path(name) if src.startswith("example:") else Path(src).with_suffix(suffix)
        )
    if not src.startswith("example:") and Path(src).exists() and dst.exists() and dst.samefile(src):
        what = "an .svdk file: use 'svdk decompress'" if suffix == ".svdk" else "the input"
        raise _Failure(f"the output {dst} would overwrite {what}")
    if dst.exists() and not args.force:
        raise _Failure(f"{dst} exists; use --force to overwrite it")
    if not dst.parent.is_dir():
        raise _Failure(f"the output folder {dst.parent} does not exist")
    return dst


def _fmt_num(x, spec, none="-") -> str:
    if x is None:
        return none
    if x == float("inf"):
        return "inf"
    return format(x, spec)


def _cmd_compress(src: str, args, emit) -> None:
    import svdk
    from .compare import measure, record, Row

    dst = _target(src, args, ".svdk")
    enc = svdk.compress_file(src, dst, **_options(args))
    p, s = measure(svdk.load_image(src).merged(), svdk.decompress(enc.data))
    rec = {"input": src, "output": str(dst), **record(enc, Row("svdk", "-", None, enc.nbytes, enc.bpp, p, s))}
    if args.json:
        emit(json.dumps(rec))
    else:
        emit(
            f"{src} -> {dst}: {enc.nbytes} bytes, {enc.bpp:.3f} bpp, PSNR {_fmt_num(p, '.2f')} dB, "
            f"SSIM {_fmt_num(s, '.4f')}{f' ({m})' if (m := _measured(enc)) else ''}, {_ranks_text(enc)} ({_how(enc)}), "
            f"{enc.seconds:.2f} s"
        )


def _ranks_text(enc) -> str:
    """``ranks Y=64 Cb=16 Cr=16``, or the components kept in the tiled layout."""
    if enc.layout == "tiled":
        return "components " + " ".join(f"{n}={k}" for n, k in zip(enc.plane_names, enc.components))
    return "ranks " + " ".join(f"{n}={k}" for n, k in zip(enc.plane_names, enc.ranks))


def _how(enc) -> str:
    """The policy, and for a predicting one what it predicted, what its check did and the model."""
    if enc.predicted_rank is None:
        return enc.policy
    return f"{enc.policy}: predicted {enc.predicted_rank}, {enc.correction}; {enc.model}"


def _measured(enc) -> str:
    """The figure a quality target is about, when it is not the RGB figure printed beside it."""
    m = enc.measured
    if not m or (enc.mode != "ycbcr" and enc.layout == "global"):
        return ""
    unit = " dB" if m["metric"] == "psnr" else ""
    spec = ".2f" if m["metric"] == "psnr" else ".4f"
    where = "luma" if enc.mode == "ycbcr" else m["plane"]
    return f"{where} {m['metric'].upper()} {format(m['value'], spec)}{unit}, what the target measures"


def _cmd_decompress(src: str, args, emit) -> None:
    import svdk

    dst = _target(src, args, ".png")
    t0 = time.perf_counter()
    image = svdk.decompress_file(src, dst, max_rank=args.max_rank)
    emit(f"{src} -> {dst}: {image.shape[1]}x{image.shape[0]}, {time.perf_counter() - t0:.2f} s")


def _cmd_info(src: str, args, emit) -> None:
    import svdk

    rec = {"input": src, **svdk.info(src)}
    if args.json:
        emit(json.dumps(rec))
        return
    ranks = ", ".join(map(str, rec["ranks"]))
    if rec["layout"] == "tiled":
        ranks += f" (components kept: {', '.join(map(str, rec['components']))})"
    steps = ", ".join(f"{q:.4g}" for q in rec["qsteps"])
    layout = f", tiled {rec['tile']}x{rec['tile']}" if rec["layout"] == "tiled" else ""
    emit(
        f"{src}: svdk {rec['version']}, {rec['width']}x{rec['height']} {rec['mode']}"
        f"{' ' + rec['subsampling'] if rec['subsampling'] else ''}{' +alpha' if rec['alpha'] else ''}{layout}\n"
        f"  {'largest tile ranks' if layout else 'ranks'} {ranks}; steps {steps}; "
        f"{_CODING.get((rec['coder'], rec['predictor']), rec['coder'] + ' (' + rec['predictor'] + ' predictor)')}"
        f"{'; deblocking ' + ', '.join(map(str, rec['deblock'])) if any(rec['deblock']) else ''}\n"
        f"  {rec['bytes']} bytes (header {rec['header_bytes']}, payload {rec['payload_bytes']}, CRC 4), "
        f"{rec['bpp']:.3f} bpp"
    )


_CODING = {
    ("ans", "dct"): "rANS over band models (DCT of the factors, a step per component)",
    ("zlib", "delta"): "zlib (delta-coded factors, format 1.0)",
    ("lzma", "none"): "LZMA",
    ("ctx", "none"): "rANS with context models",
}


def _cmd_compare(src: str, args, emit) -> None:
    from .compare import compare

    cmp = compare(src, **_options(args))
    if args.json:
        emit(json.dumps({"input": src, **cmp.to_dict()}))
        return
    enc = cmp.encoded
    how = "; ".join(x for x in (_how(enc), _measured(enc)) if x)
    lines = [f"{src}: {cmp.width}x{cmp.height}, svdk {enc.mode} {_ranks_text(enc)} ({how})"]
    lines.append(f"  {'codec':6} {'match':10} {'quality':>7} {'bytes':>9} {'bpp':>7} {'PSNR dB':>8} {'SSIM':>7}")
    for r in cmp.rows:
        lines.append(
            f"  {r.codec:6} {r.match:10} {_fmt_num(r.quality, 'd'):>7} {_fmt_num(r.bytes, 'd'):>9} "
            f"{_fmt_num(r.bpp, '.3f'):>7} {_fmt_num(r.psnr, '.2f'):>8} {_fmt_num(r.ssim, '.4f'):>7}"
            + (f"  ({r.note})" if r.note and r.codec != "svdk" else "")
        )
    emit("\n".join(lines))


_PREDICTOR_READY = False


def _load_predictor_quietly(tiled: bool = False) -> None:
    """Load the rank predictor and run it once, before the first file, without the runtime's native noise.

    Once per process (the command's, or each worker's); ``tiled``: the tiled layout's model.
    """
    global _PREDICTOR_READY
    if _PREDICTOR_READY:
        return
    _PREDICTOR_READY = True

    from ._errors import SvdkError
    from .predictor import default_predictor, default_tiled_predictor

    with native_stderr_silenced():
        try:
            (default_tiled_predictor() if tiled else default_predictor()).warm_up()
        except SvdkError:
            pass  # each file then reports the error on its own line


_COMMANDS = {
    "compress": _cmd_compress,
    "decompress": _cmd_decompress,
    "info": _cmd_info,
    "compare": _cmd_compare,
}


# ----------------------------------------------------------------------------
# many inputs on svdk.engine (--jobs N, --engine ray)


def _error_message(src: str, exc: BaseException) -> str:
    from ._errors import SvdkError

    if isinstance(exc, (SvdkError, _Failure, OSError)):
        msg = str(exc)
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            msg = f"{exc.filename}: {exc.strerror}"
        return msg if src in msg else f"{src}: {msg}"
    return (f"{src}: internal error ({type(exc).__name__}: {exc}); "
            "please report it (SVDK_DEBUG=1 shows the traceback)")


def _run_one(task) -> tuple[list[tuple[str, str]], bool]:
    """One input of a command, in a worker: its lines (stdout or stderr, in the
    order they came) and whether it failed. Never raises."""
    name, src, args = task
    from ._errors import SvdkWarning

    if getattr(args, "policy", None) in ("cnn", "cnn-only") and not os.environ.get("SVDK_DEBUG"):
        _load_predictor_quietly(bool(getattr(args, "tiled", False) or getattr(args, "tile_size", None)))
    lines: list[tuple[str, str]] = []

    def show_warning(message, category, filename, lineno, file=None, line=None):
        lines.append(("err", f"svdk: note: {message}"))

    with warnings.catch_warnings():
        warnings.simplefilter("always", SvdkWarning)
        warnings.showwarning = show_warning
        try:
            _COMMANDS[name](src, args, lambda text: lines.append(("out", text)))
            return lines, False
        except Exception as exc:
            lines.append(("err", f"svdk: error: {_error_message(src, exc)}"))
            return lines, True


def _outputs_collide(args) -> bool:
    """Two inputs that would write one output file (run those one after another)."""
    if args.command not in ("compress", "decompress"):
        return False
    names = [
        Path(src.split(":", 1)[1] if src.startswith("example:") else src).stem
        if (args.out_dir or src.startswith("example:")) else str(Path(src).with_suffix(""))
        for src in args.inputs
    ]
    return len(set(names)) < len(names)


def _use_engine(args) -> bool:
    from .engine import usable_cores

    if getattr(args, "engine", None) is None or os.environ.get("SVDK_DEBUG") or _outputs_collide(args):
        return False
    return args.engine == "ray" or (len(args.inputs) > 1 and (args.jobs or usable_cores()) > 1)


def _main_engine(args) -> int:
    from .engine import EngineError, Failure, map_images

    failed = 0
    bar = tqdm(total=len(args.inputs), disable=None, file=sys.stderr, unit="file")
    tasks = [(args.command, src, args) for src in args.inputs]
    try:
        for index, result in map_images(_run_one, tasks, engine=args.engine, jobs=args.jobs,
                                        address=args.address):
            if isinstance(result, Failure):  # the worker itself failed
                result = [("err", f"svdk: error: {args.inputs[index]}: {result}")], True
            lines, bad = result
            failed += bad
            for stream, text in lines:
                tqdm.write(text, file=sys.stdout if stream == "out" else sys.stderr)
            bar.update()
    except EngineError as exc:
        bar.close()
        print(f"svdk: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        tqdm.write("svdk: interrupted", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if failed:
        tqdm.write(f"svdk: {failed} of {len(args.inputs)} files failed", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "output", None) and len(args.inputs) > 1:
        parser.error("-o/--output takes one input; use --out-dir for several")
    if getattr(args, "out_dir", None):
        out_dir = Path(args.out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            parser.error(f"--out-dir {args.out_dir} is a file, not a folder")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.error(f"--out-dir {args.out_dir} cannot be made ({exc.strerror or exc})")
    if getattr(args, "engine", None) is not None:
        from .engine import check_options

        check_options(parser, args)
    if _use_engine(args):
        return _main_engine(args)
    debug = bool(os.environ.get("SVDK_DEBUG"))
    command = _COMMANDS[args.command]
    if getattr(args, "policy", None) in ("cnn", "cnn-only") and not debug:
        _load_predictor_quietly(bool(getattr(args, "tiled", False) or getattr(args, "tile_size", None)))
    failed = 0
    bar = tqdm(args.inputs, disable=len(args.inputs) < 2 or None, file=sys.stderr, unit="file")

    def emit(text: str) -> None:
        tqdm.write(text, file=sys.stdout)

    from ._errors import SvdkError, SvdkWarning

    def show_warning(message, category, filename, lineno, file=None, line=None):
        tqdm.write(f"svdk: note: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", SvdkWarning)
            warnings.showwarning = show_warning
            for src in bar:
                try:
                    command(src, args, emit)
                except (SvdkError, _Failure, OSError) as exc:
                    failed += 1
                    msg = str(exc)
                    if isinstance(exc, OSError) and exc.filename and exc.strerror:
                        msg = f"{exc.filename}: {exc.strerror}"
                    if src not in msg:
                        msg = f"{src}: {msg}"
                    tqdm.write(f"svdk: error: {msg}", file=sys.stderr)
                    if debug:
                        raise
                except Exception as exc:  # never a traceback for a user
                    if debug:
                        raise
                    failed += 1
                    tqdm.write(
                        f"svdk: error: {src}: internal error ({type(exc).__name__}: {exc}); "
                        "please report it (SVDK_DEBUG=1 shows the traceback)",
                        file=sys.stderr,
                    )
    except KeyboardInterrupt:
        tqdm.write("svdk: interrupted", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if failed and len(args.inputs) > 1:
        tqdm.write(f"svdk: {failed} of {len(args.inputs)} files failed", file=sys.stderr)
    return 1 if failed else 0
