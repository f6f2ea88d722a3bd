//! `ImageDraw` primitives of Pillow 12.3.0 on RGB images, pixel for pixel.
//!
//! Ports of `src/libImaging/Draw.c` (`hline32`, `line32`, `polygon_generic`,
//! `add_edge`, `ImagingDrawWideLine`, `ImagingDrawRectangle`, the
//! `quarter_*`/`ellipse_*` ellipse rasteriser) and of the argument handling in
//! `src/_imaging.c` / `src/PIL/ImageDraw.py`. Pillow 12.3.0, MIT-CMU/HPND
//! licence (see `mod.rs`).
//!
//! Behaviour worth knowing (all reproduced on purpose):
//!
//! * Float coordinates are converted with a C `(int)` cast, i.e. truncated
//!   toward zero (`-2.5 → -2`, `45.7 → 45`) — not floored, not rounded. Values
//!   outside the `i32` range (and NaN) become `i32::MIN`, which is what the
//!   x86-64 conversion instruction yields.
//! * On an RGB image, drawing is opaque: every touched pixel is set to the ink.
//!   Hence the order of the elementary spans never matters, which lets this
//!   port clip loops to the image instead of walking off-image pixels.
//! * `line32` (Bresenham) never plots its end point; `ImageDraw.line` with
//!   `width == 1` adds the end point separately.
//! * `rectangle(width = w)` draws `w` nested outlines; its vertical sides run
//!   from `y0 + w` toward `y1 - w + 1`, which for rectangles shorter than
//!   `2w` walks *backwards* and paints rows below `y1` (outside the box).
//! * Wide lines are 4-vertex polygons filled by Pillow's scan-line filler,
//!   whose intersection arithmetic is single precision (`f32`).
//!
//! Internally all coordinate arithmetic is done in `i64`/`i128`, so inputs
//! that would overflow Pillow's 32-bit `int` arithmetic never panic (Pillow's
//! result is undefined there anyway). Ellipses whose box is wider or taller
//! than [`MAX_ELLIPSE_AXIS`] are not drawn (bounded running time).

use image::{Rgb, RgbImage};

/// Largest ellipse bounding-box extent (`x1 - x0` or `y1 - y0`, in pixels)
/// that [`draw_filled_ellipse`] rasterises; larger ones are skipped.
pub const MAX_ELLIPSE_AXIS: i64 = 1 << 24;

/// C's `(int)double` as executed on x86-64 (`cvttsd2si`): truncation toward
/// zero, and `INT_MIN` for NaN or out-of-range values.
fn c_int(v: f64) -> i64 {
    if v.is_nan() || v >= 2_147_483_648.0 || v <= -2_147_483_649.0 {
        i64::from(i32::MIN)
    } else {
        v as i64
    }
}

/// Opaque RGB target with Pillow's clipping rules.
struct Canvas<'a> {
    img: &'a mut RgbImage,
    w: i64,
    h: i64,
    ink: Rgb<u8>,
}

impl<'a> Canvas<'a> {
    fn new(img: &'a mut RgbImage, color: [u8; 3]) -> Self {
        let (w, h) = (i64::from(img.width()), i64::from(img.height()));
        Canvas {
            img,
            w,
            h,
            ink: Rgb(color),
        }
    }

    /// `point32`.
    fn point(&mut self, x: i64, y: i64) {
        if x >= 0 && x < self.w && y >= 0 && y < self.h {
            self.img.put_pixel(x as u32, y as u32, self.ink);
        }
    }

    /// `hline32`: pixels `x0..=x1` of row `y0`, clipped.
    fn hline(&mut self, x0: i64, y0: i64, x1: i64) {
        if y0 < 0 || y0 >= self.h || x0 >= self.w || x1 < 0 {
            return;
        }
        let (x0, x1) = (x0.max(0), x1.min(self.w - 1));
        for x in x0..=x1 {
            self.img.put_pixel(x as u32, y0 as u32, self.ink);
        }
    }

