"""The encoder: one image's decomposition, coded at whatever ranks are asked.

:class:`Encoder` holds an image's colour planes and their SVDs (global
layout) or tile SVDs (tiled layout). It packs files at any ranks, scores a
candidate's decoded quality and reports the spectrum, so a caller that tries
many ranks on one image (the rank policies, a rate-distortion sweep, the app,
training labels) decomposes it once. :func:`encode` is one encoder asked once;
:func:`decode` reads any ``.svdk`` file back.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import format as fmt
from . import policies
from ._codec import CHROMA_TAU_FRACTION, Plane, chroma_rank, from_planes, reconstruct, to_planes, to_uint8
from ._errors import OptionError, SvdkWarning
from ._image import ImageLike, Pixels, load_image
from ._tiled import DEFAULT_TILE, TUNES, decode_tiled_plane, padded_pixels, tiled_planes
from .metrics import Scorer

__all__ = ["Encoded", "Encoder", "encode", "decode"]

_PLANE_NAMES = {"gray": ("gray",), "rgb": ("R", "G", "B"), "ycbcr": ("Y", "Cb", "Cr")}
_SUBSAMPLING = {"4:2:0": True, "420": True, "4:4:4": False, "444": False, None: True}


@dataclass
class Encoded:
    """The result of :func:`svdk.encode`: the file and how it was made.

    ``ranks`` is the SVD rank of each plane: in the tiled layout, the
    largest rank of any tile (as :func:`svdk.info` reports it).
    ``components`` is how many components each plane keeps: the rank in the
    global layout, the sum over tiles in the tiled layout. A policy that
    predicts (``cnn``, ``cnn-only``) fills ``predicted_rank`` (its luma
    rank, or component count, before any check), ``correction`` (what the
    check did: ``"unchecked"``, ``"met"``, ``"lowered"``, ``"raised"``,
    ``"exact search"``) and ``model`` (the predictor used, in one line).
    A policy with a quality target reports what it measured in
    ``measured``: ``{"metric": "psnr", "plane": "Y", "value": 30.02}`` (the
    searched plane, luma in ycbcr mode; in rgb mode the lowest of the
    three), which can differ from the RGB figure of the decoded image.
    ``tune`` is what the tiled layout's choice of components was tuned for
    (``"psnr"`` or ``"ssim"``; always ``"psnr"`` in the global layout).
    """

    data: bytes
    width: int
    height: int
    mode: str
    subsampled: bool
    ranks: tuple[int, ...]
    policy: str
    reason: str
    evaluations: int = 0
    seconds: float = 0.0
    alpha: bool = False
    layout: str = "global"
    tile: int = 0
    tune: str = "psnr"
    notes: list[str] = field(default_factory=list)
    components: tuple[int, ...] = ()
    predicted_rank: int | None = None
    correction: str | None = None
    model: str | None = None
    measured: dict | None = None

    @property
    def plane_names(self) -> tuple[str, ...]:
        """The planes ``ranks`` and ``components`` are given for: ``("Y", "Cb", "Cr")``, ``("R", "G", "B")`` or ``("gray",)``."""
        return _PLANE_NAMES[self.mode]

    @property
    def nbytes(self) -> int:
        return len(self.data)

    @property
    def bpp(self) -> float:
        return 8.0 * len(self.data) / (self.width * self.height)

    @property
    def raw_bytes(self) -> int:
        channels = 1 if self.mode == "gray" else 3
        return self.width * self.height * (channels + (1 if self.alpha else 0))


def _resolve_mode(pixels: Pixels, mode: str, subsampling: str | None) -> tuple[str, bool, list[str]]:
    notes = []
    if mode not in ("rgb", "ycbcr", "gray"):
        raise OptionError(f"unknown mode {mode!r}; choose 'rgb' or 'ycbcr' (or 'gray')")
    if subsampling not in _SUBSAMPLING:
        raise OptionError(f"unknown chroma subsampling {subsampling!r}; choose '4:2:0' or '4:4:4'")
    if pixels.is_gray:
        if mode != "gray":
            notes.append("the image is grayscale: coded as one plane")
        return "gray", False, notes
    if mode == "gray":
        raise OptionError("mode 'gray' needs a grayscale image; this one has colour")
    subsampled = mode == "ycbcr" and _SUBSAMPLING[subsampling]
    if subsampled and (pixels.height < 2 or pixels.width < 2):
        subsampled = False
        notes.append("the image is too thin for 4:2:0: chroma kept at full size")
    return mode, subsampled, notes


def _tile_size(tiled: bool, tile_size, qstep) -> int | None:
    if not tiled and tile_size is None:
        return None
    tile = DEFAULT_TILE if tile_size is None else tile_size
    if isinstance(tile, bool) or not isinstance(tile, (int, np.integer)) or not fmt.MIN_TILE <= tile <= fmt.MAX_TILE:
        raise OptionError(f"tile size must be an integer in [{fmt.MIN_TILE}, {fmt.MAX_TILE}]; got {tile!r}")
    if qstep is not None:
        raise OptionError("qstep applies to the global layout; the tiled layout sets its steps itself")
    return int(tile)


def _check_tune(tune, tile) -> None:
    if not isinstance(tune, str) or tune not in TUNES:
        raise OptionError(f"unknown tune {tune!r}; choose one of {', '.join(map(repr, TUNES))}")
    if tune != "psnr" and not tile:
        raise OptionError(
            f"tune={tune!r} applies to the tiled layout (tiled=True, or --tiled); the global layout has one rank per plane"
        )


class Encoder:
    """One image's decomposition, ready to be coded at any ranks.

    Parameters
    ----------
    image : ndarray, PIL.Image.Image, path, bytes or ``"example:NAME"``
        As :func:`svdk.compress` takes it.
    mode, subsampling, qstep, tiled, tile_size, tune
        The coding options of :func:`svdk.compress`; they fix the planes and
        their decompositions.

    The SVDs are computed when a rank first needs them and kept, so asking
    for many ranks of one image costs one decomposition (a few, for the
    randomized SVD of large images: the factors of rank ``k`` depend on
    ``k`` alone, so every file is the one :func:`svdk.encode` would write).

    Ranks are given per plane, as ``ranks_for(k)`` expands one number: the
    luma rank (chroma follows) in ycbcr mode, the same rank on every plane in
    rgb mode. In the tiled layout the number is how many components a plane
    keeps, summed over its tiles.

    Attributes
    ----------
    pixels : svdk.Pixels
        The image as loaded.
    mode, subsampled, tile, layout, width, height, plane_names
        What is coded, as the file's header will say.
    tune : str
        What the tiled layout's choice of components is tuned for (``"psnr"``
        or ``"ssim"``; not in the file, which decodes the same either way).
    planes : list
        One object per coded plane (the rank policies' view of it:
        ``max_rank``, ``search_start``, ``candidates()``, ``energy_total``,
        ``singular_values(k)``, ``shape``, ``data``). A policy registered
        with :func:`svdk.policies.register` may read them; their classes are
        svdk's own and may change between versions.
    evaluations : int
        Decoded candidates measured so far (:meth:`score`), plus the trial
        files the ``size`` policy packs.
    notes : list of str
        What was done to the image (a grayscale image coded as one plane...).

    Examples
    --------
    >>> import svdk
    >>> enc = svdk.Encoder("example:camera")          # 512x512 grayscale
    >>> enc.max_ranks
    (512,)
    >>> data = enc.pack(enc.ranks_for(40))             # the file at rank 40
    >>> data == svdk.compress("example:camera", rank=40)
    True
    >>> round(enc.score(40, "psnr"), 2)                # quality of a candidate, decoded
    26.46
    >>> s = enc.spectrum()                             # singular values of the plane
    >>> bool(s[0] > s[40] > s[400])
    True
    >>> result = enc.encode(quality="ssim:0.8")        # a policy, on the same decomposition
    >>> result.ranks, result.policy
    ((109,), 'quality')
    """

    def __init__(
        self,
        image: ImageLike,
        *,
        mode: str = "ycbcr",
        subsampling: str | None = "4:2:0",
        qstep: float | None = None,
        tiled: bool = False,
        tile_size: int | None = None,
        tune: str = "psnr",
    ):
        pixels = load_image(image)
        mode, subsampled, notes = _resolve_mode(pixels, mode, subsampling)
        if qstep is not None and (
            isinstance(qstep, bool)
            or not isinstance(qstep, (int, float, np.integer, np.floating))
            or not 1 / 256 <= float(qstep) <= 255
        ):
            raise OptionError(f"qstep must be a number in [1/256, 255]; got {qstep!r}")
        tile = _tile_size(tiled, tile_size, qstep)
        _check_tune(tune, tile)
        self.pixels = pixels
        self.mode = mode
        self.subsampled = subsampled
        self.tile = tile
        self.tune = tune
        self.height, self.width = pixels.height, pixels.width
        self.notes = [*pixels.notes, *notes]
        if tile and padded_pixels(self.height, self.width, tile) > fmt.MAX_TILE_GRID:
            raise OptionError(
                f"a {self.width}x{self.height} image in {tile}x{tile} tiles needs a grid of "
                f"{padded_pixels(self.height, self.width, tile)} pixels, above the limit of "
                f"{fmt.MAX_TILE_GRID}; use a smaller tile size or the global layout"
            )
        data = to_planes(pixels.color, mode, subsampled)
        self.planes = tiled_planes(data, tile, tune) if tile else [Plane(p, qstep) for p in data]
        self.evaluations = 0
        self._scorers: dict[tuple[int, str], Scorer] = {}

    @property
    def layout(self) -> str:
        """``"global"`` or ``"tiled"``."""
        return "tiled" if self.tile else "global"

    @property
    def plane_names(self) -> tuple[str, ...]:
        return _PLANE_NAMES[self.mode]

    @property
    def max_ranks(self) -> tuple[int, ...]:
        """The largest rank (tiled: component count) of each plane."""
        return tuple(p.max_rank for p in self.planes)

    def ranks_for(self, k: int) -> tuple[int, ...]:
        """Ranks for all planes from one number, the policies' common scale.

        Global layout: ``k`` on every plane in rgb mode; in ycbcr mode ``k``
        for luma and :data:`svdk.CHROMA_RANK_FRACTION` of it for chroma. Tiled
        layout: ``k`` components for the first plane; the other planes keep
        every component above the same threshold (chroma:
        ``CHROMA_TAU_FRACTION`` of it).
        """
        top = self.max_ranks[0]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= top:
            what = "component count" if self.tile else "rank"
            raise OptionError(f"{what} must be in [1, {top}] for this image; got {k!r}")
        k = int(k)
        if self.tile:
            tau = self.planes[0].tau(k)
            scale = CHROMA_TAU_FRACTION if self.mode == "ycbcr" else 1.0
            return (k, *(p.count_at(tau * scale) for p in self.planes[1:]))
        if self.mode == "gray":
            return (k,)
        if self.mode == "rgb":
            return (k, k, k)
        c = chroma_rank(k, self.planes[1].shape)
        return (k, c, c)

    def check_ranks(self, ranks) -> tuple[int, ...]:
        """``ranks`` as ints, or :class:`~svdk.OptionError` naming the plane and range."""
        names = self.plane_names
        ranks = tuple(ranks)
        if len(ranks) != len(self.planes):
            raise OptionError(
                f"mode {self.mode} has {len(self.planes)} plane(s) ({', '.join(names)}); "
                f"got {len(ranks)} rank(s)"
            )
        what = "component count" if self.tile else "rank"
        for name, k, plane in zip(names, ranks, self.planes):
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= plane.max_rank:
                h, w = plane.shape
                raise OptionError(
                    f"{what} of plane {name} must be in [1, {plane.max_rank}] for a {w}x{h} plane; got {k}"
                )
        return tuple(int(k) for k in ranks)

    def pack(self, ranks) -> bytes:
        """The ``.svdk`` file at these ranks (one per plane; see :meth:`ranks_for`)."""
        ranks = self.check_ranks(ranks)
        factors, codes = [], []
        leads = [self._lead(i, k) for i, k in enumerate(ranks)]
        for plane, k, lead in zip(self.planes, ranks, leads):
            *data, code = plane.quantize(k, *lead)
            factors.append(tuple(data))
            codes.append(code)
        strengths = [p.deblock_strength(k, *lead) for p, k, lead in zip(self.planes, ranks, leads)] if self.tile else None
        return fmt.pack(
            width=self.width,
            height=self.height,
            mode=self.mode,
            subsampled=self.subsampled,
            factors=factors,
            qsteps=codes,
            alpha=self.pixels.alpha,
            predictor="none" if self.tile else "dct",
            coder="ctx" if self.tile else "ans",
            layout=self.layout,
            tile=self.tile or 0,
            deblock=strengths,
        )

    def _lead(self, plane: int, k: int) -> tuple:
        """Tiled layout: ``(components per tile of the first plane,)`` that set plane ``plane``'s
        step factor at ``k`` components (:func:`svdk._tiled.step_factor`); ``()`` otherwise.

        A later plane reads the first plane's count at its own threshold (over
        ``CHROMA_TAU_FRACTION`` in ycbcr, as :meth:`ranks_for` pairs them), so
        its quantization depends on its own count alone and
        :meth:`reconstruct` shows what any file with that count decodes to.
        """
        if not self.tile:
            return ()
        first = self.planes[0]
        if plane == 0:
            return (k / first.ntiles,)
        scale = CHROMA_TAU_FRACTION if self.mode == "ycbcr" else 1.0
        return (first.count_at(self.planes[plane].tau(k) / scale) / first.ntiles,)

    def _plane(self, plane) -> int:
        if isinstance(plane, bool) or not isinstance(plane, (int, np.integer)) or not 0 <= plane < len(self.planes):
            raise OptionError(
                f"plane must be an index in [0, {len(self.planes) - 1}] ({', '.join(self.plane_names)}); got {plane!r}"
            )
        return int(plane)

    def reconstruct(self, k: int, *, plane: int = 0) -> np.ndarray:
        """Plane ``plane`` as the file at rank ``k`` decodes it (8-bit, before colour conversion)."""
        plane = self._plane(plane)
        self.check_ranks(tuple(k if i == plane else 1 for i in range(len(self.planes))))
        return to_uint8(self.planes[plane].reconstruct(int(k), *self._lead(plane, int(k))))

    def decoded(self, ranks) -> np.ndarray:
        """The image the file at ``ranks`` decodes to, as :func:`svdk.decompress` of :meth:`pack`'s
        bytes returns it, built from the float planes the file decodes to (before rounding; the
        encoder keeps the last ones it reconstructed) without the entropy decoding: for scoring
        many candidate files.
        """
        ranks = self.check_ranks(ranks)
        if self.tile:
            planes = [p.reconstruct(k, *self._lead(i, k)) for i, (p, k) in enumerate(zip(self.planes, ranks))]
        else:
            planes = [p.reconstruct(k) for p, k in zip(self.planes, ranks)]
        return _with_alpha(from_planes(planes, self.mode, self.height, self.width), self.pixels.alpha)

    def score(self, k: int, metric: str = "ssim", *, plane: int = 0) -> float:
        """SSIM or PSNR of plane ``plane`` decoded at rank ``k``, against the plane before coding.

        This is what the ``quality`` policy measures (luma in ycbcr mode).
        Each call counts in :attr:`evaluations`.
        """
        if metric not in ("ssim", "psnr"):
            raise OptionError(f"unknown quality metric {metric!r}; use 'ssim' or 'psnr'")
        plane = self._plane(plane)
        key = (plane, metric)
        if key not in self._scorers:
            scorer = Scorer(self.planes[plane].data, ssim=metric == "ssim")
            if metric == "ssim" and scorer.win is None:
                h, w = self.planes[plane].shape
                raise OptionError(
                    f"SSIM is undefined for a {w}x{h} plane (a side under 3 pixels); use a PSNR target or give the rank"
                )
            self._scorers[key] = scorer
        decoded = self.reconstruct(k, plane=plane)
        self.evaluations += 1
        scorer = self._scorers[key]
        return scorer.ssim(decoded) if metric == "ssim" else scorer.psnr(decoded)

    def spectrum(self, *, plane: int = 0) -> np.ndarray:
        """Every singular value of a plane, in the order a rank or count keeps them.

        Global layout: the plane's singular values, largest first (from the
        Gram matrix's eigenvalues, without vectors). Tiled layout: the
        singular values of all tiles (tile means removed) in one list,
        without those below ``1e-9`` of the largest (numerical noise):
        largest first, or with ``tune="ssim"`` in the weighted order that
        count keeps them in, so that the first ``k`` are always the
        components of the file at ``k``.
        """
        p = self.planes[self._plane(plane)]
        if self.tile:
            return np.asarray(p.singular_values(p.max_count))
        return p.all_singular_values()

    def encode(
        self,
        *,
        rank: int | None = None,
        ranks=None,
        quality=None,
        size=None,
        energy: float | None = None,
        policy: str | None = None,
    ) -> Encoded:
        """Choose ranks with a policy and code the file; the options of :func:`svdk.encode`."""
        t0 = time.perf_counter()
        name, target = policies.select(
            rank=rank, ranks=ranks, quality=quality, size=size, energy=energy, policy=policy
        )
        policies.check_fits(name, self)
        evaluations = self.evaluations
        choice = policies.get(name)(self, target)
        chosen = self.check_ranks(choice.ranks)
        data = choice.data if choice.data is not None else self.pack(chosen)
        if self.tile:
            ranks_out = tuple(int(p.ranks(k).max()) for p, k in zip(self.planes, chosen))
        else:
            ranks_out = chosen
        result = Encoded(
            data=data,
            width=self.width,
            height=self.height,
            mode=self.mode,
            subsampled=self.subsampled,
            ranks=ranks_out,
            components=chosen,
            layout=self.layout,
            tile=self.tile or 0,
            tune=self.tune,
            policy=name,
            reason=choice.reason,
            evaluations=self.evaluations - evaluations,
            alpha=self.pixels.alpha is not None,
            notes=list(self.notes),
            predicted_rank=choice.predicted_rank,
            correction=choice.correction,
            model=choice.model,
            measured=choice.measured,
        )
        if result.nbytes >= result.raw_bytes:
            msg = (
                f"the .svdk file ({result.nbytes} bytes) is not smaller than the raw pixels "
                f"({result.raw_bytes} bytes): at these ranks SVD does not compress this image; "
                "use lower ranks or a lossless format such as PNG"
            )
            warnings.warn(msg, SvdkWarning, stacklevel=3)
            result.notes.append(msg)
        result.seconds = time.perf_counter() - t0
        return result


def encode(
    image: ImageLike,
    *,
    mode: str = "ycbcr",
    subsampling: str | None = "4:2:0",
    rank: int | None = None,
    ranks=None,
    quality=None,
    size=None,
    energy: float | None = None,
    policy: str | None = None,
    qstep: float | None = None,
    tiled: bool = False,
    tile_size: int | None = None,
    tune: str = "psnr",
) -> Encoded:
    """Compress ``image`` and report how: the file, the ranks and why (see :func:`svdk.compress`)."""
    t0 = time.perf_counter()
    encoder = Encoder(
        image, mode=mode, subsampling=subsampling, qstep=qstep, tiled=tiled, tile_size=tile_size, tune=tune
    )
    result = encoder.encode(rank=rank, ranks=ranks, quality=quality, size=size, energy=energy, policy=policy)
    result.seconds = time.perf_counter() - t0
    return result


def decode(data: bytes | bytearray | memoryview, *, max_rank: int | None = None) -> np.ndarray:
    """Decode .svdk bytes to a uint8 image; see :func:`svdk.decompress`."""
    if max_rank is not None and (
        isinstance(max_rank, bool) or not isinstance(max_rank, (int, np.integer)) or max_rank < 1
    ):
        raise OptionError(f"max_rank must be a positive integer; got {max_rank!r}")
    header, factors, alpha = fmt.unpack(data, max_rank=max_rank)
    if header.layout == "global":
        planes = [reconstruct(*f[:2], rec.qstep, *f[2:]) for f, rec in zip(factors, header.planes)]
    else:
        planes = [
            decode_tiled_plane(*f, rec.qstep, shape, header.tile, max_rank=max_rank, deblock_strength=rec.deblock)
            for f, rec, shape in zip(factors, header.planes, header.shapes)
        ]
    return _with_alpha(from_planes(planes, header.mode, header.height, header.width), alpha)


def _with_alpha(image: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """``image`` with ``alpha`` as its last channel (``(H, W, 2)`` for gray), or as it is without."""
    if alpha is None:
        return image
    if image.ndim == 2:
        image = image[..., None]
    return np.concatenate([image, alpha[..., None]], axis=-1)
