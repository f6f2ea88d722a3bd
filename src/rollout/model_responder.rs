//! The rollout's model side: a Qwen2.5-VL checkpoint on the device picked at run time, served by
//! the batching [`engine`] with one KV-cache session per conversation. The running token sequence
//! is grown in place (prompt ids, the exact generated ids, then each observation turn's ids with its
//! image pads expanded), so prefix reuse prefills only the new tokens each turn and encodes only the
//! new images, and concurrent conversations (pass@k) are decoded together.

use super::engine::{self, EngineClient, EngineStats};
use super::{Generated, Responder};
use crate::model::device::{self, DeviceRequest, SelectedDevice};
use crate::model::generate::SamplingParams;
use crate::model::loader::load_model;
use crate::model::preprocess::PreprocessConfig;
use crate::model::runner::eos_ids;
use crate::model::tokenizer::QwenTokenizer;
use burn::tensor::backend::Backend;
use burn::tensor::DType;
use image::RgbImage;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// A checkpoint folder as a [`Responder`]: one conversation of the batching engine (further
/// conversations on the same loaded model come from [`Responder::concurrent`]).
pub struct ModelResponder {
    model_dir: PathBuf,
    device: String,
    name: String,
    client: Option<EngineClient>,
    /// Batch statistics of the engine (shared by every client).
    pub stats: Arc<Mutex<EngineStats>>,
}

impl ModelResponder {
    pub fn new(model_dir: PathBuf, device: String) -> Self {
        let name = model_dir.display().to_string();
        ModelResponder { model_dir, device, name, client: None, stats: Arc::default() }
    }

    fn client(&mut self) -> Result<&mut EngineClient, String> {
        self.client.as_mut().ok_or_else(|| "the model is not loaded".to_string())
    }
}

fn load<B: Backend>(dir: &Path, dev: B::Device, dtype: DType, stats: Arc<Mutex<EngineStats>>, status: &mut dyn FnMut(String)) -> Result<EngineClient, String>
where
    crate::model::qwen::Qwen25Vl<B>: Send + 'static,
{
    status("loading the tokenizer".into());
    let tok = QwenTokenizer::from_dir(dir)?;
    status("loading the weights".into());
    let model = load_model::<B>(dir, &dev, dtype).map_err(|e| e.to_string())?;
    let pc = PreprocessConfig::from_dir(dir)?;
    let eos = eos_ids(dir, &model.cfg.eos_token_ids)?;
    if eos.is_empty() {
        return Err(format!("{}: no EOS token id in config.json or generation_config.json", dir.display()));
    }
    engine::spawn(model, tok, pc, eos, stats)
}

