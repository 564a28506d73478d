"""The ``cnn`` and ``cnn-only`` rank policies, and the model they use."""

from __future__ import annotations

import logging
import os
import threading
import time

from .. import policies
from .._errors import OptionError
from ._files import ModelError
from ._hub import pull
from ._model import RankPredictor, rank_at

__all__ = ["default_predictor"]

log = logging.getLogger("svdk.predictor")


_LOCK = threading.Lock()
_DEFAULT: RankPredictor | None = None
_FAILED: ModelError | None = None


def default_predictor() -> RankPredictor:
    """The model the ``cnn`` policies use, chosen once (see "Where the model comes from" above).

    The choice is logged (logger ``svdk.predictor``) and kept in the
    predictor's :attr:`~RankPredictor.source`. A failure is kept too: later
    calls raise the same :class:`ModelError` at once instead of trying every
    source again.
    """
    global _DEFAULT, _FAILED
    with _LOCK:
        if _FAILED is not None:
            raise _FAILED
        if _DEFAULT is None:
            try:
                _DEFAULT = _choose_default()
            except ModelError as exc:
                _FAILED = exc
                raise
            log.info("using %s", _DEFAULT.describe())
        return _DEFAULT


def _choose_default() -> RankPredictor:
    local = os.environ.get("SVDK_RANK_MODEL") or None
    local_name = f"SVDK_RANK_MODEL={local}" if local else "the model shipped with svdk"
    repo = os.environ.get("SVDK_MODEL_REPO")
    if repo:
        revision = os.environ.get("SVDK_MODEL_REVISION") or None
        if revision is None:
            log.warning(
                "SVDK_MODEL_REPO=%s is set without SVDK_MODEL_REVISION: its main branch is used, which can "
                "change; set SVDK_MODEL_REVISION to a commit id",
                repo,
            )
        options = {
            "revision": revision,
            "cache_dir": os.environ.get("HF_HUB_CACHE") or None,
            "endpoint": os.environ.get("HF_ENDPOINT") or None,
            "token": None,
            "cache_fallback": False,
        }
        steps = (("the Hub", True, "the local Hugging Face cache"), ("the local Hugging Face cache", False, local_name))
        for where, online, then in steps:
            try:
                path, source = pull(repo, online=online, **options)
                predictor = RankPredictor.load(path)
                predictor.source = source
                return predictor
            except ModelError as exc:
                log.warning("rank predictor from %s not used: %s; trying %s", where, exc, then)
    return RankPredictor.load(local)


# ----------------------------------------------------------------------------
# policies


def _predicted(encoder):
    predictor = default_predictor()
    t0 = time.perf_counter()
    targets, logk = predictor.curve(encoder.pixels.color)
    seconds = time.perf_counter() - t0
    return predictor, targets, logk, seconds


_PREDICTING = dict(target="quality", layouts=("global",), metrics=("ssim",))


@policies.register("cnn-only", **_PREDICTING)
def cnn_only(encoder, target) -> policies.RankChoice:
    value = float(target[1])  # an SSIM target: select() refuses others
    predictor, targets, logk, seconds = _predicted(encoder)
    k = rank_at(targets, logk, value, encoder.planes[0].max_rank)
    ranks = encoder.ranks_for(k)
    return policies.RankChoice(
        ranks,
        f"ranks predicted by the CNN for ssim >= {value:g} ({seconds * 1e3:.1f} ms), not checked: "
        f"{policies.describe_ranks(encoder, ranks)}",
        predicted_rank=k,
        correction="unchecked",
        model=predictor.describe(),
    )


def _correct(encoder, i: int, value: float, k0: int, targets, logk) -> tuple[int, float, str, str]:
    """Check ``k0`` on plane ``i``; at most two more evaluations, then the exact search.

    Returns the rank, its score, what was done in words and as one of the
    :attr:`svdk.Encoded.correction` keywords.
    """
    plane = encoder.planes[i]
    top = plane.max_rank
    base = policies.plane_score(encoder, i, "ssim")
    seen: dict[int, float] = {}

    def score(k: int) -> float:
        if k not in seen:  # factors depend on k alone, so a score never changes
            seen[k] = base(k)
        return seen[k]

    def guess(t: float) -> int:
        return rank_at(targets, logk, t, top)

    k = min(max(k0, 1), top)
    s = score(k)
    if s >= value:
        # Met: spend up to two evaluations looking for a smaller rank that
        # still meets it. ``fail`` is the largest rank measured to miss.
        best, fail = k, 0
        for _ in range(2):
            if best - fail <= 1:
                break
            if fail == 0:
                # the true curve sits (score - target) above the predicted one
                cand = guess(value - (seen[best] - value))
            else:
                cand = (fail + best) // 2
            cand = min(best - 1, max(fail + 1, cand))
            if score(cand) >= value:
                best = cand
            else:
                fail = cand
        how = "predicted rank met the target" + ("; lowered" if best < k else "")
        return best, seen[best], how, "lowered" if best < k else "met"
    lo = k
    for attempt in range(2):
        # the measured shortfall, plus a margin that grows on the second try
        shortfall = value - seen.get(lo, s)
        cand = max(lo + 1, guess(value + shortfall * (1 + attempt) + 0.002 * (1 + attempt)))
        cand = min(cand, top)
        if score(cand) >= value:
            return cand, seen[cand], f"predicted rank missed; corrected upward ({attempt + 1})", "raised"
        lo = cand
        if cand == top:
            break
    k, v = policies.search_rank(score, value, top, start=min(top, lo))
    return k, v, "predicted rank missed twice; exact search", "exact search"


#: the more work a correction took, the later in this list
_CORRECTIONS = ("met", "lowered", "raised", "exact search")


@policies.register("cnn", **_PREDICTING)
def cnn(encoder, target) -> policies.RankChoice:
    value = float(target[1])  # an SSIM target: select() refuses others
    start = encoder.evaluations
    predictor, targets, logk, seconds = _predicted(encoder)
    found = {}
    paths = []
    corrections = []
    for i in policies.searched_planes(encoder):
        k0 = rank_at(targets, logk, value, encoder.planes[i].max_rank)
        try:
            k, v, how, correction = _correct(encoder, i, value, k0, targets, logk)
        except OptionError as exc:
            raise OptionError(f"ssim >= {value:g} on plane {encoder.plane_names[i]}: {exc}") from None
        found[i] = (k, v)
        paths.append(f"{encoder.plane_names[i]}: predicted {k0}, {how}")
        corrections.append(correction)
        if i == 0:
            predicted = k0
    if encoder.mode == "rgb":
        ranks = tuple(found[i][0] for i in range(3))
    else:
        ranks = encoder.ranks_for(found[0][0])
    got = ", ".join(f"{encoder.plane_names[i]} {v:.4f}" for i, (_, v) in found.items())
    return policies.RankChoice(
        ranks,
        f"CNN-predicted ranks checked for ssim >= {value:g} ({got}; {'; '.join(paths)}): "
        f"{policies.describe_ranks(encoder, ranks)}; {encoder.evaluations - start} evaluations, "
        f"prediction {seconds * 1e3:.1f} ms",
        predicted_rank=predicted,
        correction=max(corrections, key=_CORRECTIONS.index),
        model=predictor.describe(),
        measured=policies.measured(encoder, "ssim", found),
    )
