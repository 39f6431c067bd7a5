//! `mlp`: a ReLU multilayer perceptron on the flattened image, the network of van de Ven &
//! Tolias (2019) and of most split/permuted MNIST protocols (784-400-400, 784-1000-1000, ...).
//!
//! Layers are `trunk.0`, `trunk.1`, ..., each followed by a ReLU and dropout `dropout`; the input
//! goes through dropout `input_dropout` first (the HAT code's networks: `mlp.py` 3x800 with
//! dropout 0.5; `mlp_hat.py` 2x2000 with input dropout 0.2 and dropout 0.5; UCL's `mlp_hat.py`
//! the reverse). The framework adds the head.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use tch::Tensor;

use clbench::core::registry::{config_from, resolve_with};
use clbench::model::{
    layers::dropout, Backbone, BuiltBackbone, Forward, InputShape, LayerBuilder, Linear, LinearInit,
    ModelRegistration,
};
use clbench::core::{ParamSpec, Range};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Widths of the hidden layers (ReLU), input to output.
    pub hidden: Vec<i64>,
    /// How every linear layer, the head included, is initialised; left out of the resolved
    /// parameters at its default, so earlier results keep their ids.
    #[serde(skip_serializing_if = "is_pytorch")]
    pub init: LinearInit,
    /// Dropout after each hidden layer's ReLU; left out of the resolved parameters at 0, so
    /// earlier results keep their ids.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropout: f64,
    /// Dropout on the flattened input; left out at 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub input_dropout: f64,
}

fn is_zero(p: &f64) -> bool {
    *p == 0.0
}

fn is_pytorch(init: &LinearInit) -> bool {
    *init == LinearInit::Pytorch
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hidden: vec![400, 400],
            init: LinearInit::Pytorch,
            dropout: 0.0,
            input_dropout: 0.0,
        }
    }
}

pub struct Mlp {
    trunk: Vec<Linear>,
    dropout: f64,
    input_dropout: f64,
}

impl Backbone for Mlp {
    fn forward(&self, x: &Tensor, f: &mut Forward) -> Tensor {
        let n = x.size()[0];
        let mut h = dropout(&x.view([n, -1]), self.input_dropout, f);
        for layer in &self.trunk {
            h = dropout(&layer.forward(&h, f).relu(), self.dropout, f);
        }
        h
    }
}

fn check(params: &serde_json::Value, _input: InputShape) -> Result<(), String> {
    let config: Config = config_from(params).map_err(|e| e.to_string())?;
    for (name, p) in [("dropout", config.dropout), ("input_dropout", config.input_dropout)] {
        if !(0.0..1.0).contains(&p) {
            return Err(format!("{name} must be in [0, 1), got {p}"));
        }
    }
    match config.hidden.iter().find(|&&w| w <= 0) {
        Some(w) => Err(format!("hidden widths must be at least 1, got {w}")),
        None => Ok(()),
    }
}

fn build(
    params: &serde_json::Value,
    input: InputShape,
    layers: &mut LayerBuilder,
) -> Result<BuiltBackbone> {
    let config: Config = config_from(params)?;
    layers.set_linear_init(config.init);
    let mut fan_in = input.numel();
    let mut trunk = Vec::new();
    for (i, &width) in config.hidden.iter().enumerate() {
        trunk.push(layers.linear(&format!("trunk.{i}"), fan_in, width));
        fan_in = width;
    }
    Ok(BuiltBackbone {
        backbone: Box::new(Mlp {
            trunk,
            dropout: config.dropout,
            input_dropout: config.input_dropout,
        }),
        features: fan_in,
    })
}

inventory::submit! {
    ModelRegistration {
        name: "mlp",
        summary: "ReLU multilayer perceptron on the flattened image",
        paper: "",
        params: &[
            ParamSpec::new("hidden", "widths of the hidden layers, e.g. [400, 400]").range(Range::Count),
            ParamSpec::new("dropout", "dropout after each hidden layer (default 0)").range(Range::from_below(0.0, 1.0)),
            ParamSpec::new("input_dropout", "dropout on the flattened input (default 0)").range(Range::from_below(0.0, 1.0)),
            ParamSpec::new("init", "pytorch (U(+-1/sqrt(fan_in)), default) or xavier (Xavier-uniform weights, zero biases, as Mammoth's MNISTMLP)"),
        ],
        resolve: resolve_with::<Config>,
        check,
        build,
    }
}
