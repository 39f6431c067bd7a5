//! Parameters without a fast path: a free parameter (no record says how it enters the output)
//! and a layer applied twice (its records share parameters, so the per-layer identity would be
//! wrong) fall back to the per-sample loop, and the estimates still equal the loop exactly.
//!
//! The model is registered here, as a plugin outside the crate would be.

use anyhow::Result;
use clbench::fisher::{diagonal_fisher, per_sample_loop, Coverage, Estimator, FisherOptions};
use clbench::importance::{mas_importance, mas_importance_loop};
use clbench::model::{
    Backbone, BuiltBackbone, Forward, InputShape, LayerBuilder, Linear, ModelRegistration, Net,
    NetSpec,
};
use tch::{Device, Kind, Tensor};

struct Odd {
    first: Linear,
    /// Applied twice.
    shared: Linear,
    /// A per-feature scale outside any recorded layer.
    scale: Tensor,
}

impl Backbone for Odd {
    fn forward(&self, x: &Tensor, f: &mut Forward) -> Tensor {
        let n = x.size()[0];
        let h = self.first.forward(&x.view([n, -1]), f).tanh();
        let h = self.shared.forward(&h, f).tanh();
        let h = self.shared.forward(&h, f).tanh();
        h * &self.scale
    }
}

fn build(
    _: &serde_json::Value,
    input: InputShape,
    layers: &mut LayerBuilder,
) -> Result<BuiltBackbone> {
    let first = layers.linear("first", input.numel(), 5);
    let shared = layers.linear("shared", 5, 5);
    let init = layers.uniform_values(&[5], 1.0) + 1.0;
    let scale = layers.parameter("scale.weight", &init);
    Ok(BuiltBackbone {
        backbone: Box::new(Odd {
            first,
            shared,
            scale,
        }),
        features: 5,
    })
}

inventory::submit! {
    ModelRegistration {
        name: "test_odd",
        summary: "test model with a shared layer and a free parameter",
        paper: "",
        params: &[],
        resolve: |_| Ok(serde_json::json!({})),
        check: |_, _| Ok(()),
        build,
    }
}

#[test]
fn uncovered_and_shared_parameters_fall_back_to_the_loop_and_stay_exact() {
    let input = InputShape {
        channels: 1,
        height: 2,
        width: 3,
    };
    let spec = NetSpec {
        model: "test_odd",
        params: serde_json::json!({}),
        input,
        outputs: 3,
    };
    let mut net = Net::new(&spec, Device::Cpu, 1).unwrap();
    net.vs.double();
    let x = Tensor::from_slice(&[
        0.1f64, 0.5, -0.3, 0.9, 0.2, -0.7, 0.4, -0.1, 0.8, 0.3, -0.6, 0.05, -0.2, 0.7, 0.6, -0.4,
        0.1, 0.3,
    ])
    .view([3, 6]);
    let coverage = Coverage::of(&net, &x);
    assert_eq!(
        coverage.covered,
        ["first.bias", "first.weight", "head.bias", "head.weight"]
    );
    assert_eq!(
        coverage.uncovered,
        ["scale.weight", "shared.bias", "shared.weight"]
    );

    let y = Tensor::from_slice(&[0i64, 2, 1]);
    let mask = Tensor::ones([3], (Kind::Bool, Device::Cpu));
    for estimator in [Estimator::Empirical, Estimator::Exact, Estimator::Argmax] {
        let opts = FisherOptions {
            estimator,
            ..FisherOptions::default()
        };
        let fast = diagonal_fisher(&net, &x, &y, &mask, &opts).unwrap();
        let slow = per_sample_loop(&net, &x, &y, &mask, &opts).unwrap();
        assert_eq!(
            fast.keys().collect::<Vec<_>>(),
            slow.keys().collect::<Vec<_>>()
        );
        for (name, f) in &fast {
            let diff = (f - &slow[name]).abs().max().double_value(&[]);
            let scale = slow[name].abs().max().double_value(&[]);
            assert!(
                scale > 0.0 && diff <= 1e-6 * scale,
                "{estimator:?} {name}: {diff:e} of {scale:e}"
            );
        }
    }
    let fast = mas_importance(&net, &x, &mask, None).unwrap();
    let slow = mas_importance_loop(&net, &x, &mask).unwrap();
    for (name, f) in &fast {
        let diff = (f - &slow[name]).abs().max().double_value(&[]);
        assert!(
            diff <= 1e-6 * slow[name].abs().max().double_value(&[]),
            "MAS {name}"
        );
    }
}
