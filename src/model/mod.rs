//! The network every stage trains and reads: a backbone from a model plugin (`models/*.rs`) and
//! the framework's output layer, split into heads.
//!
//! A model plugin writes only its backbone: a [`Backbone`] maps images [n, c, h, w] to features
//! [n, f], built with a [`LayerBuilder`] so that every layer is initialised from the job's seeded
//! RNG and records itself for the per-sample Fisher. [`Net`] adds the head: one linear layer of
//! `outputs` units whose column blocks are the heads (`heads: multi`, one block of
//! `classes_per_task` per task, the reference code's `outputs[t]`) or one shared head
//! (`heads: single`). Which columns a sample is scored on is decided by a mask (see `scenario/`),
//! so task-, domain- and class-incremental learning share one forward pass.
//!
//! Inputs travel flat, [n, c * h * w], as the scenarios build them (a permutation acts on pixel
//! indices); [`Net::forward_t`] views them as images before the backbone.

pub mod gating;
pub mod layers;
pub mod registry;

use std::cell::RefCell;

use anyhow::{bail, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{nn, Device, Kind, Tensor};

use crate::core::ParamMap;
pub use layers::{
    BatchNorm, Conv, Conv2d, Forward, LayerBuilder, LayerKind, Linear, LinearInit, Record,
    UnitGates, UnitLayer,
};
pub use registry::{ModelRegistration, ModelRegistry};

/// The shape of one input image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputShape {
    pub channels: i64,
    pub height: i64,
    pub width: i64,
}

impl InputShape {
    /// Values per image, `channels * height * width`.
    pub fn numel(&self) -> i64 {
        self.channels * self.height * self.width
    }
}

/// A model plugin's part of the network: images in, features out.
pub trait Backbone: Send {
    /// Features [n, f] from images [n, c, h, w]. Layers take `f` (training mode, recording).
    fn forward(&self, x: &Tensor, f: &mut Forward) -> Tensor;
}

/// What a model plugin's `build` returns: its backbone and the width of its features.
pub struct BuiltBackbone {
    pub backbone: Box<dyn Backbone>,
    pub features: i64,
}

/// Everything needed to build a network again (a teacher's frozen copy, a restored checkpoint).
#[derive(Debug, Clone)]
pub struct NetSpec {
    /// The model plugin's name (`mlp`, `conv`, ...).
    pub model: &'static str,
    /// Its resolved parameters.
    pub params: serde_json::Value,
    pub input: InputShape,
    /// Output columns (all heads together).
    pub outputs: i64,
}

/// A backbone and the head, with their VarStore.
pub struct Net {
    pub vs: nn::VarStore,
    backbone: Box<dyn Backbone>,
    pub head: Linear,
    pub spec: NetSpec,
    build: registry::BuildFn,
    /// Trainable parameters and buffers (batch-norm running statistics), by VarStore name.
    params: ParamMap,
    buffers: ParamMap,
    /// The backbone's linear and convolution layers in build order (the head not included).
    hidden: Vec<UnitLayer>,
    /// The gates every forward pass applies until the next [`set_gates`](Net::set_gates): the
    /// training loop and evaluation set them from the strategy before each pass, so every pass
    /// (training, evaluation, a Fisher's) goes through them without the model plugin knowing.
    gates: RefCell<Option<UnitGates>>,
}

impl Net {
    /// Builds the network of `spec` from the registered model, initialised from `seed`.
    pub fn new(spec: &NetSpec, device: Device, seed: u64) -> Result<Net> {
        let registry = ModelRegistry::load()?;
        let reg = registry.lookup(spec.model).map_err(anyhow::Error::msg)?;
        Net::with_build(reg.build, spec, device, seed)
    }

    /// Builds with a given backbone constructor (what [`Net::new`] looks up by name).
    pub fn with_build(
        build: registry::BuildFn,
        spec: &NetSpec,
        device: Device,
        seed: u64,
    ) -> Result<Net> {
        let vs = nn::VarStore::new(device);
        // The stream the MLP has always drawn from, so its results keep their numbers.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6d6f_6465_6c00);
        let mut builder = LayerBuilder::new(vs.root(), &mut rng);
        let BuiltBackbone { backbone, features } = build(&spec.params, spec.input, &mut builder)?;
        if features <= 0 {
            bail!("model `{}` gives {features} features", spec.model);
        }
        let head = builder.linear("head", features, spec.outputs);
        let LayerBuilder {
            params: param_names,
            buffers: buffer_names,
            layers: mut hidden,
            ..
        } = builder;
        hidden.pop(); // the head
        let mut sorted = param_names.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != param_names.len() {
            bail!(
                "model `{}` names two parameters alike; give each layer its own name",
                spec.model
            );
        }
        let vars = vs.variables();
        let by_name = |names: Vec<String>| -> ParamMap {
            names
                .into_iter()
                .map(|n| {
                    let t = vars[&n].shallow_clone();
                    (n, t)
                })
                .collect()
        };
        let (params, buffers) = (by_name(param_names), by_name(buffer_names));
        Ok(Net {
            vs,
            backbone,
            head,
            spec: spec.clone(),
            build,
            params,
            buffers,
            hidden,
            gates: RefCell::new(None),
        })
    }

