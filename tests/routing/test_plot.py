"""``callcenter simulate --plot``: a PNG whose points are the figures printed beside it, and
the small PNG writer behind it."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from callcenter.cli import main
from callcenter.routing.plot import (
    BLACK,
    BLUE,
    GREEN,
    GREY,
    RED,
    WHITE,
    Canvas,
    decode,
    encode,
    nice_max,
    panel_box,
    x_position,
    y_position,
)

ROW = re.compile(r"^\s*(\d+)\s+([\d.]+)%\s+(\S+)\s+([\d.]+)%\s+([\d.]+)\s*$")


@pytest.mark.parametrize(("width", "height"), [(1, 1), (3, 2), (64, 17), (720, 600)])
def test_png_round_trip(width: int, height: int) -> None:
    rgb = bytes(
        (x * 7 + y * 13 + c) % 256 for y in range(height) for x in range(width) for c in range(3)
    )
    png = encode(width, height, rgb)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert decode(png) == (width, height, rgb)
    # every chunk's CRC is right (a viewer rejects the file otherwise)
    pos = 8
    while pos < len(png):
        length = int.from_bytes(png[pos : pos + 4], "big")
        body = png[pos + 4 : pos + 8 + length]
        crc = int.from_bytes(png[pos + 8 + length : pos + 12 + length], "big")
        assert zlib.crc32(body) & 0xFFFFFFFF == crc
        pos += 12 + length


def test_encode_refuses_the_wrong_number_of_bytes() -> None:
    with pytest.raises(ValueError, match="width x height x 3"):
        encode(2, 2, b"\x00" * 11)


def test_text_and_lines_draw_pixels() -> None:
    canvas = Canvas(40, 12)
    end = canvas.text(1, 1, "SL 9%", BLACK)
    assert end == 1 + 5 * 6
    inked = {(x, y) for x in range(40) for y in range(12) if canvas.get(x, y) == BLACK}
    assert (2, 1) in inked  # the top bar of the S
    assert (1, 1) not in inked  # its rounded corner
    assert len(inked) > 30
    canvas.line(0, 11, 39, 11, RED)
    assert all(canvas.get(x, 11) == RED for x in range(40))
    assert canvas.get(39, 0) == WHITE


@pytest.mark.parametrize(
    ("value", "top"), [(0.0, 1.0), (3.2, 5.0), (7.0, 10.0), (10.0, 10.0), (41.0, 50.0), (180, 200)]
)
def test_nice_axis_top(value: float, top: float) -> None:
    assert nice_max(value) == top


def test_simulate_plot_draws_the_printed_figures(tmp_path: Path) -> None:
    out = tmp_path / "staffing.png"
    args = ["simulate", "--calls-per-hour", "100", "--aht", "180", "--agents", "9"]
    result = CliRunner().invoke(main, [*args, "--calls", "3000", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    rows = [m.groups() for line in result.output.splitlines() if (m := ROW.match(line))]
    # offered load 5 Erlangs: from 6 agents (the fewest that keep up) to 9
    assert [int(r[0]) for r in rows] == [6, 7, 8, 9]
    sl = [float(r[1]) for r in rows]
    asa = [float(r[4]) for r in rows]
    assert sl == sorted(sl)  # more agents, better service
    assert asa == sorted(asa, reverse=True)
    assert f"plot written to {out}" in result.output
    width, height, rgb = decode(out.read_bytes())
    assert (width, height) == (720, 600)

    def pixel(x: int, y: int) -> tuple[int, int, int]:
        i = (y * width + x) * 3
        return (rgb[i], rgb[i + 1], rgb[i + 2])

    x0, y0, x1, y1 = panel_box(0, width, 300)
    ax0, ay0, ax1, ay1 = panel_box(1, width, 300)
    asa_top = nice_max(max(asa))
    for i in range(len(rows)):
        # top panel: service level (the simulated and the Erlang C lines run together) and
        # abandonment (none without --patience: on the axis)
        x = x_position(i, len(rows), x0, x1)
        assert pixel(x, y_position(sl[i], 100.0, y0, y1)) in (BLUE, GREY)
        assert pixel(x, y_position(0.0, 100.0, y0, y1)) == RED
        # bottom panel: average speed of answer
        ax = x_position(i, len(rows), ax0, ax1)
        assert pixel(ax, y_position(asa[i], asa_top, ay0, ay1)) == GREEN


def test_simulate_plot_needs_enough_agents(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--calls-per-hour",
            "100",
            "--aht",
            "180",
            "--agents",
            "4",
            "--plot",
            str(tmp_path / "x.png"),
        ],
    )
    assert result.exit_code == 2
    assert "offered load 5.00 Erlangs" in result.output
    assert not (tmp_path / "x.png").exists()
