"""Model files from the Hugging Face Hub: download at a revision, checksum checks, the local cache.

``huggingface_hub`` is imported only when a Hub model is asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from ._files import CONFIG_FILE, LITE_FILE, MODEL_FILE, ModelError, config_path, describe_error, sha256_file
from ._litert import lite_path

__all__ = ["pull"]

log = logging.getLogger("svdk.predictor")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")  # also the length of a git blob id


def _import_hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ModelError(
            "pulling a model from the Hugging Face Hub needs huggingface_hub; install it with "
            "pip install 'svdk[hub]'"
        ) from None
    return huggingface_hub


def _hub_answer(exc: BaseException, repo_id: str, revision: str, host: str) -> ModelError | None:
    """A clear error for the Hub's answers about the repo itself; None for failures to reach it."""
    from huggingface_hub import errors

    answers = (  # GatedRepoError is a RepositoryNotFoundError: it comes first
        (errors.GatedRepoError, "{repo} on {host} is gated: accept its conditions on its page and pass a token "
         "(token= or HF_TOKEN)"),
        (errors.RepositoryNotFoundError, "{repo}: no such model repo on {host} (or it is private and no token "
         "with access was given); check the repo id, or pass token= / set HF_TOKEN"),
        (errors.RevisionNotFoundError, "{repo} on {host} has no revision {revision!r}; pass a commit id, tag or "
         "branch that exists"),
        (errors.RemoteEntryNotFoundError, "{repo} at {revision} on {host} holds no svdk rank-predictor model "
         "({detail}); expected " + f"{MODEL_FILE} and {CONFIG_FILE}, as 'python -m hub.publish' uploads them"),
    )
    for kind, message in answers:
        if isinstance(exc, kind):
            return ModelError(message.format(repo=repo_id, host=host, revision=revision, detail=describe_error(exc)))
    return None


def _evict(pointer: Path) -> None:
    """Remove a cached file: its snapshot entry and the blob it points to."""
    blob = Path(os.path.realpath(pointer))
    for f in (pointer, blob):
        try:
            f.unlink()
        except OSError:
            pass


