//! The studio as a person uses it, driven through egui_kittest: open the demo workspace, move
//! through rows and steps with the keyboard, click actions and rows, filter, sort, compare, open
//! broken data, and compare the trajectory view with committed snapshot images
//! (`tests/snapshots/`; `UPDATE_SNAPSHOTS=1 cargo test --test studio` rewrites them).
#![cfg(feature = "gui")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use sightline::core::overlay::ActionId;
use sightline::ui::{StudioApp, StudioOptions};

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo")
}

fn harness(open: PathBuf) -> Harness<'static, StudioApp> {
    let mut h = Harness::builder().with_size([1400.0, 860.0]).build_eframe(move |cc| {
        let mut app = StudioApp::new(&cc.egui_ctx, None, StudioOptions { open: Some(open), screenshot: None, fresh: true });
        app.stable_status = true;
        app
    });
    settle(&mut h);
    h
}

/// Step frames until nothing is loading (files are read on background threads).
fn settle(h: &mut Harness<'static, StudioApp>) {
    let t0 = Instant::now();
    loop {
        h.step();
        if h.state().is_idle() {
            // A few more frames so that what arrived is laid out.
            h.run_steps(3);
            if h.state().is_idle() {
                return;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "the studio did not finish loading");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn has_label(h: &Harness<'static, StudioApp>, text: &str) -> bool {
    h.query_all_by_label(text).next().is_some()
}

fn has_label_containing(h: &Harness<'static, StudioApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

#[test]
fn demo_opens_on_the_first_trajectory_and_keys_move_rows_and_steps() {
    let mut h = harness(demo());
    assert!(has_label(&h, "225 rows"), "the browser lists the demo's 225 trajectories");
    assert_eq!(h.state().selected_row(), Some(0));
    assert!(has_label(&h, "How many brown objects are in the image?"));
    assert!(has_label(&h, "Step 1") && has_label(&h, "Step 2"));
    assert!(has_label_containing(&h, "box \"brown object 1\" [66, 173, 108, 215]"), "the first action is listed with its coordinates");

    h.key_press(egui::Key::ArrowRight);
    h.run_steps(2);
    assert_eq!(h.state().pane.step, 1);
    h.key_press(egui::Key::ArrowLeft);
    h.run_steps(2);
    assert_eq!(h.state().pane.step, 0);

    h.key_press(egui::Key::ArrowDown);
    settle(&mut h);
    assert_eq!(h.state().selected_row(), Some(1));
    assert!(has_label_containing(&h, "count-000001"));
    h.key_press(egui::Key::ArrowUp);
    settle(&mut h);
    assert_eq!(h.state().selected_row(), Some(0));
}

#[test]
fn clicking_an_action_selects_its_shape_and_shows_the_image_it_was_drawn_on() {
    let mut h = harness(demo());
    h.get_by_label_contains("box \"brown object 2\"").click();
    h.run_steps(3);
    let st = h.state();
    assert_eq!(st.pane.selected_action, Some(ActionId { turn: 0, action: 1 }));
    assert_eq!(st.pane.pinned_image, Some(2), "the box was drawn into observation 2");
    // The lineage strip names the observation and the image it was drawn on.
    assert!(has_label(&h, "2 <- 1 · step 1"));
    assert!(has_label(&h, "1 · input"));
}

#[test]
fn clicking_a_row_opens_it_and_the_filter_and_sort_change_the_rows() {
    let mut h = harness(demo());
    // Only visible rows are laid out: filter down to the row, then click it.
    h.state_mut().browser.filter = "maze-000003".into();
    h.run_steps(3);
    assert!(has_label(&h, "1 of 225 rows"));
    h.get_by_label("maze-000003").click();
    settle(&mut h);
    assert_eq!(h.state().selected_row(), Some(48), "maze-000003 is row 45 + 3");
    assert!(has_label_containing(&h, "maze-000003"));

    h.state_mut().browser.filter = "maze".into();
    h.run_steps(3);
    assert!(has_label(&h, "45 of 225 rows"));
    h.state_mut().browser.filter = "reflective video".into();
    h.run_steps(3);
    let view = h.state().browser.view().to_vec();
    assert!(!view.is_empty() && view.len() < 45);
    for r in view {
        let s = h.state().summaries.get(r).unwrap();
        assert!(s.tags.iter().any(|t| t == "reflective") && s.data_type == "video", "{s:?}");
    }

    h.state_mut().browser.filter.clear();
    h.get_by_label("steps").click();
    h.run_steps(3);
    let v = h.state().browser.view().to_vec();
    let steps: Vec<usize> = v.iter().map(|&r| h.state().summaries.get(r).unwrap().steps.unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "ascending by steps");
    h.get_by_label("steps ^").click();
    h.run_steps(3);
    let v = h.state().browser.view().to_vec();
    let steps: Vec<usize> = v.iter().map(|&r| h.state().summaries.get(r).unwrap().steps.unwrap()).collect();
    assert!(steps.windows(2).all(|w| w[0] >= w[1]), "descending by steps");
    assert!(steps[0] > *steps.last().unwrap());
}

#[test]
fn compare_shows_two_trajectories_with_steps_aligned() {
    let mut h = harness(demo());
    h.state_mut().compare_with(2);
    settle(&mut h);
    assert!(has_label_containing(&h, "Compare: steps aligned"));
    assert!(has_label_containing(&h, "count-000000") && has_label_containing(&h, "count-000002"));
    h.key_press(egui::Key::ArrowRight);
    h.run_steps(3);
    assert_eq!(h.state().pane.step, 1);
    assert_eq!(h.state().compare_pane.step, 1);
    h.get_by_label("Close compare").click();
    h.run_steps(2);
    assert!(h.state().compare.is_none());
}

#[test]
fn broken_records_and_missing_images_show_inline_errors_and_the_rest_works() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"question": "Where is the cat?", "answer": "A", "image_path": ["missing.png"], "data_type": "vqa", "question_type": "multiple choice", "options": ["A. left", "B. right"], "grid_size": null}"#,
            "\n",
            "{not json at all\n",
        ),
    )
    .unwrap();
    let mut h = harness(file);
    assert!(has_label(&h, "2 rows"));
    assert!(has_label_containing(&h, "Where is the cat?"));
    assert!(has_label_containing(&h, "This record is a sample"));
    assert!(has_label_containing(&h, "Cannot show image 1") || has_label_containing(&h, "missing.png"), "the missing image is named");
    // The broken record is a red row naming the file; selecting it shows the error inline.
    assert!(has_label_containing(&h, "mixed.jsonl"));
    h.key_press(egui::Key::ArrowDown);
    settle(&mut h);
    assert!(has_label_containing(&h, "Row 1 cannot be shown"));
}

