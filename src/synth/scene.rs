//! Scene drawing shared by the task families: the named object palette, filled shapes with a dark
//! outline (circles through the Pillow-exact ellipse of `core::pillow`, polygons through an exact
//! scan-line filler), light backdrops with low-contrast clutter, and non-overlapping object
//! placement on a jittered slot grid.
//!
//! Everything is integer geometry or IEEE-exact arithmetic on hard-coded vertex tables (no
//! trigonometry), so the pixels are identical on every platform. Flat colours keep the PNGs small.

use super::rng::Rng;
use crate::core::pillow;
use image::{Rgb, RgbImage};

/// A named object colour. Names appear in questions ("How many red triangles …").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Colour {
    pub name: &'static str,
    pub rgb: [u8; 3],
}

/// Saturated, well-separated object colours; none equals a backdrop, clutter or outline colour.
pub const PALETTE: [Colour; 10] = [
    Colour { name: "red", rgb: [214, 39, 40] },
    Colour { name: "green", rgb: [44, 160, 44] },
    Colour { name: "blue", rgb: [31, 90, 220] },
    Colour { name: "yellow", rgb: [240, 200, 20] },
    Colour { name: "orange", rgb: [245, 130, 20] },
    Colour { name: "purple", rgb: [140, 70, 190] },
    Colour { name: "pink", rgb: [240, 110, 180] },
    Colour { name: "brown", rgb: [140, 86, 45] },
    Colour { name: "cyan", rgb: [23, 190, 207] },
    Colour { name: "gray", rgb: [120, 120, 120] },
];

/// The dark outline drawn around every object.
pub const OUTLINE: [u8; 3] = [40, 40, 40];

/// Light backdrop tints.
pub const BACKDROPS: [[u8; 3]; 6] =
    [[245, 241, 230], [235, 240, 245], [238, 245, 235], [246, 238, 242], [240, 240, 240], [250, 247, 238]];

/// The palette entry called `name`.
pub fn colour(name: &str) -> Colour {
    PALETTE.iter().copied().find(|c| c.name == name).unwrap_or(PALETTE[0])
}

/// Object shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    Star,
    Hexagon,
}

impl Shape {
    pub const ALL: [Shape; 6] = [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Diamond, Shape::Star, Shape::Hexagon];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Diamond => "diamond",
            Shape::Star => "star",
            Shape::Hexagon => "hexagon",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Diamond => "diamonds",
            Shape::Star => "stars",
            Shape::Hexagon => "hexagons",
        }
    }

    /// Polygon vertices on the unit half-size (`None` for the circle).
    fn unit_polygon(self) -> Option<&'static [(f64, f64)]> {
        const SQUARE: [(f64, f64); 4] = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)];
        const TRIANGLE: [(f64, f64); 3] = [(0.0, -1.0), (1.0, 1.0), (-1.0, 1.0)];
        const DIAMOND: [(f64, f64); 4] = [(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)];
        const HEXAGON: [(f64, f64); 6] = [(0.0, -1.0), (0.875, -0.5), (0.875, 0.5), (0.0, 1.0), (-0.875, 0.5), (-0.875, -0.5)];
        // Five outer points (radius 1, from straight up) and five inner ones (radius 0.45),
        // cos/sin of multiples of 18° written out.
        const STAR: [(f64, f64); 10] = [
            (0.0, -1.0),
            (0.2645, -0.3641),
            (0.9511, -0.3090),
            (0.4280, 0.1391),
            (0.5878, 0.8090),
            (0.0, 0.45),
            (-0.5878, 0.8090),
            (-0.4280, 0.1391),
            (-0.9511, -0.3090),
            (-0.2645, -0.3641),
        ];
        match self {
            Shape::Circle => None,
            Shape::Square => Some(&SQUARE),
            Shape::Triangle => Some(&TRIANGLE),
            Shape::Diamond => Some(&DIAMOND),
            Shape::Star => Some(&STAR),
            Shape::Hexagon => Some(&HEXAGON),
        }
    }
}

