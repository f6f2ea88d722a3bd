//! The rollout's model side: a Qwen2.5-VL checkpoint on the device picked at run time, one KV-cache
//! [`Session`] per conversation. The running token sequence is grown in place (prompt ids, the
//! exact generated ids, then each observation turn's ids with its image pads expanded), so the
//! session's prefix reuse prefills only the new tokens each turn and encodes only the new images.

use super::{Generated, Responder};
use crate::core::trajectory::FinishReason;
use crate::model::device::{self, DeviceRequest, SelectedDevice};
use crate::model::generate::{FinishReason as GenFinish, SamplingParams, Session};
use crate::model::loader::load_model;
use crate::model::preprocess::{preprocess_image, PreprocessConfig, VisionInput};
use crate::model::qwen::{ModelInput, Qwen25Vl};
use crate::model::runner::eos_ids;
use crate::model::tokenizer::QwenTokenizer;
use burn::tensor::backend::Backend;
use burn::tensor::DType;
use image::RgbImage;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

struct Loaded<B: Backend> {
    model: Qwen25Vl<B>,
    tok: QwenTokenizer,
    pc: PreprocessConfig,
    eos: Vec<u32>,
    session: Session<B>,
    ids: Vec<u32>,
    images: Vec<VisionInput>,
    /// Generated ids of the last turn (EOS included when it ended so).
    last: Vec<u32>,
}

enum Backends {
    Cpu(Box<Loaded<burn::backend::Flex>>),
    #[cfg(feature = "cuda")]
    Cuda(Box<Loaded<burn::backend::Cuda>>),
}

/// A checkpoint folder as a [`Responder`].
pub struct ModelResponder {
    model_dir: PathBuf,
    device: String,
    loaded: Option<Backends>,
}

impl ModelResponder {
    pub fn new(model_dir: PathBuf, device: String) -> Self {
        ModelResponder { model_dir, device, loaded: None }
    }
}

macro_rules! with_loaded {
    ($self:ident, $l:ident => $body:expr) => {
        match $self.loaded.as_mut() {
            None => Err("the model is not loaded".to_string()),
            Some(Backends::Cpu($l)) => $body,
            #[cfg(feature = "cuda")]
            Some(Backends::Cuda($l)) => $body,
        }
    };
}

fn load<B: Backend>(dir: &std::path::Path, dev: B::Device, dtype: DType, status: &mut dyn FnMut(String)) -> Result<Loaded<B>, String> {
    status("loading the tokenizer".into());
    let tok = QwenTokenizer::from_dir(dir)?;
    status("loading the weights".into());
    let model = load_model::<B>(dir, &dev, dtype).map_err(|e| e.to_string())?;
    let pc = PreprocessConfig::from_dir(dir)?;
    let eos = eos_ids(dir, &model.cfg.eos_token_ids)?;
    if eos.is_empty() {
        return Err(format!("{}: no EOS token id in config.json or generation_config.json", dir.display()));
    }
    let session = Session::new(&model);
    Ok(Loaded { model, tok, pc, eos, session, ids: Vec::new(), images: Vec::new(), last: Vec::new() })
}

impl<B: Backend> Loaded<B> {
    fn encode_with_images(&mut self, text: &str, images: &[RgbImage], status: &mut dyn FnMut(String)) -> Result<(), String> {
        let mut vis = Vec::with_capacity(images.len());
        for (i, img) in images.iter().enumerate() {
            status(format!("preprocessing image {}", self.images.len() + i + 1));
            vis.push(preprocess_image(img, &self.model.cfg.vision, &self.pc)?);
        }
        let ids = self.tok.expand_pads(&self.tok.encode(text)?, &vis, &[], self.model.cfg.vision.spatial_merge_size)?;
        self.ids.extend(ids);
        self.images.extend(vis);
        Ok(())
    }

    fn generate(&mut self, params: &SamplingParams, on_text: &mut dyn FnMut(&str), cancel: &AtomicBool) -> Result<Generated, String> {
        let input = ModelInput { ids: self.ids.clone(), images: self.images.clone(), videos: Vec::new(), second_per_grid_ts: Vec::new() };
        let mut params = params.clone();
        params.eos_token_ids = self.eos.clone();
        let mut out = self.session.generate(&self.model, Some(&self.tok), &input, &params, &mut |e| on_text(e.text_delta), Some(cancel))?;
        let c = out.pop().ok_or("the generator returned nothing")?;
        self.last = c.token_ids.clone();
        let finish = match c.finish {
            GenFinish::Eos => FinishReason::Stop,
            GenFinish::Length => FinishReason::Length,
            GenFinish::Cancelled => FinishReason::Cancelled,
            GenFinish::Stop(_) => FinishReason::Rule,
        };
        Ok(Generated { text: c.text, finish, tokens: c.token_ids.len() })
    }
}

impl Responder for ModelResponder {
    fn prepare(&mut self, status: &mut dyn FnMut(String)) -> Result<(), String> {
        if self.loaded.is_some() {
            return Ok(());
        }
        let req: DeviceRequest = self.device.parse()?;
        let sel = device::select(req)?;
        status(sel.notice.clone());
        let dir = self.model_dir.clone();
        self.loaded = Some(match sel.device {
            SelectedDevice::Cpu => Backends::Cpu(Box::new(load::<burn::backend::Flex>(&dir, Default::default(), DType::F32, status)?)),
            #[cfg(feature = "cuda")]
            SelectedDevice::Cuda(n) => Backends::Cuda(Box::new(load::<burn::backend::Cuda>(&dir, burn::backend::cuda::CudaDevice::new(n), DType::BF16, status)?)),
            #[cfg(not(feature = "cuda"))]
            SelectedDevice::Cuda(_) => return Err("this build has no CUDA support (rebuild with `--features cuda`)".into()),
        });
        Ok(())
    }

