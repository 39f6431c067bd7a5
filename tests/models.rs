//! Contract tests over every registered model (`models/*.rs`): a dropped-in model file is
//! covered here without editing this file.
//!
//! Each model builds from its defaults on MNIST-like and CIFAR-like inputs, is initialised the
//! same for the same seed (and differently for another), gives logits of the right shape, draws
//! its dropout masks from the job's stream (a seed gives the same training pass), and its fast
//! Fisher (every estimator) and MAS importance equal the per-sample loop within 1e-5 relative.
//!
//! The comparisons run in double precision. In single precision a batch-norm or convolution
//! gradient summed over 1024 positions cancels down to ~1e-7 of its terms, so the two exact
//! methods (different summation orders) differ by up to 1e-3 relative on the smallest layers of
//! `resnet18`; in double precision they agree to ~2e-7 (the loss's own single-precision
//! log-softmax), which shows the fast path is exact rather than close.

use clbench::fisher::{diagonal_fisher, per_sample_loop, Estimator, FisherOptions};
use clbench::importance::{mas_importance, mas_importance_loop};
use clbench::model::{Forward, InputShape, ModelRegistry, Net, NetSpec};
use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

const INPUTS: [InputShape; 2] = [
    InputShape {
        channels: 1,
        height: 28,
        width: 28,
    },
    InputShape {
        channels: 3,
        height: 32,
        width: 32,
    },
];

fn spec(model: &'static str, params: serde_json::Value, input: InputShape) -> NetSpec {
    NetSpec {
        model,
        params,
        input,
        outputs: 6,
    }
}

fn defaults(name: &str) -> serde_json::Value {
    let reg = ModelRegistry::load().unwrap().get(name).unwrap();
    (reg.resolve)(&serde_yaml::Mapping::new()).unwrap()
}

fn flat(net: &Net) -> Vec<f32> {
    net.params()
        .values()
        .flat_map(|p| Vec::<f32>::try_from(p.flatten(0, -1)).unwrap())
        .collect()
}

/// Deterministic inputs in [0, 1] of `input`'s shape, flattened as the scenarios give them.
fn inputs(n: i64, input: InputShape, seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let values: Vec<f32> = (0..n * input.numel())
        .map(|_| rand::Rng::gen::<f32>(&mut rng))
        .collect();
    Tensor::from_slice(&values).view([n, input.numel()])
}

#[test]
fn every_model_builds_the_same_for_a_seed_with_logits_of_the_right_shape() {
    let registry = ModelRegistry::load().unwrap();
    assert!(registry.names().len() >= 4, "{:?}", registry.names());
    for reg in registry.iter() {
        let params = (reg.resolve)(&serde_yaml::Mapping::new())
            .unwrap_or_else(|e| panic!("{}: defaults do not resolve: {e}", reg.name));
        for input in INPUTS {
            let label = format!("{} on {input:?}", reg.name);
            (reg.check)(&params, input).unwrap_or_else(|e| panic!("{label}: {e}"));
            let s = spec(reg.name, params.clone(), input);
            let a = Net::new(&s, Device::Cpu, 1).unwrap();
            let b = Net::new(&s, Device::Cpu, 1).unwrap();
            let c = Net::new(&s, Device::Cpu, 2).unwrap();
            assert_eq!(flat(&a), flat(&b), "{label}: same seed, other weights");
            assert_ne!(flat(&a), flat(&c), "{label}: another seed, same weights");
            assert!(a.num_parameters() > 0);
            let x = inputs(3, input, 7);
            assert_eq!(a.forward(&x).size(), [3, 6], "{label}");
            // Training mode: dropout masks from the job's stream.
            let train = |net: &Net| {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
                Vec::<f32>::try_from(
                    net.forward_t(&x, &mut Forward::train(&mut rng))
                        .flatten(0, -1),
                )
                .unwrap()
            };
            let (ta, tb) = (train(&a), train(&b));
            assert_eq!(ta, tb, "{label}: a training pass is not reproducible");
            assert!(ta.iter().all(|v| v.is_finite()), "{label}");
        }
    }
}

/// max |a - b| / max |b| over each parameter, the worst over all.
fn worst_relative(fast: &clbench::core::ParamMap, slow: &clbench::core::ParamMap) -> (f64, String) {
    assert_eq!(
        fast.keys().collect::<Vec<_>>(),
        slow.keys().collect::<Vec<_>>()
    );
    let mut worst = (0.0, String::new());
    for (name, f) in fast {
        let s = &slow[name];
        assert_eq!(f.size(), s.size(), "{name}");
        let scale = s.abs().max().double_value(&[]).max(1e-30);
        let diff = (f - s).abs().max().double_value(&[]) / scale;
        if diff > worst.0 {
            worst = (diff, name.clone());
        }
    }
    worst
}

