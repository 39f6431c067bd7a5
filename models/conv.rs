//! `conv`: a configurable stack of convolutions followed by fully connected layers, enough for
//! LeNet-5 (LeCun et al. 1998: `channels: [6, 16], kernel: 5, padding: 0, hidden: [120, 84]` on
//! 32x32 inputs) and the 4-conv CIFAR network of Zenke et al. (2017) (`channels: [32, 32, 64, 64],
//! kernel: 3, padding: 1, pool_every: 2, conv_dropout: 0.25, hidden: [512], dropout: 0.5`).
//!
//! Each convolution `conv.i` (stride, padding, bias) is followed by batch norm `bn.i` when
//! `batch_norm`, a ReLU, then, after every `pool_every`-th convolution, `pool`x`pool` max pooling
//! and dropout `conv_dropout`. The maps are flattened into the fully connected layers `fc.i`,
//! each with a ReLU and dropout `dropout`; the framework adds the head.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use clbench::core::registry::{config_from, resolve_with};
use clbench::model::{
    layers::dropout, Backbone, BatchNorm, BuiltBackbone, Conv, Conv2d, Forward, InputShape,
    LayerBuilder, Linear, ModelRegistration,
};
use clbench::core::{ParamSpec, Range};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Output channels of each convolution.
    pub channels: Vec<i64>,
    /// Square kernel size of every convolution.
    pub kernel: i64,
    pub stride: i64,
    /// Zero padding on each side of every convolution.
    pub padding: i64,
    /// Max-pooling window and stride (1: none).
    pub pool: i64,
    /// Pool (and apply `conv_dropout`) after every this-many convolutions.
    pub pool_every: usize,
    /// Batch norm after every convolution.
    pub batch_norm: bool,
    /// Dropout after each pooling.
    pub conv_dropout: f64,
    /// Widths of the fully connected layers after the convolutions.
    pub hidden: Vec<i64>,
    /// Dropout after each fully connected layer.
    pub dropout: f64,
}

impl Default for Config {
    fn default() -> Self {
        // Two 5x5 convolutions with 2x2 pooling and one hidden layer: a small LeNet-like
        // network that trains in seconds per task on 28x28 inputs on a CPU.
        Config {
            channels: vec![32, 64],
            kernel: 5,
            stride: 1,
            padding: 2,
            pool: 2,
            pool_every: 1,
            batch_norm: false,
            conv_dropout: 0.0,
            hidden: vec![256],
            dropout: 0.0,
        }
    }
}

struct Block {
    conv: Conv2d,
    norm: Option<BatchNorm>,
    pool_after: bool,
}

pub struct ConvNet {
    blocks: Vec<Block>,
    pool: i64,
    conv_dropout: f64,
    fc: Vec<Linear>,
    dropout: f64,
}

impl Backbone for ConvNet {
    fn forward(&self, x: &Tensor, f: &mut Forward) -> Tensor {
        let mut h = x.shallow_clone();
        for block in &self.blocks {
            h = block.conv.forward(&h, f);
            if let Some(norm) = &block.norm {
                h = norm.forward(&h, f);
            }
            h = h.relu();
            if block.pool_after {
                if self.pool > 1 {
                    let k = [self.pool, self.pool];
                    h = h.max_pool2d(k, k, [0, 0], [1, 1], false);
                }
                h = dropout(&h, self.conv_dropout, f);
            }
        }
        let n = h.size()[0];
        let mut h = h.view([n, -1]);
        for layer in &self.fc {
            h = dropout(&layer.forward(&h, f).relu(), self.dropout, f);
        }
        h
    }
}

