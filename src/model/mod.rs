//! The model layer (burn only here): Qwen2.5-VL in burn with numerical parity to Hugging Face
//! transformers — configuration, the vision tower and language model, M-RoPE bookkeeping,
//! checkpoint loading, tokenizer and chat template, preprocessing, and generation — plus runtime
//! device selection (CUDA when present, else the CPU `flex` backend).

pub mod config;
pub mod device;
pub mod generate;
pub mod host_decoder;
pub mod host_kernels;
pub mod host_vision;
pub mod layers;
pub mod loader;
pub mod preprocess;
pub mod qwen;
pub mod rope;
pub mod runner;
pub mod text;
pub mod tokenizer;
pub mod vision;
