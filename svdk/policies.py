"""Rank policies: how svdk chooses the rank of each plane.

A policy is a function ``policy(encoder, target) -> RankChoice`` (the
encoder is a :class:`svdk.Encoder`) kept in one registry under a name, with
the kind of target it takes and the layouts it handles. Built in:

``fixed``
    the ranks given (one number expands to all planes; in ycbcr mode the
    chroma planes get :data:`~svdk.CHROMA_RANK_FRACTION` of it).
``energy``
    the smallest rank that keeps a fraction of the spectral energy
    ``sum(s_i**2)`` of a plane (its mean included), per plane in rgb mode,
    on luma in ycbcr mode (chroma ranks follow the luma rank as in ``fixed``:
    the energy of a chroma plane is almost all in its mean of about 128).
``quality``
    the smallest ranks whose *decoded* planes reach a target SSIM or PSNR,
    measured on the quantized, 8-bit-rounded reconstruction against the
    original. In rgb mode each channel is searched (so the whole image reaches
    the target too); in ycbcr mode the luma plane is searched and the chroma
    ranks follow the luma rank; a grayscale image has one plane. The search
    (:func:`search_rank`) grows the rank until the target is met, then
    narrows the bracket; every evaluation reconstructs from the same factors
    that get written, so the file decodes to exactly the image that was
    measured. The result is exact in that the
    chosen rank ``k`` meets the target and ``k - 1`` does not.
``size``
    the largest common rank (as ``fixed`` expands it) whose file fits a byte
    budget, found by encoding.

Register more with :func:`register`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._errors import OptionError

__all__ = [
    "RankChoice",
    "PolicyInfo",
    "TARGETS",
    "register",
    "get",
    "info",
    "names",
    "select",
    "check_fits",
    "parse_quality",
    "parse_size",
    "search_rank",
    "describe_ranks",
    "measured",
]


@dataclass
class RankChoice:
    """What a policy chose and why.

    ``ranks`` holds one number per plane (tiled layout: components kept).
    A policy that predicts also says what it predicted (``predicted_rank``),
    what its check did (``correction``) and which model it used (``model``);
    :class:`svdk.Encoded` carries these fields.
    """

    ranks: tuple[int, ...]
    reason: str
    data: bytes | None = None  # the packed file, when the policy already made it
    predicted_rank: int | None = None
    correction: str | None = None
    model: str | None = None
    measured: dict | None = None  # {"metric", "plane", "value"}: what a quality target was checked on


def measured(encoder, metric: str, found: dict) -> dict:
    """``measured`` of a :class:`RankChoice` from ``{plane index: (rank, score)}``: the lowest score."""
    i = min(found, key=lambda j: found[j][1])
    return {"metric": metric, "plane": encoder.plane_names[i], "value": float(found[i][1])}


#: The kinds of target a policy takes, and the options that give them.
TARGETS = {
    "ranks": "rank=K or ranks=(A, B, C) (--rank, --ranks)",
    "quality": "quality='ssim:T' or 'psnr:DB' (--quality)",
    "size": "size=BYTES (--size)",
    "energy": "energy=F (--energy)",
}
LAYOUTS = ("global", "tiled")


@dataclass(frozen=True)
class PolicyInfo:
    """A registered policy: the function and what it handles."""

    name: str
    function: Callable
    target: str  # a key of TARGETS
    layouts: tuple[str, ...] = LAYOUTS
    metrics: tuple[str, ...] = ("ssim", "psnr")  # for quality targets


_REGISTRY: dict[str, PolicyInfo] = {}


def register(name: str, *, target: str = "quality", layouts=LAYOUTS, metrics=("ssim", "psnr")):
    """Decorator: register a rank policy under ``name``.

    ``target`` is the kind of target it takes (a key of :data:`TARGETS`),
    ``layouts`` the layouts it handles and ``metrics`` the quality metrics
    (for a quality target). :func:`svdk.encode` refuses any other
    combination with an :class:`~svdk.OptionError` naming the policies that
    fit.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
    layouts, metrics = tuple(layouts), tuple(metrics)

    def deco(fn):
        _REGISTRY[name] = PolicyInfo(name, fn, target, layouts, metrics)
        return fn

    return deco


