"""Shareable comparison links: a small persistent store of input images and settings.

A link is ``...?share=ID``. The store is a folder (``SVDK_SHARE_DIR``; by
default ``/data/svdk-shares`` on a Hugging Face Space with persistent
storage, otherwise ``svdk/shares`` in the user's cache folder) holding, per
link:

``ID.png``
    the input image as the app compared it: 8-bit, alpha kept, at most
    :data:`demo.inputs.WORK_PIXELS` pixels (larger uploads were already
    downscaled), written as PNG, so the comparison is reproduced exactly;
``ID.json``
    ``{"format": "svdk-app-share", "version": 1, "created": unix time,
    "settings": {...}, "notes": [...], "bytes": size of both files}``.

Both files are written atomically (a temporary name, then ``os.replace``);
the image first, so an entry exists once its JSON does. IDs are 22
characters of ``secrets.token_urlsafe(16)`` (128 random bits) and are checked
against :data:`ID_PATTERN` before any file is touched. When the store holds
more than ``max_bytes`` or ``max_items``, the oldest links are deleted.

Examples need no store: ``?example=coffee&quality=0.9&mode=ycbcr&layout=tiled`` (``&tune=ssim``)
(and ``ranks=64,16,16`` for manual ranks) reproduce a comparison from the URL
alone; see :func:`settings_from_query` and :func:`query_for`.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from PIL import Image

import svdk

from .inputs import AppError, Settings

__all__ = [
    "ShareStore",
    "ShareError",
    "ID_PATTERN",
    "default_share_dir",
    "settings_from_query",
    "query_for",
]

FORMAT = "svdk-app-share"
VERSION = 1
#: What a share ID looks like: exactly 22 URL-safe base64 characters.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22}")
#: Defaults of the store's caps (``SVDK_SHARE_MAX_BYTES``, ``SVDK_SHARE_MAX_ITEMS``).
MAX_BYTES = 500_000_000
MAX_ITEMS = 2000


class ShareError(AppError):
    """A share link that cannot be opened (malformed, unknown or evicted)."""


def default_share_dir() -> Path:
    """``SVDK_SHARE_DIR``; else a Space's persistent ``/data``; else the user's cache folder."""
    env = os.environ.get("SVDK_SHARE_DIR")
    if env:
        return Path(env)
    data = Path("/data")
    if data.is_dir() and os.access(data, os.W_OK):
        return data / "svdk-shares"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "svdk" / "shares"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class ShareStore:
    """Input images and settings of shared comparisons, in one folder."""

    def __init__(self, folder: str | os.PathLike | None = None, *, max_bytes: int | None = None,
                 max_items: int | None = None):
        self.folder = Path(folder) if folder is not None else default_share_dir()
        self.max_bytes = int(max_bytes if max_bytes is not None else os.environ.get("SVDK_SHARE_MAX_BYTES", MAX_BYTES))
        self.max_items = int(max_items if max_items is not None else os.environ.get("SVDK_SHARE_MAX_ITEMS", MAX_ITEMS))
        self._lock = threading.Lock()

    @staticmethod
    def check_id(share_id) -> str:
        """``share_id`` if it has the shape of an ID; :class:`ShareError` otherwise (no file is touched)."""
        if not isinstance(share_id, str) or not ID_PATTERN.fullmatch(share_id):
            shown = share_id if isinstance(share_id, str) and len(share_id) <= 40 else f"{str(share_id)[:40]}..."
            raise ShareError(
                f"this share link is malformed (ID {shown!r}); a share ID is 22 letters, digits, "
                "'-' or '_'. Check that the whole link was copied"
            )
        return share_id

    def _paths(self, share_id: str) -> tuple[Path, Path]:
        return self.folder / f"{share_id}.png", self.folder / f"{share_id}.json"

    def put(self, image: np.ndarray, settings: Settings, notes: list[str] | None = None) -> str:
        """Store ``image`` (uint8 ``(H, W)`` or ``(H, W, C)``) and ``settings``; return the new ID."""
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise AppError(f"a shared image must be 8-bit pixels; got {image.dtype} of shape {image.shape}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "PNG")
        png = buf.getvalue()
        self.folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            share_id = secrets.token_urlsafe(16)
            while any(p.exists() for p in self._paths(share_id)):  # 2^-128: never, but cheap
                share_id = secrets.token_urlsafe(16)
            img_path, meta_path = self._paths(share_id)
            meta = {
                "format": FORMAT,
                "version": VERSION,
                "created": time.time(),
                "settings": settings.to_dict(),
                "notes": list(notes or []),
            }
            meta["bytes"] = len(png) + len(json.dumps(meta)) + 20
            _write_atomic(img_path, png)
            _write_atomic(meta_path, json.dumps(meta).encode())
            self._evict()
        return share_id

    def get(self, share_id: str) -> tuple[np.ndarray, Settings, dict]:
        """The image, settings and record of a link; :class:`ShareError` with a message if there is none."""
        self.check_id(share_id)
        img_path, meta_path = self._paths(share_id)
        gone = ShareError(
            "this shared comparison does not exist: the link is wrong, or it was among the oldest "
            "links, deleted to make room for new ones. Upload the image again to compare it"
        )
        try:
            meta = json.loads(meta_path.read_bytes())
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise ShareError("this shared comparison was stored by another version of the app")
            with Image.open(img_path) as im:
                im.load()
                image = np.asarray(im)
        except (FileNotFoundError, NotADirectoryError):
            raise gone from None
        except ShareError:
            raise
        except (OSError, ValueError, json.JSONDecodeError):
            raise ShareError("this shared comparison is damaged and cannot be shown") from None
        try:
            settings = Settings.from_dict(meta.get("settings") or {})
        except (AppError, TypeError, ValueError):
            raise ShareError("this shared comparison has settings the app cannot read") from None
        return image, settings, meta

    def entries(self) -> list[tuple[float, str, int]]:
        """``(created, id, bytes)`` of every complete entry, oldest first."""
        out = []
        if not self.folder.is_dir():
            return out
        for meta_path in self.folder.glob("*.json"):
            sid = meta_path.stem
            if not ID_PATTERN.fullmatch(sid):
                continue
            try:
                meta = json.loads(meta_path.read_bytes())
                out.append((float(meta["created"]), sid, int(meta.get("bytes", 0))))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return sorted(out)

    def _evict(self) -> None:
        entries = self.entries()
        total = sum(b for _, _, b in entries)
        while entries and (len(entries) > self.max_items or total > self.max_bytes):
            _, sid, nbytes = entries.pop(0)
            for p in reversed(self._paths(sid)):  # the JSON first: the entry disappears at once
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
            total -= nbytes


# ----------------------------------------------------------------------------
# URL parameters


def _first(params: dict, *names: str) -> str | None:
    for n in names:
        v = params.get(n)
        if isinstance(v, (list, tuple)):
            v = v[0] if v else None
        if v is not None and str(v).strip() != "":
            return str(v).strip()
    return None


def settings_from_query(params: dict) -> tuple[str | None, Settings | None]:
    """``(what to open, settings)`` from a page's query parameters.

    What to open is ``"share:ID"`` (ID checked), ``"example:NAME"`` or None
    when the URL asks for nothing. Settings are None when the URL names no
    example (a share link carries its own). Raises :class:`AppError` with a
    message for the page.
    """
    share_id = _first(params, "share")
    if share_id is not None:
        return f"share:{ShareStore.check_id(share_id)}", None
    name = _first(params, "example")
    if name is None:
        return None, None
    if name not in svdk.EXAMPLES:
        raise AppError(f"unknown example {name!r} in the link; the examples are: {', '.join(svdk.EXAMPLES)}")
    quality = _first(params, "quality", "ssim", "target")
    try:
        target = float(quality) if quality is not None else 0.9
    except ValueError:
        raise AppError(f"quality in the link must be a number such as 0.9; got {quality!r}") from None
    mode = _first(params, "mode") or "ycbcr"
    layout = _first(params, "layout") or ("tiled" if _first(params, "tiled") in ("1", "true", "yes") else "global")
    ranks = _first(params, "ranks")
    parsed = None
    if ranks is not None:
        try:
            parsed = tuple(int(k) for k in ranks.split(","))
        except ValueError:
            raise AppError(f"ranks in the link must look like 64,16,16; got {ranks!r}") from None
    return f"example:{name}", Settings(target, mode, layout, parsed, _first(params, "tune") or "psnr")


def query_for(example: str, settings: Settings) -> str:
    """The query string (with ``?``) that reproduces an example comparison."""
    params = {"example": example, "quality": f"{settings.target:g}", "mode": settings.mode}
    if settings.layout != "global":
        params["layout"] = settings.layout
    if settings.tune != "psnr":
        params["tune"] = settings.tune
    if settings.ranks:
        params["ranks"] = ",".join(str(k) for k in settings.ranks)
    return "?" + urlencode(params)
