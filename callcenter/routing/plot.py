"""A small line chart as a PNG, with no plotting library: staffing figures by agent count.

``callcenter simulate --plot out.png`` draws service level, abandonment (both in %, top
panel) and average speed of answer (seconds, bottom panel) against the number of agents.
Written here with the standard library only (``zlib`` and ``struct`` for the PNG format, a
5x7 pixel font for the labels), so the core package does not pull in a plotting stack
(matplotlib brings numpy, Pillow, fonttools and a dozen more packages) for one chart.

:func:`chart` returns the PNG bytes; :func:`decode` reads back what :func:`encode` writes (for
tests). Pure: no I/O.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GRID: Color = (225, 225, 225)
#: series colours: service level, abandonment, ASA, Erlang C service level
BLUE: Color = (31, 119, 180)
RED: Color = (214, 39, 40)
GREEN: Color = (44, 160, 44)
GREY: Color = (120, 120, 120)

# 5x7 glyphs: seven rows, top first; bit 4 is the leftmost column.
_FONT: dict[str, tuple[int, ...]] = {
    " ": (0, 0, 0, 0, 0, 0, 0),
    "0": (0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E),
    "1": (0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "2": (0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F),
    "3": (0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E),
    "4": (0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02),
    "5": (0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E),
    "6": (0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E),
    "7": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08),
    "8": (0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E),
    "9": (0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C),
    "A": (0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11),
    "B": (0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E),
    "C": (0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E),
    "D": (0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C),
    "E": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F),
    "F": (0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10),
    "G": (0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F),
    "H": (0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11),
    "I": (0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E),
    "J": (0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C),
    "K": (0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11),
    "L": (0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F),
    "M": (0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11),
    "N": (0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11),
    "O": (0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E),
    "P": (0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10),
    "Q": (0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D),
    "R": (0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11),
    "S": (0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E),
    "T": (0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04),
    "U": (0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E),
    "V": (0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04),
    "W": (0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A),
    "X": (0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11),
    "Y": (0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04),
    "Z": (0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F),
    "%": (0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03),
    ".": (0, 0, 0, 0, 0, 0x0C, 0x0C),
    ",": (0, 0, 0, 0, 0x0C, 0x04, 0x08),
    "-": (0, 0, 0, 0x1F, 0, 0, 0),
    "/": (0, 0x01, 0x02, 0x04, 0x08, 0x10, 0),
    "(": (0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02),
    ")": (0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08),
    ":": (0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0),
    "=": (0, 0, 0x1F, 0, 0x1F, 0, 0),
    "<": (0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02),
    ">": (0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08),
}
GLYPH_W, GLYPH_H = 6, 8  # advance per character, line height (at scale 1)


# ---------------------------------------------------------------- PNG


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def encode(width: int, height: int, rgb: bytes | bytearray) -> bytes:
    """An 8-bit RGB PNG of ``width`` x ``height`` pixels (``rgb``: rows top first)."""
    if len(rgb) != width * height * 3:
        raise ValueError("rgb must hold width x height x 3 bytes")
    stride = width * 3
    raw = b"".join(b"\x00" + bytes(rgb[y * stride : (y + 1) * stride]) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def decode(png: bytes) -> tuple[int, int, bytes]:
    """``(width, height, rgb)`` of a PNG written by :func:`encode` (filter type 0 only)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, width, height, data = 8, 0, 0, b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        body = png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            data += body
        pos += 12 + length
    raw = zlib.decompress(data)
    stride = width * 3 + 1
    rows = [raw[y * stride : (y + 1) * stride] for y in range(height)]
    if any(r[0] != 0 for r in rows):
        raise ValueError("only filter type 0 is supported")
    return width, height, b"".join(r[1:] for r in rows)


# ---------------------------------------------------------------- drawing


