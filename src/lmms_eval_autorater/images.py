"""Lazy image references: a doc holds a reference string, never a decoded image.

A reference is either a plain file path or ``<archive.zip>::<member>`` for an image
inside a zip archive (as ImageRewardDB ships them). Errors name the reference and,
where given, the sample and field that held it.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lmms_eval_autorater.errors import InputError, UsageError

ZIP_SEP = "::"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")

#: default caps on every image read (model args ``max_image_bytes=`` and ``max_image_pixels=``): 64 MiB
#: covers any photograph or generation; 64 MP (8000 x 8000) decodes to 192 MB of RGB, below PIL's own
#: decompression-bomb warning (89 MP) and error (179 MP)
DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
#: what a request carries: the longer side fitted into 2048 px (OpenAI scales every image into 2048 x 2048
#: before counting or looking at it; Gemini accepts up to 3072 and tiles at 768, so 2048 is safe for
#: both) and at most 20 MiB per image (OpenAI's documented per-image limit; Gemini's inline request limit)
SEND_MAX_SIDE = 2048
SEND_MAX_BYTES = 20 * 1024 * 1024


class ImageError(InputError):
    """An image reference could not be read or decoded (or is larger than the caps allow)."""


@dataclass(frozen=True)
class ImageLimits:
    """Caps checked before an image is read (``max_bytes``) and before it is decoded (``max_pixels``)."""

    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS


_limits = ImageLimits()


def image_limits() -> ImageLimits:
    """The caps every reader in this process applies unless it is given its own."""
    return _limits


def set_image_limits(max_bytes: int | None = None, max_pixels: int | None = None) -> ImageLimits:
    """Set the process-wide caps (None: the default); the judge factory calls it with the model args
    ``max_image_bytes=`` / ``max_image_pixels=``, so specialists and reports decode under the same caps."""
    global _limits
    for name, value in (("max_image_bytes", max_bytes), ("max_image_pixels", max_pixels)):
        if value is not None and (isinstance(value, bool) or int(value) < 1):
            raise UsageError(f"{name}={value!r}: must be a positive integer")
    _limits = ImageLimits(
        DEFAULT_MAX_IMAGE_BYTES if max_bytes is None else int(max_bytes),
        DEFAULT_MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels),
    )
    return _limits


def zip_ref(archive: str | Path, member: str) -> str:
    """Build the reference of ``member`` inside ``archive``."""
    return f"{archive}{ZIP_SEP}{member}"


@lru_cache(maxsize=64)
def _open_zip(path: str) -> zipfile.ZipFile:
    return zipfile.ZipFile(path)


def _where(sample: str | None, field: str | None) -> str:
    parts = []
    if sample is not None:
        parts.append(f"sample {sample!r}")
    if field is not None:
        parts.append(f"field {field!r}")
    return f" ({', '.join(parts)})" if parts else ""


def read_image_bytes(
    ref: str, *, sample: str | None = None, field: str | None = None, max_bytes: int | None = None
) -> bytes:
    """Return the raw bytes behind ``ref``, at most ``max_bytes`` (default: ``image_limits().max_bytes``);
    raise ``ImageError`` naming the file, sample and field. The size is checked before anything is read
    (a 1 GB file is never read whole), a directory or a device says so, and a file that grows past the
    cap while read (``/proc`` files report size 0) is cut at ``max_bytes + 1`` bytes and rejected."""
    if not isinstance(ref, str) or not ref:
        raise ImageError(f"missing image reference{_where(sample, field)}: got {ref!r}")
    cap = image_limits().max_bytes if max_bytes is None else int(max_bytes)
    where = _where(sample, field)
    try:
        if ZIP_SEP in ref:
            archive, member = ref.split(ZIP_SEP, 1)
            zf = _open_zip(archive)
            size = zf.getinfo(member).file_size
            if size > cap:
                raise ImageError(_too_big(ref, where, size, cap))
            with zf.open(member) as fh:
                data = fh.read(cap + 1)
        else:
            st = os.stat(ref)
            if stat.S_ISDIR(st.st_mode):
                raise ImageError(f"cannot read image {ref}{where}: is a directory, not an image file")
            if not stat.S_ISREG(st.st_mode):
                raise ImageError(f"cannot read image {ref}{where}: not a regular file")
            if st.st_size > cap:
                raise ImageError(_too_big(ref, where, st.st_size, cap))
            with open(ref, "rb") as fh:
                data = fh.read(cap + 1)
    except ImageError:
        raise
    except (OSError, KeyError, zipfile.BadZipFile, RuntimeError) as exc:
        raise ImageError(f"cannot read image {ref}{where}: {exc}") from exc
    if len(data) > cap:
        raise ImageError(_too_big(ref, where, None, cap))
    return data


def _too_big(ref: str, where: str, size: int | None, cap: int) -> str:
    got = f"{size} bytes" if size is not None else "more bytes"
    return (
        f"image file too large {ref}{where}: {got} > max_image_bytes={cap} (raise it with max_image_bytes=)"
    )


def _open_checked(data: bytes, ref: str, where: str, max_pixels: int | None):
    """``PIL.Image.open`` on ``data`` (the header only) with the pixel cap checked before any decoding;
    a decompression bomb, an oversized or undecodable header is one ``ImageError`` naming ``ref``."""
    from PIL import Image, UnidentifiedImageError

    cap = image_limits().max_pixels if max_pixels is None else int(max_pixels)
    try:
        with warnings.catch_warnings():
            # our own cap (below) decides; PIL's warning between its two limits would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"image too large {ref}{where}: decompression bomb ({exc}); max_image_pixels={cap}"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # PIL's "cannot identify" message carries a BytesIO address: say it without, so messages are stable
        reason = "not a recognised image format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise ImageError(f"corrupt or unreadable image {ref}{where}: {reason}") from exc
    width, height = img.size
    if width * height > cap:
        img.close()
        raise ImageError(
            f"image too large {ref}{where}: {width}x{height} = {width * height} pixels > "
            f"max_image_pixels={cap} (raise it with max_image_pixels=)"
        )
    return img


def image_header(
    ref: str, *, sample: str | None = None, field: str | None = None, limits: ImageLimits | None = None
) -> tuple[int, int]:
    """(width, height) of ``ref`` from its header, with both caps checked; nothing is decoded."""
    lim = limits or image_limits()
    data = read_image_bytes(ref, sample=sample, field=field, max_bytes=lim.max_bytes)
    img = _open_checked(data, ref, _where(sample, field), lim.max_pixels)
    size = img.size
    img.close()
    return size


def load_image(
    ref: str, *, sample: str | None = None, field: str | None = None, limits: ImageLimits | None = None
):
    """``open_image`` converted to RGB (what the judge, specialists and reports use)."""
    img = open_image(ref, sample=sample, field=field, limits=limits)
    try:
        return img.convert("RGB")
    except (OSError, ValueError, MemoryError) as exc:
        raise ImageError(f"corrupt or unreadable image {ref}{_where(sample, field)}: {exc}") from exc


def open_image(
    ref: str, *, sample: str | None = None, field: str | None = None, limits: ImageLimits | None = None
):
    """Open and decode ``ref`` as a ``PIL.Image`` in its own mode, bounded by ``limits`` (default ``image_limits()``): the file
    size before reading, the pixel count from the header before decoding. Any failure (missing, a
    directory, too large, a decompression bomb, corrupt) raises one ``ImageError`` naming the file."""
    from PIL import Image

    lim = limits or image_limits()
    where = _where(sample, field)
    data = read_image_bytes(ref, sample=sample, field=field, max_bytes=lim.max_bytes)
    img = _open_checked(data, ref, where, lim.max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
        return img
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, MemoryError) as exc:
        raise ImageError(f"corrupt or unreadable image {ref}{where}: {exc}") from exc


# -- what is sent to a provider ----------------------------------------------------------------------


def fit_size(width: int, height: int, max_side: int = SEND_MAX_SIDE) -> tuple[int, int]:
    """(width, height) scaled down (never up) so that the longer side is at most ``max_side``, keeping
    the aspect ratio; the one rule for the request and for the token estimate."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def sent_size(data: bytes) -> tuple[int, int]:
    """The (width, height) a provider receives for encoded ``data``: its header size under ``fit_size``."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
            return fit_size(*img.size)


@lru_cache(maxsize=32)
def _fitted(data: bytes, max_side: int, max_bytes: int) -> bytes:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        target = fit_size(*img.size, max_side)
        if target == img.size and len(data) <= max_bytes:
            return data
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        if target != img.size:
            img = img.resize(target, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if fmt == "JPEG" or ("A" not in img.getbands() and len(data) > max_bytes):
        img.convert("RGB").save(buf, format="JPEG", quality=95)
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()


def fit_for_request(
    data: bytes, max_side: int = SEND_MAX_SIDE, max_bytes: int = SEND_MAX_BYTES
) -> tuple[bytes, str]:
    """(bytes, MIME type) of an image as it is sent: unchanged when it fits ``max_side`` and
    ``max_bytes``, else resized once (``fit_size``, Lanczos) and re-encoded (JPEG stays JPEG, else PNG).
    The prompt builder calls this, so the request, the response-cache key and the token estimate all see
    the same image. Deterministic: the same bytes always give the same result (memoised)."""
    out = _fitted(data, max_side, max_bytes)
    return out, guess_mime(out)


def image_sha256(data: bytes) -> str:
    """Content hash used by every cache key (response cache, assessment cache)."""
    return hashlib.sha256(data).hexdigest()


def guess_mime(data: bytes) -> str:
    """MIME type from magic bytes (the API needs it for data URLs)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:2] == b"BM":
        return "image/bmp"
    return "application/octet-stream"


def index_images(root: str | Path) -> dict[str, str]:
    """Map file name -> reference for every image under ``root``, as files or inside zips.

    ImageRewardDB and AIGIQA name every image uniquely, so a name finds its image whether
    the user kept the zips or extracted them. A name seen twice is an error.
    """
    root = Path(root)
    found: dict[str, str] = {}

    def add(name: str, ref: str) -> None:
        if name in found and found[name] != ref:
            raise ImageError(f"image name {name!r} is not unique under {root}: {found[name]} and {ref}")
        found[name] = ref

    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            add(path.name, str(path))
        elif suffix == ".zip":
            try:
                names = _open_zip(str(path)).namelist()
            except zipfile.BadZipFile as exc:
                raise ImageError(f"corrupt zip archive {path}: {exc}") from exc
            for member in names:
                if member.lower().endswith(IMAGE_SUFFIXES):
                    add(Path(member).name, zip_ref(path, member))
    return found
