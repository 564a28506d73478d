"""Exceptions raised by svdk.

Every error the library raises on purpose derives from :class:`SvdkError`,
which is a :class:`ValueError`, so ``except ValueError`` also catches it::

    ValueError
     └── SvdkError
          ├── FormatError       .svdk data that cannot be read (truncated,
          │                     wrong magic, unknown version, bad CRC, forged
          │                     header fields)
          ├── ImageError        an input image that cannot be encoded (empty,
          │                     not an image, unsupported mode, too large)
          ├── OptionError       options that do not fit this image (rank out
          │                     of range, unreachable target, unknown mode)
          └── MissingFileError  an input file that does not exist; also an
                                ImageError, a FormatError and a
                                FileNotFoundError, so each of those catches it

Warnings use :class:`SvdkWarning` (a :class:`UserWarning`).
"""

from __future__ import annotations

__all__ = ["SvdkError", "FormatError", "ImageError", "OptionError", "MissingFileError", "SvdkWarning"]


class SvdkError(ValueError):
    """Base class of every error svdk raises on purpose."""


class FormatError(SvdkError):
    """The bytes are not a readable .svdk file."""


class ImageError(SvdkError):
    """The input image cannot be encoded."""


class OptionError(SvdkError):
    """The options do not fit the image."""


class MissingFileError(ImageError, FormatError, FileNotFoundError):
    """An input file (image or .svdk) that does not exist.

    >>> import svdk
    >>> try:
    ...     svdk.encode("no-such-photo.png")
    ... except FileNotFoundError as exc:
    ...     print(exc)
    no-such-photo.png: no such file
    """


class SvdkWarning(UserWarning):
    """Something the user should know about, that did not stop the work."""
