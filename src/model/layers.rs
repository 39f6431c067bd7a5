//! The layers a backbone is made of, initialised from the job's RNG, and the records a forward
//! pass leaves for the per-sample Fisher and MAS.
//!
//! A layer's `forward` takes a [`Forward`]: whether the network is training (dropout, batch
//! statistics) and, for the Fisher pass, a list into which every parametrised layer pushes a
//! [`Record`] of its input and output. The records are what BackPACK's extensions collect: with
//! the gradient of a summed loss with respect to each recorded output (one backward pass), each
//! layer kind computes exact per-sample gradients of its own parameters (see `fisher::layer`).
//!
//! Initialisation follows PyTorch's defaults (`nn.Linear`, `nn.Conv2d`: weights and biases
//! U(-1/sqrt(fan_in), 1/sqrt(fan_in)); `nn.BatchNorm2d`: weight 1, bias 0) but draws from the
//! job's own ChaCha stream: libtorch's global generator is shared by the worker threads, so
//! parallel jobs would stop being reproducible.

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tch::{nn, Tensor};

/// Multiplicative gates on the output units of hidden layers, by layer name (`trunk.0`,
/// `conv.1`): a Float [units] tensor per gated layer (a linear layer's units, a convolution's
/// channels), which may carry a graph to a method's own parameters (HAT's task embeddings).
/// A layer without an entry is not gated; the head never is.
pub type UnitGates = BTreeMap<String, Tensor>;

/// What a recorded layer is, with what its per-sample gradients need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// `y = x W^T + b`, input [n, in].
    Linear,
    /// A 2-d convolution (groups 1), input [n, c, h, w].
    Conv2d {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
        dilation: [i64; 2],
    },
    /// A per-channel affine map `y = xhat * gamma + beta` (batch norm in eval mode, where `xhat`
    /// is the input normalised by the running statistics); input (`xhat`) [n, c, ...].
    ChannelAffine,
}

/// One parametrised layer's part of a recorded forward pass.
pub struct Record {
    pub kind: LayerKind,
    /// The VarStore names of the layer's weight and bias, e.g. `trunk.0.weight`.
    pub weight: String,
    pub bias: Option<String>,
    /// The layer's input (for batch norm: the normalised input), detached.
    pub input: Tensor,
    /// The layer's output, still in the graph (gradients are taken with respect to it).
    pub output: Tensor,
}

/// The mode of one forward pass, and where recorded layers go.
pub struct Forward<'a> {
    /// Training mode: dropout active, batch norm on batch statistics (and updating its running
    /// ones). The Fisher and evaluation run with `false`.
    pub train: bool,
    /// Dropout's masks come from the job's stream (libtorch's generator is shared by threads).
    rng: Option<&'a mut ChaCha8Rng>,
    records: Option<&'a mut Vec<Record>>,
    /// The gates this pass multiplies hidden layers' outputs by; set by [`crate::model::Net`]
    /// from the gates a strategy gave it, so model plugins never see them.
    pub(crate) gates: Option<UnitGates>,
}

