"""Image grids and their row/column labels (prompt matrix, X/Y/Z plot), and tiling an image into overlapping
tiles and back (tiled upscaling, SD upscale)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageColor, ImageDraw, ImageFont

from modules import script_callbacks
from modules.errors import UserError
from modules.options import current_opts

log = logging.getLogger(__name__)


def grid_layout(n: int, batch_size: int = 1, rows: int | None = None, *, opts: Any) -> tuple[int, int]:
    """``(rows, cols)`` of a grid of `n` images: setting ``n_rows`` >0 fixed, 0 = batch size, -1 = automatic."""
    if n < 1:
        raise ValueError("a grid needs at least one image")
    if rows is None:
        if opts.n_rows > 0:
            rows = opts.n_rows
        elif opts.n_rows == 0:
            rows = batch_size
        elif opts.grid_prevent_empty_spots:
            rows = math.floor(math.sqrt(n))
            while n % rows != 0:
                rows -= 1
        else:
            rows = round(math.sqrt(n))
    rows = min(rows, n)
    return rows, math.ceil(n / rows)


def image_grid(imgs: Sequence[Image.Image], batch_size: int = 1, rows: int | None = None, *, opts: Any = None) -> Image.Image:
    """Paste images into a grid (cells as large as the largest image, smaller ones centred)."""
    opts = opts if opts is not None else current_opts()
    rows, cols = grid_layout(len(imgs), batch_size, rows, opts=opts)
    params = script_callbacks.ImageGridLoopParams(list(imgs), cols, rows)
    script_callbacks.image_grid_callback(params)  # extensions may change the images or the layout
    imgs, cols, rows = params.imgs, params.cols, params.rows

    w = max(img.width for img in imgs)
    h = max(img.height for img in imgs)
    background = ImageColor.getcolor(opts.grid_background_color, "RGB")
    grid = Image.new("RGB", size=(cols * w, rows * h), color=background)

    for i, img in enumerate(imgs):
        img_w, img_h = img.size
        x_offset = (w - img_w) // 2
        y_offset = (h - img_h) // 2
        grid.paste(img, box=(i % cols * w + x_offset, i // cols * h + y_offset))

    return grid


def get_font(fontsize: int, opts: Any = None) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The ``font`` setting's TrueType font, or Pillow's bundled one."""
    fontsize = max(1, fontsize)
    font_file = getattr(opts, "font", "") if opts is not None else ""
    if font_file:
        try:
            return ImageFont.truetype(font_file, fontsize)
        except OSError:
            log.warning("Font %s could not be loaded; using the default font", font_file)
    return ImageFont.load_default(size=fontsize)


class GridAnnotation:
    """A label of a grid row or column; inactive labels are drawn grey and struck through."""

    def __init__(self, text: str = "", is_active: bool = True):
        self.text = text
        self.is_active = is_active
        self.size: tuple[int, int] | None = None
        self.allowed_width = 0


def _wrap(drawing: ImageDraw.ImageDraw, text: str, font, line_length: float) -> list[str]:
    lines = [""]
    for word in text.split():
        line = f"{lines[-1]} {word}".strip()
        if drawing.textlength(line, font=font) <= line_length:
            lines[-1] = line
        else:
            lines.append(word)
    return lines


def draw_grid_annotations(
    im: Image.Image,
    width: int,
    height: int,
    hor_texts: Sequence[Sequence[GridAnnotation]],
    ver_texts: Sequence[Sequence[GridAnnotation]],
    margin: int = 0,
    *,
    opts: Any = None,
) -> Image.Image:
    """Add column labels above and row labels left of a grid of `width` x `height` cells."""
    opts = opts if opts is not None else current_opts()
    color_active = ImageColor.getcolor(opts.grid_text_active_color, "RGB")
    color_inactive = ImageColor.getcolor(opts.grid_text_inactive_color, "RGB")
    color_background = ImageColor.getcolor(opts.grid_background_color, "RGB")

    fontsize = (width + height) // 25
    line_spacing = fontsize // 2
    fnt = get_font(fontsize, opts)

    pad_left = 0 if sum(len(line.text) for lines in ver_texts for line in lines) == 0 else width * 3 // 4

    cols = im.width // width
    rows = im.height // height
    if cols != len(hor_texts):
        raise ValueError(f"bad number of horizontal texts: {len(hor_texts)}; must be {cols}")
    if rows != len(ver_texts):
        raise ValueError(f"bad number of vertical texts: {len(ver_texts)}; must be {rows}")

    calc_d = ImageDraw.Draw(Image.new("RGB", (1, 1), color_background))

    def layout(texts: Sequence[GridAnnotation], allowed_width: int) -> list[GridAnnotation]:
        wrapped = [
            GridAnnotation(x, line.is_active) for line in texts for x in _wrap(calc_d, line.text, fnt, allowed_width)
        ]
        for line in wrapped:
            bbox = calc_d.multiline_textbbox((0, 0), line.text, font=fnt)
            line.size = (bbox[2] - bbox[0], bbox[3] - bbox[1])
            line.allowed_width = allowed_width
        return wrapped

    hor = [layout(texts, width) for texts in hor_texts]
    ver = [layout(texts, pad_left) for texts in ver_texts]

    hor_text_heights = [sum(line.size[1] + line_spacing for line in lines) - line_spacing for lines in hor]
    ver_text_heights = [sum(line.size[1] + line_spacing for line in lines) - line_spacing * len(lines) for lines in ver]

    pad_top = 0 if sum(hor_text_heights) == 0 else max(hor_text_heights) + line_spacing * 2

    result = Image.new(
        "RGB", (im.width + pad_left + margin * (cols - 1), im.height + pad_top + margin * (rows - 1)), color_background
    )
    for row in range(rows):
        for col in range(cols):
            cell = im.crop((width * col, height * row, width * (col + 1), height * (row + 1)))
            result.paste(cell, (pad_left + (width + margin) * col, pad_top + (height + margin) * row))

    d = ImageDraw.Draw(result)

    def draw_texts(x: float, y: float, lines: list[GridAnnotation]) -> None:
        for line in lines:
            font, size = fnt, fontsize
            while d.textlength(line.text, font=font) > line.allowed_width and size > 1:
                size -= 1
                font = get_font(size, opts)
            color = color_active if line.is_active else color_inactive
            d.multiline_text((x, y + line.size[1] / 2), line.text, font=font, fill=color, anchor="mm", align="center")
            if not line.is_active:
                half_w, mid_y = line.size[0] // 2, y + line.size[1] // 2
                d.line((x - half_w, mid_y, x + half_w, mid_y), fill=color_inactive, width=4)
            y += line.size[1] + line_spacing

    for col in range(cols):
        draw_texts(pad_left + (width + margin) * col + width / 2, pad_top / 2 - hor_text_heights[col] / 2, hor[col])

    for row in range(rows):
        y = pad_top + (height + margin) * row + height / 2 - ver_text_heights[row] / 2
        draw_texts(pad_left / 2, y, ver[row])

    return result