def info(name: str) -> PolicyInfo:
    """What the policy ``name`` handles (:class:`PolicyInfo`)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise OptionError(f"unknown rank policy {name!r}; known: {', '.join(names())}") from None


def get(name: str) -> Callable:
    """The function of the policy ``name``."""
    return info(name).function


def names() -> list[str]:
    return sorted(_REGISTRY)


def _fitting(target: str, layout: str | None = None, metric: str | None = None) -> str:
    """The names of the policies for this kind of target (and layout, metric)."""
    fit = [
        p.name
        for p in _REGISTRY.values()
        if p.target == target and layout in (None, *p.layouts) and metric in (None, *p.metrics)
    ]
    return ", ".join(sorted(fit)) or "none"


def check_fits(name: str, encoder) -> None:
    """Raise :class:`~svdk.OptionError` when policy ``name`` does not handle the encoder's layout."""
    p = info(name)
    layout = encoder.layout
    if layout not in p.layouts:
        others = _fitting(p.target, layout=layout)
        what = "ranks given by hand apply" if p.target == "ranks" else f"policy {name!r} applies"
        if others == "none":
            kinds = sorted({q.target for q in _REGISTRY.values() if layout in q.layouts})
            hint = f"the {layout} layout takes {_a(' or '.join(kinds))} target"
        else:
            hint = f"policies for the {layout} layout with {_a(p.target)} target: {others}"
        raise OptionError(f"{what} to the {' and '.join(p.layouts)} layout, not the {layout} one; {hint}")


def _a(words: str) -> str:
    return ("an " if words[:1] in "aeiou" else "a ") + words


