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
from ._tiled import default_tiled_predictor

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
    """``(predictor, targets, log k, seconds)``; in the tiled layout ``k`` is luma's component count,
    predicted from the tile spectrum by the tiled-layout model (:mod:`svdk.predictor._tiled`)."""
    predictor = default_tiled_predictor() if encoder.tile else default_predictor()
    t0 = time.perf_counter()
    targets, logk = predictor.curve(encoder if encoder.tile else encoder.pixels.color)
    seconds = time.perf_counter() - t0
    return predictor, targets, logk, seconds


def _what(encoder) -> str:
    if encoder.tile:
        return "luma component count predicted from the tile spectrum"
    return "ranks predicted by the CNN"


_PREDICTING = dict(target="quality", layouts=("global", "tiled"), metrics=("ssim",))


@policies.register("cnn-only", **_PREDICTING)
def cnn_only(encoder, target) -> policies.RankChoice:
    value = float(target[1])  # an SSIM target: select() refuses others
    predictor, targets, logk, seconds = _predicted(encoder)
    k = rank_at(targets, logk + _margin(predictor), value, encoder.planes[0].max_rank)
    ranks = encoder.ranks_for(k)
    return policies.RankChoice(
        ranks,
        f"{_what(encoder)} for ssim >= {value:g} ({seconds * 1e3:.1f} ms), not checked: "
        f"{policies.describe_ranks(encoder, ranks)}",
        predicted_rank=k,
        correction="unchecked",
        model=predictor.describe(),
    )


def _margin(predictor) -> float:
    """What the first check adds to the predicted ``log k`` (the tiled predictor's ``check_margin``; else 0)."""
    return float(getattr(predictor, "check_margin", 0.0))


#: ``(tries, least gain)``: in the tiled layout a met prediction is lowered with at most two more
#: evaluations, each only for a count at least 3 % smaller (one evaluation is a few per cent of a
#: tiled encode's time on a Kodak photo; with one try, astronaut at SSIM 0.85 kept a file 21 %
#: above the exact search's).
TILED_LOWERING = (2, 0.03)


def _correct(encoder, i: int, value: float, k0: int, targets, logk, *, lower_tries: int = 2,
             min_gain: float = 0.0) -> tuple[int, float, str, str]:
    """Check ``k0`` on plane ``i``; at most two more evaluations, then the exact search.

    A met ``k0`` is lowered with at most ``lower_tries`` evaluations, each for
    a rank at least ``min_gain`` (a fraction) below the best so far. Returns
    the rank, its score, what was done in words and as one of the
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
        # Met: spend up to ``lower_tries`` evaluations looking for a smaller rank that
        # still meets it. ``fail`` is the largest rank measured to miss.
        best, fail = k, 0
        for _ in range(lower_tries):
            if best - fail <= 1:
                break
            if fail == 0:
                # the true curve sits (score - target) above the predicted one
                cand = guess(value - (seen[best] - value))
            else:
                cand = (fail + best) // 2
            cand = min(best - 1, max(fail + 1, cand))
            if cand > best * (1.0 - min_gain):
                break  # too small a gain for an evaluation
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
    k, v = policies.search_rank(score, value, top, start=min(top, lo), candidates=plane.candidates())
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
        curve = logk + _margin(predictor)  # the curve the first check sits on, which guides the corrections
        k0 = rank_at(targets, curve, value, encoder.planes[i].max_rank)
        lowering = TILED_LOWERING if encoder.tile else (2, 0.0)
        try:
            k, v, how, correction = _correct(encoder, i, value, k0, targets, curve, lower_tries=lowering[0],
                                             min_gain=lowering[1])
        except OptionError as exc:
            raise OptionError(f"ssim >= {value:g} on plane {encoder.plane_names[i]}: {exc}") from None
        found[i] = (k, v)
        paths.append(f"{encoder.plane_names[i]}: predicted {k0}, {how}")
        corrections.append(correction)
        if i == 0:
            predicted = k0
    if encoder.mode == "rgb" and not encoder.tile:
        ranks = tuple(found[i][0] for i in range(3))
    else:
        ranks = encoder.ranks_for(found[0][0])
    got = ", ".join(f"{encoder.plane_names[i]} {v:.4f}" for i, (_, v) in found.items())
    what = "Luma component count predicted from the tile spectrum" if encoder.tile else "CNN-predicted ranks"
    return policies.RankChoice(
        ranks,
        f"{what} checked for ssim >= {value:g} ({got}; {'; '.join(paths)}): "
        f"{policies.describe_ranks(encoder, ranks)}; {encoder.evaluations - start} evaluations, "
        f"prediction {seconds * 1e3:.1f} ms",
        predicted_rank=predicted,
        correction=max(corrections, key=_CORRECTIONS.index),
        model=predictor.describe(),
        measured=policies.measured(encoder, "ssim", found),
    )