def draw_prompt_matrix(
    im: Image.Image, width: int, height: int, all_prompts: Sequence[str], margin: int = 0, *, opts: Any = None
) -> Image.Image:
    """Label a prompt-matrix grid: the first half of the optional parts across, the rest down."""
    opts = opts if opts is not None else current_opts()
    prompts = all_prompts[1:]
    boundary = math.ceil(len(prompts) / 2)
    prompts_horiz = prompts[:boundary]
    prompts_vert = prompts[boundary:]

    hor_texts = [
        [GridAnnotation(x, is_active=pos & (1 << i) != 0) for i, x in enumerate(prompts_horiz)]
        for pos in range(1 << len(prompts_horiz))
    ]
    ver_texts = [
        [GridAnnotation(x, is_active=pos & (1 << i) != 0) for i, x in enumerate(prompts_vert)]
        for pos in range(1 << len(prompts_vert))
    ]
    return draw_grid_annotations(im, width, height, hor_texts, ver_texts, margin, opts=opts)


class Grid(NamedTuple):
    """An image cut into overlapping tiles: `tiles` is a list of rows ``[y, h, [[x, w, tile], ...]]``."""

    tiles: list
    tile_w: int
    tile_h: int
    image_w: int
    image_h: int
    overlap: int


def split_grid(image: Image.Image, tile_w: int = 512, tile_h: int = 512, overlap: int = 64) -> Grid:
    """Cut `image` into tile_w×tile_h tiles that overlap by at least `overlap` pixels (A1111's layout: tiles are
    spread evenly, the last one flush with the edge; an image smaller than a tile gets one tile padded black)."""
    if overlap < 0 or overlap >= min(tile_w, tile_h):
        raise UserError(f"Tile overlap {overlap} must be at least 0 and smaller than the tile size {tile_w}x{tile_h}")
    w, h = image.size
    cols = max(1, math.ceil((w - overlap) / (tile_w - overlap)))
    rows = max(1, math.ceil((h - overlap) / (tile_h - overlap)))
    dx = (w - tile_w) / (cols - 1) if cols > 1 else 0
    dy = (h - tile_h) / (rows - 1) if rows > 1 else 0

    grid = Grid([], tile_w, tile_h, w, h, overlap)
    for row in range(rows):
        y = int(row * dy)
        if y + tile_h >= h:
            y = h - tile_h
        row_images = []
        for col in range(cols):
            x = int(col * dx)
            if x + tile_w >= w:
                x = w - tile_w
            row_images.append([x, tile_w, image.crop((x, y, x + tile_w, y + tile_h))])
        grid.tiles.append([y, tile_h, row_images])
    return grid


def _ramp(length: int, across: int, horizontal: bool) -> Image.Image:
    """An L mask rising from 0 to 255 over `length` pixels (the blend of two overlapping tiles)."""
    ramp = (np.arange(length, dtype=np.float32) * 255 / length).astype(np.uint8)
    arr = np.repeat(ramp[None, :], across, axis=0) if horizontal else np.repeat(ramp[:, None], across, axis=1)
    return Image.fromarray(arr, "L")


def combine_grid(grid: Grid) -> Image.Image:
    """Reassemble the tiles of `grid` (possibly processed, same sizes): overlaps are blended linearly."""
    overlap = grid.overlap
    mask_w = _ramp(overlap, grid.tile_h, horizontal=True) if overlap else None
    mask_h = _ramp(overlap, grid.image_w, horizontal=False) if overlap else None

    combined = Image.new("RGB", (grid.image_w, grid.image_h))
    for y, h, row in grid.tiles:
        combined_row = Image.new("RGB", (grid.image_w, h))
        for x, w, tile in row:
            if x <= 0 or not overlap:  # the first tile (x < 0: one tile wider than the image)
                combined_row.paste(tile, (x, 0))
                continue
            combined_row.paste(tile.crop((0, 0, overlap, h)), (x, 0), mask=mask_w)
            combined_row.paste(tile.crop((overlap, 0, w, h)), (x + overlap, 0))
        if y <= 0 or not overlap:
            combined.paste(combined_row, (0, y))
            continue
        combined.paste(combined_row.crop((0, 0, combined_row.width, overlap)), (0, y), mask=mask_h)
        combined.paste(combined_row.crop((0, overlap, combined_row.width, h)), (0, y + overlap))
    return combined