def parse_quality(value) -> tuple[str, float]:
    """``"ssim:0.95"``, ``"psnr:32"``, ``("ssim", 0.95)`` or a bare SSIM float."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        metric, target = "ssim", float(value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        metric, target = str(value[0]).lower(), value[1]
    elif isinstance(value, str) and ":" in value:
        metric, _, target = value.partition(":")
        metric = metric.strip().lower()
    else:
        raise OptionError(f"quality must look like 'ssim:0.95' or 'psnr:32'; got {value!r}")
    try:
        target = float(target)
    except (TypeError, ValueError):
        raise OptionError(f"quality target must be a number; got {target!r}") from None
    if metric == "ssim":
        if not 0 < target <= 1:
            raise OptionError(f"an SSIM target must be in (0, 1]; got {target}")
    elif metric == "psnr":
        if not 0 < target <= 100:
            raise OptionError(f"a PSNR target must be in (0, 100] dB; got {target}")
    else:
        raise OptionError(f"unknown quality metric {metric!r}; use 'ssim' or 'psnr'")
    return metric, target


_UNITS = {"": 1, "b": 1, "kb": 1000, "k": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2}


def parse_size(value) -> int:
    """A byte budget: an int, or a string such as ``"30KB"``, ``"1.5MiB"``."""
    if isinstance(value, bool) or isinstance(value, (float, np.floating)):
        raise OptionError(f"size must be a whole number of bytes or a string such as '30KB'; got {value!r}")
    if isinstance(value, (int, np.integer)):
        n = int(value)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise OptionError(f"size must look like 30000, '30KB' or '1.5MiB'; got {value!r}")
        n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n < 1:
        raise OptionError(f"size must be at least 1 byte; got {value!r}")
    return n


def _iterable(value):
    try:
        return list(value)
    except TypeError:
        return [value]


def select(*, rank=None, ranks=None, quality=None, size=None, energy=None, policy=None):
    """Turn the encoder's keyword options into ``(policy name, target)``.

    Raises :class:`~svdk.OptionError` when more than one target is given, or
    when ``policy`` takes another kind of target than the one given (or a
    metric it does not handle), naming the policies that fit.
    """
    given = {
        k: v
        for k, v in dict(rank=rank, ranks=ranks, quality=quality, size=size, energy=energy).items()
        if v is not None
    }
    if len(given) > 1:
        raise OptionError(f"give one of rank, ranks, quality, size, energy; got {', '.join(given)}")
    if policy is not None:
        wanted = info(policy)
        if not given and wanted.target != "quality":
            raise OptionError(f"policy {policy!r} needs {_a(wanted.target)} target: {TARGETS[wanted.target]}")
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
            raise OptionError(f"rank must be an integer; got {rank!r}")
        name, kind, target = "fixed", "ranks", int(rank)
    elif ranks is not None:
        if isinstance(ranks, (str, bytes)) or not all(
            isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in _iterable(ranks)
        ):
            raise OptionError(f"ranks must be integers, one per plane; got {ranks!r}")
        name, kind, target = "fixed", "ranks", tuple(int(k) for k in ranks)
    elif size is not None:
        name, kind, target = "size", "size", parse_size(size)
    elif energy is not None:
        if isinstance(energy, bool) or not isinstance(energy, (int, float, np.integer, np.floating)):
            raise OptionError(f"energy must be a number in (0, 1]; got {energy!r}")
        target = float(energy)
        if not 0 < target <= 1:
            raise OptionError(f"energy must be in (0, 1]; got {energy}")
        name, kind = "energy", "energy"
    else:
        name, kind = "quality", "quality"
        target = parse_quality(quality if quality is not None else DEFAULT_QUALITY)
    if policy is not None:
        if wanted.target != kind:
            raise OptionError(
                f"policy {policy!r} takes {_a(wanted.target)} target ({TARGETS[wanted.target]}), not {_a(kind)} "
                f"target; policies for {_a(kind)} target: {_fitting(kind)}"
            )
        if kind == "quality" and target[0] not in wanted.metrics:
            raise OptionError(
                f"policy {policy!r} takes {' or '.join(wanted.metrics)} targets; got {target[0]}:{target[1]:g}; "
                f"policies for {_a(target[0])} target: {_fitting('quality', metric=target[0])}"
            )
        name = policy
    return name, target


#: The target used when no rank option is given.
DEFAULT_QUALITY = "ssim:0.90"


@register("fixed", target="ranks", layouts=("global",))
def fixed(encoder, target) -> RankChoice:
    if isinstance(target, int):
        top = encoder.planes[0].max_rank
        if not 1 <= target <= top:
            h, w = encoder.planes[0].shape
            raise OptionError(f"rank must be in [1, {top}] for a {w}x{h} image; got {target}")
        ranks = encoder.ranks_for(target)
    else:
        ranks = encoder.check_ranks(tuple(target))
    return RankChoice(ranks, f"ranks given: {describe_ranks(encoder, ranks)}")


@register("energy", target="energy")
def energy(encoder, fraction) -> RankChoice:
    ranks = []
    for i in searched_planes(encoder):
        plane = encoder.planes[i]
        total = plane.energy_total
        k = min(plane.search_start, plane.max_rank)
        while True:
            s = plane.singular_values(k)
            kept = np.cumsum(s.astype(np.float64) ** 2)
            hit = np.nonzero(kept >= fraction * total * (1 - 1e-12))[0]
            if hit.size or k == plane.max_rank:
                ranks.append(int(hit[0]) + 1 if hit.size else k)
                break
            k = min(4 * k, plane.max_rank)
    ranks = tuple(ranks) if encoder.mode == "rgb" and not encoder.tile else encoder.ranks_for(ranks[0])
    where = "luma" if encoder.mode == "ycbcr" else "each plane"
    return RankChoice(
        ranks,
        f"smallest ranks keeping {fraction:g} of the spectral energy of {where}: {describe_ranks(encoder, ranks)}",
    )


def searched_planes(encoder) -> list[int]:
    """Planes whose quality the ``quality`` policy measures."""
    return [0, 1, 2] if encoder.mode == "rgb" and not encoder.tile else [0]


def plane_score(encoder, i: int, metric: str) -> Callable[[int], float]:
    """``k -> score`` of decoded plane ``i`` against its original (:meth:`svdk.Encoder.score`)."""
    return lambda k: encoder.score(k, metric, plane=i)


def search_rank(
    score: Callable[[int], float],
    target: float,
    max_rank: int,
    start: int = 16,
    candidates: np.ndarray | None = None,
):
    """Smallest ``k`` among ``candidates`` (default 1 .. max_rank) with ``score(k) >= target``.

    Quality grows roughly linearly in ``log k``, and the search leans on it.
    From ``start`` the rank grows, by extrapolating the last two scores to the
    target with 10% headroom (at least 1.25-fold, at most fourfold), until the
    target is met. The bracket ``(lo, hi]`` then shrinks, each guess taken
    on the line in ``log k`` through the two scores nearest the target; while the same end keeps moving, the
    guess is pushed across by 1, 2, 4, ... candidates, and after four steps
    in a row that fail to halve the bracket it bisects, so the worst case
    stays logarithmic. It stops when ``lo`` and ``hi`` are neighbours. It assumes
    the score grows with ``k`` (it does, up to quantization noise) and
    returns a ``k`` measured to meet the target with the candidate below it
    measured not to.

    Returns ``(k, score(k))``; raises :class:`OptionError` when even the
    largest candidate misses the target.
    """
    cand = np.arange(1, max_rank + 1) if candidates is None else np.asarray(candidates)
    logs = np.log(cand)
    seen: dict[int, float] = {}  # by index into cand

    def ok(i):
        if i not in seen:
            seen[i] = score(int(cand[i]))
        return seen[i] >= target

    last = len(cand) - 1
    lo, i = -1, min(int(np.searchsorted(cand, start)), last)
    while not ok(i):
        if i == last:
            raise OptionError(
                f"the target cannot be reached: the best is {seen[i]:.4f} at the full rank {int(cand[i])}"
            )
        grow = 4.0
        if lo >= 0 and seen[i] > seen[lo]:
            slope = (seen[i] - seen[lo]) / (logs[i] - logs[lo])
            grow = min(4.0, max(1.25, 1.1 * math.exp((target - seen[i]) / slope)))
        lo = i
        i = min(int(np.searchsorted(cand, grow * cand[i])), last)
    hi = i
    side, streak, slow = 0, 0, 0  # side: +1 when hi moved last, -1 when lo did
    while hi - lo > 1:
        width = hi - lo
        if lo < 0 or slow >= 4:
            mid = (lo + hi) // 2
        else:
            # the secant through the two scores nearest the target, which
            # sit close on a curve that bends
            j0, j1 = sorted(seen, key=lambda j: abs(seen[j] - target))[:2]
            slope = (seen[j1] - seen[j0]) / (logs[j1] - logs[j0])
            guess = logs[j0] + (target - seen[j0]) / slope if slope > 0 else 0.5 * (logs[lo] + logs[hi])
            mid = int(np.searchsorted(logs, guess))
            if streak >= 2:  # creeping from one side: step across, further each time
                mid -= side * (1 << (streak - 2))
            mid = min(hi - 1, max(lo + 1, mid))
        moved = 1 if ok(mid) else -1
        if moved > 0:
            hi = mid
        else:
            lo = mid
        streak = streak + 1 if moved == side else 1
        side = moved
        slow = slow + 1 if hi - lo > width // 2 else 0
    return int(cand[hi]), seen[hi]


@register("quality")
def quality(encoder, target) -> RankChoice:
    metric, value = target
    start = encoder.evaluations
    found = {}
    for i in searched_planes(encoder):
        score = plane_score(encoder, i, metric)
        try:
            plane = encoder.planes[i]
            found[i] = search_rank(
                score, value, plane.max_rank, start=plane.search_start, candidates=plane.candidates()
            )
        except OptionError as exc:
            name = encoder.plane_names[i]
            raise OptionError(f"{metric} >= {value:g} on plane {name}: {exc}") from None
    if encoder.mode == "rgb" and not encoder.tile:
        ranks = tuple(found[i][0] for i in range(3))
    else:
        ranks = encoder.ranks_for(found[0][0])
    got = ", ".join(f"{encoder.plane_names[i]} {v:.4f}" for i, (_, v) in found.items())
    where = "luma" if encoder.mode == "ycbcr" else "each plane"
    return RankChoice(
        ranks,
        f"smallest ranks reaching {metric} >= {value:g} on {where} ({got}): "
        f"{describe_ranks(encoder, ranks)}; {encoder.evaluations - start} evaluations",
        measured=measured(encoder, metric, found),
    )


@register("size", target="size")
def size(encoder, budget: int) -> RankChoice:
    packed: dict[int, bytes] = {}

    def nbytes(k):
        if k not in packed:
            encoder.evaluations += 1
            packed[k] = encoder.pack(encoder.ranks_for(k))
        return len(packed[k])

    top = encoder.planes[0].max_rank
    start = encoder.planes[0].search_start
    if nbytes(1) > budget:
        raise OptionError(
            f"the smallest .svdk file for this image (rank 1) takes {nbytes(1)} bytes; "
            f"the budget of {budget} bytes is below it"
        )
    # The largest k whose file fits: double, then bisect.
    lo, k = 1, min(start, top)
    while nbytes(k) <= budget:
        lo = k
        if k == top:
            break
        k = min(4 * k, top)
    hi = k if nbytes(k) > budget else k + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if nbytes(mid) <= budget:
            lo = mid
        else:
            hi = mid
    ranks = encoder.ranks_for(lo)
    return RankChoice(
        ranks,
        f"largest ranks whose file fits {budget} bytes ({nbytes(lo)} bytes): {describe_ranks(encoder, ranks)}",
        data=packed[lo],
    )


def describe_ranks(encoder, ranks) -> str:
    """``Y=64, Cb=16, Cr=16``: ranks with their planes' names."""
    return ", ".join(f"{n}={k}" for n, k in zip(encoder.plane_names, ranks))
