//! Parity tests for `sightline::core::pillow` against Pillow 12.3.0.
//!
//! Fixtures under `tests/fixtures/pillow/` are produced by
//! `tools/pillow_fixtures.py` (which refuses to run on any other Pillow);
//! `tests/fixtures/draw/` holds the ViLaSR reference drawing fixture
//! (rendered by the reference code with Pillow 13, identical to 12.3 here).
//! Resize, geometry and text are compared pixel for pixel.

use std::path::PathBuf;

use image::{RgbImage, RgbaImage};
use serde_json::Value;
use sightline::core::pillow::{
    draw_filled_ellipse, draw_line, draw_rectangle_outline, draw_text, draw_text_ab_glyph,
    resize_bicubic, resize_lanczos, rgba_to_rgb_over_white, text_bbox, text_bbox_ab_glyph,
};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(rel)
}

fn load_json(rel: &str) -> Value {
    let text = std::fs::read_to_string(fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn load_rgb(rel: &str) -> RgbImage {
    image::open(fixture(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .to_rgb8()
}

fn load_rgba(rel: &str) -> RgbaImage {
    image::open(fixture(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .to_rgba8()
}

/// Pixels that differ, as (x, y, got, want).
fn diff(got: &RgbImage, want: &RgbImage) -> Vec<(u32, u32, [u8; 3], [u8; 3])> {
    assert_eq!(got.dimensions(), want.dimensions(), "image sizes differ");
    got.enumerate_pixels()
        .filter(|(x, y, p)| want.get_pixel(*x, *y) != *p)
        .map(|(x, y, p)| (x, y, p.0, want.get_pixel(x, y).0))
        .collect()
}

fn num(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn color(v: &Value) -> [u8; 3] {
    let a = v.as_array().expect("colour");
    [num(&a[0]) as u8, num(&a[1]) as u8, num(&a[2]) as u8]
}

fn canvas(case: &Value) -> RgbImage {
    let c = case["canvas"].as_array().unwrap();
    RgbImage::from_pixel(
        num(&c[0]) as u32,
        num(&c[1]) as u32,
        image::Rgb(color(&case["background"])),
    )
}

// ------------------------------------------------------------------ resize

#[test]
fn resize_matches_pillow() {
    let doc = load_json("pillow/resize.json");
    let cases = doc["resize"].as_array().unwrap();
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for case in cases {
        let src = load_rgb(&format!("pillow/{}", case["src"].as_str().unwrap()));
        let want = load_rgb(&format!("pillow/{}", case["expected"].as_str().unwrap()));
        let size = case["size"].as_array().unwrap();
        let (w, h) = (num(&size[0]) as u32, num(&size[1]) as u32);
        let got = match case["filter"].as_str().unwrap() {
            "bicubic" => resize_bicubic(&src, w, h),
            "lanczos" => resize_lanczos(&src, w, h),
            other => panic!("unknown filter {other}"),
        }
        .expect("resize");
        let d = diff(&got, &want);
        if !d.is_empty() {
            failures.push(format!(
                "{}: {} px differ, first {:?}",
                case["expected"],
                d.len(),
                d[0]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rgba_over_white_matches_pillow_paste() {
    let doc = load_json("pillow/resize.json");
    for case in doc["rgba_over_white"].as_array().unwrap() {
        let src = load_rgba(&format!("pillow/{}", case["src"].as_str().unwrap()));
        let want = load_rgb(&format!("pillow/{}", case["expected"].as_str().unwrap()));
        let d = diff(&rgba_to_rgb_over_white(&src), &want);
        assert!(
            d.is_empty(),
            "{}: {:?}",
            case["expected"],
            &d[..d.len().min(5)]
        );
    }
}

// ------------------------------------------------------------------ drawing

fn apply(img: &mut RgbImage, call: &Value) {
    let col = color(&call["color"]);
    let xy: Vec<f64> = call["xy"].as_array().unwrap().iter().map(num).collect();
    match call["op"].as_str().unwrap() {
        "rectangle" => {
            let w = num(&call["width"]) as i32;
            draw_rectangle_outline(
                img,
                xy[0] as i32,
                xy[1] as i32,
                xy[2] as i32,
                xy[3] as i32,
                col,
                w,
            )
        }
        "line" => draw_line(
            img,
            xy[0],
            xy[1],
            xy[2],
            xy[3],
            col,
            num(&call["width"]) as i32,
        ),
        "ellipse" => draw_filled_ellipse(img, xy[0], xy[1], xy[2], xy[3], col),
        "text" => draw_text(
            img,
            xy[0] as i32,
            xy[1] as i32,
            call["text"].as_str().unwrap(),
            col,
        ),
        other => panic!("unknown op {other}"),
    }
}

#[test]
fn drawing_matches_pillow() {
    let doc = load_json("pillow/draw.json");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 200);
    let mut failures = Vec::new();
    for case in cases {
        let mut img = canvas(case);
        for call in case["calls"].as_array().unwrap() {
            apply(&mut img, call);
        }
        let want = load_rgb(&format!("pillow/{}", case["expected"].as_str().unwrap()));
        let d = diff(&img, &want);
        if !d.is_empty() {
            failures.push(format!(
                "{} {}: {} px differ, e.g. {:?}",
                case["expected"],
                case["calls"],
                d.len(),
                &d[..d.len().min(4)]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ------------------------------------------------------------------ text

#[test]
fn text_matches_pillow_exactly() {
    let doc = load_json("pillow/text.json");
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 60);
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let xy = case["xy"].as_array().unwrap();
        let (x, y) = (num(&xy[0]) as i32, num(&xy[1]) as i32);
        let mut img = canvas(case);
        draw_text(&mut img, x, y, text, color(&case["color"]));
        let want = load_rgb(&format!("pillow/{}", case["expected"].as_str().unwrap()));
        let d = diff(&img, &want);
        if !d.is_empty() {
            failures.push(format!(
                "{text:?} at {x},{y}: {} px differ {:?}",
                d.len(),
                &d[..d.len().min(4)]
            ));
        }
        let b: Vec<i32> = case["textbbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| num(v) as i32)
            .collect();
        let (l, t, r, bo) = text_bbox(text);
        if (l + x, t + y, r + x, bo + y) != (b[0], b[1], b[2], b[3]) {
            failures.push(format!(
                "{text:?}: bbox {:?} want {b:?}",
                (l + x, t + y, r + x, bo + y)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn per_character_bbox_matches_pillow() {
    let doc = load_json("pillow/text.json");
    let chars = doc["chars"].as_object().unwrap();
    assert!(chars.len() >= 100);
    for (ch, m) in chars {
        let b: Vec<i32> = m["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| num(v) as i32)
            .collect();
        assert_eq!(text_bbox(ch), (b[0], b[1], b[2], b[3]), "{ch:?}");
        // getlength == right edge of "ch" followed by a zero-ink glyph origin:
        // the pen advance is observable as the shift of a second glyph.
        let two = text_bbox(&format!("{ch}{ch}"));
        let adv = num(&m["length"]) as i32;
        assert_eq!(two.2, (b[2]).max(adv + b[2]), "{ch:?} advance");
    }
}

#[test]
fn ab_glyph_text_is_close_to_pillow() {
    let doc = load_json("pillow/text.json");
    let mut worst = 0;
    for case in doc["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        if text.trim().is_empty() {
            continue;
        }
        let want = text_bbox(text);
        let got = text_bbox_ab_glyph(text);
        let dev = [
            got.0 - want.0,
            got.1 - want.1,
            got.2 - want.2,
            got.3 - want.3,
        ]
        .iter()
        .map(|d| d.abs())
        .max()
        .unwrap();
        worst = worst.max(dev);
        assert!(
            dev <= 2,
            "{text:?}: ab_glyph bbox {got:?} vs Pillow {want:?}"
        );
        // It must draw something where Pillow does.
        let mut img = canvas(case);
        let xy = case["xy"].as_array().unwrap();
        draw_text_ab_glyph(
            &mut img,
            num(&xy[0]) as i32,
            num(&xy[1]) as i32,
            text,
            color(&case["color"]),
        );
        let bg = canvas(case);
        let pillow = load_rgb(&format!("pillow/{}", case["expected"].as_str().unwrap()));
        assert_eq!(
            diff(&img, &bg).is_empty(),
            diff(&pillow, &bg).is_empty(),
            "{text:?}"
        );
    }
    eprintln!("ab_glyph text bbox: worst deviation {worst} px");
}

// ------------------------------------------------------------------ ViLaSR fixture

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 128, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const BLACK: [u8; 3] = [0, 0, 0];

/// `plot_bounding_boxes` for one box (input size == output size).
fn plot_box(img: &mut RgbImage, b: [f64; 4], label: &str, col: [u8; 3], ab: bool) {
    let (mut x1, mut y1, mut x2, mut y2) = (b[0] as i32, b[1] as i32, b[2] as i32, b[3] as i32);
    if x1 > x2 {
        std::mem::swap(&mut x1, &mut x2);
    }
    if y1 > y2 {
        std::mem::swap(&mut y1, &mut y2);
    }
    draw_rectangle_outline(img, x1, y1, x2, y2, col, 4);
    if ab {
        draw_text_ab_glyph(img, x1 + 8, y1 + 6, label, col);
    } else {
        draw_text(img, x1 + 8, y1 + 6, label, col);
    }
}

/// `plot_movement` for one line.
fn plot_path(img: &mut RgbImage, s: [f64; 2], e: [f64; 2]) {
    draw_line(img, s[0], s[1], e[0], e[1], BLACK, 4);
    for (p, col) in [(s, RED), (e, BLUE)] {
        draw_filled_ellipse(img, p[0] - 4.0, p[1] - 4.0, p[0] + 4.0, p[1] + 4.0, col);
    }
}

type Boxes<'a> = &'a [([f64; 4], &'a str, [u8; 3])];

fn turn(base: &RgbImage, boxes: Boxes<'_>, ab: bool) -> RgbImage {
    let mut img = base.clone();
    for &(b, label, col) in boxes {
        plot_box(&mut img, b, label, col, ab);
    }
    plot_path(&mut img, [50.0, 300.0], [400.0, 250.0]);
    img
}

const TURN1: &[([f64; 4], &str, [u8; 3])] = &[
    ([40.0, 30.0, 200.0, 150.0], "chair", RED),
    ([300.0, 200.0, 250.0, 100.0], "table", GREEN),
];
const TURN2: &[([f64; 4], &str, [u8; 3])] = &[
    ([60.0, 40.0, 220.0, 160.0], "chair", RED),
    ([300.0, 200.0, 250.0, 100.0], "table", GREEN),
    ([350.0, 20.0, 430.0, 90.0], "lamp", BLUE),
];

/// Label regions (Pillow textbbox) of all labels drawn up to that image.
fn label_regions(boxes: &[Boxes<'_>]) -> Vec<(i32, i32, i32, i32)> {
    let mut out = Vec::new();
    for set in boxes {
        for &(b, label, _) in *set {
            let (x1, y1) = ((b[0].min(b[2])) as i32 + 8, (b[1].min(b[3])) as i32 + 6);
            let (l, t, r, bo) = text_bbox(label);
            // generous margin: ab_glyph ink may extend a pixel or two further
            out.push((x1 + l - 3, y1 + t - 3, x1 + r + 3, y1 + bo + 3));
        }
    }
    out
}

#[test]
fn vilasr_reference_fixture_is_reproduced() {
    let input = load_rgb("draw/vilasr_draw_fixture_image1_input.png");
    assert_eq!(input.dimensions(), (448, 336));
    let want2 = load_rgb("draw/vilasr_draw_fixture_image2_expected.png");
    let want3 = load_rgb("draw/vilasr_draw_fixture_image3_expected.png");

    // Atlas text: the whole images must match.
    let img2 = turn(&input, TURN1, false);
    let img3 = turn(&img2, TURN2, false);
    let d2 = diff(&img2, &want2);
    let d3 = diff(&img3, &want3);
    assert!(
        d2.is_empty(),
        "image2: {} px differ, e.g. {:?}",
        d2.len(),
        &d2[..d2.len().min(5)]
    );
    assert!(
        d3.is_empty(),
        "image3: {} px differ, e.g. {:?}",
        d3.len(),
        &d3[..d3.len().min(5)]
    );

    // ab_glyph text: geometry identical outside the label regions.
    let ab2 = turn(&input, TURN1, true);
    let ab3 = turn(&ab2, TURN2, true);
    for (name, got, want, regions) in [
        ("image2", &ab2, &want2, label_regions(&[TURN1])),
        ("image3", &ab3, &want3, label_regions(&[TURN1, TURN2])),
    ] {
        let d = diff(got, want);
        let outside: Vec<_> = d
            .iter()
            .filter(|(x, y, _, _)| {
                let (x, y) = (*x as i32, *y as i32);
                !regions
                    .iter()
                    .any(|&(l, t, r, b)| x >= l && x < r && y >= t && y < b)
            })
            .collect();
        eprintln!(
            "{name} (ab_glyph labels): {} px differ, {} outside label regions",
            d.len(),
            outside.len()
        );
        assert!(
            outside.is_empty(),
            "{name}: {:?}",
            &outside[..outside.len().min(5)]
        );
    }

    // The pixel probes recorded in the fixture JSON.
    let doc = load_json("draw/vilasr_draw_fixture.json");
    for (img_name, img) in [("image2", &img2), ("image3", &img3)] {
        for (k, v) in doc["pixel_probes_xy_to_rgb"][img_name].as_object().unwrap() {
            let xy: Vec<u32> = k
                .trim_matches(|c| c == '(' || c == ')')
                .split(',')
                .map(|s| s.trim().parse().unwrap())
                .collect();
            assert_eq!(
                img.get_pixel(xy[0], xy[1]).0,
                color(v),
                "{img_name} probe {k}"
            );
        }
    }
}