    /// `line32`: Bresenham from `(x0, y0)` toward `(x1, y1)`, end point
    /// excluded. Only the steps whose major coordinate lies inside the image
    /// are walked; the minor coordinate of the first such step is computed in
    /// closed form, so the plotted pixels are exactly Pillow's.
    fn line(&mut self, x0: i64, y0: i64, x1: i64, y1: i64) {
        let (dx, xs) = if x1 < x0 { (x0 - x1, -1) } else { (x1 - x0, 1) };
        let (dy, ys) = if y1 < y0 { (y0 - y1, -1) } else { (y1 - y0, 1) };
        if dx == 0 {
            let (k0, k1) = visible_steps(y0, ys, dy, self.h);
            for k in k0..k1 {
                self.point(x0, y0 + k * ys);
            }
        } else if dy == 0 {
            let (k0, k1) = visible_steps(x0, xs, dx, self.w);
            for k in k0..k1 {
                self.point(x0 + k * xs, y0);
            }
        } else if dx > dy {
            let (k0, k1) = visible_steps(x0, xs, dx, self.w);
            let (m, mut e) = bresenham_state(k0, dx, dy);
            let mut y = y0 + m * ys;
            for k in k0..k1 {
                self.point(x0 + k * xs, y);
                if e >= 0 {
                    y += ys;
                    e -= 2 * dx;
                }
                e += 2 * dy;
            }
        } else {
            let (k0, k1) = visible_steps(y0, ys, dy, self.h);
            let (m, mut e) = bresenham_state(k0, dy, dx);
            let mut x = x0 + m * xs;
            for k in k0..k1 {
                self.point(x, y0 + k * ys);
                if e >= 0 {
                    x += xs;
                    e -= 2 * dy;
                }
                e += 2 * dx;
            }
        }
    }
}

/// Steps `k` in `0..n` for which `start + k·step` (step ±1) lies in `0..size`.
fn visible_steps(start: i64, step: i64, n: i64, size: i64) -> (i64, i64) {
    let (lo, hi) = if step > 0 {
        (-start, size - start)
    } else {
        (start - size + 1, start + 1)
    };
    let (k0, k1) = (lo.max(0), hi.min(n));
    if k0 < k1 {
        (k0, k1)
    } else {
        (0, 0)
    }
}

