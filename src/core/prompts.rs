//! Prompt texts and turn builders, byte-exact with the references (protocol §1.1, §2.1–2.2, §2.8,
//! §7.2).
//!
//! The prompt files are embedded from `assets/prompts/` (copies of the reference files; a test
//! checks every byte against the published sha256 values). Templates are filled in one left-to-right
//! pass over `{name}` tokens, so text inserted for one placeholder is never re-scanned.

use serde::{Deserialize, Serialize};

macro_rules! prompt_files {
    ($($konst:ident => $file:literal),* $(,)?) => {
        $(pub const $konst: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/prompts/", $file));)*
        /// Every embedded prompt file as (file name, contents).
        pub const ALL_PROMPT_FILES: &[(&str, &str)] = &[$(($file, $konst)),*];
    };
}

prompt_files! {
    VILASR_SYSTEM => "vilasr_system_prompt.txt",
    VILASR_USER_TEMPLATE => "vilasr_user_prompt_template.txt",
    VILASR_INTERMEDIATE => "vilasr_intermediate_prompt.txt",
    VILASR_FINAL => "vilasr_final_prompt.txt",
    VILASR_OBSERVATION_TURN => "vilasr_observation_turn_template.txt",
    VILASR_VIDEO_PREFIX => "vilasr_video_prefix.txt",
    VILASR_IMAGE_INDEX_LINE => "vilasr_image_index_line.txt",
    VILASR_SINGLE_IMAGE_INDEX_SUFFIX => "vilasr_single_image_index_suffix.txt",
    VILASR_SPAR_POST => "vilasr_spar_post_prompt.txt",
    VILAVT_SYSTEM => "vilavt_system_prompt.txt",
    VILAVT_USER_TEMPLATE => "vilavt_user_prompt_template.txt",
    VILAVT_IMAGE_QUESTION => "vilavt_image_question_prompt.txt",
    VILAVT_VIDEO_QUESTION => "vilavt_video_question_prompt.txt",
    VILAVT_IMAGE_INDEX => "vilavt_image_index_prompt.txt",
    VILAVT_IMAGE_INDEX_V1 => "vilavt_image_index_prompt_v1.txt",
    VILAVT_ZOOMIN_INDEX => "vilavt_zoomin_index_prompt.txt",
    VILAVT_RESPONSE => "vilavt_response_prompt.txt",
    VILAVT_RESPONSE_FINAL => "vilavt_response_prompt_final.txt",
    VILAVT_SIMPLE_SYSTEM => "vilavt_simple_system_prompt.txt",
    VILAVT_FALLBACK_SIMPLE_QA => "vilavt_fallback_simple_qa_prompt.txt",
    VILAVT_EVAL_MULTI_IMAGE_TOOL_INSTRUCTION => "vilavt_eval_multi_image_tool_instruction.txt",
    VILAVT_MULTI_IMAGE_QUESTION_UNUSED => "vilavt_multi_image_question_prompt_unused.txt",
}

/// The per-question-type suffix tables (`type_suffixes.json`).
pub const TYPE_SUFFIXES_JSON: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/prompts/type_suffixes.json"));

/// The vision triple that stands for one image in prompt strings.
pub const IMAGE_TRIPLE: &str = "<|vision_start|><|image_pad|><|vision_end|>";
/// The vision triple that stands for one video.
pub const VIDEO_TRIPLE: &str = "<|vision_start|><|video_pad|><|vision_end|>";
/// Qwen2.5-VL-Instruct's EOS text, appended to finished sequences.
pub const EOS_TEXT: &str = "<|im_end|>";
/// Default system turn text of the Qwen2.5-VL chat template.
pub const DEFAULT_SYSTEM: &str = "You are a helpful assistant.";

/// Fill `{name}` tokens in one left-to-right pass. Tokens whose name is not in `values` are left
/// as they are (the prompt files contain literal braces elsewhere).
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    'outer: while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        if let Some(close) = after.find('}') {
            let name = &after[..close];
            for (k, v) in values {
                if *k == name {
                    out.push_str(v);
                    rest = &after[close + 1..];
                    continue 'outer;
                }
            }
        }
        out.push('{');
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Which suffix table a prompt builder uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuffixTable {
    /// ViLaSR `eval/infer.py`.
    VilasrEval,
    /// ViLaSR RL dataset (no `vci`).
    VilasrRl,
    /// ViLaVT evaluators.
    VilavtEval,
}