impl<'a> Forward<'a> {
    /// An eval-mode pass: no dropout, batch norm on its running statistics.
    pub fn eval() -> Forward<'static> {
        Forward {
            train: false,
            rng: None,
            records: None,
            gates: None,
        }
    }

    /// A training-mode pass whose dropout masks are drawn from `rng`.
    pub fn train(rng: &'a mut ChaCha8Rng) -> Forward<'a> {
        Forward {
            train: true,
            rng: Some(rng),
            records: None,
            gates: None,
        }
    }

    /// An eval-mode pass that records every parametrised layer into `records`.
    pub fn recording(records: &'a mut Vec<Record>) -> Forward<'a> {
        Forward {
            train: false,
            rng: None,
            records: Some(records),
            gates: None,
        }
    }

    fn record(&mut self, record: impl FnOnce() -> Record) {
        if let Some(records) = self.records.as_mut() {
            records.push(record());
        }
    }

    /// `y` times the gate of layer `name` over dimension 1 (units or channels), or `y` itself
    /// when the layer is not gated. The gate multiplies the layer's output before its
    /// activation, pooling and dropout: for a gate in [0, 1] and ReLU, max pooling and dropout
    /// after it, that equals gating after them (HAT gates `drop(relu(fc(h)))`).
    fn gate(&self, name: &str, y: Tensor) -> Tensor {
        match self.gates.as_ref().and_then(|g| g.get(name)) {
            None => y,
            Some(gate) => {
                let mut shape = vec![1i64; y.dim()];
                shape[1] = -1;
                y * gate.view(shape.as_slice())
            }
        }
    }
}

/// What a hidden layer's output units are, for methods that gate or condition them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitLayer {
    /// The layer's name (`trunk.0`); its parameters are `{name}.weight` and `{name}.bias`.
    pub name: String,
    /// Output units: a linear layer's outputs, a convolution's channels.
    pub units: i64,
    /// Input features (linear) or channels (convolution).
    pub inputs: i64,
    /// Whether it is a convolution (weight [out, in, kh, kw]) rather than a linear layer.
    pub conv: bool,
}

/// Creates layers under a VarStore path, drawing their initial values from the job's RNG, and
/// keeps the names of the trainable parameters and of the buffers it made.
pub struct LayerBuilder<'a> {
    root: nn::Path<'a>,
    rng: &'a mut ChaCha8Rng,
    pub(crate) params: Vec<String>,
    pub(crate) buffers: Vec<String>,
    /// The linear and convolution layers in the order they were built (the head last).
    pub(crate) layers: Vec<UnitLayer>,
    /// How [`linear`](Self::linear) initialises; the head is built after the backbone with
    /// the same builder, so a backbone's choice covers the head too.
    init: LinearInit,
}

/// The initialisation of linear layers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearInit {
    /// PyTorch's `nn.Linear` default: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    #[default]
    Pytorch,
    /// Xavier-uniform weights, U(-sqrt(6/(fan_in+fan_out)), +), and zero biases (Mammoth's
    /// `MNISTMLP.reset_parameters`).
    Xavier,
}

