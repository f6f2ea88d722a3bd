//! The published drawing fixture, end to end through the executor: parse → group → merge →
//! render. Every pixel must match the reference PNGs, label text included (labels come from a
//! glyph atlas dumped from Pillow 12.3's FreeType rendering of its default font).

use sightline::core::executor::{ExecutorFixes, Profile};
use sightline::core::session::VilasrSession;
use sightline::core::trajectory::FinishReason;

fn load(name: &str) -> image::RgbImage {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/draw").join(name);
    image::open(p).unwrap().to_rgb8()
}

fn compare(got: &image::RgbImage, want: &image::RgbImage) -> usize {
    assert_eq!(got.dimensions(), want.dimensions());
    let mut diffs = 0;
    for (x, y, p) in want.enumerate_pixels() {
        if got.get_pixel(x, y) != p {
            diffs += 1;
        }
    }
    diffs
}

#[test]
fn fixture_reproduces_reference_geometry() {
    let fx: serde_json::Value = serde_json::from_str(include_str!("fixtures/draw/vilasr_draw_fixture.json")).unwrap();
    let mut s = VilasrSession::new(vec![load("vilasr_draw_fixture_image1_input.png")], Profile::Eval, false, None, ExecutorFixes::default());
    let t1 = s.apply(fx["turn1_assistant_response"].as_str().unwrap(), FinishReason::Stop);
    assert_eq!(t1.new_images, vec![(2, 1)]);
    let t2 = s.apply(fx["turn2_assistant_response"].as_str().unwrap(), FinishReason::Stop);
    assert_eq!(t2.new_images, vec![(3, 2)]);

    for (img_key, idx) in [("image2", 1usize), ("image3", 2usize)] {
        for (k, rgb) in fx["pixel_probes_xy_to_rgb"][img_key].as_object().unwrap() {
            let xy: Vec<u32> = k.trim_matches(|c| c == '(' || c == ')').split(',').map(|v| v.trim().parse().unwrap()).collect();
            let want: Vec<u8> = rgb.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u8).collect();
            assert_eq!(s.images[idx].get_pixel(xy[0], xy[1]).0.to_vec(), want, "{img_key} probe {k}");
        }
    }
    // Whole-image comparison, labels included.
    let d2 = compare(&s.images[1], &load("vilasr_draw_fixture_image2_expected.png"));
    assert_eq!(d2, 0, "image 2 differs in {d2} pixels");
    let d3 = compare(&s.images[2], &load("vilasr_draw_fixture_image3_expected.png"));
    assert_eq!(d3, 0, "image 3 differs in {d3} pixels");
}