const MC_SUFFIX: &str = "\nAnswer with the option's letter from the given choices directly.";
const NUM_SUFFIX: &str = "\nPlease answer the question using a single word or phrase (e.g., 42 or 3.14).";

/// Errors building prompts; each says which field was wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromptError {
    #[error("question type {0:?} has no prompt suffix in the {1:?} table (the reference raises KeyError)")]
    UnknownQuestionType(String, SuffixTable),
    #[error("data type {0:?} is not handled by this prompt style (the reference raises)")]
    UnknownDataType(String),
    #[error("the sample has no input images")]
    NoImages,
    #[error("video prompt expects exactly {expected} frames but the sample has {found} (the reference asserts)")]
    FrameCount { expected: usize, found: usize },
    #[error("options is null for a multiple-choice record (the reference joins None and raises TypeError)")]
    NullOptions,
}

/// The type suffix for `question_type`, looked up lower-cased as the references do.
pub fn type_suffix(table: SuffixTable, question_type: &str) -> Result<&'static str, PromptError> {
    let key = question_type.to_lowercase();
    let s = match (key.as_str(), table) {
        ("multiple choice", _) => MC_SUFFIX,
        ("regression" | "numerical", _) => NUM_SUFFIX,
        ("free-form", _) => "",
        ("vci", SuffixTable::VilasrEval) => "",
        _ => return Err(PromptError::UnknownQuestionType(question_type.to_string(), table)),
    };
    Ok(s)
}

/// One item of a message's content list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ContentItem {
    Image,
    Video,
    Text { text: String },
}

impl ContentItem {
    pub fn text(s: impl Into<String>) -> Self {
        ContentItem::Text { text: s.into() }
    }
}

/// A chat message (list content; a plain string is a single text item).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Vec<ContentItem>,
}

impl Message {
    pub fn text(role: &str, text: impl Into<String>) -> Self {
        Message { role: role.into(), content: vec![ContentItem::text(text)] }
    }
}

/// Render messages with the Qwen2.5-VL chat template (protocol §1.1): a default system turn when
/// the first message is not `system`, `<|im_start|>role\n…<|im_end|>\n` per message, one vision
/// triple per image/video item, and `<|im_start|>assistant\n` with `add_generation_prompt`.
pub fn render_chat(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    if messages.first().map(|m| m.role.as_str()) != Some("system") {
        out.push_str("<|im_start|>system\n");
        out.push_str(DEFAULT_SYSTEM);
        out.push_str("<|im_end|>\n");
    }
    for m in messages {
        out.push_str("<|im_start|>");
        out.push_str(&m.role);
        out.push('\n');
        for item in &m.content {
            match item {
                ContentItem::Image => out.push_str(IMAGE_TRIPLE),
                ContentItem::Video => out.push_str(VIDEO_TRIPLE),
                ContentItem::Text { text } => out.push_str(text),
            }
        }
        out.push_str("<|im_end|>\n");
    }
    if add_generation_prompt {
        out.push_str("<|im_start|>assistant\n");
    }
    out
}

/// The ViLaSR system prompt for a first image of `width`×`height` (after resize).
pub fn vilasr_system(width: u32, height: u32) -> String {
    fill(VILASR_SYSTEM, &[("width", &width.to_string()), ("height", &height.to_string())])
}

/// `vilasr_user_prompt_template.txt` around the assembled question text.
pub fn vilasr_wrap_question(p: &str) -> String {
    fill(VILASR_USER_TEMPLATE, &[("question", p)])
}

/// `The index of the given image is {i} (width: W, height: H).\n`
pub fn vilasr_image_index_line(index: usize, width: u32, height: u32) -> String {
    fill(
        VILASR_IMAGE_INDEX_LINE,
        &[("index", &index.to_string()), ("width", &width.to_string()), ("height", &height.to_string())],
    )
}

/// Which reference code path builds the first user turn (protocol §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VilasrPromptStyle {
    /// `eval/infer.py --dataset maze|SpatialEval_spatialreal`.
    EvalSingleImage,
    /// `eval/infer.py --dataset vsi_bench` with `--max-frames N`.
    EvalVsi { max_frames: usize },
    /// `eval/infer.py --dataset spar_bench|spar_bench_tiny|mmsi_bench` (uses `data_type`).
    EvalSpar,
    /// The RL dataset (`data_type` video/spatial_r1/maze/vqa).
    Rl,
}