impl<'a> LayerBuilder<'a> {
    pub(crate) fn new(root: nn::Path<'a>, rng: &'a mut ChaCha8Rng) -> LayerBuilder<'a> {
        LayerBuilder {
            root,
            rng,
            params: Vec::new(),
            buffers: Vec::new(),
            layers: Vec::new(),
            init: LinearInit::Pytorch,
        }
    }

    fn path(&self, name: &str) -> nn::Path<'a> {
        name.split('.').fold(self.root.clone(), |p, c| p / c)
    }

    /// U(-bound, bound) values of `shape`, drawn in row-major order.
    ///
    /// A tensor whose values cannot be allocated panics with the shape, which the runner reports
    /// as the job's failure (a plain allocation failure would abort the whole process instead).
    fn uniform(&mut self, shape: &[i64], bound: f64) -> Tensor {
        let n = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?));
        let mut values: Vec<f32> = Vec::new();
        if n.is_none_or(|n| values.try_reserve_exact(n).is_err()) {
            panic!(
                "a layer's parameter of shape {shape:?} does not fit in memory; make the model smaller"
            );
        }
        values.extend((0..n.unwrap_or(0)).map(|_| self.rng.gen_range(-bound..bound) as f32));
        Tensor::from_slice(&values).view(shape)
    }

    fn param(&mut self, path: &nn::Path, prefix: &str, name: &str, value: &Tensor) -> Tensor {
        self.params.push(format!("{prefix}.{name}"));
        path.var_copy(name, value)
    }

    /// A free parameter `name` (e.g. `scale.weight`) with initial value `init`, for layers this
    /// module does not provide. The Fisher and MAS estimate it with the per-sample loop (slow but
    /// exact), since no record describes how it enters the output.
    pub fn parameter(&mut self, name: &str, init: &Tensor) -> Tensor {
        let (prefix, last) = name.rsplit_once('.').unwrap_or(("", name));
        let p = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path(prefix)
        };
        self.params.push(name.to_string());
        p.var_copy(last, init)
    }

    /// Sets how the linear layers built from now on (the head included) are initialised.
    pub fn set_linear_init(&mut self, init: LinearInit) {
        self.init = init;
    }

    /// Uniform U(-bound, bound) values drawn from the job's stream, for [`parameter`](Self::parameter).
    pub fn uniform_values(&mut self, shape: &[i64], bound: f64) -> Tensor {
        self.uniform(shape, bound)
    }

    /// A linear layer `fan_in -> fan_out` named `name` (e.g. `trunk.0`); weight first, then
    /// bias, as PyTorch draws them.
    pub fn linear(&mut self, name: &str, fan_in: i64, fan_out: i64) -> Linear {
        self.layers.push(UnitLayer {
            name: name.to_string(),
            units: fan_out,
            inputs: fan_in,
            conv: false,
        });
        let p = self.path(name);
        let (w, b) = match self.init {
            LinearInit::Pytorch => {
                let bound = 1.0 / (fan_in as f64).sqrt();
                let w = self.uniform(&[fan_out, fan_in], bound);
                (w, self.uniform(&[fan_out], bound))
            }
            LinearInit::Xavier => {
                let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
                let w = self.uniform(&[fan_out, fan_in], bound);
                (
                    w,
                    Tensor::zeros([fan_out], (tch::Kind::Float, tch::Device::Cpu)),
                )
            }
        };
        Linear {
            weight: self.param(&p, name, "weight", &w),
            bias: self.param(&p, name, "bias", &b),
            name: name.to_string(),
        }
    }

    /// A 2-d convolution `in_channels -> out_channels` of the given geometry.
    pub fn conv2d(&mut self, name: &str, in_channels: i64, out_channels: i64, c: Conv) -> Conv2d {
        let Conv {
            kernel,
            stride,
            padding,
            bias,
        } = c;
        self.layers.push(UnitLayer {
            name: name.to_string(),
            units: out_channels,
            inputs: in_channels,
            conv: true,
        });
        let fan_in = in_channels * kernel * kernel;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let p = self.path(name);
        let w = self.uniform(&[out_channels, in_channels, kernel, kernel], bound);
        let weight = self.param(&p, name, "weight", &w);
        let bias = bias.then(|| {
            let b = self.uniform(&[out_channels], bound);
            self.param(&p, name, "bias", &b)
        });
        Conv2d {
            weight,
            bias,
            name: name.to_string(),
            kind: LayerKind::Conv2d {
                kernel: [kernel, kernel],
                stride: [stride, stride],
                padding: [padding, padding],
                dilation: [1, 1],
            },
        }
    }

    /// Batch normalisation over `channels` (PyTorch's defaults: momentum 0.1, eps 1e-5).
    pub fn batch_norm(&mut self, name: &str, channels: i64) -> BatchNorm {
        let p = self.path(name);
        let weight = self.param(
            &p,
            name,
            "weight",
            &Tensor::ones([channels], tch::kind::FLOAT_CPU),
        );
        let bias = self.param(
            &p,
            name,
            "bias",
            &Tensor::zeros([channels], tch::kind::FLOAT_CPU),
        );
        self.buffers.push(format!("{name}.running_mean"));
        self.buffers.push(format!("{name}.running_var"));
        BatchNorm {
            weight,
            bias,
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
            name: name.to_string(),
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

/// A square convolution's geometry, for [`LayerBuilder::conv2d`].
#[derive(Debug, Clone, Copy)]
pub struct Conv {
    pub kernel: i64,
    pub stride: i64,
    /// Zero padding on each side.
    pub padding: i64,
    pub bias: bool,
}

/// One linear layer, its weight [out, in] and bias [out].
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
    /// VarStore path prefix, e.g. `trunk.0`.
    pub name: String,
}

impl Linear {
    /// `x W^T + b` for x [n, in].
    pub fn forward(&self, x: &Tensor, f: &mut Forward) -> Tensor {
        let y = x.linear(&self.weight, Some(&self.bias));
        f.record(|| Record {
            kind: LayerKind::Linear,
            weight: format!("{}.weight", self.name),
            bias: Some(format!("{}.bias", self.name)),
            input: x.detach(),
            output: y.shallow_clone(),
        });
        f.gate(&self.name, y)
    }
}

/// A 2-d convolution, weight [out, in, k, k], optional bias [out].
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub name: String,
    kind: LayerKind,
}