/// One drawn object: colour, shape, centre and half-size in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object {
    pub colour: Colour,
    pub shape: Shape,
    pub cx: i32,
    pub cy: i32,
    pub r: i32,
}

impl Object {
    /// "red triangle".
    pub fn name(&self) -> String {
        format!("{} {}", self.colour.name, self.shape.name())
    }

    /// A box around the object and its outline with a 2-pixel margin, clipped to `w × h`.
    pub fn bbox(&self, w: u32, h: u32) -> [i32; 4] {
        let m = self.r + 4;
        [
            (self.cx - m).max(0),
            (self.cy - m).max(0),
            (self.cx + m).min(w as i32 - 1),
            (self.cy + m).min(h as i32 - 1),
        ]
    }

    pub fn centre(&self) -> [i32; 2] {
        [self.cx, self.cy]
    }

    pub fn draw(&self, img: &mut RgbImage) {
        draw_shape(img, self.shape, self.cx, self.cy, self.r + 2, OUTLINE);
        draw_shape(img, self.shape, self.cx, self.cy, self.r, self.colour.rgb);
    }

    /// The object as JSON metadata (`{"colour", "shape", "centre", "r"}`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"colour": self.colour.name, "shape": self.shape.name(), "centre": [self.cx, self.cy], "r": self.r})
    }
}

/// Fill a shape of half-size `r` centred on `(cx, cy)`.
pub fn draw_shape(img: &mut RgbImage, shape: Shape, cx: i32, cy: i32, r: i32, rgb: [u8; 3]) {
    match shape.unit_polygon() {
        None => {
            let (x, y, r) = (f64::from(cx), f64::from(cy), f64::from(r));
            pillow::draw_filled_ellipse(img, x - r, y - r, x + r, y + r, rgb);
        }
        Some(unit) => {
            let pts: Vec<(f64, f64)> =
                unit.iter().map(|(u, v)| (f64::from(cx) + u * f64::from(r), f64::from(cy) + v * f64::from(r))).collect();
            fill_polygon(img, &pts, rgb);
        }
    }
}

/// Fill `[x0, x1) × [y0, y1)`, clipped to the image.
pub fn fill_rect(img: &mut RgbImage, x0: i32, y0: i32, x1: i32, y1: i32, rgb: [u8; 3]) {
    let (w, h) = (img.width() as i32, img.height() as i32);
    for y in y0.max(0)..y1.min(h) {
        for x in x0.max(0)..x1.min(w) {
            img.put_pixel(x as u32, y as u32, Rgb(rgb));
        }
    }
}

/// Even–odd scan-line fill sampling pixel centres: pixel `(x, y)` is painted when
/// `(x + ½, y + ½)` lies inside the polygon.
pub fn fill_polygon(img: &mut RgbImage, pts: &[(f64, f64)], rgb: [u8; 3]) {
    if pts.len() < 3 {
        return;
    }
    let (w, h) = (img.width() as i64, img.height() as i64);
    let ymin = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).floor().max(0.0) as i64;
    let ymax = pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max).ceil().min(h as f64) as i64;
    let mut xs: Vec<f64> = Vec::with_capacity(pts.len());
    for y in ymin..ymax {
        let yc = y as f64 + 0.5;
        xs.clear();
        for i in 0..pts.len() {
            let (x0, y0) = pts[i];
            let (x1, y1) = pts[(i + 1) % pts.len()];
            if (y0 <= yc && yc < y1) || (y1 <= yc && yc < y0) {
                xs.push(x0 + (yc - y0) * (x1 - x0) / (y1 - y0));
            }
        }
        xs.sort_by(|a, b| a.total_cmp(b));
        for pair in xs.chunks(2) {
            if let [a, b] = pair {
                let from = ((a - 0.5).ceil() as i64).max(0);
                let to = ((b - 0.5).ceil() as i64).min(w);
                for x in from..to {
                    img.put_pixel(x as u32, y as u32, Rgb(rgb));
                }
            }
        }
    }
}