/// The question-related fields a first user turn is built from.
#[derive(Clone, Debug, Default)]
pub struct QuestionSpec<'a> {
    pub question: &'a str,
    pub question_type: &'a str,
    /// `None` = key absent; `Some(None)` = present but null.
    pub options: Option<Option<&'a [String]>>,
    pub data_type: &'a str,
    pub original_question_type: Option<&'a str>,
    /// Number of input images (frames).
    pub num_images: usize,
    /// Size of the first image after resize.
    pub first_size: (u32, u32),
}

fn append_options(p: &mut String, opts: &[String], strip: bool) {
    p.push('\n');
    let joined: Vec<&str> = opts.iter().map(|o| if strip { py_strip(o) } else { o.as_str() }).collect();
    p.push_str(&joined.join("\n"));
}

/// Python `str.strip()` (the whitespace definition lives in [`crate::core::pyliteral`]).
pub fn py_strip(s: &str) -> &str {
    super::pyliteral::py_strip(s)
}

/// Build the first ViLaSR user turn's content list (protocol §2.2).
pub fn vilasr_first_user(style: VilasrPromptStyle, q: &QuestionSpec) -> Result<Vec<ContentItem>, PromptError> {
    if q.num_images == 0 {
        return Err(PromptError::NoImages);
    }
    let (w, h) = q.first_size;
    let is_mc_exact = q.question_type == "multiple choice";
    let multi = |num: usize, p: String| {
        let mut c = Vec::with_capacity(num * 2 + 1);
        for i in 0..num {
            c.push(ContentItem::Image);
            c.push(ContentItem::text(vilasr_image_index_line(i + 1, w, h)));
        }
        c.push(ContentItem::text(vilasr_wrap_question(&p)));
        c
    };
    let single = |p: String| vec![ContentItem::Image, ContentItem::text(vilasr_wrap_question(&p))];
    let options_if_present = |p: &mut String, strip: bool| -> Result<(), PromptError> {
        if is_mc_exact {
            match q.options {
                Some(Some(o)) => append_options(p, o, strip),
                Some(None) => return Err(PromptError::NullOptions),
                None => {}
            }
        }
        Ok(())
    };
    match style {
        VilasrPromptStyle::EvalSingleImage => {
            let suf = type_suffix(SuffixTable::VilasrEval, q.question_type)?;
            let mut p = q.question.to_string();
            options_if_present(&mut p, false)?;
            p.push_str(VILASR_SINGLE_IMAGE_INDEX_SUFFIX);
            p.push_str(suf);
            Ok(single(p))
        }
        VilasrPromptStyle::EvalVsi { max_frames } => {
            if q.num_images != max_frames {
                return Err(PromptError::FrameCount { expected: max_frames, found: q.num_images });
            }
            let suf = type_suffix(SuffixTable::VilasrEval, q.question_type)?;
            let mut p = fill(VILASR_VIDEO_PREFIX, &[("num_frames", &max_frames.to_string())]);
            p.push_str(q.question);
            options_if_present(&mut p, false)?;
            p.push_str(suf);
            Ok(multi(q.num_images, p))
        }
        VilasrPromptStyle::EvalSpar => {
            let suf = type_suffix(SuffixTable::VilasrEval, q.question_type)?;
            let mut p = q.question.to_string();
            if is_mc_exact {
                if let Some(Some(o)) = q.options {
                    append_options(&mut p, o, false);
                }
            }
            let p = p
                .replace("Your answer can only include one of options A, B, C or D.", "")
                .replace("Answer using a single number and nothing else.", "");
            let post = match q.original_question_type {
                Some("position_matching") | Some("camera_motion_infer") => VILASR_SPAR_POST,
                _ => "",
            };
            let mut p = format!("{p}\n{post}");
            match q.data_type {
                "single_view" => {
                    p.push_str(VILASR_SINGLE_IMAGE_INDEX_SUFFIX);
                    p.push_str(suf);
                    Ok(single(p))
                }
                "multi_view" => {
                    p.push_str(suf);
                    Ok(multi(q.num_images, p))
                }
                other => Err(PromptError::UnknownDataType(other.to_string())),
            }
        }
        VilasrPromptStyle::Rl => {
            let suf = type_suffix(SuffixTable::VilasrRl, q.question_type)?;
            match q.data_type {
                "video" | "spatial_r1" => {
                    let mut p = fill(VILASR_VIDEO_PREFIX, &[("num_frames", "16")]);
                    p.push_str(q.question);
                    options_if_present(&mut p, true)?;
                    p.push_str(suf);
                    Ok(multi(q.num_images, p))
                }
                "maze" | "vqa" => {
                    let mut p = q.question.to_string();
                    options_if_present(&mut p, true)?;
                    p.push_str(VILASR_SINGLE_IMAGE_INDEX_SUFFIX);
                    p.push_str(suf);
                    Ok(single(p))
                }
                other => Err(PromptError::UnknownDataType(other.to_string())),
            }
        }
    }
}

