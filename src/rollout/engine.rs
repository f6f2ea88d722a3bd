//! The batching engine behind [`super::ModelResponder`]: one thread owns the model and a KV-cache
//! [`Session`] per conversation, and the trajectories of a pass@k run talk to it from their own
//! threads through [`EngineClient`]s. Whenever several conversations are generating, every decode
//! step feeds one token of each of them in a single batched forward pass (continuous batching: a
//! conversation joins the batch once its turn is prefilled and leaves when the turn ends), so the
//! n trajectories of a sample are generated together even after they diverge.
//!
//! A new conversation starts from a copy of the session that shares the longest prefix with it,
//! so n trajectories of one sample prefill (and encode the images of) the first prompt once.
//! Tokenising and image preprocessing happen on the client's thread; the engine only runs the model.

use super::Generated;
use crate::core::trajectory::FinishReason;
use crate::model::config::VisionConfig;
use crate::model::generate::{FinishReason as GenFinish, SampleStream, SamplingParams, Session};
use crate::model::preprocess::{preprocess_image, PreprocessConfig, VisionInput};
use crate::model::qwen::{ModelInput, Qwen25Vl};
use crate::model::text::KvCache;
use crate::model::tokenizer::QwenTokenizer;
use burn::tensor::backend::Backend;
use image::RgbImage;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

/// What a client asks of the engine (processed in order per client).
enum Request {
    /// A new conversation (or a restart of `conv`) with its first prompt.
    Begin { conv: usize, ids: Vec<u32>, images: Vec<VisionInput> },
    /// Grow the conversation by already tokenised text and its images.
    Append { conv: usize, ids: Vec<u32>, images: Vec<VisionInput> },
    /// Keep the last generated turn (its tokens, EOS left out).
    Accept { conv: usize },
    /// Generate the next assistant turn; text deltas and the result come back on `reply`.
    Generate { conv: usize, params: SamplingParams, cancel: Arc<AtomicBool>, reply: Sender<Reply> },
    Close { conv: usize },
}

enum Reply {
    Text(String),
    Done(Result<Generated, String>),
}

/// What clients share: the tokenizer and preprocessing of the loaded checkpoint.
struct Shared {
    tok: QwenTokenizer,
    pc: PreprocessConfig,
    vision: VisionConfig,
    next_conv: AtomicUsize,
}

/// One conversation of the engine, usable from any thread.
pub struct EngineClient {
    tx: Sender<Request>,
    shared: Arc<Shared>,
    conv: usize,
}

/// Statistics the engine keeps (tests and benchmarks read them).
#[derive(Clone, Debug, Default)]
pub struct EngineStats {
    /// Decode steps run, and the rows they fed in total (rows / steps = the mean batch size).
    pub steps: usize,
    pub rows: usize,
    /// The largest batch one step fed.
    pub max_rows: usize,
}

/// Start the engine thread on a loaded model; returns the first client.
pub fn spawn<B: Backend>(model: Qwen25Vl<B>, tok: QwenTokenizer, pc: PreprocessConfig, eos: Vec<u32>, stats: Arc<std::sync::Mutex<EngineStats>>) -> Result<EngineClient, String>
where
    Qwen25Vl<B>: Send + 'static,
{
    let (tx, rx) = channel();
    let shared = Arc::new(Shared { tok, pc, vision: model.cfg.vision.clone(), next_conv: AtomicUsize::new(1) });
    std::thread::Builder::new()
        .name("sightline-model".into())
        .spawn({
            let shared = shared.clone();
            move || Engine { model, eos, shared, convs: BTreeMap::new(), active: Vec::new(), stats }.run(rx)
        })
        .map_err(|e| format!("cannot start the model thread: {e}"))?;
    Ok(EngineClient { tx, shared, conv: 0 })
}

impl EngineClient {
    /// Another conversation on the same engine.
    pub fn another(&self) -> EngineClient {
        let conv = self.shared.next_conv.fetch_add(1, Ordering::Relaxed);
        EngineClient { tx: self.tx.clone(), shared: self.shared.clone(), conv }
    }

    fn send(&self, r: Request) -> Result<(), String> {
        self.tx.send(r).map_err(|_| "the model thread has stopped".to_string())
    }

    fn encode(&self, text: &str, images: &[RgbImage], first_number: usize, status: &mut dyn FnMut(String)) -> Result<(Vec<u32>, Vec<VisionInput>), String> {
        let mut vis = Vec::with_capacity(images.len());
        for (i, img) in images.iter().enumerate() {
            status(format!("preprocessing image {}", first_number + i));
            vis.push(preprocess_image(img, &self.shared.vision, &self.shared.pc)?);
        }
        let ids = self.shared.tok.expand_pads(&self.shared.tok.encode(text)?, &vis, &[], self.shared.vision.spatial_merge_size)?;
        Ok((ids, vis))
    }

