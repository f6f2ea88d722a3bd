//! Fuzz the action parsers and the scorers that sit on them: none may panic on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline::core::actions::{self, BlockMode};
use sightline::core::{pyliteral, rewards};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = pyliteral::literal_eval(text);
    let _ = pyliteral::json_loads(text);
    let _ = actions::parse_actions(text, BlockMode::Executor);
    let _ = actions::parse_actions(text, BlockMode::Reward);
    let _ = actions::reward_format_parse(text);
    let _ = actions::parse_vilavt_tool(text);
    let _ = actions::vilavt_tool_format_ok(text);
    let _ = rewards::vilasr::rl_score(text, "B", "multiple choice");
    let _ = rewards::vilavt::rl_score(text, "3", "regression");
    let _ = rewards::vilasr::eval_score(text, "1.5", "numerical");
    // The executor on a tiny image.
    let img = image::RgbImage::from_pixel(28, 28, image::Rgb([1, 2, 3]));
    let mut state = sightline::core::executor::AnnotationState::for_inputs(1);
    let _ = sightline::core::executor::execute_response(text, &[img], &mut state, sightline::core::executor::Profile::Rl, Default::default());
});