/// The full first prompt string (system + user + generation prompt) for ViLaSR.
pub fn vilasr_first_prompt(style: VilasrPromptStyle, q: &QuestionSpec) -> Result<String, PromptError> {
    let content = vilasr_first_user(style, q)?;
    let (w, h) = q.first_size;
    let messages = vec![
        Message { role: "system".into(), content: vec![ContentItem::text(vilasr_system(w, h))] },
        Message { role: "user".into(), content },
    ];
    Ok(render_chat(&messages, true))
}

/// One new observation image as announced in the observation turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewImage {
    /// 1-based image number.
    pub number: usize,
    pub width: u32,
    pub height: u32,
}

/// Result of building an observation turn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservationTurn {
    /// Text appended to the running sequence after the assistant response (starts `<|im_end|>`).
    pub text: String,
    /// How many of the new images are kept (the rest are dropped at the image cap).
    pub kept: usize,
}

/// Build the observation turn appended after a non-final ViLaSR response (protocol §2.8).
///
/// `images_before` is the image count before the new images; `max_images` the cap (45 eval, 42
/// RL); `last_generation_next` says the next generation is the last allowed one (eval: loop counter
/// reached 0; RL: see `executor::RlCounters`). `final_for_single` lets the RL quirk (single-image
/// observations consult a counter that is never decremented) be expressed by the caller.
pub fn vilasr_observation_turn(
    new_images: &[NewImage],
    images_before: usize,
    max_images: usize,
    last_generation_next_single: bool,
    last_generation_next_multi: bool,
) -> ObservationTurn {
    let fill_idx = |tpl: &str, im: &NewImage| {
        fill(
            tpl,
            &[
                ("current_image_idx", &im.number.to_string()),
                ("width", &im.width.to_string()),
                ("height", &im.height.to_string()),
            ],
        )
    };
    if new_images.len() == 1 {
        let im = &new_images[0];
        let prompt = if images_before + 1 >= max_images || last_generation_next_single {
            fill_idx(VILASR_FINAL, im)
        } else {
            fill_idx(VILASR_INTERMEDIATE, im)
        };
        let text = fill(VILASR_OBSERVATION_TURN, &[("pad", IMAGE_TRIPLE), ("prompt", &prompt)]);
        return ObservationTurn { text, kept: 1 };
    }
    let mut pad = String::new();
    let mut kept = 0;
    let k = new_images.len();
    for (j, im) in new_images.iter().enumerate() {
        kept += 1;
        pad.push_str(IMAGE_TRIPLE);
        if images_before + j + 1 >= max_images {
            pad.push_str(&fill_idx(VILASR_FINAL, im));
            break;
        } else if j + 2 <= k {
            pad.push_str(&vilasr_image_index_line(im.number, im.width, im.height));
        } else if last_generation_next_multi {
            pad.push_str(&fill_idx(VILASR_FINAL, im));
        } else {
            pad.push_str(&fill_idx(VILASR_INTERMEDIATE, im));
        }
    }
    let text = fill(VILASR_OBSERVATION_TURN, &[("pad", &pad), ("prompt", "")]);
    ObservationTurn { text, kept }
}