def _git_blob_id(path: Path) -> str:
    """The git object id of a file (the Hub's ETag for a file it keeps in git rather than LFS)."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _verify_download(model_path: Path, label: str) -> str:
    """The sha256 of a downloaded ``model.keras``; both files checked against every checksum announced.

    The cache names each blob by the ETag the Hub announced: the sha256 of a
    file kept in LFS, the git blob id of one kept in git. ``model.json`` may
    also record the sha256 of ``model.keras`` (``weights_sha256``).
    """
    sha = sha256_file(model_path)
    checks = []  # (file, kind, what, expected, actual)
    for path in (config_path(model_path), model_path, lite_path(model_path)):
        if not path.exists():
            continue  # a model without a LiteRT file
        etag = Path(os.path.realpath(path)).name
        if _SHA256.fullmatch(etag):
            checks.append((path, "sha256", "the checksum the Hub announced for it", etag, sha256_file(path)))
        elif _COMMIT.fullmatch(etag):
            checks.append((path, "git blob id", "the checksum the Hub announced for it", etag, _git_blob_id(path)))
    try:
        recorded = json.loads(config_path(model_path).read_text()).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None  # load() reports an unreadable configuration
    if recorded is not None:
        checks.append((model_path, "sha256", f"the weights_sha256 recorded in {CONFIG_FILE}", recorded, sha))
    for path, kind, what, expected, actual in checks:
        if expected != actual:
            _evict(path)
            raise ModelError(
                f"{path.name} of {label}: {kind} {actual} does not match {what} ({expected}); the file is "
                "corrupt or was altered, so it is refused and removed from the cache. Download it again, or "
                "use another revision"
            )
    return sha


def pull(repo_id: str, *, revision, cache_dir, endpoint, token, online: bool, cache_fallback: bool, hint: str = ""):
    """``model.keras`` of a Hub repo (with ``model.json`` beside it), checked, and where it came from.

    From the Hub (``online``) or the local cache. Returns ``(path, source)``
    with ``source`` as :attr:`RankPredictor.source` describes it. ``hint`` is
    added to the message when the files are in neither place (for a name
    that might have been meant as a local folder).
    """
    hub = _import_hub()
    from huggingface_hub import constants, errors
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except errors.HFValidationError as exc:
        raise ModelError(
            f"{repo_id!r} is neither a local folder nor a valid Hub repo id ({exc}); pass a folder holding "
            f"{MODEL_FILE} and {CONFIG_FILE}, or a repo id OWNER/NAME"
        ) from None
    rev = revision or constants.DEFAULT_REVISION
    host = (endpoint or constants.ENDPOINT).rstrip("/")
    label = f"{repo_id} at {rev}"
    reason = None
    if online and constants.is_offline_mode():
        online, reason = False, "HF_HUB_OFFLINE is set"
    elif online:
        try:
            info = hub.HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=rev)
        except Exception as exc:  # the Hub's answers become clear errors; anything else means unreachable
            answer = _hub_answer(exc, repo_id, rev, host)
            if answer is not None:
                raise answer from None
            online, reason = False, f"the Hub at {host} could not be reached ({describe_error(exc)})"
        else:
            names = [s.rfilename for s in info.siblings or []]
            missing = [n for n in (CONFIG_FILE, MODEL_FILE) if n not in names]
            if missing:
                found = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "") if names else "no files"
                raise ModelError(
                    f"{label} on {host} holds no svdk rank-predictor model: {' and '.join(missing)} missing "
                    f"(found: {found}); publish one with 'python -m hub.publish'"
                )
    if reason is not None:
        if not cache_fallback:
            raise ModelError(f"{label}: {reason}{hint}")
        log.warning("%s: %s; trying the local Hugging Face cache", label, reason)
    paths = {}
    for name in (CONFIG_FILE, MODEL_FILE):
        try:
            paths[name] = Path(
                hub.hf_hub_download(
                    repo_id,
                    name,
                    revision=rev,
                    cache_dir=cache_dir,
                    endpoint=endpoint,
                    token=token,
                    local_files_only=not online,
                )
            )
        except Exception as exc:
            if not online and isinstance(exc, errors.LocalEntryNotFoundError):
                raise ModelError(
                    f"{label}: {name} is not in the local Hugging Face cache "
                    f"({cache_dir or constants.HF_HUB_CACHE}); download it once with network access{hint}"
                ) from None
            answer = _hub_answer(exc, repo_id, rev, host)
            raise (answer or ModelError(f"{label}: downloading {name} failed ({describe_error(exc)})")) from None
    # the LiteRT file, when the repo has one (runs published before it existed do not)
    if (online and LITE_FILE in names) or not online:
        try:
            paths[LITE_FILE] = Path(
                hub.hf_hub_download(
                    repo_id, LITE_FILE, revision=rev, cache_dir=cache_dir, endpoint=endpoint, token=token,
                    local_files_only=not online,
                )
            )
        except Exception as exc:
            if online or not isinstance(exc, errors.LocalEntryNotFoundError):
                answer = _hub_answer(exc, repo_id, rev, host)
                raise (answer or ModelError(f"{label}: downloading {LITE_FILE} failed ({describe_error(exc)})")) from None
    model_path = paths[MODEL_FILE]
    commit = model_path.parent.name
    if any(p.parent != model_path.parent for p in paths.values()):
        raise ModelError(
            f"{label}: the model's files came from different commits (the branch moved during "
            "the download); try again, or pin a commit id"
        )
    sha = _verify_download(model_path, f"{repo_id} at {commit}")
    return model_path, {
        "source": "hub" if online else "cache",
        "repo": repo_id,
        "revision": commit if _COMMIT.fullmatch(commit) else None,
        "sha256": sha,
        "path": str(model_path),
    }
