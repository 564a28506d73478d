"""Publish a trained rank predictor to the Hugging Face Hub, with its model card.

``python -m hub.publish --repo-id OWNER/NAME --run RUN_DIR [--private] [--revision-note TEXT]
[--endpoint URL] [--token TOKEN] [--rd results/bench-kodak/summary.json] [--report results/predictor.json]``

``RUN_DIR`` is a folder made by ``python -m training.train --out RUN_DIR``
(``model.keras``, ``model.tflite``, ``model.json``, ``metrics.json``). The model is loaded with
the same checks as :meth:`svdk.predictor.RankPredictor.load` before anything
is sent. One commit then uploads:

* ``model.keras``;
* ``model.tflite``, when the run has it (every run of ``training.train``
  does; ``python -m training.export RUN`` makes it for an older one): the
  same network for LiteRT, so users predict without TensorFlow;
* ``model.json``, the run's configuration plus ``weights_sha256`` (the sha256
  of ``model.keras``, which :meth:`~svdk.predictor.RankPredictor.from_pretrained`
  checks every download against);
* ``metrics.json``, as the run wrote it;
* ``README.md``, the model card made by :func:`hub.card.render_card`.

The repo is created if it does not exist (``--private`` makes a new repo
private). The commit id is printed on stdout (alone, so ``REV=$(python -m
hub.publish ...)`` works) and a summary on stderr. The token comes from
``--token``, else ``HF_TOKEN``, else the one ``hf auth login`` saved.

Exit status: 0 published, 1 failed, 2 bad command line. Every failure is one
``hub.publish: error: ...`` line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = ["main", "publish", "PublishError"]

PROG = "python -m hub.publish"
REPO = Path(__file__).resolve().parent.parent
RUN_FILES = ("model.keras", "model.json", "metrics.json")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


class PublishError(Exception):
    """Why publishing failed, in one sentence; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and status 2, from main(), not SystemExit
        raise PublishError(f"{message} (see '{PROG} --help')", status=2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--repo-id", required=True, help="OWNER/NAME of the model repo (created if missing)")
    p.add_argument("--run", required=True, help="run folder from 'python -m training.train --out RUN'")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision-note", help="commit message (default: names the run)")
    p.add_argument("--endpoint", help="Hub URL (default HF_ENDPOINT, else https://huggingface.co)")
    p.add_argument("--token", help="Hub token with write access (default HF_TOKEN, else the saved login)")
    p.add_argument(
        "--rd",
        default=str(REPO / "results" / "bench-kodak" / "summary.json"),
        help="summary.json of 'svdk bench', for the card's comparison with JPEG "
        "(default results/bench-kodak/summary.json)",
    )
    p.add_argument(
        "--report",
        default=str(REPO / "results" / "predictor.json"),
        help="baseline report from 'python -m training.report' (default results/predictor.json; "
        "left out of the card, with a note, when missing)",
    )
    return p


def _read_json(path: Path, what: str, how: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PublishError(f"{path}: missing; {what} is made by '{how}'") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PublishError(f"{path}: not readable JSON ({exc}); regenerate it with '{how}'") from None
    if not isinstance(data, dict):
        raise PublishError(f"{path}: expected a JSON object; got {type(data).__name__}")
    return data


def _token(given: str | None) -> str:
    from huggingface_hub import get_token

    token = given or get_token()
    if not token:
        raise PublishError(
            "no Hugging Face token: pass --token, set HF_TOKEN, or log in once with 'hf auth login' "
            "(create a token with write access at https://huggingface.co/settings/tokens)"
        )
    return token


def _stage(folder: Path, run: Path, config: dict, sha256: str, card: str) -> None:
    shutil.copy(run / "model.keras", folder / "model.keras")
    if (run / "model.tflite").is_file():  # the LiteRT file: prediction without TensorFlow
        shutil.copy(run / "model.tflite", folder / "model.tflite")
    shutil.copy(run / "metrics.json", folder / "metrics.json")
    (folder / "model.json").write_text(json.dumps({**config, "weights_sha256": sha256}, indent=2) + "\n")
    (folder / "README.md").write_text(card)


def publish(
    repo_id: str,
    run: str | Path,
    *,
    private: bool = False,
    note: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    rd: str | Path = REPO / "results" / "bench-kodak" / "summary.json",
    report: str | Path | None = REPO / "results" / "predictor.json",
) -> tuple[str, str]:
    """Upload the run in one commit; returns ``(commit id, commit URL)``. Raises :class:`PublishError`."""
    name = (repo_id or "").partition("/")[2]
    if not _REPO_ID.fullmatch(repo_id or "") or ".." in repo_id or name.endswith((".git", ".")) or len(name) > 96:
        raise PublishError(
            "--repo-id must be OWNER/NAME: your user or organization name, a slash, and the model name "
            f"(letters, digits, '-', '_', '.'; at most 96 characters); got {repo_id!r}",
            status=2,
        )
    run = Path(run)
    missing = [name for name in RUN_FILES if not (run / name).is_file()]
    if missing:
        raise PublishError(
            f"{run}: not a training run folder ({', '.join(missing)} missing); make one with "
            f"'python -m training.train --out {run}'",
            status=2 if not run.is_dir() else 1,
        )
    try:
        import huggingface_hub
    except ImportError:
        raise PublishError("publishing needs huggingface_hub; install it with pip install 'svdk[hub]'") from None
    token = _token(token)
    from .card import RD_COMMAND, CardError, render_card

    metrics = _read_json(run / "metrics.json", "a run's metrics.json", "python -m training.train")
    rd_data = _read_json(Path(rd), "the rate-distortion summary", RD_COMMAND)
    report_data = None
    if report is not None and Path(report).is_file():
        report_data = _read_json(Path(report), "the baseline report", "python -m training.report")
    elif report is not None:
        print(f"note: {report} is missing; the card says the baselines were not included", file=sys.stderr)

    from svdk.predictor import ModelError, RankPredictor, describe_error

    try:
        predictor = RankPredictor.load(run / "model.keras", runtime="keras")
        if (run / "model.tflite").is_file():  # uploaded only if it is the file model.json vouches for
            RankPredictor.load(run / "model.keras", runtime="litert")
        card = render_card(repo_id, predictor.config, metrics, rd_data, report_data)
    except (ModelError, CardError) as exc:
        raise PublishError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise PublishError(
            f"{run / 'metrics.json'}: lacks a figure the model card needs ({describe_error(exc)}); "
            "regenerate the run with 'python -m training.train'"
        ) from None

    api = huggingface_hub.HfApi(endpoint=endpoint, token=token)
    host = api.endpoint
    with tempfile.TemporaryDirectory(prefix="svdk-publish-") as tmp:
        _stage(Path(tmp), run, predictor.config, predictor.source["sha256"], card)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=note or f"svdk rank predictor from run {run.resolve().name}",
                commit_description=f"Published with '{PROG}'; weights sha256 {predictor.source['sha256']}.",
            )
        except Exception as exc:  # the client raises HTTP, network and validation errors of many types
            status = getattr(getattr(exc, "response", None), "status_code", None)
            hint = {
                401: "the Hub refused the token (HTTP 401): check it, and that it has write access",
                403: f"the token may not write to {repo_id.split('/')[0]} (HTTP 403): use one with write access there",
            }.get(status)
            if hint is None:
                hint = f"{describe_error(exc)}; check the endpoint, your network and the token"
            raise PublishError(f"publishing {repo_id} to {host} failed: {hint}") from None
    return info.oid, info.commit_url


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        commit, url = publish(
            args.repo_id,
            args.run,
            private=args.private,
            note=args.revision_note,
            endpoint=args.endpoint,
            token=args.token,
            rd=args.rd,
            report=args.report,
        )
    except PublishError as exc:
        print(f"hub.publish: error: {exc}", file=sys.stderr)
        return exc.status
    print(f"published {args.repo_id} at commit {commit}: {url}", file=sys.stderr)
    print(commit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
