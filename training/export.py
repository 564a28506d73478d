"""Write the LiteRT file of rank-predictor models: ``python -m training.export MODEL_OR_RUN...``.

Each argument is a ``.keras`` file or a run folder (holding ``model.keras``),
of the global layout's rank predictor or of the tiled layout's predictor
(``svdk/models/tiled``, ``runs/tiled``: told apart by the ``format`` of the
JSON configuration beside it).
``model.tflite`` (or ``NAME.tflite``) is written beside it, checked against
the Keras model (``log k`` within 1e-4 on random inputs), and its sha256 is
recorded in the JSON configuration (``litert_sha256``). ``python -m
training.train`` does this for every new run; this command converts runs
made before, and the shipped model: ``python -m training.export
svdk/models/patch.keras``. Needs TensorFlow (``pip install
'svdk[keras]'``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.split("\n")[0])
    p.add_argument("models", nargs="+", metavar="MODEL_OR_RUN", help="a .keras file or a run folder")
    args = p.parse_args(argv)
    import json

    from svdk.predictor import MODEL_FILE, TILED_FORMAT, ModelError, config_path, export_litert, export_tiled_litert

    failed = 0
    for name in args.models:
        path = Path(name)
        if path.is_dir():
            path = path / MODEL_FILE
        try:
            config = json.loads(config_path(path).read_text())
        except (OSError, ValueError):
            config = {}  # missing or unreadable: the global export says what is wrong
        tiled = isinstance(config, dict) and config.get("format") == TILED_FORMAT
        try:
            out = (export_tiled_litert if tiled else export_litert)(path)
        except ModelError as exc:
            print(f"training.export: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path} -> {out} ({out.stat().st_size} bytes)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