/// A backdrop: a light tint with optional low-contrast clutter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clutter {
    Plain,
    /// Horizontal bands `period` pixels apart.
    Bands { period: u32 },
    /// A checkerboard of `size`-pixel tiles.
    Tiles { size: u32 },
    /// Diagonal stripes.
    Stripes { period: u32 },
    /// Small dots on a grid.
    Dots { period: u32 },
}

impl Clutter {
    pub fn name(self) -> &'static str {
        match self {
            Clutter::Plain => "plain",
            Clutter::Bands { .. } => "bands",
            Clutter::Tiles { .. } => "tiles",
            Clutter::Stripes { .. } => "stripes",
            Clutter::Dots { .. } => "dots",
        }
    }

    /// A random clutter; `busy` allows the denser kinds.
    pub fn random(rng: &mut Rng, busy: bool) -> Clutter {
        let k = rng.below(if busy { 5 } else { 3 });
        match k {
            0 => Clutter::Plain,
            1 => Clutter::Bands { period: 28 * rng.range(1, 3) as u32 },
            2 => Clutter::Tiles { size: 28 * rng.range(1, 2) as u32 },
            3 => Clutter::Stripes { period: 14 * rng.range(1, 3) as u32 },
            _ => Clutter::Dots { period: 14 * rng.range(1, 2) as u32 },
        }
    }
}

/// A darker shade of a backdrop tint, for clutter.
pub fn shade(rgb: [u8; 3], by: u8) -> [u8; 3] {
    [rgb[0].saturating_sub(by), rgb[1].saturating_sub(by), rgb[2].saturating_sub(by)]
}

/// A `w × h` canvas of tint `base` with `clutter` drawn in a slightly darker shade.
pub fn backdrop(w: u32, h: u32, base: [u8; 3], clutter: Clutter) -> RgbImage {
    let mut img = RgbImage::from_pixel(w, h, Rgb(base));
    let dark = Rgb(shade(base, 14));
    match clutter {
        Clutter::Plain => {}
        Clutter::Bands { period } => {
            for y in 0..h {
                if (y / (period / 2).max(1)) % 2 == 1 {
                    for x in 0..w {
                        img.put_pixel(x, y, dark);
                    }
                }
            }
        }
        Clutter::Tiles { size } => {
            let s = size.max(1);
            for y in 0..h {
                for x in 0..w {
                    if ((x / s) + (y / s)) % 2 == 1 {
                        img.put_pixel(x, y, dark);
                    }
                }
            }
        }
        Clutter::Stripes { period } => {
            let p = period.max(2);
            for y in 0..h {
                for x in 0..w {
                    if (x + y) % p < p / 3 {
                        img.put_pixel(x, y, dark);
                    }
                }
            }
        }
        Clutter::Dots { period } => {
            let p = period.max(4);
            let mut y = p / 2;
            while y < h {
                let mut x = p / 2;
                while x < w {
                    fill_rect(&mut img, x as i32 - 1, y as i32 - 1, x as i32 + 2, y as i32 + 2, dark.0);
                    x += p;
                }
                y += p;
            }
        }
    }
    img
}

