"""The HTML report in a real browser (Debian's headless Chromium): it renders, it is not
blank, and its script runs without console errors."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from kvheal.model.report import assemble

from .test_report import META, small_records


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium binary, installed from Debian's packages when missing and we are root."""
    exe = shutil.which("chromium")
    if exe is None:
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            pytest.skip("chromium is not installed and installing it needs root (apt-get install chromium)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, timeout=900
        )
        exe = shutil.which("chromium")
        if exe is None:
            pytest.skip("apt-get could not install chromium")
    return exe


def browse(exe: str, page: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={page.parent / '.chromium'}",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def png_pixels(data: bytes) -> np.ndarray:
    """An 8-bit RGB/RGBA PNG as an array (height, width, channels): a small decoder."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, ctype, _, _, interlace = header
    assert depth == 8 and ctype in (2, 6) and interlace == 0, header
    ch = 3 if ctype == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * ch)
    out = np.zeros((height, width * ch), dtype=np.int32)
    for y in range(height):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        prev = out[y - 1] if y else np.zeros(width * ch, dtype=np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 0xFF
        else:  # Sub, Average, Paeth depend on the pixel to the left: byte by byte, in plain ints
            ln, pv, cur = line.tolist(), prev.tolist(), [0] * (width * ch)
            for x in range(width * ch):
                a = cur[x - ch] if x >= ch else 0
                b = pv[x]
                c = pv[x - ch] if x >= ch else 0
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) >> 1
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[x] = (ln[x] + pred) & 0xFF
        out[y] = cur
    return out.reshape(height, width, ch)[:, :, :3].astype(np.uint8)


def test_png_decoder():
    """The decoder itself, on a PNG built here with every filter type."""
    w, h = 3, 5
    img = np.arange(w * h * 3, dtype=np.uint8).reshape(h, w, 3) * 7
    rows = []
    for y in range(h):
        f = y % 5
        line = img[y].reshape(-1).astype(np.int32)
        prev = img[y - 1].reshape(-1).astype(np.int32) if y else np.zeros(w * 3, np.int32)
        left = np.concatenate([np.zeros(3, np.int32), line[:-3]])
        upleft = np.concatenate([np.zeros(3, np.int32), prev[:-3]])
        if f == 0:
            enc = line
        elif f == 1:
            enc = line - left
        elif f == 2:
            enc = line - prev
        elif f == 3:
            enc = line - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            enc = line - np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        rows.append(bytes([f]) + bytes((enc & 0xFF).astype(np.uint8)))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )
    assert (png_pixels(png) == img).all()


def test_report_in_chromium(chromium, tmp_path):
    for rel, text in assemble(small_records(), META).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    page = tmp_path / "index.html"
    shot = tmp_path / "shot.png"
    proc = browse(chromium, page, f"--screenshot={shot}", "--window-size=1280,1200")
    assert shot.is_file(), proc.stderr[-2000:]
    assert console_errors(proc.stderr) == []
    px = png_pixels(shot.read_bytes())
    assert px.shape[:2] == (1200, 1280)
    colours = np.unique(px.reshape(-1, 3) // 8, axis=0)
    assert len(colours) > 50, "a blank or nearly blank page"
    assert (px.min(axis=2) < 200).mean() > 0.02, "almost nothing drawn"
    red = np.abs(px.astype(int) - (176, 0, 32)).sum(axis=2) < 60  # the 'violated' verdicts' colour
    assert red.sum() > 50, "the verdict table's colours are missing (CSS not applied?)"
    dom = browse(chromium, page, "--dump-dom")
    assert 'data-kvheal-report="rendered"' in dom.stdout  # the page's script ran to the end
    assert dom.stdout.count("<svg") == 3
    assert console_errors(dom.stderr) == []


def test_console_errors_are_seen(chromium, tmp_path):
    """The check above can fail: a page whose script throws is caught."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedThing();</script></body></html>")
    proc = browse(chromium, page, "--dump-dom")
    assert console_errors(proc.stderr), proc.stderr[-2000:]


def test_as_built_diagram_in_chromium(chromium, tmp_path):
    """An as-built counterexample in the browser: the page renders with no console errors, the
    diagram's shown cells are in the DOM, and the tints of changed cells are painted."""
    from .test_as_built_report import report

    for rel, text in report().items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    dom = browse(chromium, tmp_path / "index.html", "--dump-dom")
    assert console_errors(dom.stderr) == []
    assert 'data-kvheal-report="rendered"' in dom.stdout
    assert dom.stdout.count('class="shown"') >= 2 * (9 + 17 + 20 + 17)  # two tabs, every step of as_built's
    shot = tmp_path / "diagram.png"
    proc = browse(
        chromium,
        tmp_path / "cex" / "as_built-EveryoneSees.svg",
        f"--screenshot={shot}",
        "--window-size=1900,900",
    )
    assert shot.is_file(), proc.stderr[-2000:]
    px = png_pixels(shot.read_bytes()).astype(int)
    green = np.abs(px - (0xDF, 0xF3, 0xE0)).sum(axis=2) < 6  # a tab's page shows more
    yellow = np.abs(px - (0xFF, 0xF0, 0xB3)).sum(axis=2) < 6  # the clock ticks, a cursor moves
    assert green.sum() > 3 * 500 and yellow.sum() > 2 * 500, (green.sum(), yellow.sum())