/// Bresenham state before step `k` for a line with major extent `major` and
/// minor extent `minor` (`major ≥ minor > 0`): minor steps taken so far and
/// the error term. Pillow starts with `e = 2·minor − major`, plots, steps the
/// minor axis when `e ≥ 0` (`e -= 2·major`), then adds `2·minor`. After each
/// check `e ∈ [−2·major, 0)`, hence the closed form below.
fn bresenham_state(k: i64, major: i64, minor: i64) -> (i64, i64) {
    let (k, major, minor) = (i128::from(k), i128::from(major), i128::from(minor));
    let e0 = 2 * minor - major;
    let m = if k == 0 {
        0
    } else {
        (e0 + (k - 1) * 2 * minor).div_euclid(2 * major) + 1
    };
    let e = e0 + k * 2 * minor - m * 2 * major;
    (clamp_i64(m), clamp_i64(e))
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// `ROUND_UP` of `Draw.c` applied to a `double`: half away from zero.
fn round_up_f64(f: f64) -> i64 {
    if f >= 0.0 {
        (f + 0.5).floor() as i64
    } else {
        -((f.abs() + 0.5).floor() as i64)
    }
}

/// `ROUND_DOWN` of `Draw.c` applied to a `double`: half toward zero.
fn round_down_f64(f: f64) -> i64 {
    if f >= 0.0 {
        (f - 0.5).ceil() as i64
    } else {
        -((f.abs() - 0.5).ceil() as i64)
    }
}

/// `ROUND_UP` applied to a `float`: the positive branch adds `0.5F` in single
/// precision, the negative branch goes through `fabs` (double precision).
fn round_up_f32(f: f32) -> i64 {
    if f >= 0.0 {
        (f + 0.5f32).floor() as i64
    } else {
        -((f64::from(f).abs() + 0.5).floor() as i64)
    }
}

/// `ROUND_DOWN` applied to a `float` (same precision split as `round_up_f32`).
fn round_down_f32(f: f32) -> i64 {
    if f >= 0.0 {
        (f - 0.5f32).ceil() as i64
    } else {
        -((f64::from(f).abs() - 0.5).ceil() as i64)
    }
}

/// Polygon edge (`Edge` in `Draw.c`).
#[derive(Clone, Copy, Debug)]
struct Edge {
    x0: i64,
    y0: i64,
    xmin: i64,
    ymin: i64,
    xmax: i64,
    ymax: i64,
    dx: f32,
}

/// `add_edge`.
fn edge(x0: i64, y0: i64, x1: i64, y1: i64) -> Edge {
    let dx = if y0 == y1 {
        0.0
    } else {
        (x1 - x0) as f32 / (y1 - y0) as f32
    };
    Edge {
        x0,
        y0,
        xmin: x0.min(x1),
        xmax: x0.max(x1),
        ymin: y0.min(y1),
        ymax: y0.max(y1),
        dx,
    }
}

impl Edge {
    /// `(y - y0) * dx + x0`, evaluated in `float` as in C.
    fn x_at(&self, y: i64) -> f32 {
        (y - self.y0) as f32 * self.dx + self.x0 as f32
    }
}

/// `polygon_generic` for an opaque (non-blending) target.
fn fill_polygon(cv: &mut Canvas<'_>, edges: &[Edge]) {
    if edges.is_empty() {
        return;
    }
    let mut ymin = cv.h - 1;
    let mut ymax = 0;
    let mut table: Vec<Edge> = Vec::with_capacity(edges.len());
    for e in edges {
        ymin = ymin.min(e.ymin);
        ymax = ymax.max(e.ymax);
        if e.ymin == e.ymax {
            cv.hline(e.xmin, e.ymin, e.xmax);
            continue;
        }
        table.push(*e);
    }
    let ymin = ymin.max(0);
    let ymax = ymax.min(cv.h);
    let mut xx: Vec<f32> = Vec::with_capacity(table.len() * 2);
    for y in ymin..=ymax {
        xx.clear();
        for (i, cur) in table.iter().enumerate() {
            if y < cur.ymin || y > cur.ymax {
                continue;
            }
            xx.push(cur.x_at(y));
            if y == cur.ymax && y < ymax {
                // "Needed to draw consistent polygons"
                let last = xx[xx.len() - 1];
                xx.push(last);
            } else if (y == cur.ymin || y == cur.ymax) && cur.dx != 0.0 {
                // "Connect discontiguous corners"
                for other in &table[..i] {
                    if (y != other.ymin && y != other.ymax) || other.dx == 0.0 {
                        continue;
                    }
                    let last = xx.len() - 1;
                    if xx[last].round() != other.x_at(y).round() {
                        continue;
                    }
                    let offset = if y == cur.ymax { -1 } else { 1 };
                    let adjacent = cur.x_at(y + offset);
                    if y + offset >= other.ymin && y + offset <= other.ymax {
                        let adjacent_other = other.x_at(y + offset);
                        if xx[last] > adjacent + 1.0 && xx[last] > adjacent_other + 1.0 {
                            xx[last] = adjacent.max(adjacent_other).round() + 1.0;
                        } else if xx[last] < adjacent - 1.0 && xx[last] < adjacent_other - 1.0 {
                            xx[last] = adjacent.min(adjacent_other).round() - 1.0;
                        }
                        break;
                    }
                }
            }
        }
        xx.sort_by(|a, b| a.total_cmp(b));
        for pair in xx.chunks_exact(2) {
            cv.hline(round_up_f32(pair[0]), y, round_down_f32(pair[1]));
        }
    }
}

/// `ImagingDrawWideLine`: the segment as a filled quadrilateral.
fn wide_line(cv: &mut Canvas<'_>, x0: i64, y0: i64, x1: i64, y1: i64, width: i64) {
    let dx = x1 - x0;
    let dy = y1 - y0;
    if dx == 0 && dy == 0 {
        cv.point(x0, y0);
        return;
    }
    let big_hypotenuse = (dx as f64).hypot(dy as f64);
    let small_hypotenuse = (width - 1) as f64 / 2.0;
    let ratio_max = round_up_f64(small_hypotenuse) as f64 / big_hypotenuse;
    let ratio_min = round_down_f64(small_hypotenuse) as f64 / big_hypotenuse;
    let dxmin = round_down_f64(ratio_min * dy as f64);
    let dxmax = round_down_f64(ratio_max * dy as f64);
    let dymin = round_down_f64(ratio_min * dx as f64);
    let dymax = round_down_f64(ratio_max * dx as f64);
    let v = [
        (x0 - dxmin, y0 + dymax),
        (x1 - dxmin, y1 + dymax),
        (x1 + dxmax, y1 - dymin),
        (x0 + dxmax, y0 - dymin),
    ];
    let edges = [
        edge(v[0].0, v[0].1, v[1].0, v[1].1),
        edge(v[1].0, v[1].1, v[2].0, v[2].1),
        edge(v[2].0, v[2].1, v[3].0, v[3].1),
        edge(v[3].0, v[3].1, v[0].0, v[0].1),
    ];
    fill_polygon(cv, &edges);
}

/// `ImageDraw.rectangle(((x0, y0), (x1, y1)), outline=color, width=width)`
/// on an RGB image (`ImagingDrawRectangle` with `fill = 0`).
///
/// Draws `width` nested one-pixel outlines inward from the given corners
/// (corners inclusive), clipped to the image. Mirrors Pillow's quirks: the
/// vertical sides of a rectangle shorter than `2·width` extend *below* `y1`.
/// Nothing is drawn when `width <= 0` (`ImageDraw` skips `width == 0`;
/// Pillow's loop does nothing for negative widths) or when `x1 < x0` or
/// `y1 < y0` (Pillow raises `ValueError` for such boxes).
pub fn draw_rectangle_outline(
    img: &mut RgbImage,
    x0: i32,
    y0: i32,
    x1: i32,
    y1: i32,
    color: [u8; 3],
    width: i32,
) {
    if width <= 0 || x1 < x0 || y1 < y0 {
        return;
    }
    let mut cv = Canvas::new(img, color);
    let (x0, y0, x1, y1, w) = (
        i64::from(x0),
        i64::from(y0),
        i64::from(x1),
        i64::from(y1),
        i64::from(width),
    );
    // Pillow's loop, `for i in 0..w`:
    //   hline(x0, y0 + i, x1); hline(x0, y1 - i, x1);
    //   line(x1 - i, y0 + w, x1 - i, y1 - w + 1);
    //   line(x0 + i, y0 + w, x0 + i, y1 - w + 1);
    // Every call paints the same opaque ink, so each family is walked only
    // over the `i` for which it can touch the image.
    let (h, wd) = (cv.h, cv.w);
    for i in range_where(w, |i| y0 + i, 1, h) {
        cv.hline(x0, y0 + i, x1);
    }
    for i in range_where(w, |i| y1 - i, -1, h) {
        cv.hline(x0, y1 - i, x1);
    }
    for i in range_where(w, |i| x1 - i, -1, wd) {
        cv.line(x1 - i, y0 + w, x1 - i, y1 - w + 1);
    }
    for i in range_where(w, |i| x0 + i, 1, wd) {
        cv.line(x0 + i, y0 + w, x0 + i, y1 - w + 1);
    }
}

/// The `i` in `0..n` for which the affine coordinate `f(i) = f(0) + dir·i`
/// lies in `0..size`.
fn range_where(n: i64, f: impl Fn(i64) -> i64, dir: i64, size: i64) -> std::ops::Range<i64> {
    let (k0, k1) = visible_steps(f(0), dir, n, size);
    k0..k1
}

/// `ImageDraw.line((x0, y0, x1, y1), fill=color, width=width)` for a single
/// segment on an RGB image.
///
/// Coordinates are truncated toward zero (`_imaging.c`'s `(int)` casts).
/// `width == 1` draws the Bresenham line plus its end point; any other
/// non-zero width (negative ones included, as Pillow does) draws the segment
/// as a polygon via `ImagingDrawWideLine` (a zero-length segment becomes a
/// single pixel); `width == 0` draws nothing.
pub fn draw_line(
    img: &mut RgbImage,
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
    color: [u8; 3],
    width: i32,
) {
    if width == 0 {
        return;
    }
    let mut cv = Canvas::new(img, color);
    let (x0, y0, x1, y1) = (c_int(x0), c_int(y0), c_int(x1), c_int(y1));
    if width == 1 {
        cv.line(x0, y0, x1, y1);
        cv.point(x1, y1);
    } else {
        wide_line(&mut cv, x0, y0, x1, y1, i64::from(width));
    }
}

/// One quarter of an ellipse on the doubled integer grid (`quarter_state`).
struct Quarter {
    cx: i64,
    cy: i64,
    ex: i64,
    ey: i64,
    a2: i128,
    b2: i128,
    a2b2: i128,
    finished: bool,
}

impl Quarter {
    fn new(a: i64, b: i64) -> Self {
        let mut q = Quarter {
            cx: a,
            cy: b % 2,
            ex: a % 2,
            ey: b,
            a2: i128::from(a) * i128::from(a),
            b2: i128::from(b) * i128::from(b),
            a2b2: 0,
            finished: a < 0 || b < 0,
        };
        q.a2b2 = q.a2 * q.b2;
        q
    }

    fn delta(&self, x: i64, y: i64) -> i128 {
        let (x, y) = (i128::from(x), i128::from(y));
        (self.a2 * y * y + self.b2 * x * x - self.a2b2).abs()
    }

    /// `quarter_next`: the current point, then one Bresenham step.
    fn next(&mut self) -> Option<(i64, i64)> {
        if self.finished {
            return None;
        }
        let ret = (self.cx, self.cy);
        if self.cx == self.ex && self.cy == self.ey {
            self.finished = true;
        } else {
            let (mut nx, mut ny) = (self.cx, self.cy + 2);
            let mut ndelta = self.delta(nx, ny);
            if nx > 1 {
                let d = self.delta(self.cx - 2, self.cy + 2);
                if ndelta > d {
                    nx = self.cx - 2;
                    ny = self.cy + 2;
                    ndelta = d;
                }
                let d = self.delta(self.cx - 2, self.cy);
                if ndelta > d {
                    nx = self.cx - 2;
                    ny = self.cy;
                }
            }
            self.cx = nx;
            self.cy = ny;
        }
        Some(ret)
    }
}

/// `ellipse_init` + `ellipse_next`: horizontal spans `(x0, y, x1)` of an
/// ellipse ring of thickness `w`, on the doubled grid centred at the origin.
fn ellipse_spans(a: i64, b: i64, w: i64, mut emit: impl FnMut(i64, i64, i64)) {
    let leftmost = a % 2;
    let mut outer = Quarter::new(a, b);
    let Some((mut pr, mut py)) = (if w < 1 { None } else { outer.next() }) else {
        return;
    };
    let mut inner = Quarter::new(a - 2 * (w - 1), b - 2 * (w - 1));
    let mut pl = leftmost;
    let mut finished = false;
    while !finished {
        let (y, mut l, r) = (py, pl, pr);
        let mut step = outer.next();
        while let Some((_, cy)) = step {
            if cy > y {
                break;
            }
            step = outer.next();
        }
        match step {
            None => finished = true,
            Some((cx, cy)) => {
                pr = cx;
                py = cy;
            }
        }
        let mut istep = inner.next();
        while let Some((cx, cy)) = istep {
            if cy > y {
                break;
            }
            l = cx;
            istep = inner.next();
        }
        pl = istep.map_or(leftmost, |(cx, _)| cx);

        let lx = if l == 0 { 2 } else { l };
        if (l > 0 || l < r) && y > 0 {
            emit(lx, y, r);
        }
        if y > 0 {
            emit(-r, y, -l);
        }
        if l > 0 || l < r {
            emit(lx, -y, r);
        }
        emit(-r, -y, -l);
    }
}

/// `ImageDraw.ellipse([(x0, y0), (x1, y1)], fill=color)` on an RGB image
/// (`ellipseNew` with `fill = 1`, i.e. ring width `a + b`).
///
/// The box is truncated toward zero first (`_imaging.c`), so e.g. a radius-4
/// dot at `(2.5, 3.5)` uses the box `(-1, 0)–(6, 7)`. Nothing is drawn when
/// `x1 < x0` or `y1 < y0` before truncation (Pillow raises `ValueError`), for
/// a zero-size box, or when the box exceeds [`MAX_ELLIPSE_AXIS`].
pub fn draw_filled_ellipse(img: &mut RgbImage, x0: f64, y0: f64, x1: f64, y1: f64, color: [u8; 3]) {
    if x1 < x0 || y1 < y0 {
        return;
    }
    let (x0, y0, x1, y1) = (c_int(x0), c_int(y0), c_int(x1), c_int(y1));
    let (a, b) = (x1 - x0, y1 - y0);
    if a < 0 || b < 0 || a > MAX_ELLIPSE_AXIS || b > MAX_ELLIPSE_AXIS {
        return;
    }
    // Whole ellipse outside the image: nothing to do.
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    if x1 < 0 || y1 < 0 || x0 >= w || y0 >= h {
        return;
    }
    let mut cv = Canvas::new(img, color);
    ellipse_spans(a, b, a + b, |l, y, r| {
        cv.hline(x0 + (l + a) / 2, y0 + (y + b) / 2, x0 + (r + a) / 2);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_int_truncates_toward_zero() {
        assert_eq!(c_int(45.7), 45);
        assert_eq!(c_int(-2.5), -2);
        assert_eq!(c_int(-0.9), 0);
        assert_eq!(c_int(f64::NAN), i64::from(i32::MIN));
        assert_eq!(c_int(1e12), i64::from(i32::MIN));
        assert_eq!(c_int(-1e12), i64::from(i32::MIN));
    }

    #[test]
    fn bresenham_closed_form_matches_iteration() {
        for (major, minor) in [(7i64, 3i64), (10, 10), (13, 1), (5, 4), (100, 37)] {
            let mut e = 2 * minor - major;
            let mut m = 0;
            for k in 0..major {
                assert_eq!(
                    bresenham_state(k, major, minor),
                    (m, e),
                    "{major} {minor} {k}"
                );
                if e >= 0 {
                    m += 1;
                    e -= 2 * major;
                }
                e += 2 * minor;
            }
        }
    }

    #[test]
    fn huge_and_degenerate_inputs_do_not_panic() {
        let mut img = RgbImage::new(16, 9);
        let c = [1, 2, 3];
        draw_rectangle_outline(
            &mut img,
            i32::MIN,
            i32::MIN,
            i32::MAX,
            i32::MAX,
            c,
            i32::MAX,
        );
        draw_rectangle_outline(&mut img, 3, 3, 2, 2, c, 4);
        for w in [1, 4, -7, i32::MAX, i32::MIN] {
            draw_line(&mut img, -1e300, 5.0, 1e300, 5.0, c, w);
            draw_line(&mut img, f64::NAN, 0.0, 3.0, f64::INFINITY, c, w);
            draw_line(&mut img, -3e9, -2e9, 2e9, 3e9, c, w);
        }
        draw_filled_ellipse(&mut img, -1e12, -1e12, 1e12, 1e12, c);
        draw_filled_ellipse(&mut img, f64::NAN, 0.0, 1.0, 1.0, c);
        draw_filled_ellipse(&mut img, 3.0, 3.0, 3.0, 3.0, c);
        let mut empty = RgbImage::new(0, 0);
        draw_rectangle_outline(&mut empty, 0, 0, 5, 5, c, 4);
        draw_line(&mut empty, 0.0, 0.0, 5.0, 5.0, c, 4);
        draw_filled_ellipse(&mut empty, 0.0, 0.0, 8.0, 8.0, c);
    }

    #[test]
    fn long_width1_line_is_clipped_quickly() {
        let mut img = RgbImage::new(8, 8);
        draw_line(&mut img, -2e9, -1e9, 2e9, 1e9, [9, 9, 9], 1);
        // passes through the image interior
        assert!(img.pixels().any(|p| p.0 == [9, 9, 9]));
    }
}
