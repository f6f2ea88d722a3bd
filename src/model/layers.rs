//! Building blocks shared by both towers: RMSNorm (computed in f32 like `Qwen2RMSNorm`), the
//! SwiGLU MLP, rotary application (`rotate_half`), f32 softmax, and host↔device tensor helpers.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

/// `Qwen2RMSNorm`: `weight * (x / sqrt(mean(x²) + eps))`, the normalisation in f32.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
}

impl<B: Backend> RmsNorm<B> {
    pub fn new(dim: usize, device: &B::Device) -> Self {
        RmsNorm { weight: Initializer::Ones.init([dim], device) }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
        let dtype = x.dtype();
        let xf = x.cast(DType::F32);
        let var = xf.clone().powi_scalar(2).mean_dim(D - 1);
        let normed = xf.div(var.add_scalar(eps).sqrt()).cast(dtype);
        let w = self.weight.val().cast(dtype);
        let mut shape = [1usize; D];
        shape[D - 1] = w.dims()[0];
        normed.mul(w.reshape(shape))
    }
}

/// SwiGLU: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    pub fn new(hidden: usize, inter: usize, bias: bool, device: &B::Device) -> Self {
        Mlp {
            gate_proj: linear(hidden, inter, bias, device),
            up_proj: linear(hidden, inter, bias, device),
            down_proj: linear(inter, hidden, bias, device),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let g = activation::silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(g.mul(self.up_proj.forward(x)))
    }
}

/// A `Linear` stored as burn does (`[in, out]`; the loader transposes PyTorch weights).
pub fn linear<B: Backend>(d_in: usize, d_out: usize, bias: bool, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_in, d_out).with_bias(bias).init(device)
}

/// `rotate_half`: `cat(-x[..., d/2:], x[..., :d/2])` on the last dimension.
pub fn rotate_half<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let d = x.dims()[D - 1];
    let x1 = x.clone().narrow(D - 1, 0, d / 2);
    let x2 = x.narrow(D - 1, d / 2, d - d / 2);
    Tensor::cat(vec![x2.neg(), x1], D - 1)
}

/// `x * cos + rotate_half(x) * sin` (cos/sin broadcast over heads), in f32.
pub fn apply_rotary<B: Backend>(x: Tensor<B, 3>, cos: &Tensor<B, 3>, sin: &Tensor<B, 3>) -> Tensor<B, 3> {
    let dtype = x.dtype();
    let xf = x.cast(DType::F32);
    let r = rotate_half(xf.clone());
    xf.mul(cos.clone()).add(r.mul(sin.clone())).cast(dtype)
}

/// Softmax over the last dimension in f32, cast back to the input dtype.
pub fn softmax_f32<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let dtype = x.dtype();
    activation::softmax(x.cast(DType::F32), D - 1).cast(dtype)
}

/// A float tensor from host values.
pub fn tensor<B: Backend, const D: usize>(values: Vec<f32>, shape: [usize; D], device: &B::Device, dtype: DType) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(values, shape), (device, dtype))
}

/// An int tensor of indices from host values.
pub fn index_tensor<B: Backend>(values: &[usize], device: &B::Device) -> Tensor<B, 1, burn::tensor::Int> {
    let v: Vec<i64> = values.iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(v, [values.len()]), device)
}

/// Host copy of a float tensor as f32.
pub fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.cast(DType::F32).into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()
}