impl Responder for ModelResponder {
    fn prepare(&mut self, status: &mut dyn FnMut(String)) -> Result<(), String> {
        if self.client.is_some() {
            return Ok(());
        }
        let req: DeviceRequest = self.device.parse()?;
        let sel = device::select(req)?;
        status(sel.notice.clone());
        let dir = self.model_dir.clone();
        let stats = self.stats.clone();
        self.client = Some(match sel.device {
            SelectedDevice::Cpu => load::<burn::backend::Flex>(&dir, Default::default(), DType::F32, stats, status)?,
            #[cfg(feature = "cuda")]
            SelectedDevice::Cuda(n) => load::<burn::backend::Cuda>(&dir, burn::backend::cuda::CudaDevice::new(n), DType::BF16, stats, status)?,
            #[cfg(not(feature = "cuda"))]
            SelectedDevice::Cuda(_) => return Err("this build has no CUDA support (rebuild with `--features cuda`)".into()),
        });
        Ok(())
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    fn concurrent(&mut self, n: usize) -> Option<Vec<Box<dyn Responder>>> {
        let client = self.client.as_ref()?;
        Some(
            (0..n)
                .map(|_| {
                    let r = ModelResponder { model_dir: self.model_dir.clone(), device: self.device.clone(), name: self.name.clone(), client: Some(client.another()), stats: self.stats.clone() };
                    Box::new(r) as Box<dyn Responder>
                })
                .collect(),
        )
    }

    fn begin(&mut self, _k: usize, prompt: &str, images: &[RgbImage], status: &mut dyn FnMut(String)) -> Result<(), String> {
        self.client()?.begin(prompt, images, status)
    }

    fn generate(&mut self, max_new_tokens: usize, temperature: f32, top_p: f32, seed: u64, on_text: &mut dyn FnMut(&str), cancel: &AtomicBool) -> Result<Generated, String> {
        let params = SamplingParams { max_new_tokens, temperature, top_p, seed, n: 1, ..Default::default() };
        self.client()?.generate(params, on_text, cancel)
    }

    fn accept_generated(&mut self) -> Result<(), String> {
        self.client()?.accept_generated()
    }

    fn append(&mut self, text: &str, images: &[RgbImage], status: &mut dyn FnMut(String)) -> Result<(), String> {
        self.client()?.append(text, images, status)
    }

    fn count_tokens(&self, text: &str) -> Result<usize, String> {
        self.client.as_ref().ok_or_else(|| "the model is not loaded".to_string())?.count_tokens(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::prompts::{render_chat, ContentItem, Message, IMAGE_TRIPLE};

    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen25vl/tiny_tied")
    }

    fn prompt() -> String {
        render_chat(&[Message { role: "user".into(), content: vec![ContentItem::Image, ContentItem::text("Where?")] }], true)
    }

    fn image() -> RgbImage {
        RgbImage::from_fn(56, 84, |x, y| image::Rgb([(x * 4) as u8, (y * 3) as u8, 90]))
    }

    #[test]
    fn each_turn_prefills_only_its_new_tokens_and_each_image_once() {
        let mut r = ModelResponder::new(fixture(), "cpu".into());
        r.prepare(&mut |_| {}).unwrap();
        let img = image();
        let stop = AtomicBool::new(false);
        r.begin(0, &prompt(), std::slice::from_ref(&img), &mut |_| {}).unwrap();
        let g1 = r.generate(4, 0.0, 1.0, 0, &mut |_| {}, &stop).unwrap();
        assert_eq!(g1.prompt_reused, Some(0));
        let first_len = g1.prompt_prefilled.unwrap();
        assert!(first_len > 16, "the image's pads are part of the prompt");
        r.accept_generated().unwrap();
        let obs = format!("<|im_end|>\n<|im_start|>user\n{IMAGE_TRIPLE}\nNext.<|im_end|>\n<|im_start|>assistant\n");
        r.append(&obs, std::slice::from_ref(&img), &mut |_| {}).unwrap();
        let g2 = r.generate(4, 0.0, 1.0, 0, &mut |_| {}, &stop).unwrap();
        // Everything up to the last fed generated token is reused: the first image is not encoded again.
        assert_eq!(g2.prompt_reused, Some(first_len + g1.tokens - 1));
        assert!(g2.prompt_prefilled.unwrap() > 16, "the new observation's pads are prefilled");
        assert!(g2.vision_ms.unwrap() > 0.0 && g2.prefill_ms.unwrap() >= g2.vision_ms.unwrap());
        assert_eq!(g2.tokens, 4);
        // A second trajectory on the same prompt starts from the first one's cache (images included).
        let mut others = r.concurrent(1).unwrap();
        others[0].begin(1, &prompt(), std::slice::from_ref(&img), &mut |_| {}).unwrap();
        let g3 = others[0].generate(4, 0.0, 1.0, 0, &mut |_| {}, &stop).unwrap();
        assert_eq!(g3.prompt_reused, Some(first_len - 1));
        assert_eq!(g3.text, g1.text, "greedy on the same prompt");
        // Restarting the first conversation reuses its own cache too.
        r.begin(0, &prompt(), std::slice::from_ref(&img), &mut |_| {}).unwrap();
        let g4 = r.generate(2, 0.0, 1.0, 0, &mut |_| {}, &stop).unwrap();
        assert_eq!(g4.prompt_reused, Some(first_len - 1));
    }

    #[test]
    fn concurrent_conversations_are_decoded_in_one_batch_with_the_same_results() {
        let img = image();
        let mut solo = ModelResponder::new(fixture(), "cpu".into());
        solo.prepare(&mut |_| {}).unwrap();
        let stop = AtomicBool::new(false);
        let mut want = Vec::new();
        for seed in 0..3u64 {
            solo.begin(0, &prompt(), std::slice::from_ref(&img), &mut |_| {}).unwrap();
            want.push(solo.generate(24, 1.0, 1.0, seed, &mut |_| {}, &stop).unwrap().text);
        }
        assert_eq!(solo.stats.lock().unwrap().max_rows, 1);
        let mut r = ModelResponder::new(fixture(), "cpu".into());
        r.prepare(&mut |_| {}).unwrap();
        let clients = r.concurrent(3).unwrap();
        let got: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = clients
                .into_iter()
                .enumerate()
                .map(|(k, mut c)| {
                    let img = img.clone();
                    s.spawn(move || {
                        let stop = AtomicBool::new(false);
                        c.begin(k, &prompt(), std::slice::from_ref(&img), &mut |_| {}).unwrap();
                        c.generate(24, 1.0, 1.0, k as u64, &mut |_| {}, &stop).unwrap().text
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(got, want, "batched decoding samples what one-at-a-time decoding samples");
        let st = r.stats.lock().unwrap().clone();
        assert!(st.max_rows >= 2, "the conversations shared decode steps: {st:?}");
        assert!(st.rows > st.steps);
    }
}
