//! Text generation on a KV cache: greedy or sampled (temperature, top-k, top-p as transformers'
//! warpers apply them, seeded), EOS ids and stop strings, n samples per prompt sharing one
//! prefill and decoded as one batch per step, a per-token streaming callback, cancellation through
//! an `AtomicBool`, and prefix reuse: a [`Session`] keeps its cache and only prefills the part of a
//! new prompt that differs from what the cache holds (same tokens and same images).
//! [`SampleStream`] is one continuation's sampler and stream state, so callers can step many
//! conversations together (the rollout's batching engine does).

use super::qwen::{ModelInput, Qwen25Vl, VisionSpan};
use super::text::KvCache;
use super::tokenizer::QwenTokenizer;
use burn::tensor::backend::Backend;
use std::sync::atomic::{AtomicBool, Ordering};

/// Sampling and stopping settings.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    pub max_new_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    /// 1 = off.
    pub top_p: f32,
    /// 0 = off.
    pub top_k: usize,
    pub seed: u64,
    /// Samples per prompt (sample i uses seed + i).
    pub n: usize,
    pub stop_strings: Vec<String>,
    /// Generation ends after emitting one of these (the id is kept in `token_ids`).
    pub eos_token_ids: Vec<u32>,
    /// Keep every step's raw logits in the completion (tests).
    pub record_logits: bool,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            max_new_tokens: 256,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            n: 1,
            stop_strings: Vec::new(),
            eos_token_ids: Vec::new(),
            record_logits: false,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!("temperature must be a finite number ≥ 0, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p must be in (0, 1], got {}", self.top_p));
        }
        if self.n == 0 {
            return Err("n must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Eos,
    Stop(String),
    Length,
    Cancelled,
}

/// One generated continuation.
#[derive(Clone, Debug)]
pub struct Completion {
    pub token_ids: Vec<u32>,
    /// Decoded with special tokens skipped, cut before a matched stop string.
    pub text: String,
    pub finish: FinishReason,
    pub step_logits: Vec<Vec<f32>>,
}

/// What the streaming callback sees after each token.
pub struct TokenEvent<'a> {
    pub sample: usize,
    pub token: u32,
    /// New text since the previous event (empty while a UTF-8 sequence is incomplete).
    pub text_delta: &'a str,
}

/// SplitMix64: small, seedable, reproducible everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The first index of the maximum (torch `argmax`); NaN never wins.
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Pick the next token: greedy at temperature 0, else temperature → top-k → top-p → sample.
pub fn sample(logits: &[f32], p: &SamplingParams, rng: &mut Rng) -> usize {
    if p.temperature == 0.0 || logits.len() < 2 {
        return argmax(logits);
    }
    let scaled: Vec<f64> = logits.iter().map(|&l| l as f64 / p.temperature as f64).collect();
    let mut order: Vec<usize> = (0..scaled.len()).filter(|&i| !scaled[i].is_nan()).collect();
    order.sort_by(|&a, &b| scaled[b].partial_cmp(&scaled[a]).unwrap_or(std::cmp::Ordering::Equal));
    if order.is_empty() {
        return 0;
    }
    // top-k keeps every token at least as large as the k-th (ties included).
    if p.top_k > 0 && p.top_k < order.len() {
        let kth = scaled[order[p.top_k - 1]];
        order.retain(|&i| scaled[i] >= kth);
    }
    let max = scaled[order[0]];
    let mut probs: Vec<f64> = order.iter().map(|&i| (scaled[i] - max).exp()).collect();
    let z: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|x| *x /= z);
    // top-p: drop the tail whose cumulative mass (from the smallest) is ≤ 1 - top_p; keep ≥ 1.
    if p.top_p < 1.0 {
        let mut tail = 0.0;
        let mut keep = probs.len();
        for k in (1..probs.len()).rev() {
            tail += probs[k];
            if tail <= 1.0 - p.top_p as f64 {
                keep = k;
            } else {
                break;
            }
        }
        order.truncate(keep);
        probs.truncate(keep);
        let z: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= z);
    }
    let u = rng.next_f64();
    let mut acc = 0.0;
    for (k, &pr) in probs.iter().enumerate() {
        acc += pr;
        if u < acc {
            return order[k];
        }
    }
    *order.last().unwrap()
}

