//! The model layer (burn only here): Qwen2.5-VL towers, weight loading, tokenizer and generation
//! land here with the model issue. Today it holds runtime device selection, which every later
//! part of the layer uses.

pub mod device;
