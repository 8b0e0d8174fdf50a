"""Prompt rows checked before a round uses them: every bad row becomes a counted skip with its reason.

A prompt row holds ``id``, ``image_bytes`` (an encoded image) and ``question`` (see the team's prompt-row
contract). Whatever is wrong with one row (an unreadable or oversized image, an empty, overlong or
non-UTF-8 question, a missing or repeated id) never stops the round: ``select_prompts`` keeps the good rows
and names each skipped one with its reason, which the prompts stage records in its ``_SUCCESS``.

Kept rows are normalised once, here, so sampling, labeling and training all see the same pixels: images in
any mode other than RGB, or with an EXIF orientation, are re-encoded as RGB PNG (the orientation applied,
transparency composited on white, 16-bit scaled to 8-bit) and questions given as UTF-8 bytes become text.
Only image formats are opened (never PostScript/EPS, which Pillow hands to Ghostscript), and image files
over ``MAX_IMAGE_BYTES`` are skipped unread.
"""
from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_QUESTION_CHARS = 2000
MAX_IMAGE_BYTES = 64 * 2**20
# Raster formats a VLM dataset holds; anything else (EPS reaches Ghostscript, PDF, ...) is never opened.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_EXIF_ORIENTATION = 0x0112
# A VLM's processor shrinks every image to a few hundred pixels a side; beyond 4096x4096 decoding alone
# costs hundreds of MB, and a tiny file claiming a huge size is a decompression bomb.
MAX_IMAGE_PIXELS = 4096 * 4096
_BACKGROUND = (255, 255, 255, 255)


class ImageTooLarge(ValueError):
    """An image whose header claims more than MAX_IMAGE_PIXELS pixels (checked before decoding)."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as RGB: transparent pixels become white, 16/32-bit grey is scaled (not clipped) to 8-bit."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        canvas = Image.new("RGBA", image.size, _BACKGROUND)
        canvas.alpha_composite(image.convert("RGBA"))
        return canvas.convert("RGB")
    return image.convert("RGB")


def _decode(data: bytes) -> tuple[Image.Image, bool]:
    """(the image as RGB, whether that changed its pixels); ImageTooLarge before decoding one over the cap."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"{len(data)} bytes, over the {MAX_IMAGE_BYTES} byte cap")
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ImageTooLarge(f"{image.width}x{image.height} pixels, over the {MAX_IMAGE_PIXELS} pixel cap")
            image.load()
            rotated = image.getexif().get(_EXIF_ORIENTATION, 1) != 1
            upright = ImageOps.exif_transpose(image) if rotated else image
            return to_rgb(upright), rotated or image.mode != "RGB" or "transparency" in image.info
    except Image.DecompressionBombError as e:  # Pillow's own check fires at open for gigantic headers
        raise ImageTooLarge(str(e)) from None


def decode_image(data: bytes) -> Image.Image:
    """Encoded bytes as an RGB image (see ``to_rgb``)."""
    return _decode(data)[0]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _question(value) -> tuple[str | None, str | None]:
    """(the question as text, None) or (None, why it cannot be used)."""
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None, "question is not valid UTF-8"
    if not isinstance(value, str):
        return None, f"question is not text ({type(value).__name__})"
    try:
        value.encode("utf-8")  # lone surrogates (from surrogateescape decoding) cannot be stored or tokenized
    except UnicodeEncodeError:
        return None, "question is not valid UTF-8"
    if not value.strip():
        return None, "empty question"
    if len(value) > MAX_QUESTION_CHARS:
        return None, f"question longer than {MAX_QUESTION_CHARS} characters"
    return value, None


def check_prompt(row: dict) -> tuple[dict | None, str | None]:
    """(the row, normalised) when it is usable, else (None, the reason it is skipped)."""
    question, problem = _question(row.get("question"))
    if problem:
        return None, problem
    data = row.get("image_bytes")
    if data is None:
        return None, "missing image"
    if not isinstance(data, (bytes, bytearray)):
        return None, f"image is not encoded bytes ({type(data).__name__})"
    try:
        image, converted = _decode(bytes(data))
    except ImageTooLarge as e:
        return None, f"image too large ({e})"
    except (UnidentifiedImageError, OSError, ValueError, TypeError, SyntaxError) as e:
        return None, f"unreadable image ({type(e).__name__})"
    return {**row, "question": question, "image_bytes": _png(image) if converted else bytes(data)}, None


def select_prompts(rows: list[dict]) -> tuple[list[dict], dict[str, str]]:
    """Usable prompts (normalised), and the skipped ones by id with their reasons. Later rows with an id
    already seen are skipped as duplicates; a row without an id is named by its position (``#index``)."""
    kept, skipped, seen = [], {}, set()
    for index, row in enumerate(rows):
        key = row.get("id")
        if not isinstance(key, str) or not key:
            name, problem = f"#{index}", "missing id"
        elif key in seen:
            name, problem = key, "duplicate id"
        else:
            seen.add(key)
            name = key
            row, problem = check_prompt(row)
        if problem:
            skipped[name if name not in skipped else f"{name}#{index}"] = problem
        else:
            kept.append(row)
    return kept, skipped