    /// Logits over all output columns, Float [n, outputs], from flat inputs [n, c*h*w].
    pub fn forward_t(&self, x: &Tensor, f: &mut Forward) -> Tensor {
        self.forward_features_t(x, f).1
    }

    /// The backbone's features (the head's input), Float [n, f], and the logits.
    pub fn forward_features_t(&self, x: &Tensor, f: &mut Forward) -> (Tensor, Tensor) {
        let s = self.spec.input;
        let n = x.size()[0];
        let images = x.view([n, s.channels, s.height, s.width]);
        let gates = self
            .gates
            .borrow()
            .as_ref()
            .map(crate::core::params::shallow);
        let outer = std::mem::replace(&mut f.gates, gates);
        let features = self.backbone.forward(&images, f);
        f.gates = outer;
        let logits = self.head.forward(&features, f);
        (features, logits)
    }

    /// The backbone's linear and convolution layers, in build order; the head is not one.
    pub fn hidden_layers(&self) -> &[UnitLayer] {
        &self.hidden
    }

    /// Sets the gates every later forward pass applies (`None`: no gates), until the next call.
    /// Only hidden layers can be gated: a gate for a name that is not one is an error.
    pub fn set_gates(&self, gates: Option<UnitGates>) -> Result<()> {
        if let Some(g) = &gates {
            for (name, gate) in g {
                let Some(layer) = self.hidden.iter().find(|l| &l.name == name) else {
                    bail!("a gate for `{name}`, which is not a hidden layer of this model");
                };
                if gate.size() != [layer.units] {
                    bail!(
                        "the gate of `{name}` has shape {:?}; the layer has {} units",
                        gate.size(),
                        layer.units
                    );
                }
            }
        }
        *self.gates.borrow_mut() = gates;
        Ok(())
    }

    /// Eval-mode logits (no dropout, batch norm on running statistics).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_t(x, &mut Forward::eval())
    }

    /// An eval-mode pass that also returns every parametrised layer's record (inputs, outputs
    /// still in the graph), as the per-sample Fisher and MAS need them.
    pub fn forward_recorded(&self, x: &Tensor) -> (Tensor, Vec<Record>) {
        let mut records = Vec::new();
        let logits = self.forward_t(x, &mut Forward::recording(&mut records));
        (logits, records)
    }

    /// The trainable parameters by VarStore name.
    pub fn params(&self) -> ParamMap {
        crate::core::params::shallow(&self.params)
    }

    /// The buffers (not trained, but part of the model's state: batch-norm running statistics).
    pub fn buffers(&self) -> ParamMap {
        crate::core::params::shallow(&self.buffers)
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> i64 {
        self.params().values().map(|t| t.numel() as i64).sum()
    }

    /// Copies the parameters and buffers of `other` (same spec) into this network.
    pub fn copy_from(&mut self, other: &Net) -> Result<()> {
        self.vs.copy(&other.vs)?;
        Ok(())
    }

    /// A detached copy with its own VarStore (e.g. a teacher for distillation).
    pub fn frozen_copy(&self) -> Result<Net> {
        let mut copy = Net::with_build(self.build, &self.spec, self.device(), 0)?;
        copy.copy_from(self)?;
        copy.vs.freeze();
        Ok(copy)
    }
}

/// Softmax-compatible masking: columns outside `mask` get -inf, so they take no probability.
pub fn masked_logits(logits: &Tensor, mask: &Tensor) -> Tensor {
    logits.masked_fill(&mask.logical_not(), f64::NEG_INFINITY)
}

/// Rows `start..start + len` of a per-sample mask [n, outputs], or a shared mask [outputs] as it
/// is: the mask of a chunk of samples.
pub fn mask_rows(mask: &Tensor, start: i64, len: i64) -> Tensor {
    if mask.dim() == 2 {
        mask.narrow(0, start, len)
    } else {
        mask.shallow_clone()
    }
}

/// Mean cross-entropy over the masked logits (targets are output columns).
pub fn masked_cross_entropy(logits: &Tensor, mask: &Tensor, targets: &Tensor) -> Tensor {
    masked_logits(logits, mask)
        .log_softmax(-1, Kind::Float)
        .nll_loss(targets)
}

/// The shape of an `mlp` network on flat inputs, for tests and benches that build one directly.
#[derive(Debug, Clone)]
pub struct MlpSpec {
    pub inputs: i64,
    pub hidden: Vec<i64>,
    pub outputs: i64,
}

impl Net {
    /// The registered `mlp` model of `spec`, initialised from `seed`.
    pub fn mlp(spec: &MlpSpec, device: Device, seed: u64) -> Net {
        let spec = NetSpec {
            model: "mlp",
            params: serde_json::json!({ "hidden": spec.hidden }),
            input: InputShape {
                channels: 1,
                height: 1,
                width: spec.inputs,
            },
            outputs: spec.outputs,
        };
        Net::new(&spec, device, seed).expect("the mlp model is registered and builds any widths")
    }
}