/// ViLaVT first user content (protocol §7.2): per image `{image}` + index line, then USER_PROMPT
/// with the image/video instruction sized by `instruction_size` (RL: image 0; vLLM eval: last).
pub fn vilavt_first_user(num_images: usize, instruction_size: (u32, u32), question: &str) -> Result<Vec<ContentItem>, PromptError> {
    if num_images == 0 {
        return Err(PromptError::NoImages);
    }
    let (w, h) = instruction_size;
    let (ws, hs) = (w.to_string(), h.to_string());
    let instruction = if num_images == 1 {
        fill(VILAVT_IMAGE_QUESTION, &[("width", &ws), ("height", &hs)])
    } else {
        fill(
            VILAVT_VIDEO_QUESTION,
            &[
                ("n_frames", &num_images.to_string()),
                ("n_frames_1", &(num_images - 1).to_string()),
                ("width", &ws),
                ("height", &hs),
            ],
        )
    };
    let mut c = Vec::with_capacity(num_images * 2 + 1);
    for i in 0..num_images {
        c.push(ContentItem::Image);
        c.push(ContentItem::text(fill(VILAVT_IMAGE_INDEX, &[("index", &i.to_string())])));
    }
    c.push(ContentItem::text(fill(VILAVT_USER_TEMPLATE, &[("image_instruction", &instruction), ("question", question)])));
    Ok(c)
}

/// The full first ViLaVT prompt (system + user + generation prompt).
pub fn vilavt_first_prompt(num_images: usize, instruction_size: (u32, u32), question: &str) -> Result<String, PromptError> {
    let messages = vec![
        Message { role: "system".into(), content: vec![ContentItem::text(VILAVT_SYSTEM)] },
        Message { role: "user".into(), content: vilavt_first_user(num_images, instruction_size, question)? },
    ];
    Ok(render_chat(&messages, true))
}