class Canvas:
    """An RGB raster with lines, rectangles and 5x7 text."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, color: Color) -> None:
        """Colour one pixel (outside the canvas: nothing)."""
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.pixels[i : i + 3] = bytes(color)

    def get(self, x: int, y: int) -> Color:
        """The colour of one pixel."""
        i = (y * self.width + x) * 3
        return (self.pixels[i], self.pixels[i + 1], self.pixels[i + 2])

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Fill the rectangle between the corners (inclusive)."""
        for y in range(min(y0, y1), max(y0, y1) + 1):
            for x in range(min(x0, x1), max(x0, x1) + 1):
                self.set(x, y, color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, width: int = 1) -> None:
        """A straight line (Bresenham), ``width`` pixels thick."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        half = width // 2
        while True:
            self.rect(x0 - half, y0 - half, x0 - half + width - 1, y0 - half + width - 1, color)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, text: str, color: Color = BLACK, scale: int = 1) -> int:
        """Write ``text`` (upper-cased; unknown characters as spaces) with its top-left at
        ``(x, y)``; returns the x after it."""
        for ch in text.upper():
            rows = _FONT.get(ch, _FONT[" "])
            for r, bits in enumerate(rows):
                for c in range(5):
                    if bits & (0x10 >> c):
                        self.rect(
                            x + c * scale,
                            y + r * scale,
                            x + c * scale + scale - 1,
                            y + r * scale + scale - 1,
                            color,
                        )
            x += GLYPH_W * scale
        return x

    def png(self) -> bytes:
        """The canvas as PNG bytes."""
        return encode(self.width, self.height, self.pixels)


# ---------------------------------------------------------------- the staffing chart


@dataclass(frozen=True)
class Series:
    """One line: a label, a colour and a value per x (``None``: no point)."""

    label: str
    color: Color
    values: Sequence[float | None]


@dataclass(frozen=True)
class Panel:
    """A plot area with its own y axis (``y_max``: top of the axis)."""

    title: str
    y_max: float
    series: Sequence[Series]
    unit: str = ""


def nice_max(value: float) -> float:
    """A round axis top at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0 or math.isnan(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


#: margins around each panel: left (y labels), right, top (title), bottom (x labels)
LEFT, RIGHT, TOP, BOTTOM = 60, 20, 34, 40


def panel_box(index: int, width: int, panel_h: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of panel ``index``'s plot area."""
    top = index * panel_h
    return LEFT, top + TOP, width - RIGHT, top + panel_h - BOTTOM


def x_position(i: int, count: int, x0: int, x1: int) -> int:
    """The pixel column of the ``i``-th of ``count`` x values."""
    if count == 1:
        return (x0 + x1) // 2
    return x0 + round(i * (x1 - x0) / (count - 1))


def y_position(value: float, y_max: float, y0: int, y1: int) -> int:
    """The pixel row of ``value`` on an axis from 0 (row ``y1``) to ``y_max`` (row ``y0``)."""
    clipped = min(max(value, 0.0), y_max)
    return y1 - round(clipped / y_max * (y1 - y0))


def chart(
    xs: Sequence[int], panels: Sequence[Panel], x_label: str, width: int = 720, panel_h: int = 300
) -> bytes:
    """Panels stacked top to bottom sharing the x values ``xs``; the PNG bytes."""
    canvas = Canvas(width, panel_h * len(panels))
    for index, panel in enumerate(panels):
        x0, y0, x1, y1 = panel_box(index, width, panel_h)
        canvas.text(x0, index * panel_h + 8, panel.title, BLACK, 2)
        for k in range(5):  # horizontal grid and y labels
            y = y1 - round(k * (y1 - y0) / 4)
            canvas.line(x0, y, x1, y, GRID)
            label = f"{panel.y_max * k / 4:g}{panel.unit}"
            canvas.text(x0 - 6 - GLYPH_W * len(label), y - 3, label)
        for i, x in enumerate(xs):  # vertical grid and x labels
            px = x_position(i, len(xs), x0, x1)
            canvas.line(px, y0, px, y1, GRID)
            canvas.text(px - GLYPH_W * len(str(x)) // 2, y1 + 6, str(x))
        canvas.line(x0, y0, x0, y1, BLACK)
        canvas.line(x0, y1, x1, y1, BLACK)
        canvas.text((x0 + x1) // 2 - GLYPH_W * len(x_label) // 2, y1 + 20, x_label)
        legend_x = x0 + 8
        for s in panel.series:
            points = [
                (x_position(i, len(xs), x0, x1), y_position(v, panel.y_max, y0, y1))
                for i, v in enumerate(s.values)
                if v is not None
            ]
            for (ax, ay), (bx, by) in itertools.pairwise(points):
                canvas.line(ax, ay, bx, by, s.color, 2)
            for px, py in points:
                canvas.rect(px - 2, py - 2, px + 2, py + 2, s.color)
            canvas.rect(legend_x, y0 + 6, legend_x + 10, y0 + 12, s.color)
            legend_x = canvas.text(legend_x + 14, y0 + 6, s.label, s.color) + 12
    return canvas.png()