    /// Start (or restart) this conversation with its first prompt.
    pub fn begin(&mut self, prompt: &str, images: &[RgbImage], status: &mut dyn FnMut(String)) -> Result<(), String> {
        let (ids, images) = self.encode(prompt, images, 1, status)?;
        self.send(Request::Begin { conv: self.conv, ids, images })
    }

    pub fn append(&mut self, text: &str, images: &[RgbImage], status: &mut dyn FnMut(String)) -> Result<(), String> {
        let (ids, images) = self.encode(text, images, 1, status)?;
        self.send(Request::Append { conv: self.conv, ids, images })
    }

    pub fn accept_generated(&mut self) -> Result<(), String> {
        self.send(Request::Accept { conv: self.conv })
    }

    pub fn count_tokens(&self, text: &str) -> Result<usize, String> {
        Ok(self.shared.tok.encode(text)?.len())
    }

    /// Generate the next turn, streaming text deltas to `on_text`; `cancel` is polled while waiting.
    pub fn generate(&mut self, params: SamplingParams, on_text: &mut dyn FnMut(&str), cancel: &AtomicBool) -> Result<Generated, String> {
        let (reply, rx) = channel();
        let stop = Arc::new(AtomicBool::new(cancel.load(Ordering::Relaxed)));
        self.send(Request::Generate { conv: self.conv, params, cancel: stop.clone(), reply })?;
        loop {
            if cancel.load(Ordering::Relaxed) {
                stop.store(true, Ordering::Relaxed);
            }
            match rx.recv_timeout(Duration::from_millis(10)) {
                Ok(Reply::Text(t)) => on_text(&t),
                Ok(Reply::Done(r)) => return r,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err("the model thread stopped during generation".into()),
            }
        }
    }
}

impl Drop for EngineClient {
    fn drop(&mut self) {
        let _ = self.tx.send(Request::Close { conv: self.conv });
    }
}

struct Conversation<B: Backend> {
    session: Session<B>,
    ids: Vec<u32>,
    images: Vec<VisionInput>,
    /// Generated ids of the last turn (EOS included when it ended so).
    last: Vec<u32>,
}

/// A turn being generated.
struct Active {
    conv: usize,
    stream: SampleStream,
    logits: Vec<f32>,
    reply: Sender<Reply>,
    cancel: Arc<AtomicBool>,
    prefill_ms: f64,
    vision_ms: f64,
    reused: usize,
    prefilled: usize,
}

struct Engine<B: Backend> {
    model: Qwen25Vl<B>,
    eos: Vec<u32>,
    shared: Arc<Shared>,
    convs: BTreeMap<usize, Conversation<B>>,
    active: Vec<Active>,
    stats: Arc<std::sync::Mutex<EngineStats>>,
}