/// The sampler, stop-string and streaming state of one continuation, fed one step's logits at a
/// time. Several of them step together when samples are decoded as a batch.
pub struct SampleStream {
    params: SamplingParams,
    rng: Rng,
    /// Which sample of the prompt this is (the streaming callback's `sample`).
    pub sample: usize,
    ids: Vec<u32>,
    step_logits: Vec<Vec<f32>>,
    /// Text already streamed. While stop strings are set, the last (longest stop − 1) bytes are
    /// held back so a stop string is never streamed.
    sent: String,
    hold: usize,
    finish: FinishReason,
    stop_cut: Option<usize>,
    done: bool,
}

impl SampleStream {
    /// Sample `sample` of a prompt, drawing from seed `params.seed + sample`.
    pub fn new(params: &SamplingParams, sample: usize) -> Self {
        let hold = params.stop_strings.iter().map(|s| s.len()).max().unwrap_or(1).saturating_sub(1);
        SampleStream {
            params: params.clone(),
            rng: Rng::new(params.seed.wrapping_add(sample as u64)),
            sample,
            ids: Vec::new(),
            step_logits: Vec::new(),
            sent: String::new(),
            hold,
            finish: FinishReason::Length,
            stop_cut: None,
            done: params.max_new_tokens == 0,
        }
    }

    /// Finished: the last token must not be fed to the model.
    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn tokens(&self) -> &[u32] {
        &self.ids
    }

    /// End now (the user stopped the run).
    pub fn cancel(&mut self) {
        if !self.done {
            self.finish = FinishReason::Cancelled;
            self.done = true;
        }
    }

    /// Pick the next token from `logits`; returns it with the new text to stream (empty while a
    /// UTF-8 sequence is incomplete or text is held back for the stop strings).
    pub fn step(&mut self, logits: &[f32], tokenizer: Option<&QwenTokenizer>) -> Result<(u32, String), String> {
        if self.done {
            return Err("step on a finished sample".into());
        }
        let p = &self.params;
        if p.record_logits {
            self.step_logits.push(logits.to_vec());
        }
        let tok = sample(logits, p, &mut self.rng) as u32;
        self.ids.push(tok);
        if p.eos_token_ids.contains(&tok) {
            self.finish = FinishReason::Eos;
            self.done = true;
        }
        let mut delta_text = String::new();
        if let Some(t) = tokenizer {
            let text = t.decode(&self.ids, true)?;
            if !self.done {
                if let Some((s, pos)) = p.stop_strings.iter().filter_map(|s| text.find(s.as_str()).map(|q| (s, q))).min_by_key(|x| x.1) {
                    self.finish = FinishReason::Stop(s.clone());
                    self.stop_cut = Some(pos);
                    self.done = true;
                }
            }
            let last = self.done || self.ids.len() >= p.max_new_tokens;
            let complete = !text.ends_with('\u{FFFD}') || last;
            if complete && text.starts_with(self.sent.as_str()) {
                let mut limit = match self.stop_cut {
                    Some(q) => q,
                    None if last => text.len(),
                    None => text.len().saturating_sub(self.hold),
                };
                while limit > self.sent.len() && !text.is_char_boundary(limit) {
                    limit -= 1;
                }
                if limit > self.sent.len() {
                    delta_text = text[self.sent.len()..limit].to_string();
                    self.sent.push_str(&delta_text);
                }
            }
        }
        if self.ids.len() >= p.max_new_tokens {
            self.done = true;
        }
        Ok((tok, delta_text))
    }