impl Conv2d {
    pub fn forward(&self, x: &Tensor, f: &mut Forward) -> Tensor {
        let LayerKind::Conv2d {
            stride,
            padding,
            dilation,
            ..
        } = self.kind
        else {
            unreachable!("a Conv2d is built with its geometry")
        };
        let y = x.conv2d(
            &self.weight,
            self.bias.as_ref(),
            stride,
            padding,
            dilation,
            1,
        );
        f.record(|| Record {
            kind: self.kind,
            weight: format!("{}.weight", self.name),
            bias: self.bias.as_ref().map(|_| format!("{}.bias", self.name)),
            input: x.detach(),
            output: y.shallow_clone(),
        });
        f.gate(&self.name, y)
    }
}

/// Batch normalisation over the channels (dim 1) of [n, c, ...], with running statistics as
/// buffers (saved in checkpoints, not trained).
#[derive(Debug)]
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub name: String,
    momentum: f64,
    eps: f64,
}

impl BatchNorm {
    pub fn forward(&self, x: &Tensor, f: &mut Forward) -> Tensor {
        if f.records.is_none() {
            return x.batch_norm(
                Some(&self.weight),
                Some(&self.bias),
                Some(&self.running_mean),
                Some(&self.running_var),
                f.train,
                self.momentum,
                self.eps,
                false,
            );
        }
        // Recording (always eval mode): the layer is the per-channel affine map of the input
        // normalised by the running statistics, whose per-sample gradients are exact.
        let shape: Vec<i64> = (0..x.dim()).map(|d| if d == 1 { -1 } else { 1 }).collect();
        // xhat stays in the graph, so earlier layers still get their gradients.
        let xhat = (x - self.running_mean.view(shape.as_slice()))
            / (&self.running_var + self.eps).sqrt().view(shape.as_slice());
        let y = &xhat * self.weight.view(shape.as_slice()) + self.bias.view(shape.as_slice());
        f.record(|| Record {
            kind: LayerKind::ChannelAffine,
            weight: format!("{}.weight", self.name),
            bias: Some(format!("{}.bias", self.name)),
            input: xhat.detach(),
            output: y.shallow_clone(),
        });
        y
    }
}

/// Inverted dropout with drop probability `p`, active only in training mode; the mask is drawn
/// on the host from the job's stream, so a seed gives the same masks on every run.
pub fn dropout(x: &Tensor, p: f64, f: &mut Forward) -> Tensor {
    if !f.train || p <= 0.0 {
        return x.shallow_clone();
    }
    let rng = f
        .rng
        .as_mut()
        .expect("a training-mode forward pass carries the job's RNG");
    let keep = (1.0 - p) as f32;
    let scale = 1.0 / keep;
    let mask: Vec<f32> = (0..x.numel())
        .map(|_| if rng.gen::<f32>() < keep { scale } else { 0.0 })
        .collect();
    x * Tensor::from_slice(&mask)
        .view(x.size().as_slice())
        .to_device(x.device())
}
