//! The checkpoint's `tokenizer.json` through the `tokenizers` crate, and prompt building: the chat
//! template of protocol §1.1 (the core's `render_chat`), tokenised, with each vision triple's
//! single pad token expanded to one pad per merged patch (`t·(h/2)·(w/2)`), as the HF processor does.

use super::preprocess::VisionInput;
use super::qwen::ModelInput;
use crate::core::prompts::{render_chat, ContentItem, Message};
use std::path::Path;

/// A Qwen tokenizer plus the special ids prompts need.
pub struct QwenTokenizer {
    tok: tokenizers::Tokenizer,
    pub image_pad: u32,
    pub video_pad: u32,
    pub im_end: Option<u32>,
    pub endoftext: Option<u32>,
}

impl QwenTokenizer {
    /// Load `tokenizer.json`; the pad tokens must exist in it.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let tok = tokenizers::Tokenizer::from_file(path).map_err(|e| format!("{}: cannot load tokenizer: {e}", path.display()))?;
        let need = |s: &str| tok.token_to_id(s).ok_or_else(|| format!("{}: the tokenizer has no `{s}` token", path.display()));
        Ok(QwenTokenizer {
            image_pad: need("<|image_pad|>")?,
            video_pad: need("<|video_pad|>")?,
            im_end: tok.token_to_id("<|im_end|>"),
            endoftext: tok.token_to_id("<|endoftext|>"),
            tok,
        })
    }

    pub fn from_dir(dir: &Path) -> Result<Self, String> {
        Self::from_file(&dir.join("tokenizer.json"))
    }

    /// Token ids of `text` (special tokens written in the text are recognised; nothing is added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        self.tok.encode(text, false).map(|e| e.get_ids().to_vec()).map_err(|e| format!("tokenizer: {e}"))
    }

    /// Text of ids, special tokens skipped or kept.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, String> {
        self.tok.decode(ids, skip_special).map_err(|e| format!("tokenizer: {e}"))
    }

    pub fn token_id(&self, s: &str) -> Option<u32> {
        self.tok.token_to_id(s)
    }

    pub fn vocab_size(&self) -> usize {
        self.tok.get_vocab_size(true)
    }

    /// Expand each single image/video pad token into `tokens(grid)` pads, in order.
    pub fn expand_pads(&self, ids: &[u32], images: &[VisionInput], videos: &[VisionInput], merge: usize) -> Result<Vec<u32>, String> {
        let mut out = Vec::with_capacity(ids.len());
        let (mut ii, mut vi) = (0, 0);
        for &t in ids {
            if t == self.image_pad {
                let img = images.get(ii).ok_or_else(|| format!("the prompt has more image placeholders than the {} image(s) given", images.len()))?;
                out.extend(std::iter::repeat_n(t, img.grid.tokens(merge)));
                ii += 1;
            } else if t == self.video_pad {
                let v = videos.get(vi).ok_or_else(|| format!("the prompt has more video placeholders than the {} video(s) given", videos.len()))?;
                out.extend(std::iter::repeat_n(t, v.grid.tokens(merge)));
                vi += 1;
            } else {
                out.push(t);
            }
        }
        if ii != images.len() || vi != videos.len() {
            return Err(format!("{} image(s) and {} video(s) given, the prompt has placeholders for {ii} and {vi}", images.len(), videos.len()));
        }
        Ok(out)
    }

    /// A chat (protocol §1.1 template, generation prompt added) turned into model input.
    pub fn chat_input(
        &self,
        messages: &[Message],
        images: Vec<VisionInput>,
        videos: Vec<VisionInput>,
        second_per_grid_ts: Vec<f64>,
        merge: usize,
    ) -> Result<ModelInput, String> {
        let n_img = messages.iter().flat_map(|m| &m.content).filter(|c| matches!(c, ContentItem::Image)).count();
        let n_vid = messages.iter().flat_map(|m| &m.content).filter(|c| matches!(c, ContentItem::Video)).count();
        if n_img != images.len() || n_vid != videos.len() {
            return Err(format!("the messages hold {n_img} image(s) and {n_vid} video(s) but {} and {} were given", images.len(), videos.len()));
        }
        let text = render_chat(messages, true);
        let ids = self.expand_pads(&self.encode(&text)?, &images, &videos, merge)?;
        Ok(ModelInput { ids, images, videos, second_per_grid_ts })
    }
}