/// The feature maps' (channels, side) after the convolutions, or what is wrong.
fn geometry(config: &Config, input: InputShape) -> Result<(i64, i64, i64), String> {
    if config.channels.is_empty() {
        return Err("channels must list at least one convolution".into());
    }
    if let Some(c) = config.channels.iter().find(|&&c| c < 1) {
        return Err(format!("channels must be at least 1, got {c}"));
    }
    if let Some(w) = config.hidden.iter().find(|&&w| w < 1) {
        return Err(format!("hidden widths must be at least 1, got {w}"));
    }
    if config.kernel < 1 || config.stride < 1 || config.padding < 0 || config.pool < 1 {
        return Err(format!(
            "kernel, stride and pool must be at least 1 and padding at least 0, got kernel {}, \
             stride {}, pool {}, padding {}",
            config.kernel, config.stride, config.pool, config.padding
        ));
    }
    if config.pool_every < 1 {
        return Err("pool_every must be at least 1".into());
    }
    for (name, p) in [("dropout", config.dropout), ("conv_dropout", config.conv_dropout)] {
        if !(0.0..1.0).contains(&p) {
            return Err(format!("{name} must be in [0, 1), got {p}"));
        }
    }
    let (mut h, mut w) = (input.height, input.width);
    for (i, _) in config.channels.iter().enumerate() {
        h = (h + 2 * config.padding - config.kernel) / config.stride + 1;
        w = (w + 2 * config.padding - config.kernel) / config.stride + 1;
        if (i + 1) % config.pool_every == 0 {
            h /= config.pool;
            w /= config.pool;
        }
        if h < 1 || w < 1 {
            return Err(format!(
                "a {}x{} input is used up by convolution {i} (kernel {}, padding {}, stride {}, \
                 pool {}); use fewer convolutions, a smaller kernel or pool, or pad the input",
                input.height, input.width, config.kernel, config.padding, config.stride, config.pool
            ));
        }
    }
    Ok((*config.channels.last().unwrap(), h, w))
}

fn check(params: &serde_json::Value, input: InputShape) -> Result<(), String> {
    let config: Config = config_from(params).map_err(|e| e.to_string())?;
    geometry(&config, input).map(|_| ())
}

fn build(
    params: &serde_json::Value,
    input: InputShape,
    layers: &mut LayerBuilder,
) -> Result<BuiltBackbone> {
    let config: Config = config_from(params)?;
    let (c, h, w) = geometry(&config, input).map_err(anyhow::Error::msg)?;
    let mut blocks = Vec::new();
    let mut in_channels = input.channels;
    for (i, &out) in config.channels.iter().enumerate() {
        let conv = layers.conv2d(
            &format!("conv.{i}"),
            in_channels,
            out,
            Conv {
                kernel: config.kernel,
                stride: config.stride,
                padding: config.padding,
                bias: true,
            },
        );
        let norm = config
            .batch_norm
            .then(|| layers.batch_norm(&format!("bn.{i}"), out));
        blocks.push(Block {
            conv,
            norm,
            pool_after: (i + 1) % config.pool_every == 0,
        });
        in_channels = out;
    }
    let mut fan_in = c * h * w;
    let mut fc = Vec::new();
    for (i, &width) in config.hidden.iter().enumerate() {
        fc.push(layers.linear(&format!("fc.{i}"), fan_in, width));
        fan_in = width;
    }
    Ok(BuiltBackbone {
        backbone: Box::new(ConvNet {
            blocks,
            pool: config.pool,
            conv_dropout: config.conv_dropout,
            fc,
            dropout: config.dropout,
        }),
        features: fan_in,
    })
}

inventory::submit! {
    ModelRegistration {
        name: "conv",
        summary: "configurable conv stack (conv, batch norm, ReLU, max pool, dropout) and fully connected layers",
        paper: "LeCun et al. 1998 (LeNet-5); Zenke et al. 2017 (4-conv CIFAR network)",
        params: &[
            ParamSpec::new("channels", "output channels of each convolution").range(Range::Count),
            ParamSpec::new("kernel", "square kernel size").range(Range::Count),
            ParamSpec::new("stride", "convolution stride").range(Range::Count),
            ParamSpec::new("padding", "zero padding of each convolution").range(Range::non_negative()),
            ParamSpec::new("pool", "max-pooling window and stride (1: none)").range(Range::Count),
            ParamSpec::new("pool_every", "pool after every this-many convolutions").range(Range::Count),
            ParamSpec::new("batch_norm", "batch norm after each convolution"),
            ParamSpec::new("conv_dropout", "dropout after each pooling").range(Range::from_below(0.0, 1.0)),
            ParamSpec::new("hidden", "widths of the fully connected layers").range(Range::Count),
            ParamSpec::new("dropout", "dropout after each fully connected layer").range(Range::from_below(0.0, 1.0)),
        ],
        resolve: resolve_with::<Config>,
        check,
        build,
    }
}