impl<B: Backend> Engine<B> {
    fn run(mut self, rx: Receiver<Request>) {
        loop {
            // Block while idle; otherwise take whatever has arrived and step.
            if self.active.is_empty() {
                match rx.recv() {
                    Ok(r) => self.handle(r),
                    Err(_) => return,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(r) => self.handle(r),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if self.active.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            if !self.active.is_empty() {
                self.step();
            }
        }
    }

    fn handle(&mut self, r: Request) {
        match r {
            Request::Begin { conv, ids, images } => {
                // A restart keeps its own cache; a better one of another conversation is taken at
                // the first Generate.
                let session = self.convs.remove(&conv).map(|c| c.session).unwrap_or_else(|| Session::new(&self.model));
                self.convs.insert(conv, Conversation { session, ids, images, last: Vec::new() });
            }
            Request::Append { conv, ids, images } => {
                if let Some(c) = self.convs.get_mut(&conv) {
                    c.ids.extend(ids);
                    c.images.extend(images);
                }
            }
            Request::Accept { conv } => {
                if let Some(c) = self.convs.get_mut(&conv) {
                    let mut ids = std::mem::take(&mut c.last);
                    if ids.last().is_some_and(|t| self.eos.contains(t)) {
                        ids.pop();
                    }
                    c.ids.extend(ids);
                }
            }
            Request::Close { conv } => {
                self.active.retain(|a| a.conv != conv);
                self.convs.remove(&conv);
            }
            Request::Generate { conv, mut params, cancel, reply } => {
                let Some(c) = self.convs.get_mut(&conv) else {
                    let _ = reply.send(Reply::Done(Err("generate before begin".into())));
                    return;
                };
                params.eos_token_ids = self.eos.clone();
                params.n = 1;
                if let Err(e) = params.validate() {
                    let _ = reply.send(Reply::Done(Err(e)));
                    return;
                }
                let input = ModelInput { ids: c.ids.clone(), images: c.images.clone(), ..Default::default() };
                // Start from the session that can keep the most of this prompt: a new trajectory of
                // a sample takes the cache of one already prefilled (its images included).
                let own = c.session.reusable_for(&self.model, &input);
                let best = self.convs.iter().filter(|(id, _)| **id != conv).map(|(id, o)| (o.session.reusable_for(&self.model, &input), *id)).max();
                if let Some((_, other)) = best.filter(|b| b.0 > own) {
                    let copy = self.convs[&other].session.clone();
                    if let Some(c) = self.convs.get_mut(&conv) {
                        c.session = copy;
                    }
                }
                let Some(c) = self.convs.get_mut(&conv) else { return };
                match c.session.start(&self.model, &input) {
                    Ok(logits) => {
                        let stream = SampleStream::new(&params, 0);
                        let (prefill_ms, vision_ms) = (c.session.prefill_ms, c.session.vision_ms);
                        let (reused, prefilled) = (c.session.reused_tokens, c.session.prefilled_tokens);
                        self.active.push(Active { conv, stream, logits, reply, cancel, prefill_ms, vision_ms, reused, prefilled });
                    }
                    Err(e) => {
                        let _ = reply.send(Reply::Done(Err(e)));
                    }
                }
            }
        }
    }

    /// Sample one token for every active turn, finish the turns that ended, and feed the rest in
    /// one batched decode step.
    fn step(&mut self) {
        let mut feed: Vec<(usize, u32)> = Vec::new();
        let mut finished: Vec<(usize, Result<(), String>)> = Vec::new();
        for (i, a) in self.active.iter_mut().enumerate() {
            if a.cancel.load(Ordering::Relaxed) {
                a.stream.cancel();
                finished.push((i, Ok(())));
                continue;
            }
            match a.stream.step(&a.logits, Some(&self.shared.tok)) {
                Ok((tok, delta)) => {
                    if !delta.is_empty() {
                        let _ = a.reply.send(Reply::Text(delta));
                    }
                    if a.stream.is_done() {
                        finished.push((i, Ok(())));
                    } else {
                        feed.push((i, tok));
                    }
                }
                Err(e) => finished.push((i, Err(e))),
            }
        }
        if !feed.is_empty() {
            let convs: Vec<usize> = feed.iter().map(|(i, _)| self.active[*i].conv).collect();
            let deltas: Vec<i64> = convs.iter().map(|c| self.convs.get(c).map(|c| c.session.delta()).unwrap_or(0)).collect();
            let mut caches: Vec<(usize, &mut KvCache<B>)> = self
                .convs
                .iter_mut()
                .filter_map(|(id, c)| convs.iter().position(|x| x == id).map(|pos| (pos, c.session.cache_mut())))
                .collect();
            caches.sort_by_key(|x| x.0);
            let mut refs: Vec<&mut KvCache<B>> = caches.into_iter().map(|x| x.1).collect();
            let toks: Vec<u32> = feed.iter().map(|f| f.1).collect();
            if refs.len() != toks.len() {
                for (i, _) in &feed {
                    finished.push((*i, Err("the conversation was closed during generation".into())));
                }
            } else {
                match self.model.decode_rows(&toks, &deltas, &mut refs) {
                    Ok(rows) => {
                        for ((i, _), l) in feed.iter().zip(rows) {
                            self.active[*i].logits = l;
                        }
                        if let Ok(mut s) = self.stats.lock() {
                            s.steps += 1;
                            s.rows += toks.len();
                            s.max_rows = s.max_rows.max(toks.len());
                        }
                    }
                    Err(e) => {
                        for (i, _) in &feed {
                            finished.push((*i, Err(e.clone())));
                        }
                    }
                }
            }
        }
        finished.sort_by_key(|x| std::cmp::Reverse(x.0));
        finished.dedup_by_key(|x| x.0);
        for (i, outcome) in finished {
            let a = self.active.remove(i);
            let (reply, conv) = (a.reply.clone(), a.conv);
            let result = outcome.and_then(|_| self.finish(conv, a));
            let _ = reply.send(Reply::Done(result));
        }
    }

    fn finish(&mut self, conv: usize, a: Active) -> Result<Generated, String> {
        let stream = a.stream;
        let c = self.convs.get_mut(&conv).ok_or("the conversation was closed during generation")?;
        c.session.note_generated(stream.tokens());
        let done = stream.into_completion(Some(&self.shared.tok))?;
        c.last = done.token_ids.clone();
        let finish = match done.finish {
            GenFinish::Eos => FinishReason::Stop,
            GenFinish::Length => FinishReason::Length,
            GenFinish::Cancelled => FinishReason::Cancelled,
            GenFinish::Stop(_) => FinishReason::Rule,
        };
        Ok(Generated {
            text: done.text,
            finish,
            tokens: done.token_ids.len(),
            prefill_ms: Some(a.prefill_ms),
            vision_ms: Some(a.vision_ms),
            prompt_reused: Some(a.reused),
            prompt_prefilled: Some(a.prefilled),
        })
    }
}