    /// The completion (text decoded with special tokens skipped, cut before a stop string).
    pub fn into_completion(self, tokenizer: Option<&QwenTokenizer>) -> Result<Completion, String> {
        let mut text = match tokenizer {
            Some(t) => t.decode(&self.ids, true)?,
            None => String::new(),
        };
        if let Some(p) = self.stop_cut {
            text.truncate(p);
        }
        Ok(Completion { token_ids: self.ids, text, finish: self.finish, step_logits: self.step_logits })
    }
}

/// A conversation's KV cache and what it holds, reused across calls.
pub struct Session<B: Backend> {
    cache: KvCache<B>,
    ids: Vec<u32>,
    spans: Vec<VisionSpan>,
    delta: i64,
    /// Prompt tokens taken from the cache in the last call (not prefilled again).
    pub reused_tokens: usize,
    /// Prompt tokens prefilled in the last call.
    pub prefilled_tokens: usize,
    /// Wall time of the last prefill, and of the vision tower within it.
    pub prefill_ms: f64,
    pub vision_ms: f64,
}

impl<B: Backend> Clone for Session<B> {
    fn clone(&self) -> Self {
        Session {
            cache: self.cache.clone(),
            ids: self.ids.clone(),
            spans: self.spans.clone(),
            delta: self.delta,
            reused_tokens: self.reused_tokens,
            prefilled_tokens: self.prefilled_tokens,
            prefill_ms: self.prefill_ms,
            vision_ms: self.vision_ms,
        }
    }
}

impl<B: Backend> Session<B> {
    pub fn new(model: &Qwen25Vl<B>) -> Self {
        Session {
            cache: KvCache::new(model.cfg.text.num_hidden_layers),
            ids: Vec::new(),
            spans: Vec::new(),
            delta: 0,
            reused_tokens: 0,
            prefilled_tokens: 0,
            prefill_ms: 0.0,
            vision_ms: 0.0,
        }
    }

    /// Forget the cache.
    pub fn reset(&mut self) {
        self.cache.truncate(0);
        self.ids.clear();
        self.spans.clear();
    }

    /// How many leading tokens of `input` the cache can keep: the common token prefix, not
    /// ending inside an image, with every image in it identical, and at least one token left.
    fn reusable(&self, input: &ModelInput, spans: &[VisionSpan]) -> usize {
        let mut common = self.ids.iter().zip(&input.ids).take_while(|(a, b)| a == b).count().min(self.cache.len);
        common = common.min(input.ids.len().saturating_sub(1));
        for s in spans {
            if s.start < common {
                let same = self.spans.iter().any(|c| c.video == s.video && c.start == s.start && c.len == s.len && c.fingerprint == s.fingerprint);
                if !same || s.start + s.len > common {
                    common = s.start;
                }
            }
        }
        common
    }

    /// Tokens of `input` this session's cache could keep (used to pick the best session to fork
    /// a new conversation from).
    pub fn reusable_for(&self, model: &Qwen25Vl<B>, input: &ModelInput) -> usize {
        model.vision_spans(input).map(|spans| self.reusable(input, &spans)).unwrap_or(0)
    }

    /// Prefill what the cache lacks of `input` and return the logits of its last position. The
    /// cache then holds the whole prompt; continue with [`Session::cache_mut`] and `delta`.
    pub fn start(&mut self, model: &Qwen25Vl<B>, input: &ModelInput) -> Result<Vec<f32>, String> {
        if input.ids.is_empty() {
            return Err("the prompt is empty".into());
        }
        let t0 = std::time::Instant::now();
        let spans = model.vision_spans(input)?;
        let keep = self.reusable(input, &spans);
        self.cache.truncate(keep);
        self.ids.truncate(keep);
        let (out, delta) = match model.prefill(input, &mut self.cache, false, false) {
            Ok(x) => x,
            Err(e) => {
                self.reset();
                return Err(e);
            }
        };
        self.reused_tokens = keep;
        self.prefilled_tokens = input.ids.len() - keep;
        self.ids = input.ids.clone();
        self.spans = spans;
        self.delta = delta;
        self.prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
        self.vision_ms = out.vision_ms;
        Ok(out.logits)
    }

    /// The rope delta of the prompt last started.
    pub fn delta(&self) -> i64 {
        self.delta
    }