#[test]
fn fast_fisher_and_mas_equal_the_per_sample_loop_on_every_model() {
    let registry = ModelRegistry::load().unwrap();
    let input = INPUTS[1];
    let n = 5;
    let x = inputs(n, input, 11);
    let y = Tensor::from_slice(&[0i64, 3, 1, 5, 2]);
    // Heads 0..3 in play for some rows, all for others: a per-sample mask.
    let mask = Tensor::ones([n, 6], (Kind::Bool, Device::Cpu));
    let _ = mask.narrow(0, 0, 2).narrow(1, 4, 2).fill_(0);
    let y = y.where_self(
        &Tensor::from_slice(&[true, false, true, true, true]),
        &Tensor::from_slice(&[0i64; 5]),
    );
    for reg in registry.iter() {
        let net = Net::new(&spec(reg.name, defaults(reg.name), input), Device::Cpu, 3).unwrap();
        // Move batch-norm running statistics off their initial values, so the eval-mode
        // affine map is not the identity.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for s in 0..3 {
            let _ = net.forward_t(&inputs(8, input, 100 + s), &mut Forward::train(&mut rng));
        }
        let mut net = net;
        net.vs.double();
        let x = x.to_kind(Kind::Double);
        for estimator in [
            Estimator::Empirical,
            Estimator::Exact,
            Estimator::Sampled,
            Estimator::Argmax,
            Estimator::EmpiricalWeighted,
        ] {
            let opts = FisherOptions {
                estimator,
                seed: 9,
                ..FisherOptions::default()
            };
            let fast = diagonal_fisher(&net, &x, &y, &mask, &opts).unwrap();
            let slow = per_sample_loop(&net, &x, &y, &mask, &opts).unwrap();
            let (worst, at) = worst_relative(&fast, &slow);
            assert!(
                worst <= 1e-5,
                "{} {estimator:?}: {worst:e} at {at}",
                reg.name
            );
        }
        let head_mask = Tensor::from_slice(&[true, true, false, false, true, true]);
        let fast = mas_importance(&net, &x, &head_mask, None).unwrap();
        let slow = mas_importance_loop(&net, &x, &head_mask).unwrap();
        let (worst, at) = worst_relative(&fast, &slow);
        assert!(worst <= 1e-5, "{} MAS: {worst:e} at {at}", reg.name);
    }
}

#[test]
fn the_batch_estimator_equals_squared_mini_batch_gradients_on_every_model() {
    let registry = ModelRegistry::load().unwrap();
    let input = INPUTS[0];
    let (n, b) = (7i64, 3usize);
    let x = inputs(n, input, 12);
    let y = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5, 0]);
    let mask = Tensor::ones([6], (Kind::Bool, Device::Cpu));
    for reg in registry.iter() {
        let mut net = Net::new(&spec(reg.name, defaults(reg.name), input), Device::Cpu, 4).unwrap();
        net.vs.double();
        let x = x.to_kind(Kind::Double);
        let opts = FisherOptions {
            estimator: Estimator::Batch,
            batch_size: b,
            ..FisherOptions::default()
        };
        let fast = diagonal_fisher(&net, &x, &y, &mask, &opts).unwrap();
        // By autograd: per mini-batch, |b| * (gradient of its mean loss)^2, summed, over n.
        let params = net.params();
        let tensors: Vec<&Tensor> = params.values().collect();
        let mut slow = clbench::core::params::zeros_like(&params);
        let mut start = 0;
        while start < n {
            let len = (b as i64).min(n - start);
            let loss = net
                .forward(&x.narrow(0, start, len))
                .log_softmax(-1, Kind::Float)
                .nll_loss(&y.narrow(0, start, len));
            let grads = Tensor::run_backward(&[loss], &tensors, false, false);
            for (name, g) in params.keys().zip(grads) {
                clbench::core::params::add_into(&mut slow, name, &(g.square() * len as f64));
            }
            start += len;
        }
        for t in slow.values_mut() {
            *t = &*t / n as f64;
        }
        let (worst, at) = worst_relative(&fast, &slow);
        assert!(worst <= 1e-5, "{} batch: {worst:e} at {at}", reg.name);
    }
}
