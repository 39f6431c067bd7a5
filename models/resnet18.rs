//! `resnet18`: the reduced ResNet-18 of Lopez-Paz & Ranzato's GEM code (2017, "Gradient Episodic
//! Memory for continual learning", `model/common.py`), used by A-GEM and Mammoth.
//!
//! A 3x3 stem (stride 1, no max pooling) of `width` channels with batch norm, four stages of two
//! basic blocks (3x3 convolutions without bias, batch norm, a 1x1 convolution with batch norm on
//! the shortcut when the shape changes) of `width` x 1, 2, 4, 8 channels with strides 1, 2, 2, 2,
//! then 4x4 average pooling. GEM and A-GEM use `width: 20`; Mammoth's ResNet-18 is `width: 64`.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use clbench::core::registry::{config_from, resolve_with};
use clbench::model::{
    Backbone, BatchNorm, BuiltBackbone, Conv, Conv2d, Forward, InputShape, LayerBuilder,
    ModelRegistration,
};
use clbench::core::{ParamSpec, Range};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Channels of the stem and the first stage (`nf` in the GEM code).
    pub width: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config { width: 20 }
    }
}

/// A bias-free convolution (batch norm follows every one).
fn conv(kernel: i64, stride: i64, padding: i64) -> Conv {
    Conv {
        kernel,
        stride,
        padding,
        bias: false,
    }
}

struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    fn new(layers: &mut LayerBuilder, name: &str, inputs: i64, planes: i64, stride: i64) -> Self {
        BasicBlock {
            conv1: layers.conv2d(&format!("{name}.conv1"), inputs, planes, conv(3, stride, 1)),
            bn1: layers.batch_norm(&format!("{name}.bn1"), planes),
            conv2: layers.conv2d(&format!("{name}.conv2"), planes, planes, conv(3, 1, 1)),
            bn2: layers.batch_norm(&format!("{name}.bn2"), planes),
            shortcut: (stride != 1 || inputs != planes).then(|| {
                (
                    layers.conv2d(
                        &format!("{name}.shortcut.0"),
                        inputs,
                        planes,
                        conv(1, stride, 0),
                    ),
                    layers.batch_norm(&format!("{name}.shortcut.1"), planes),
                )
            }),
        }
    }

    fn forward(&self, x: &Tensor, f: &mut Forward) -> Tensor {
        let out = self.bn1.forward(&self.conv1.forward(x, f), f).relu();
        let out = self.bn2.forward(&self.conv2.forward(&out, f), f);
        let short = match &self.shortcut {
            Some((conv, bn)) => bn.forward(&conv.forward(x, f), f),
            None => x.shallow_clone(),
        };
        (out + short).relu()
    }
}

pub struct ResNet18 {
    stem: Conv2d,
    stem_bn: BatchNorm,
    blocks: Vec<BasicBlock>,
}

impl Backbone for ResNet18 {
    fn forward(&self, x: &Tensor, f: &mut Forward) -> Tensor {
        let mut h = self.stem_bn.forward(&self.stem.forward(x, f), f).relu();
        for block in &self.blocks {
            h = block.forward(&h, f);
        }
        let h = h.avg_pool2d([4, 4], [4, 4], [0, 0], false, true, None::<i64>);
        let n = h.size()[0];
        h.view([n, -1])
    }
}

/// The side of the last feature maps after pooling, or what is wrong.
fn geometry(config: &Config, input: InputShape) -> Result<(i64, i64), String> {
    if config.width < 1 {
        return Err(format!("width must be at least 1, got {}", config.width));
    }
    // Three stride-2 stages (3x3, padding 1), then 4x4 average pooling.
    let side = |s: i64| (0..3).fold(s, |s, _| (s - 1) / 2 + 1) / 4;
    let (h, w) = (side(input.height), side(input.width));
    if h < 1 || w < 1 {
        return Err(format!(
            "resnet18 needs inputs of at least 25x25 (three stride-2 stages and a 4x4 pool), got \
             {}x{}; pad the input (transforms.pad)",
            input.height, input.width
        ));
    }
    Ok((h, w))
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
    let (h, w) = geometry(&config, input).map_err(anyhow::Error::msg)?;
    let nf = config.width;
    let stem = layers.conv2d("conv1", input.channels, nf, conv(3, 1, 1));
    let stem_bn = layers.batch_norm("bn1", nf);
    let mut blocks = Vec::new();
    let mut inputs = nf;
    for (stage, (mult, stride)) in [(1, 1), (2, 2), (4, 2), (8, 2)].into_iter().enumerate() {
        for b in 0..2 {
            let planes = nf * mult;
            let name = format!("layer{}.{b}", stage + 1);
            blocks.push(BasicBlock::new(
                layers,
                &name,
                inputs,
                planes,
                if b == 0 { stride } else { 1 },
            ));
            inputs = planes;
        }
    }
    Ok(BuiltBackbone {
        backbone: Box::new(ResNet18 {
            stem,
            stem_bn,
            blocks,
        }),
        features: nf * 8 * h * w,
    })
}

inventory::submit! {
    ModelRegistration {
        name: "resnet18",
        summary: "reduced ResNet-18 of the GEM code (3x3 stem, 4 stages of 2 basic blocks, width a parameter)",
        paper: "Lopez-Paz & Ranzato 2017 (GEM); Chaudhry et al. 2019 (A-GEM); Buzzega et al. 2020 (Mammoth)",
        params: &[
            ParamSpec::new("width", "channels of the stem and first stage (GEM: 20, Mammoth: 64)").range(Range::Count),
        ],
        resolve: resolve_with::<Config>,
        check,
        build,
    }
}
