"""Lazy image references: a doc holds a reference string, never a decoded image.

A reference is either a plain file path or ``<archive.zip>::<member>`` for an image
inside a zip archive (as ImageRewardDB ships them). Errors name the reference and,
where given, the sample and field that held it.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from functools import lru_cache
from pathlib import Path

from lmms_eval_autorater.errors import InputError

ZIP_SEP = "::"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class ImageError(InputError):
    """An image reference could not be read or decoded."""


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


def read_image_bytes(ref: str, *, sample: str | None = None, field: str | None = None) -> bytes:
    """Return the raw bytes behind ``ref``; raise ``ImageError`` naming the file, sample and field."""
    if not isinstance(ref, str) or not ref:
        raise ImageError(f"missing image reference{_where(sample, field)}: got {ref!r}")
    try:
        if ZIP_SEP in ref:
            archive, member = ref.split(ZIP_SEP, 1)
            return _open_zip(archive).read(member)
        return Path(ref).read_bytes()
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ImageError(f"cannot read image {ref}{_where(sample, field)}: {exc}") from exc


def load_image(ref: str, *, sample: str | None = None, field: str | None = None):
    """Open ``ref`` as an RGB ``PIL.Image``; a corrupt file raises ``ImageError`` naming it."""
    from PIL import Image, UnidentifiedImageError

    data = read_image_bytes(ref, sample=sample, field=field)
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        # PIL's "cannot identify" message carries a BytesIO address: say it without, so messages are stable
        reason = "not a recognised image format" if isinstance(exc, UnidentifiedImageError) else str(exc)
        raise ImageError(f"corrupt or unreadable image {ref}{_where(sample, field)}: {reason}") from exc
    return img.convert("RGB")


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
