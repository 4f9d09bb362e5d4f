"""Images in API requests and responses: base64 (raw or data URL) or an https URL in, base64 out.

Decoding checks the size before the pixels are decoded, so a small file that claims to be huge (a
decompression bomb, a 20000×20000 image) is refused cheaply with a clear message.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import warnings
from typing import Any

from PIL import Image

from modules import images, url_fetch
from modules.errors import UserError

log = logging.getLogger(__name__)

MAX_PIXELS = 8192 * 8192
MAX_SIDE = 16384


class InvalidImage(UserError):
    """An image field could not be used."""


def _options() -> Any:
    from modules import shared

    return shared.opts


def _too_large(what: str, size: str) -> InvalidImage:
    return InvalidImage(
        f"The {what} is {size}; the largest accepted is {MAX_PIXELS} pixels (e.g. 8192x8192) with "
        f"sides up to {MAX_SIDE}. Downscale it first."
    )


def open_image(data: bytes, what: str = "image") -> Image.Image:
    """Bytes of an image file → a loaded PIL image; InvalidImage for anything that is not a usable picture."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
                raise _too_large(what, f"{width}x{height} pixels")
            image.load()
    except InvalidImage:
        raise
    except Image.DecompressionBombError as e:  # Pillow refuses the largest sizes before telling them
        raise _too_large(what, "too large (Pillow: decompression bomb)") from e
    except Exception as e:  # Pillow raises many types for a corrupt or unknown file
        raise InvalidImage(f"The {what} is not a valid image file ({type(e).__name__}: {e}).") from e
    return image


def decode_base64_to_image(encoding: str, what: str = "image") -> Image.Image:
    """An image from a request field: base64, ``data:image/...;base64,`` URL, or https URL when the
    api_enable_requests setting allows it (A1111's function name; extensions import it)."""
    if not isinstance(encoding, str) or not encoding.strip():
        raise InvalidImage(f"The {what} is empty; send it as base64 or a data: URL.")
    encoding = encoding.strip()
    if encoding.lower().startswith(("http://", "https://")):
        return open_image(_fetch(encoding), what)
    if encoding.startswith("data:"):
        header, sep, encoding = encoding.partition(",")
        if not sep or ";base64" not in header:
            raise InvalidImage(f"The {what} is a data: URL without base64 content.")
    encoding = "".join(encoding.split())
    altchars = b"-_" if "-" in encoding or "_" in encoding else None  # URL-safe base64, as some clients send
    try:
        data = base64.b64decode(encoding + "=" * (-len(encoding) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidImage(f"The {what} is not valid base64 ({e}).") from e
    return open_image(data, what)


def _fetch(url: str) -> bytes:
    opts = _options()
    if not opts.api_enable_requests:
        raise InvalidImage("Image URLs are not allowed (setting api_enable_requests); send the image as base64.")
    return url_fetch.fetch(url, user_agent=opts.api_useragent, forbid_local=opts.api_forbid_local_requests)


def encode_pil_to_base64(image: Image.Image | str, infotext: str | None = None) -> str:
    """An image as base64 in the samples_format setting's format, with its infotext (PNG text chunk, or EXIF for
    JPEG/WebP) — `infotext` if given, else the image's own ``parameters``."""
    if isinstance(image, str):
        return image
    if infotext is None:
        infotext = image.info.get("parameters") if isinstance(image.info.get("parameters"), str) else None
    opts = _options()
    data = images.image_to_bytes(image, infotext, opts.samples_format or "png", opts=opts)
    return base64.b64encode(data).decode("ascii")
