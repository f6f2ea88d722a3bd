#!/usr/bin/env python3
"""Generate Pillow 12.3.0 parity fixtures for `sightline::core::pillow`.

Developer tool, not run by CI.  It needs exactly Pillow 12.3.0 (the version the
ViLaSR/ViLaVT reference pipeline is matched against) and numpy:

    python3 -m venv /tmp/pilvenv
    /tmp/pilvenv/bin/pip install pillow==12.3.0 numpy
    /tmp/pilvenv/bin/python tools/pillow_fixtures.py

Outputs (all deterministic; re-running produces identical files):

* ``tests/fixtures/pillow/resize.json`` + ``resize/*.png`` -- ``Image.resize``
  (BICUBIC and LANCZOS) on small random RGB sources, and RGBA-over-white
  compositing as done by qwen-vl-utils ``to_rgb``.
* ``tests/fixtures/pillow/draw.json`` + ``draw/*.png`` -- ImageDraw rectangle
  outlines, (wide) lines and filled ellipses on small grey canvases.
* ``tests/fixtures/pillow/text.json`` + ``text/*.png`` -- default-font text
  (``ImageFont.load_default()``, FreeType Aileron Regular 10 px, basic layout)
  with the ``textbbox`` Pillow reports, plus per-character metrics.
* ``assets/fonts/aileron_regular_10px.glyphs`` -- the glyph atlas used by
  ``sightline::core::pillow::text``: Pillow/FreeType's own rendering of every
  glyph of the bundled font at 10 px (see ``write_atlas`` for the format).

Run from the repository root (or pass ``--root``).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFont

REQUIRED_PILLOW = "12.3.0"
CANVAS_GREY = (128, 128, 128)


def check_version() -> None:
    print(f"Pillow {PIL.__version__}, numpy {np.__version__}")
    if PIL.__version__ != REQUIRED_PILLOW:
        sys.exit(
            f"refusing to run: Pillow {REQUIRED_PILLOW} is required, "
            f"found {PIL.__version__}"
        )


def save_png(im: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format="PNG", optimize=True)


# --------------------------------------------------------------------------
# resize
# --------------------------------------------------------------------------

RESIZE_CASES = {
    # (w, h): list of (filter, (target_w, target_h))
    (37, 23): [
        ("bicubic", (74, 46)), ("bicubic", (50, 31)), ("bicubic", (20, 11)),
        ("bicubic", (37, 60)), ("bicubic", (61, 23)), ("bicubic", (5, 3)),
        ("bicubic", (1, 1)), ("bicubic", (37, 23)), ("bicubic", (111, 7)),
        ("lanczos", (50, 31)), ("lanczos", (20, 11)), ("lanczos", (37, 60)),
    ],
    (64, 48): [
        ("bicubic", (56, 28)), ("bicubic", (28, 28)), ("bicubic", (84, 56)),
        ("bicubic", (64, 17)), ("bicubic", (9, 48)), ("bicubic", (33, 25)),
        ("lanczos", (28, 28)), ("lanczos", (84, 56)), ("lanczos", (9, 48)),
    ],
    (100, 75): [
        ("bicubic", (56, 56)), ("bicubic", (112, 84)), ("bicubic", (29, 97)),
        ("bicubic", (13, 7)), ("lanczos", (56, 56)), ("lanczos", (112, 84)),
    ],
    (13, 91): [
        ("bicubic", (28, 84)), ("bicubic", (13, 40)), ("bicubic", (6, 91)),
        ("bicubic", (2, 200)), ("lanczos", (28, 84)), ("lanczos", (6, 20)),
    ],
    (1, 5): [
        ("bicubic", (3, 11)), ("bicubic", (1, 2)), ("bicubic", (4, 5)),
        ("bicubic", (2, 1)), ("lanczos", (3, 11)),
    ],
    (5, 1): [("bicubic", (12, 3)), ("bicubic", (2, 1)), ("lanczos", (12, 3))],
    # Height > 100 * width: Pillow 12 resizes vertically first, then horizontally,
    # as two separate calls (Image.resize special case).
    (3, 400): [
        ("bicubic", (2, 50)), ("bicubic", (3, 57)), ("bicubic", (6, 33)),
        ("bicubic", (3, 401)), ("lanczos", (2, 50)),
    ],
    (2, 250): [("bicubic", (5, 40)), ("bicubic", (1, 249)), ("lanczos", (5, 40))],
}

PIL_FILTERS = {"bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


def make_source(rng: np.random.RandomState, w: int, h: int, kind: int) -> Image.Image:
    if kind == 0:
        arr = rng.randint(0, 256, size=(h, w, 3))
    else:
        # smooth gradient + noise, with saturated patches to exercise clipping
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack(
            [xx * 255.0 / max(w - 1, 1), yy * 255.0 / max(h - 1, 1),
             ((xx + yy) % 7) * 40.0],
            axis=2,
        )
        arr = base + rng.randint(-40, 41, size=(h, w, 3))
        arr[(xx + 2 * yy) % 5 == 0] = 255
        arr[(3 * xx + yy) % 11 == 0] = 0
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def gen_resize(out: Path) -> None:
    rng = np.random.RandomState(20240612)
    cases = []
    for i, ((w, h), targets) in enumerate(RESIZE_CASES.items()):
        src = make_source(rng, w, h, i % 2)
        src_name = f"resize/src_{w}x{h}.png"
        save_png(src, out / src_name)
        for filt, (tw, th) in targets:
            res = src.resize((tw, th), PIL_FILTERS[filt])
            assert res.mode == "RGB" and res.size == (tw, th)
            name = f"resize/{filt}_{w}x{h}_to_{tw}x{th}.png"
            save_png(res, out / name)
            cases.append({"src": src_name, "filter": filt, "size": [tw, th],
                          "expected": name})
    # RGBA over white (qwen-vl-utils to_rgb)
    rgba_cases = []
    for (w, h) in [(23, 17), (5, 40)]:
        arr = rng.randint(0, 256, size=(h, w, 4)).astype(np.uint8)
        arr[0, :, 3] = 0
        arr[1, :, 3] = 255
        src = Image.fromarray(arr, "RGBA")
        white = Image.new("RGB", src.size, (255, 255, 255))
        white.paste(src, mask=src.split()[3])
        sname = f"resize/rgba_{w}x{h}.png"
        ename = f"resize/rgba_{w}x{h}_over_white.png"
        save_png(src, out / sname)
        save_png(white, out / ename)
        rgba_cases.append({"src": sname, "expected": ename})
    doc = {"pillow": PIL.__version__, "resize": cases, "rgba_over_white": rgba_cases}
    (out / "resize.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"resize: {len(cases)} cases, rgba: {len(rgba_cases)}")


# --------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------

DRAW_W, DRAW_H = 40, 32


def apply_call(draw: ImageDraw.ImageDraw, c: dict) -> None:
    col = tuple(c["color"])
    if c["op"] == "rectangle":
        x0, y0, x1, y1 = c["xy"]
        draw.rectangle(((x0, y0), (x1, y1)), outline=col, width=c["width"])
    elif c["op"] == "line":
        draw.line(tuple(c["xy"]), fill=col, width=c["width"])
    elif c["op"] == "ellipse":
        x0, y0, x1, y1 = c["xy"]
        draw.ellipse([(x0, y0), (x1, y1)], fill=col)
    elif c["op"] == "text":
        x, y = c["xy"]
        draw.text((x, y), c["text"], fill=col)
    else:
        raise ValueError(c["op"])


def draw_cases() -> list[list[dict]]:
    cases: list[list[dict]] = []
    red, green, blue, black = [255, 0, 0], [0, 128, 0], [0, 0, 255], [0, 0, 0]

    # rectangles, width 4 (the reference) and a few other widths
    rects = [
        (5, 5, 30, 25), (10, 10, 10, 10), (10, 10, 11, 11), (10, 10, 12, 13),
        (10, 10, 13, 13), (10, 10, 14, 14), (10, 10, 15, 15), (10, 10, 16, 17),
        (10, 10, 17, 18), (3, 20, 20, 20), (20, 3, 20, 28), (0, 0, 39, 31),
        (-5, -5, 10, 10), (30, 25, 50, 45), (-10, 10, 60, 20), (12, -10, 18, 60),
        (-20, -20, -2, -2), (41, 33, 50, 40), (-3, 5, 2, 9), (36, 28, 40, 32),
        (2, 2, 37, 3), (7, 1, 9, 30), (0, 0, 0, 31), (39, 0, 39, 31),
    ]
    for r in rects:
        cases.append([{"op": "rectangle", "xy": list(r), "color": red, "width": 4}])
    for w in (1, 2, 3, 5, 8, 0, -1):
        for r in [(5, 5, 30, 25), (10, 10, 13, 12), (8, 8, 8, 20)]:
            cases.append([{"op": "rectangle", "xy": list(r), "color": blue, "width": w}])

    # wide lines at many angles, lengths and fractional endpoints
    import math
    cx, cy = 19.0, 15.0
    for k in range(48):
        ang = k * 7.5
        for length in (11.0, 4.6):
            x1 = cx + length * math.cos(math.radians(ang))
            y1 = cy + length * math.sin(math.radians(ang))
            x0 = cx - (k % 3) * 0.35
            y0 = cy + (k % 4) * 0.3
            cases.append([{"op": "line", "xy": [x0, y0, round(x1, 3), round(y1, 3)],
                           "color": black, "width": 4}])
    specials = [
        (5, 16, 35, 16), (20, 3, 20, 29), (3, 3, 36, 28), (36, 3, 3, 28),
        (20, 15, 20, 15), (20.9, 15.9, 20.1, 15.2), (20, 15, 21, 15), (20, 15, 20, 16),
        (20, 15, 21, 16), (20, 15, 22, 16), (-10, -5, 50, 40), (-10.7, 16.2, 50.9, 16.8),
        (19.5, -8.5, 19.5, 45.5), (-3.9, -3.9, 5.9, 5.9), (-0.5, 10, 10, -0.5),
        (35, 28, 60, 60), (0, 31, 39, 0), (1e-9, 2.9999, 30.00001, 17.5),
        (-2, 2, 2, -2), (50, 50, 60, 60),
    ]
    for s in specials:
        cases.append([{"op": "line", "xy": list(s), "color": black, "width": 4}])
    for w in (1, 2, 3, 5, 6, 9, -2):
        for s in [(4, 6, 33, 24), (4, 24, 33, 6), (10, 5, 13, 27), (6, 12, 31, 12),
                  (18, 14, 18, 14)]:
            cases.append([{"op": "line", "xy": list(s), "color": green, "width": w}])

    # filled ellipses: radius 4 boxes at integer / fractional centres, near borders
    centres = [(20, 16), (20.5, 16.5), (20.25, 15.75), (19.999, 16.001), (0, 0),
               (2.5, 3.5), (-1.5, 10), (39, 31), (37.6, 29.4), (40.5, 33.5),
               (-3.9, -3.9), (4, 16), (3.99, 16), (-4.5, 16)]
    for (x, y) in centres:
        for col in (red, blue):
            cases.append([{"op": "ellipse", "xy": [x - 4, y - 4, x + 4, y + 4],
                           "color": col}])
    for box in [(10, 10, 10, 10), (10, 10, 11, 11), (10, 10, 12, 12), (10, 10, 13, 13),
                (5, 8, 30, 14), (15, 2, 20, 30), (3.3, 4.7, 30.2, 27.9), (-10, -10, 50, 50),
                (10, 10, 10, 20), (10, 10, 25, 10)]:
        cases.append([{"op": "ellipse", "xy": list(box), "color": green}])

    # a reference-like sequence: box, line, start/end dots, all on one canvas
    cases.append([
        {"op": "rectangle", "xy": [4, 3, 20, 15], "color": red, "width": 4},
        {"op": "rectangle", "xy": [18, 10, 30, 25], "color": green, "width": 4},
        {"op": "line", "xy": [5.0, 28.0, 36.0, 20.0], "color": black, "width": 4},
        {"op": "ellipse", "xy": [1.0, 24.0, 9.0, 32.0], "color": red},
        {"op": "ellipse", "xy": [32.0, 16.0, 40.0, 24.0], "color": blue},
    ])
    return cases


def gen_draw(out: Path) -> None:
    docs = []
    for i, calls in enumerate(draw_cases()):
        im = Image.new("RGB", (DRAW_W, DRAW_H), CANVAS_GREY)
        d = ImageDraw.Draw(im)
        for c in calls:
            apply_call(d, c)
        name = f"draw/case_{i:03d}.png"
        save_png(im, out / name)
        docs.append({"canvas": [DRAW_W, DRAW_H], "background": list(CANVAS_GREY),
                     "calls": calls, "expected": name})
    doc = {"pillow": PIL.__version__, "cases": docs}
    (out / "draw.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"draw: {len(docs)} cases")


# --------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------

TEXTS = [
    "chair", "table", "lamp", "Hello, World!", "gjpqy", "AV To", "x", "",
    "multi\nline", "two\n\nblank", "naïve", "中文", "12.5%", "a b\tc", "fi fl",
    "{[(|)]}", "@#$&*", "W", "___", "Ω≈", "ﬁﬂ…", "o\u0301",
]
TEXT_POS = [(0, 0), (8, 6), (-3, -2), (50, 12), (30, 20)]


def gen_text(out: Path) -> None:
    font = ImageFont.load_default()
    # mirror ImageDraw.text's own checks: the default font really is FreeType
    assert font.getmetrics() == (10, 3)
    assert isinstance(font, ImageFont.FreeTypeFont)
    docs = []
    colours = [[255, 0, 0], [0, 128, 0], [0, 0, 255], [255, 255, 0], [10, 20, 30]]
    n = 0
    for ti, text in enumerate(TEXTS):
        for pi, (x, y) in enumerate(TEXT_POS):
            if (ti + pi) % 2 and pi != 1:
                continue
            col = colours[(ti + pi) % len(colours)]
            im = Image.new("RGB", (64, 28), CANVAS_GREY)
            d = ImageDraw.Draw(im)
            d.text((x, y), text, fill=tuple(col))
            bbox = d.textbbox((x, y), text)
            name = f"text/case_{n:03d}.png"
            n += 1
            save_png(im, out / name)
            docs.append({"canvas": [64, 28], "background": list(CANVAS_GREY),
                         "xy": [x, y], "text": text, "color": col,
                         "textbbox": [int(v) for v in bbox], "expected": name})
    # every mapped character, in runs, exercising glyph overlaps and offsets
    cmap_chars = sorted(font_cmap(font))
    chunk = 14
    for k in range(0, len(cmap_chars), chunk):
        text = "".join(chr(c) for c in cmap_chars[k:k + chunk])
        for (x, y) in [(2, 1), (-4, 9)]:
            col = colours[(k // chunk) % len(colours)]
            im = Image.new("RGB", (150, 26), CANVAS_GREY)
            d = ImageDraw.Draw(im)
            d.text((x, y), text, fill=tuple(col))
            bbox = d.textbbox((x, y), text)
            name = f"text/case_{n:03d}.png"
            n += 1
            save_png(im, out / name)
            docs.append({"canvas": [150, 26], "background": list(CANVAS_GREY),
                         "xy": [x, y], "text": text, "color": col,
                         "textbbox": [int(v) for v in bbox], "expected": name})
    # per-character metrics for every mapped character
    metrics = {}
    for cp in cmap_chars:
        ch = chr(cp)
        metrics[ch] = {"length": font.getlength(ch), "bbox": list(font.getbbox(ch))}
    doc = {"pillow": PIL.__version__, "font": "load_default() Aileron Regular 10px",
           "metrics": list(font.getmetrics()), "cases": docs, "chars": metrics}
    (out / "text.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    print(f"text: {len(docs)} cases, {len(metrics)} characters")


def font_bytes() -> bytes:
    src = Path(ImageFont.__file__).read_text()
    start = src.index("def load_default(")
    m = re.search(r'base64\.b64decode\(b"""(.*?)"""\)', src[start:], re.S)
    assert m is not None
    return base64.b64decode(m.group(1))


def font_cmap(font: ImageFont.FreeTypeFont) -> set[int]:
    """Code points the font maps to a real glyph (parsed from its cmap table)."""
    data = font_bytes()
    num_tables = struct.unpack(">H", data[4:6])[0]
    tables = {}
    for i in range(num_tables):
        tag, _, off, length = struct.unpack(">4sIII", data[12 + 16 * i: 28 + 16 * i])
        tables[tag.decode()] = (off, length)
    off, _ = tables["cmap"]
    n = struct.unpack(">H", data[off + 2: off + 4])[0]
    cps: set[int] = set()
    for i in range(n):
        pid, eid, sub = struct.unpack(">HHI", data[off + 4 + 8 * i: off + 12 + 8 * i])
        so = off + sub
        fmt = struct.unpack(">H", data[so: so + 2])[0]
        if fmt == 4:
            segx2 = struct.unpack(">H", data[so + 6: so + 8])[0]
            seg = segx2 // 2
            ends = struct.unpack(f">{seg}H", data[so + 14: so + 14 + segx2])
            starts = struct.unpack(f">{seg}H", data[so + 16 + segx2: so + 16 + 2 * segx2])
            for s, e in zip(starts, ends):
                if s != 0xFFFF:
                    cps.update(range(s, e + 1))
        elif fmt == 12:
            ng = struct.unpack(">I", data[so + 12: so + 16])[0]
            for g in range(ng):
                s, e, _ = struct.unpack(">III", data[so + 16 + 12 * g: so + 28 + 12 * g])
                cps.update(range(s, e + 1))
    return cps


# --------------------------------------------------------------------------
# glyph atlas
# --------------------------------------------------------------------------

def write_atlas(path: Path) -> None:
    """Write Pillow's own rendering of every glyph of the default font.

    Format (little endian):
      b"SLGLYPH1", u16 count, i16 ascender_px, i16 descender_px, i16 reserved
      count entries, sorted by code point (code point 0 = .notdef, used for
      every unmapped character):
        u32 code point, i16 advance_px,
        i16 bbox_l, bbox_t, bbox_r, bbox_b   (font.getbbox(ch), anchor 'la')
        i16 left, top                         (coverage origin rel. to pen, 'la')
        u16 w, h, then w*h coverage bytes (row major)
    """
    font = ImageFont.load_default()
    assert isinstance(font, ImageFont.FreeTypeFont)
    asc, desc = font.getmetrics()
    cps = sorted(font_cmap(font))
    notdef_probe = "\uffff" if 0xFFFF not in cps else "\U000e0000"
    entries = [(0, notdef_probe)] + [(cp, chr(cp)) for cp in cps if cp != 0]
    blob = bytearray()
    for cp, ch in entries:
        length = font.getlength(ch)
        assert length == int(length), (ch, length)
        bbox = font.getbbox(ch)
        mask, (ox, oy) = font.getmask2(ch, "L")
        w, h = mask.size
        arr = np.array(
            [mask.getpixel((x, y)) for y in range(h) for x in range(w)], dtype=np.uint8
        ).reshape(h, w) if w and h else np.zeros((0, 0), np.uint8)
        ys, xs = np.nonzero(arr)
        if len(xs):
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            cov = arr[y0:y1, x0:x1]
            left, top = ox + int(x0), oy + int(y0)
        else:
            cov = np.zeros((0, 0), np.uint8)
            left = top = 0
        blob += struct.pack("<Ih4h2h2H", cp, int(length), *[int(v) for v in bbox],
                            left, top, cov.shape[1], cov.shape[0])
        blob += cov.tobytes()
    header = b"SLGLYPH1" + struct.pack("<H3h", len(entries), asc, desc, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + bytes(blob))
    print(f"atlas: {len(entries)} glyphs, {path.stat().st_size} bytes -> {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = ap.parse_args()
    check_version()
    out = args.root / "tests" / "fixtures" / "pillow"
    for sub in ("resize", "draw", "text"):
        shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    gen_resize(out)
    gen_draw(out)
    gen_text(out)
    write_atlas(args.root / "assets" / "fonts" / "aileron_regular_10px.glyphs")
    ttf = args.root / "assets" / "fonts" / "Aileron-Regular.ttf"
    if not ttf.exists() or ttf.read_bytes() != font_bytes():
        ttf.write_bytes(font_bytes())
        print(f"wrote {ttf}")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"fixture dir size: {total} bytes")


if __name__ == "__main__":
    main()