    fn name(&self) -> String {
        self.model_dir.display().to_string()
    }

    fn begin(&mut self, _k: usize, prompt: &str, images: &[RgbImage], status: &mut dyn FnMut(String)) -> Result<(), String> {
        with_loaded!(self, l => {
            l.ids.clear();
            l.images.clear();
            l.last.clear();
            l.encode_with_images(prompt, images, status)
        })
    }

    fn generate(&mut self, max_new_tokens: usize, temperature: f32, top_p: f32, seed: u64, on_text: &mut dyn FnMut(&str), cancel: &AtomicBool) -> Result<Generated, String> {
        let params = SamplingParams { max_new_tokens, temperature, top_p, seed, n: 1, ..Default::default() };
        with_loaded!(self, l => l.generate(&params, on_text, cancel))
    }

    fn accept_generated(&mut self) -> Result<(), String> {
        with_loaded!(self, l => {
            let mut ids = std::mem::take(&mut l.last);
            if ids.last().is_some_and(|t| l.eos.contains(t)) {
                ids.pop();
            }
            l.ids.extend(ids);
            Ok(())
        })
    }

    fn append(&mut self, text: &str, images: &[RgbImage], status: &mut dyn FnMut(String)) -> Result<(), String> {
        with_loaded!(self, l => l.encode_with_images(text, images, status))
    }

    fn count_tokens(&self, text: &str) -> Result<usize, String> {
        match self.loaded.as_ref() {
            None => Err("the model is not loaded".to_string()),
            Some(Backends::Cpu(l)) => Ok(l.tok.encode(text)?.len()),
            #[cfg(feature = "cuda")]
            Some(Backends::Cuda(l)) => Ok(l.tok.encode(text)?.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::prompts::{render_chat, ContentItem, Message, IMAGE_TRIPLE};

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen25vl/tiny_tied")
    }

    #[test]
    fn each_turn_prefills_only_its_new_tokens_and_each_image_once() {
        let mut r = ModelResponder::new(fixture(), "cpu".into());
        r.prepare(&mut |_| {}).unwrap();
        let img = RgbImage::from_fn(56, 84, |x, y| image::Rgb([(x * 4) as u8, (y * 3) as u8, 90]));
        let prompt = render_chat(&[Message { role: "user".into(), content: vec![ContentItem::Image, ContentItem::text("Where?")] }], true);
        let stop = AtomicBool::new(false);
        r.begin(0, &prompt, std::slice::from_ref(&img), &mut |_| {}).unwrap();
        let g1 = r.generate(4, 0.0, 1.0, 0, &mut |_| {}, &stop).unwrap();
        let Some(Backends::Cpu(l)) = r.loaded.as_ref() else { panic!("cpu") };
        let first_len = l.ids.len();
        assert_eq!((l.session.reused_tokens, l.session.prefilled_tokens), (0, first_len));
        r.accept_generated().unwrap();
        let obs = format!("<|im_end|>\n<|im_start|>user\n{IMAGE_TRIPLE}\nNext.<|im_end|>\n<|im_start|>assistant\n");
        r.append(&obs, std::slice::from_ref(&img), &mut |_| {}).unwrap();
        let g2 = r.generate(4, 0.0, 1.0, 0, &mut |_| {}, &stop).unwrap();
        let Some(Backends::Cpu(l)) = r.loaded.as_ref() else { panic!("cpu") };
        // Everything up to the last fed generated token is reused: the first image is not encoded again.
        let fed = g1.tokens - 1;
        assert_eq!(l.session.reused_tokens, first_len + fed);
        assert_eq!(l.session.reused_tokens + l.session.prefilled_tokens, l.ids.len());
        assert_eq!(l.images.len(), 2);
        assert_eq!(g2.tokens, 4);
        // The same conversation from scratch (a fresh session) generates the same tokens.
        let ids = l.ids.clone();
        let mut fresh = ModelResponder::new(fixture(), "cpu".into());
        fresh.prepare(&mut |_| {}).unwrap();
        fresh.begin(0, &prompt, std::slice::from_ref(&img), &mut |_| {}).unwrap();
        let _ = fresh.generate(4, 0.0, 1.0, 0, &mut |_| {}, &stop).unwrap();
        fresh.accept_generated().unwrap();
        fresh.append(&obs, std::slice::from_ref(&img), &mut |_| {}).unwrap();
        let Some(Backends::Cpu(f)) = fresh.loaded.as_mut() else { panic!("cpu") };
        assert_eq!(f.ids, ids);
        f.session.reset();
        let g3 = fresh.generate(4, 0.0, 1.0, 0, &mut |_| {}, &stop).unwrap();
        assert_eq!(g3.text, g2.text, "prefix reuse changes nothing");
        // A second trajectory on the same prompt reuses the first prompt (images included).
        r.begin(1, &prompt, std::slice::from_ref(&img), &mut |_| {}).unwrap();
        let _ = r.generate(2, 0.0, 1.0, 0, &mut |_| {}, &stop).unwrap();
        let Some(Backends::Cpu(l)) = r.loaded.as_ref() else { panic!("cpu") };
        assert_eq!(l.session.reused_tokens, first_len - 1);
    }
}