    pub fn cache_mut(&mut self) -> &mut KvCache<B> {
        &mut self.cache
    }

    /// After a continuation of the last started prompt was decoded on this session's cache:
    /// record the generated tokens the cache now holds (all that were fed, i.e. all but the last).
    pub fn note_generated(&mut self, tokens: &[u32]) {
        let fed = self.cache.len.saturating_sub(self.ids.len()).min(tokens.len());
        self.ids.extend_from_slice(&tokens[..fed]);
    }

    /// Generate `params.n` continuations of `input`. The n samples share one prefill and are
    /// decoded together, one batched step per token (row 0 on this session's cache, which keeps
    /// it for the next call).
    pub fn generate(
        &mut self,
        model: &Qwen25Vl<B>,
        tokenizer: Option<&QwenTokenizer>,
        input: &ModelInput,
        params: &SamplingParams,
        on_token: &mut dyn FnMut(TokenEvent),
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<Completion>, String> {
        params.validate()?;
        if input.ids.is_empty() {
            return Err("the prompt is empty".into());
        }
        if !params.stop_strings.is_empty() && tokenizer.is_none() {
            return Err("stop strings need a tokenizer".into());
        }
        let first_logits = self.start(model, input)?;
        let delta = self.delta;
        let n = params.n;
        let mut streams: Vec<SampleStream> = (0..n).map(|i| SampleStream::new(params, i)).collect();
        let mut others: Vec<KvCache<B>> = (1..n).map(|_| self.cache.clone()).collect();
        let mut logits: Vec<Vec<f32>> = vec![first_logits; n];
        loop {
            let stop = cancel.is_some_and(|c| c.load(Ordering::Relaxed));
            let mut feed: Vec<(usize, u32)> = Vec::new();
            for (i, s) in streams.iter_mut().enumerate() {
                if s.is_done() {
                    continue;
                }
                if stop {
                    s.cancel();
                    continue;
                }
                let (tok, delta_text) = s.step(&logits[i], tokenizer)?;
                on_token(TokenEvent { sample: i, token: tok, text_delta: &delta_text });
                if !s.is_done() {
                    feed.push((i, tok));
                }
            }
            if feed.is_empty() {
                break;
            }
            let all = std::iter::once(&mut self.cache).chain(others.iter_mut());
            let mut caches: Vec<&mut KvCache<B>> = all.enumerate().filter(|(i, _)| feed.iter().any(|f| f.0 == *i)).map(|(_, c)| c).collect();
            let toks: Vec<u32> = feed.iter().map(|f| f.1).collect();
            let rows = model.decode_rows(&toks, &vec![delta; toks.len()], &mut caches)?;
            for ((i, _), l) in feed.iter().zip(rows) {
                logits[*i] = l;
            }
        }
        self.note_generated(streams[0].tokens());
        streams.into_iter().map(|s| s.into_completion(tokenizer)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_top_k_and_top_p() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let mut rng = Rng::new(1);
        assert_eq!(sample(&logits, &SamplingParams::default(), &mut rng), 1);
        let p = SamplingParams { temperature: 1.0, top_k: 1, ..Default::default() };
        for _ in 0..20 {
            let t = sample(&logits, &p, &mut rng);
            assert!(t == 1 || t == 3, "top-k 1 keeps the tied maxima only");
        }
        let p = SamplingParams { temperature: 0.7, top_p: 0.01, ..Default::default() };
        for _ in 0..20 {
            assert!(matches!(sample(&logits, &p, &mut rng), 1 | 3));
        }
        // Full sampling visits the low-probability tokens sometimes and is reproducible.
        let p = SamplingParams { temperature: 2.0, ..Default::default() };
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..200).map(|_| sample(&logits, &p, &mut r)).collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert!(a.contains(&0) && a.contains(&2));
        assert!(SamplingParams { top_p: 0.0, ..Default::default() }.validate().is_err());
        assert!(SamplingParams { temperature: -1.0, ..Default::default() }.validate().is_err());
    }
}
