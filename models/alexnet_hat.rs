//! `alexnet_hat`: the AlexNet-like network of HAT (Serrà et al. 2018, "Overcoming catastrophic
//! forgetting with hard attention to the task", ICML), as in joansj/hat `src/networks/alexnet.py`.
//!
//! For inputs of side `size`: conv 64 (kernel size/8), conv 128 (kernel size/10), conv 256
//! (kernel 2), each followed by a ReLU, dropout (0.2, 0.2, 0.5) and 2x2 max pooling (in that
//! order, as the reference code), then two fully connected layers of `fc` units (2048) with ReLU
//! and dropout 0.5. The framework's heads replace the reference's per-task `last` layers.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use clbench::core::registry::{config_from, resolve_with};
use clbench::model::{
    layers::dropout, Backbone, BuiltBackbone, Conv, Conv2d, Forward, InputShape, LayerBuilder, Linear,
    ModelRegistration,
};
use clbench::core::{ParamSpec, Range};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Width of the two fully connected layers.
    pub fc: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config { fc: 2048 }
    }
}

pub struct AlexNetHat {
    convs: [Conv2d; 3],
    fcs: [Linear; 2],
}

/// Dropout after each convolution, as the reference code's drop1, drop1, drop2.
const CONV_DROPOUT: [f64; 3] = [0.2, 0.2, 0.5];
const FC_DROPOUT: f64 = 0.5;

impl Backbone for AlexNetHat {
    fn forward(&self, x: &Tensor, f: &mut Forward) -> Tensor {
        let mut h = x.shallow_clone();
        for (conv, p) in self.convs.iter().zip(CONV_DROPOUT) {
            h = dropout(&conv.forward(&h, f).relu(), p, f).max_pool2d(
                [2, 2],
                [2, 2],
                [0, 0],
                [1, 1],
                false,
            );
        }
        let n = h.size()[0];
        let mut h = h.view([n, -1]);
        for fc in &self.fcs {
            h = dropout(&fc.forward(&h, f).relu(), FC_DROPOUT, f);
        }
        h
    }
}

/// Kernel sizes and the side of the last feature maps, or what is wrong.
fn geometry(config: &Config, input: InputShape) -> Result<([i64; 3], i64), String> {
    if config.fc < 1 {
        return Err(format!("fc must be at least 1, got {}", config.fc));
    }
    if input.height != input.width {
        return Err(format!(
            "alexnet_hat needs square inputs, got {}x{}",
            input.height, input.width
        ));
    }
    let size = input.height;
    let kernels = [size / 8, size / 10, 2];
    let mut s = size;
    for k in kernels {
        s = (s - k + 1) / 2;
        if k < 1 || s < 1 {
            return Err(format!(
                "alexnet_hat needs inputs of at least 20x20 (its kernels are size/8 and \
                 size/10), got {size}x{size}; pad the input (transforms.pad)"
            ));
        }
    }
    Ok((kernels, s))
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
    let (kernels, s) = geometry(&config, input).map_err(anyhow::Error::msg)?;
    let widths = [64, 128, 256];
    let mut in_channels = input.channels;
    let convs = [0, 1, 2].map(|i| {
        let conv = layers.conv2d(
            &format!("conv{}", i + 1),
            in_channels,
            widths[i],
            Conv {
                kernel: kernels[i],
                stride: 1,
                padding: 0,
                bias: true,
            },
        );
        in_channels = widths[i];
        conv
    });
    let fcs = [
        layers.linear("fc1", 256 * s * s, config.fc),
        layers.linear("fc2", config.fc, config.fc),
    ];
    Ok(BuiltBackbone {
        backbone: Box::new(AlexNetHat { convs, fcs }),
        features: config.fc,
    })
}

inventory::submit! {
    ModelRegistration {
        name: "alexnet_hat",
        summary: "HAT's AlexNet-like network: conv 64/128/256, max pool, dropout 0.2/0.5, fc 2048-2048",
        paper: "Serra et al. 2018, ICML (joansj/hat src/networks/alexnet.py)",
        params: &[
            ParamSpec::new("fc", "width of the two fully connected layers").range(Range::Count),
        ],
        resolve: resolve_with::<Config>,
        check,
        build,
    }
}