/// The ViLaVT tool-response user content (protocol §7.3 step 4): `<tool_response>`, per zoom-in
/// image `{image}` + ZOOMIN_INDEX_PROMPT (0-based number, size), then the response prompt (final
/// when `final_prompt`) and `</tool_response>`.
pub fn vilavt_tool_response(zoomins: &[(usize, u32, u32)], final_prompt: bool) -> Vec<ContentItem> {
    let mut c = vec![ContentItem::text("<tool_response>")];
    for (idx, w, h) in zoomins {
        c.push(ContentItem::Image);
        c.push(ContentItem::text(fill(
            VILAVT_ZOOMIN_INDEX,
            &[("current_image_idx", &idx.to_string()), ("width", &w.to_string()), ("height", &h.to_string())],
        )));
    }
    let tail = if final_prompt { VILAVT_RESPONSE_FINAL } else { VILAVT_RESPONSE };
    c.push(ContentItem::text(format!("{tail}</tool_response>")));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_is_single_pass_and_keeps_unknown_braces() {
        assert_eq!(fill("{a}{b}", &[("a", "{b}"), ("b", "x")]), "{b}x");
        assert_eq!(fill("{{ {x} }}", &[("x", "1")]), "{{ 1 }}");
        assert_eq!(fill("{", &[]), "{");
        assert_eq!(fill("}{q", &[("q", "z")]), "}{q");
    }

    #[test]
    fn chat_template_adds_default_system() {
        let s = render_chat(&[Message { role: "user".into(), content: vec![ContentItem::Image, ContentItem::text("hi")] }], true);
        assert_eq!(s, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn single_observation_turn_matches_protocol_example() {
        let t = vilasr_observation_turn(&[NewImage { number: 2, width: 448, height: 448 }], 1, 45, false, false);
        assert_eq!(t.text, "<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>\nThe index of the given image is 2 (width: 448, height: 448). Continue your reasoning. After each tool use, critically evaluate the visualization and adjust if needed:\n<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn multi_observation_turn_ends_with_blank_prompt_line() {
        let ims = [NewImage { number: 2, width: 10, height: 20 }, NewImage { number: 3, width: 10, height: 20 }];
        let t = vilasr_observation_turn(&ims, 1, 45, false, false);
        assert!(t.text.ends_with(":\n\n<|im_end|>\n<|im_start|>assistant\n"), "{}", t.text);
        assert!(t.text.contains("<|vision_end|>The index of the given image is 2 (width: 10, height: 20).\n<|vision_start|>"));
        assert_eq!(t.kept, 2);
        // At the cap the remaining images are dropped and the final prompt is used.
        let t = vilasr_observation_turn(&ims, 44, 45, false, false);
        assert_eq!(t.kept, 1);
        assert!(t.text.contains("Then, you can not invoke"));
    }

    #[test]
    fn type_suffix_lookup_is_lowercased_and_raises_on_unknown() {
        assert_eq!(type_suffix(SuffixTable::VilasrEval, "Multiple Choice").unwrap(), MC_SUFFIX);
        assert!(type_suffix(SuffixTable::VilasrRl, "vci").is_err());
        assert_eq!(type_suffix(SuffixTable::VilasrEval, "vci").unwrap(), "");
        // The constants agree with the published suffix table.
        let v: serde_json::Value = serde_json::from_str(TYPE_SUFFIXES_JSON).unwrap();
        for (_, table) in v.as_object().unwrap() {
            for (k, s) in table.as_object().unwrap() {
                assert_eq!(type_suffix(SuffixTable::VilasrEval, k).unwrap(), s.as_str().unwrap());
            }
        }
    }

    #[test]
    fn maze_first_prompt_is_byte_exact() {
        let opts = vec!["A. 3".to_string(), " B. 4 ".to_string()];
        let q = QuestionSpec {
            question: "How many turns?",
            question_type: "multiple choice",
            options: Some(Some(&opts)),
            data_type: "maze",
            num_images: 1,
            first_size: (616, 616),
            ..Default::default()
        };
        let p = vilasr_first_prompt(VilasrPromptStyle::Rl, &q).unwrap();
        let expected = format!(
            "<|im_start|>system\n{}<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>\n### Question:\nHow many turns?\nA. 3\nB. 4\nThe index of the given image is 1.\nAnswer with the option's letter from the given choices directly.\n\nBegin your reasoning. After each tool use, critically evaluate the visualization and adjust if needed:\n<|im_end|>\n<|im_start|>assistant\n",
            vilasr_system(616, 616)
        );
        assert_eq!(p, expected);
        // Eval keeps option whitespace.
        let e = vilasr_first_prompt(VilasrPromptStyle::EvalSingleImage, &q).unwrap();
        assert!(e.contains("\nA. 3\n B. 4 \nThe index"));
    }

    #[test]
    fn multi_view_prompt_lists_every_image_with_first_size() {
        let q = QuestionSpec {
            question: "Q",
            question_type: "regression",
            options: Some(None),
            data_type: "multi_view",
            original_question_type: Some("camera_motion_infer"),
            num_images: 2,
            first_size: (504, 364),
        };
        let c = vilasr_first_user(VilasrPromptStyle::EvalSpar, &q).unwrap();
        assert_eq!(c.len(), 5);
        assert_eq!(c[1], ContentItem::text("The index of the given image is 1 (width: 504, height: 364).\n"));
        assert_eq!(c[3], ContentItem::text("The index of the given image is 2 (width: 504, height: 364).\n"));
        let ContentItem::Text { text } = &c[4] else { panic!() };
        assert_eq!(text, &vilasr_wrap_question(&format!("Q\n{VILASR_SPAR_POST}{NUM_SUFFIX}")));
    }

    #[test]
    fn vsi_asserts_frame_count_and_rl_rejects_unknown_types() {
        let q = QuestionSpec { question: "Q", question_type: "numerical", data_type: "video", num_images: 3, first_size: (1, 1), ..Default::default() };
        assert_eq!(
            vilasr_first_user(VilasrPromptStyle::EvalVsi { max_frames: 16 }, &q).unwrap_err(),
            PromptError::FrameCount { expected: 16, found: 3 }
        );
        let q2 = QuestionSpec { data_type: "other", ..q.clone() };
        assert!(matches!(vilasr_first_user(VilasrPromptStyle::Rl, &q2), Err(PromptError::UnknownDataType(_))));
        let c = vilasr_first_user(VilasrPromptStyle::Rl, &q).unwrap();
        let ContentItem::Text { text } = c.last().unwrap() else { panic!() };
        assert!(text.contains("numbered from 1 to 16 in sequence"));
    }

    #[test]
    fn vilavt_prompts() {
        let c = vilavt_first_user(1, (504, 364), "What?").unwrap();
        assert_eq!(c[1], ContentItem::text("The index of the provided image is 0.\n"));
        let ContentItem::Text { text } = &c[2] else { panic!() };
        assert!(text.starts_with("This is an image indexed by 0. \nThe image size: width 504, height 364.\n\n# Question: What?\n"));
        let r = vilavt_tool_response(&[(1, 280, 224)], false);
        let s = render_chat(&[Message { role: "user".into(), content: r }], false);
        assert!(s.contains("<tool_response><|vision_start|><|image_pad|><|vision_end|>The index of the zoom-in image is 1 (width: 280, height: 224).\n"));
        assert!(s.ends_with("</tool_response><|im_end|>\n"));
    }
}
