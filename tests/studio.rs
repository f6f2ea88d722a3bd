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
    harness_with(open, Harness::builder())
}

fn harness_with(open: PathBuf, builder: egui_kittest::HarnessBuilder<StudioApp>) -> Harness<'static, StudioApp> {
    let mut h = builder.with_size([1400.0, 860.0]).build_eframe(move |cc| {
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

/// A workspace in a temporary folder holding one demo trajectory (runs are saved into it).
fn temp_workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = demo().join("trajectories/count-000000");
    let t = sightline::core::trajectory::Trajectory::load_dir(&src).unwrap();
    let mut t2 = t.clone();
    for img in t2.sample.media.images_mut() {
        img.path = src.join(&img.path).display().to_string();
    }
    for turn in &mut t2.turns {
        for o in &mut turn.observations {
            o.image.path = src.join(&o.image.path).display().to_string();
        }
    }
    t2.save_dir(&dir.path().join("trajectories/count-000000")).unwrap();
    dir
}

fn settle_run(h: &mut Harness<'static, StudioApp>) {
    let t0 = Instant::now();
    while h.state().run.is_running() || !h.state().is_idle() {
        h.step();
        assert!(t0.elapsed() < Duration::from_secs(120), "the run did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
    h.run_steps(3);
}

#[test]
fn a_live_run_with_the_tiny_checkpoint_streams_into_the_viewer_and_is_saved_to_the_workspace() {
    let ws = temp_workspace();
    // A random tiny model writes arbitrary text: draw boxes for glyphs the test fonts lack.
    let mut h = harness_with(ws.path().to_path_buf(), Harness::builder().allow_missing_glyphs());
    h.get_by_label("Run…").click();
    h.run_steps(4);
    assert!(h.state().run.open, "the Run window opened");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen25vl/tiny_tied");
    {
        let run = &mut h.state_mut().run;
        run.model_dir = model.display().to_string();
        run.device = "cpu".into();
        run.max_new_tokens = "6".into();
    }
    h.get_by_label("Use selected sample").click();
    h.run_steps(2);
    assert_eq!(h.state().run.images.len(), 1);
    assert_eq!(h.state().run.question, "How many brown objects are in the image?");
    h.get_by_label("Run").click();
    h.run_steps(2);
    assert!(h.state().run.is_running() || h.state().run.has_live(), "Run started the engine: {:?}", h.state().run.error);
    settle_run(&mut h);
    let st = h.state();
    assert!(st.run.error.is_none(), "{:?}", st.run.error);
    assert!(st.view_live, "the viewer switched to the live run");
    let live = &st.run.live[0];
    assert!(live.finished, "status {:?}; turns {:?}", st.run.status, live.trajectory.turns);
    let t = &live.trajectory;
    assert!(!t.turns.is_empty() && t.finish_reason.is_some(), "{t:?}");
    assert_eq!(t.turns[0].timings.generated_tokens.map(|n| n <= 6), Some(true), "6-token limit per turn");
    let dir = live.dir.clone().expect("saved");
    assert!(dir.starts_with(ws.path().join("runs")), "{}", dir.display());
    assert!(dir.join("trajectory.json").is_file());
    assert!(st.run.first_token.is_some(), "tokens streamed");
    assert!(has_label(&h, "Last run"));
    // pass@2 at T=1: the two trajectories are generated together and shown as a grid with pass@2.
    {
        let run = &mut h.state_mut().run;
        run.n = 2;
        run.temperature = "1".into();
    }
    h.get_by_label("Run").click();
    h.run_steps(2);
    settle_run(&mut h);
    let st = h.state();
    assert!(st.run.error.is_none(), "{:?}", st.run.error);
    assert_eq!(st.run.live.len(), 2);
    assert!(st.run.live.iter().all(|l| l.finished && l.dir.is_some()), "both finished and saved");
    assert!(st.run.status.iter().any(|s| s.contains("2 trajectories generated together")), "{:?}", st.run.status);
    assert!(has_label(&h, "Trajectories (pass@k grid)"));
    assert!(has_label_containing(&h, "pass@2: "), "pass@2 is reported (the sample has a ground truth)");
}

#[test]
fn a_scripted_run_shows_its_actions_and_observations_and_a_fork_is_compared_with_its_parent() {
    let ws = temp_workspace();
    let mut h = harness(ws.path().to_path_buf());
    let item = h.state().primary.as_ref().and_then(|p| p.item()).cloned().unwrap();
    let texts: Vec<String> = item.trajectory.turns.iter().map(|t| t.assistant_text.clone()).collect();
    h.get_by_label("Run on this sample…").click();
    h.run_steps(2);
    {
        let st = h.state_mut();
        st.run.profile_rl = true;
        assert_eq!(st.run.ground_truth, "3");
    }
    let ctx = h.ctx.clone();
    let ws_path = ws.path().to_path_buf();
    h.state_mut().run.start_with(&ctx, Some(&ws_path), Some(Box::new(sightline::rollout::ScriptedResponder::new(vec![texts.clone()]))));
    settle_run(&mut h);
    let live = &h.state().run.live[0];
    assert!(live.finished, "{:?}", h.state().run.error);
    let r = live.trajectory.rewards.clone().unwrap();
    assert_eq!((r.format, r.accuracy), (1.0, 1.0), "the teacher's turns replayed live score as recorded");
    assert!(h.state().view_live);
    assert!(has_label_containing(&h, "box \"brown object 1\" [66, 173, 108, 215]"));
    assert!(has_label(&h, "2 <- 1 · step 1"), "the live observation joined the lineage strip");

    // Fork the recorded trajectory at step 2 with an edited answer: parent and fork side by side.
    h.state_mut().view_live = false;
    h.run_steps(2);
    h.key_press(egui::Key::ArrowRight);
    h.run_steps(2);
    h.get_by_label("Fork from this step…").click();
    h.run_steps(2);
    let edited = texts[1].replace("<answer>3</answer>", "<answer>30</answer>");
    if let Some(f) = h.state_mut().run.fork.as_mut() {
        f.3 = edited.clone();
    }
    h.state_mut().run.start_with(&ctx, Some(&ws_path), Some(Box::new(sightline::rollout::ScriptedResponder::new(vec![texts]))));
    settle_run(&mut h);
    let live = &h.state().run.live[0];
    let t = &live.trajectory;
    assert!(live.finished, "{:?}", h.state().run.error);
    assert_eq!(t.fork_of.as_ref().map(|f| (f.parent_id.as_str(), f.turn)), Some(("count-000000", 1)));
    assert_eq!(t.turns[1].assistant_text, edited);
    assert_eq!(t.rewards.as_ref().map(|r| r.accuracy), Some(0.0), "the edited answer is wrong");
    assert!(has_label(&h, "parent") && has_label(&h, "fork"), "parent and fork side by side");
}

#[test]
fn a_vilavt_run_from_the_run_window_zooms_in_and_says_the_encoder_is_standard() {
    let ws = temp_workspace();
    let mut h = harness(ws.path().to_path_buf());
    h.get_by_label("Run on this sample…").click();
    h.run_steps(4);
    assert!(h.state().run.open, "the Run window opened");
    h.get_by_label("ViLaVT (zoom in)").click();
    h.run_steps(2);
    assert_eq!(h.state().run.protocol, sightline::core::trajectory::Protocol::Vilavt);
    assert!(has_label_containing(&h, "text-conditioned vision encoder is not implemented"), "the window says so before the run");
    let call = "<think>Look closer.</think> <tool>{\"region\": [{\"index\": 0, \"bbox_2d\": [10, 10, 120, 90]}], \"query\": \"how many brown objects?\"}</tool>";
    let answer = "<think>Three.</think> <answer>3</answer>";
    let ctx = h.ctx.clone();
    let ws_path = ws.path().to_path_buf();
    let scripts = vec![vec![call.to_string(), answer.to_string()]];
    h.state_mut().run.start_with(&ctx, Some(&ws_path), Some(Box::new(sightline::rollout::ScriptedResponder::new(scripts))));
    settle_run(&mut h);
    let st = h.state();
    assert!(st.run.error.is_none(), "{:?}", st.run.error);
    let live = &st.run.live[0];
    assert!(live.finished);
    let t = &live.trajectory;
    assert_eq!(t.protocol, sightline::core::trajectory::Protocol::Vilavt);
    assert_eq!(t.turns.len(), 2);
    assert_eq!(t.turns[0].observations.len(), 1, "one zoom-in");
    assert_eq!(t.rewards.as_ref().map(|r| r.accuracy), Some(1.0));
    assert!(st.run.status.iter().any(|s| s.contains("text-conditioned vision encoder is not implemented")));
    assert!(has_label(&h, "2 <- 1 · step 1"), "the zoom-in joined the lineage strip");
}
