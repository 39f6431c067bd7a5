//! The network: an MLP trunk shared by all tasks and an output layer split into heads.
//!
//! `heads: multi` gives one head of `classes_per_task` units per task (the reference code's
//! `outputs[t]`), stored as one linear layer of `tasks * classes_per_task` units whose column
//! blocks are the heads; `heads: single` gives one head over all outputs. Which columns a sample
//! is scored on is decided by a mask (see `scenario/`), so task-, domain- and class-incremental
//! learning share one forward pass.
//!
//! Weights are initialised from the job's own RNG (PyTorch's default `Linear` init,
//! U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases) rather than libtorch's global
//! generator, so parallel jobs stay reproducible.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{nn, nn::Module, Device, Kind, Tensor};

use crate::strategy::ParamMap;

/// One linear layer, its weight [out, in] and bias [out].
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
    /// VarStore path prefix, e.g. `trunk.0`.
    pub name: String,
}

impl Linear {
    fn new(
        root: &nn::Path,
        path: &[&str],
        fan_in: i64,
        fan_out: i64,
        rng: &mut ChaCha8Rng,
    ) -> Linear {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let mut uniform = |n: i64| -> Tensor {
            let values: Vec<f32> = (0..n)
                .map(|_| rng.gen_range(-bound..bound) as f32)
                .collect();
            Tensor::from_slice(&values)
        };
        let p = path.iter().fold(root.clone(), |p, c| p / *c);
        let weight = p.var_copy("weight", &uniform(fan_out * fan_in).view([fan_out, fan_in]));
        let bias = p.var_copy("bias", &uniform(fan_out));
        Linear {
            weight,
            bias,
            name: path.join("."),
        }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, Some(&self.bias))
    }
}

/// Shape of the network, from the experiment's `model` section and the scenario.
#[derive(Debug, Clone)]
pub struct MlpSpec {
    pub inputs: i64,
    pub hidden: Vec<i64>,
    pub outputs: i64,
}

/// A ReLU MLP. `layers` are the trunk's hidden layers followed by the output layer.
pub struct Mlp {
    pub vs: nn::VarStore,
    pub layers: Vec<Linear>,
    pub spec: MlpSpec,
}

/// What a forward pass that records activations returns: each layer's input and pre-activation
/// output, as the per-sample Fisher needs them.
pub struct Recorded {
    pub inputs: Vec<Tensor>,
    pub outputs: Vec<Tensor>,
}

impl Mlp {
    pub fn new(spec: &MlpSpec, device: Device, seed: u64) -> Mlp {
        let vs = nn::VarStore::new(device);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6d6f_6465_6c00);
        let root = vs.root();
        let mut layers = Vec::new();
        let mut fan_in = spec.inputs;
        for (i, &width) in spec.hidden.iter().enumerate() {
            let index = i.to_string();
            layers.push(Linear::new(
                &root,
                &["trunk", &index],
                fan_in,
                width,
                &mut rng,
            ));
            fan_in = width;
        }
        layers.push(Linear::new(
            &root,
            &["head"],
            fan_in,
            spec.outputs,
            &mut rng,
        ));
        Mlp {
            vs,
            layers,
            spec: spec.clone(),
        }
    }

    /// Logits over all output columns, Float [n, outputs].
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let last = self.layers.len() - 1;
        let mut h = x.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h);
            if i < last {
                h = h.relu();
            }
        }
        h
    }

    /// Like [`forward`](Self::forward), also returning each layer's input and pre-activation
    /// output (the outputs stay in the graph, so gradients with respect to them can be taken).
    pub fn forward_recorded(&self, x: &Tensor) -> (Tensor, Recorded) {
        let last = self.layers.len() - 1;
        let mut rec = Recorded {
            inputs: Vec::new(),
            outputs: Vec::new(),
        };
        let mut h = x.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            rec.inputs.push(h.shallow_clone());
            let z = layer.forward(&h);
            rec.outputs.push(z.shallow_clone());
            h = if i < last { z.relu() } else { z };
        }
        (h, rec)
    }

    /// The trainable parameters by VarStore name.
    pub fn params(&self) -> ParamMap {
        self.layers
            .iter()
            .flat_map(|l| {
                [
                    (format!("{}.weight", l.name), l.weight.shallow_clone()),
                    (format!("{}.bias", l.name), l.bias.shallow_clone()),
                ]
            })
            .collect()
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Number of trainable scalars.
    pub fn num_parameters(&self) -> i64 {
        self.params().values().map(|t| t.numel() as i64).sum()
    }

    /// Copies the parameter values of `other` (same spec) into this model.
    pub fn copy_from(&mut self, other: &Mlp) -> anyhow::Result<()> {
        self.vs.copy(&other.vs)?;
        Ok(())
    }

    /// A detached copy with its own VarStore (e.g. a teacher for distillation).
    pub fn frozen_copy(&self) -> anyhow::Result<Mlp> {
        let mut copy = Mlp::new(&self.spec, self.device(), 0);
        copy.copy_from(self)?;
        copy.vs.freeze();
        Ok(copy)
    }
}

/// Softmax-compatible masking: columns outside `mask` get -inf, so they take no probability.
pub fn masked_logits(logits: &Tensor, mask: &Tensor) -> Tensor {
    logits.masked_fill(&mask.logical_not(), f64::NEG_INFINITY)
}

/// Mean cross-entropy over the masked logits (targets are output columns).
pub fn masked_cross_entropy(logits: &Tensor, mask: &Tensor, targets: &Tensor) -> Tensor {
    masked_logits(logits, mask)
        .log_softmax(-1, Kind::Float)
        .nll_loss(targets)
}