#[test]
fn llamafactory_registry_offers_a_dataset_picker() {
    let mut h = harness(demo().join("dataset_info.json"));
    assert!(has_label(&h, "Dataset"));
    h.state_mut().browser.dataset = Some("maze_reflective".into());
    h.run_steps(3);
    let n = h.state().browser.view().len();
    assert!(n > 0 && n < 100, "only maze_reflective rows ({n})");
    // Imported conversations get their actions parsed from the text.
    assert!(has_label_containing(&h, "box \"") || has_label_containing(&h, "line \""), "parsed action rows are listed");
}

#[test]
fn snapshot_of_the_demo_trajectory_view() {
    let mut h = harness(demo());
    // The reflective counting sample: a relabelled box and a second observation.
    let row = (0..225).find(|&r| h.state().summaries.get(r).is_some_and(|s| s.id.starts_with("count") && s.reflective == Some(true))).unwrap();
    h.state_mut().select(row);
    settle(&mut h);
    h.snapshot("demo_trajectory_vectors");
    h.state_mut().persisted.options.show_pixels = true;
    h.run_steps(2);
    settle(&mut h);
    h.snapshot("demo_trajectory_pixels");
}

#[test]
fn hovering_a_shape_shows_its_coordinates_and_json_and_clicking_selects_its_row() {
    let mut h = harness(demo());
    let (rect, model) = h.state().pane.last_canvas.expect("the canvas drew an image");
    // "brown object 1" is the box [66, 173, 108, 215] on image 2 (step 1): point at its left edge.
    let at = |x: f32, y: f32| egui::pos2(rect.min.x + x * rect.width() / model[0] as f32, rect.min.y + y * rect.height() / model[1] as f32);
    h.hover_at(at(67.0, 194.0));
    h.run_steps(3);
    assert!(has_label_containing(&h, "box \"brown object 1\": [66, 173, 108, 215]"), "tooltip names the box in model pixels");
    assert!(has_label_containing(&h, "\"label\": \"brown object 1\""), "tooltip shows the JSON item");
    h.event(egui::Event::PointerButton { pos: at(67.0, 194.0), button: egui::PointerButton::Primary, pressed: true, modifiers: Default::default() });
    h.event(egui::Event::PointerButton { pos: at(67.0, 194.0), button: egui::PointerButton::Primary, pressed: false, modifiers: Default::default() });
    h.run_steps(3);
    assert_eq!(h.state().pane.selected_action, Some(ActionId { turn: 0, action: 0 }));
}

#[test]
fn video_samples_show_a_frame_scrubber_and_the_last_workspace_is_remembered() {
    let mut h = harness(demo());
    assert_eq!(h.state().persisted.last_source.as_deref(), Some(demo().as_path()));
    let row = (0..225).find(|&r| h.state().summaries.get(r).is_some_and(|s| s.data_type == "video")).unwrap();
    h.state_mut().select(row);
    settle(&mut h);
    assert!(has_label(&h, "Video frames"));
    assert!(has_label(&h, "1 · frame") && has_label(&h, "16 · frame"), "16 frames in the lineage strip");
    assert!(has_label_containing(&h, "frame 1"), "the scrubber shows the current frame");
}