/// Centres for `k` objects of half-size up to `r_max` in `area = (x0, y0, x1, y1)`: the area is
/// cut into `cols × rows` slots, `k` distinct slots are chosen and each centre is jittered inside
/// its slot so that objects (with outline) never touch. Returns `(slot, cx, cy)`, slots as
/// `row * cols + col`.
pub fn place_in_slots(
    rng: &mut Rng,
    area: (i32, i32, i32, i32),
    cols: i32,
    rows: i32,
    k: usize,
    r_max: i32,
) -> Vec<(usize, i32, i32)> {
    let (x0, y0, x1, y1) = area;
    let sw = (x1 - x0) / cols.max(1);
    let sh = (y1 - y0) / rows.max(1);
    let slots = rng.sample_indices((cols * rows).max(0) as usize, k);
    slots
        .into_iter()
        .map(|s| {
            let (c, r) = (s as i32 % cols, s as i32 / cols);
            let jx = (sw / 2 - r_max - 5).max(0);
            let jy = (sh / 2 - r_max - 5).max(0);
            let cx = x0 + c * sw + sw / 2 + rng.range(-i64::from(jx), i64::from(jx)) as i32;
            let cy = y0 + r * sh + sh / 2 + rng.range(-i64::from(jy), i64::from(jy)) as i32;
            (s, cx, cy)
        })
        .collect()
}

/// Integer Euclidean distance, rounded to the nearest pixel.
pub fn dist(a: [i32; 2], b: [i32; 2]) -> i32 {
    let dx = f64::from(a[0] - b[0]);
    let dy = f64::from(a[1] - b[1]);
    (dx * dx + dy * dy).sqrt().round() as i32
}

/// Squared distance (exact).
pub fn dist2(a: [i32; 2], b: [i32; 2]) -> i64 {
    let dx = i64::from(a[0] - b[0]);
    let dy = i64::from(a[1] - b[1]);
    dx * dx + dy * dy
}

/// "left", "upper right", … for a position inside a `w × h` image (thirds).
pub fn region_name(p: [i32; 2], w: u32, h: u32) -> &'static str {
    let col = (p[0] * 3 / w as i32).clamp(0, 2);
    let row = (p[1] * 3 / h as i32).clamp(0, 2);
    match (row, col) {
        (0, 0) => "upper left",
        (0, 1) => "top middle",
        (0, 2) => "upper right",
        (1, 0) => "middle left",
        (1, 1) => "centre",
        (1, 2) => "middle right",
        (2, 0) => "lower left",
        (2, 1) => "bottom middle",
        _ => "lower right",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_fill_their_centre_and_stay_in_their_box() {
        for shape in Shape::ALL {
            let mut img = RgbImage::from_pixel(80, 80, Rgb([255, 255, 255]));
            let o = Object { colour: PALETTE[0], shape, cx: 40, cy: 40, r: 15 };
            o.draw(&mut img);
            assert_eq!(img.get_pixel(40, 40).0, PALETTE[0].rgb, "{shape:?}");
            let b = o.bbox(80, 80);
            for (x, y, p) in img.enumerate_pixels() {
                if p.0 != [255, 255, 255] {
                    assert!(x as i32 >= b[0] && x as i32 <= b[2] && y as i32 >= b[1] && y as i32 <= b[3], "{shape:?} at {x},{y}");
                }
            }
        }
    }

    #[test]
    fn polygon_fill_is_exact_on_a_square() {
        let mut img = RgbImage::new(10, 10);
        fill_polygon(&mut img, &[(2.0, 2.0), (6.0, 2.0), (6.0, 5.0), (2.0, 5.0)], [9, 9, 9]);
        let painted = img.pixels().filter(|p| p.0 == [9, 9, 9]).count();
        assert_eq!(painted, 12);
        assert_eq!(img.get_pixel(2, 2).0, [9, 9, 9]);
        assert_eq!(img.get_pixel(6, 2).0, [0, 0, 0]);
    }

    #[test]
    fn slots_never_overlap() {
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let pts = place_in_slots(&mut rng, (0, 0, 448, 336), 8, 6, 20, 18);
            for (i, a) in pts.iter().enumerate() {
                for b in &pts[i + 1..] {
                    let far = (a.1 - b.1).abs() >= 2 * 20 + 2 || (a.2 - b.2).abs() >= 2 * 20 + 2;
                    assert!(far, "{a:?} {b:?}");
                }
            }
        }
    }
}
