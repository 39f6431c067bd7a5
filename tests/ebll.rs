//! `ebll` against hand computations (the code distance with fixed encoders, the autoencoder's
//! loss, an Adadelta step), its autoencoder's training on real MNIST features, and its effect on
//! a small split MNIST task-incremental run against naive and lwf from the same seed.

mod common;

use std::path::{Path, PathBuf};

use clbench::strategies::ebll::{
    code_distance, features_of, Autoencoder, AutoencoderData, AutoencoderTraining, Encoder,
};
use clbench::train::Adadelta;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

fn tensor(values: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(values).view(shape)
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).flatten(0, -1)).unwrap()
}

fn assert_near(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tol, "{what}: {got:?}, expected {want:?}");
    }
}

/// f = [1, 0], f_old = [0, 1]. Encoder 1: W = [1, -1], b = 0.5, so the codes are sigmoid(1.5) and
/// sigmoid(-0.5). Encoder 2: W = [[2, 0], [0, 0]], b = 0, codes (sigmoid(2), 1/2) and (1/2, 1/2):
/// its second unit agrees, so its mean over the two units halves the first's square.
/// Value: (s(1.5) - s(-0.5))^2 + (s(2) - 1/2)^2 / 2 = 0.1936298 + 0.1450064 / 2 = 0.2661330.
/// Gradient in f: 2 (c - c_old) c (1 - c) W per unit over the units' count:
/// 0.1312590 * [1, -1] + 0.0399812 * [2, 0] = [0.2112215, -0.1312590].
/// (PyTorch's MSELoss on the same tensors: 0.2661329, [0.2112215, -0.1312590].)
#[test]
fn the_code_distance_matches_the_hand_computation() {
    let encoders = [
        Encoder {
            weight: tensor(&[1.0, -1.0], &[1, 2]),
            bias: tensor(&[0.5], &[1]),
        },
        Encoder {
            weight: tensor(&[2.0, 0.0, 0.0, 0.0], &[2, 2]),
            bias: tensor(&[0.0, 0.0], &[2]),
        },
    ];
    let features = tensor(&[1.0, 0.0], &[1, 2]).set_requires_grad(true);
    let old = tensor(&[0.0, 1.0], &[1, 2]);
    let distance = code_distance(&encoders, &features, &old).unwrap();
    assert_near(&values(&distance), &[0.266_133_0], 1e-6, "value");
    distance.backward();
    assert_near(
        &values(&features.grad()),
        &[0.211_221_5, -0.131_259_0],
        1e-6,
        "gradient",
    );
    assert!(code_distance(&[], &features, &old).is_none());
}

/// f = [1, 0], a one-unit code: W_e = 0, b_e = 0 give c = 1/2; W_d = [2, 0]^T, b_d = [0, 1] give
/// r = [1, 1]. Reconstruction: ((1 - 1)^2 + (1 - 0)^2) / 2 = 1/2. Head W = I, b = 0: logits
/// [1, 1], class 0, cross-entropy ln 2. The weight multiplies the reconstruction only:
/// 0.1 * 0.5 + ln 2 = 0.7431472.
#[test]
fn the_autoencoder_loss_weighs_the_reconstruction_beside_the_cross_entropy() {
    let autoencoder = Autoencoder {
        encoder: Encoder {
            weight: tensor(&[0.0, 0.0], &[1, 2]),
            bias: tensor(&[0.0], &[1]),
        },
        decoder_weight: tensor(&[2.0, 0.0], &[2, 1]),
        decoder_bias: tensor(&[0.0, 1.0], &[2]),
    };
    let features = tensor(&[1.0, 0.0], &[1, 2]);
    let targets = Tensor::from_slice(&[0i64]);
    let (head_weight, head_bias) = (
        tensor(&[1.0, 0.0, 0.0, 1.0], &[2, 2]),
        Tensor::zeros([2], (tch::Kind::Float, Device::Cpu)),
    );
    let data = AutoencoderData {
        features: &features,
        targets: &targets,
        mask: &Tensor::from_slice(&[true, true]),
        head: (&head_weight, &head_bias),
    };
    let loss = autoencoder.loss(&features, &targets, &data, 0.1);
    assert_near(
        &values(&loss),
        &[0.05 + std::f64::consts::LN_2],
        1e-6,
        "loss",
    );
}

/// Two steps of lr 0.5 with the gradient g = [0.5, -1] from p = [1, -2], rho 0.9, eps 1e-6:
/// step 1: v = 0.1 g^2, d = sqrt(1e-6) / sqrt(v + 1e-6) g = [0.0031622, -0.0031623],
/// u = 0.1 d^2, p = [0.9984189, -1.9984189];
/// step 2: v = 0.19 g^2, d = sqrt(u + 1e-6) / sqrt(v + 1e-6) g, p = [0.9967967, -1.9967967].
/// (torch.optim.Adadelta(lr=0.5) gives the same to 1e-7.)
#[test]
fn an_adadelta_step_matches_the_hand_computation() {
    let p = tensor(&[1.0, -2.0], &[2]).set_requires_grad(true);
    let g = tensor(&[0.5, -1.0], &[2]);
    let mut adadelta = Adadelta::new(std::slice::from_ref(&p), 0.5);
    let expected = [[0.998_418_9, -1.998_418_9], [0.996_796_7, -1.996_796_7]];
    for want in expected {
        adadelta.zero_grad();
        (&p * &g).sum(tch::Kind::Float).backward();
        adadelta.step();
        assert_near(&values(&p), &want, 2e-7, "parameters");
    }
}

#[test]
fn an_autoencoder_too_large_for_memory_is_an_error_not_an_abort() {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    for (features, code) in [(1i64 << 40, 1i64 << 40), (1 << 22, 1 << 22)] {
        let err = Autoencoder::init(features, code, &mut rng, Device::Cpu)
            .err()
            .unwrap_or_else(|| panic!("{features} x {code} built"));
        assert!(err.to_string().contains("autoencoder"), "{err}");
    }
}

/// `CLBENCH_DATA` if set, else the shared copy next to the checkout.
fn mnist_dir() -> PathBuf {
    match std::env::var_os(clbench::data::DATA_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"),
    }
}

/// A small split MNIST task-incremental experiment: two tasks (0/1, 2/3), MLP 784-100, Adam,
/// 60 steps per task; `strategy` is the YAML list's entry.
fn mnist_yaml(output: &Path, strategy: &str) -> String {
    let text = common::synthetic_yaml("ebll_mnist", output, strategy)
        .replace(
            "  name: synthetic\n  synthetic: {seed: 3, train_per_class: 60, test_per_class: 20}",
            &format!(
                "  name: mnist\n  dir: {:?}\n  download: false",
                mnist_dir().display().to_string()
            ),
        )
        .replace("tasks: [[0, 1], [2, 3], [4, 5]]", "tasks: [[0, 1], [2, 3]]")
        .replace("hidden: [32]", "hidden: [100]")
        .replace("lr: 0.01", "lr: 0.001")
        .replace("batch_size: 16", "batch_size: 64")
        .replace("epochs: 2", "iterations: 60")
        .replace("seeds: [1, 2]", "seeds: [1]");
    assert!(text.contains("name: mnist") && text.contains("iterations: 60"));
    text
}

fn have_mnist(test: &str) -> bool {
    let found = mnist_dir().join("train-images-idx3-ubyte").exists()
        || mnist_dir().join("train-images-idx3-ubyte.gz").exists();
    if !found {
        common::skip(test, &format!("no MNIST at {}", mnist_dir().display()));
    }
    found
}

/// The final weights of the run of `strategy` with `params` (YAML lines under its entry).
fn mnist_weights(strategy: &str, params: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let entry = format!("  - name: {strategy}\n{params}");
    let (_, model) = common::run_first_job(&mnist_yaml(dir.path(), &entry));
    common::flat_weights(&model)
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// With the code distance off, T = 1 and two tasks (one earlier head, so a sum is a mean and
/// T^2 = 1), ebll is lwf bit for bit: its distillation is lwf's. The code distance moves it away
/// from lwf, and both from naive.
#[test]
fn ebll_differs_from_naive_and_lwf_on_split_mnist_and_is_lwf_without_codes() {
    if !have_mnist("ebll_differs_from_naive_and_lwf_on_split_mnist_and_is_lwf_without_codes") {
        return;
    }
    let naive = mnist_weights("naive", "");
    let lwf = mnist_weights("lwf", "    alpha: 1.0\n    temperature: 1.0\n");
    let common_params = "    alpha: 1.0\n    temperature: 1.0\n    ae_epochs: 1\n";
    let without_codes = mnist_weights("ebll", &format!("{common_params}    code_weight: 0.0\n"));
    assert_eq!(
        without_codes, lwf,
        "ebll without the code distance must be lwf"
    );
    let ebll = mnist_weights("ebll", &format!("{common_params}    code_weight: 1.0\n"));
    let from_lwf = largest_difference(&ebll, &lwf);
    let from_naive = largest_difference(&ebll, &naive);
    assert!(from_lwf > 1e-4, "ebll ended within {from_lwf} of lwf");
    assert!(from_naive > 1e-3, "ebll ended within {from_naive} of naive");
}

/// An autoencoder trained on the features of MNIST digits 0 and 1 under a network trained on them
/// (a naive run's first task) ends with a lower loss on all of them than it starts with, at
/// CLsurvey's Adadelta lr 0.01.
#[test]
fn the_autoencoder_training_lowers_its_loss_on_real_features() {
    if !have_mnist("the_autoencoder_training_lowers_its_loss_on_real_features") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = mnist_yaml(dir.path(), "  - name: naive\n");
    let (_, model) = common::run_first_job(&text);
    let plan = common::plan_from(&text);
    let dataset = clbench::runner::load_dataset(&plan).unwrap();
    let scenario = clbench::runner::build_scenario(&plan, &dataset, plan.jobs[0].seed).unwrap();
    let task = scenario.train_data(&dataset.train, 0, Device::Cpu);
    let features = features_of(&model, &task.x);
    assert_eq!(features.size(), [task.x.size()[0], 100]);
    let (weight, bias) = (model.head.weight.detach(), model.head.bias.detach());
    let data = AutoencoderData {
        features: &features,
        targets: &task.y,
        mask: &task.mask,
        head: (&weight, &bias),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let autoencoder = Autoencoder::init(100, 20, &mut rng, Device::Cpu).unwrap();
    let loss = |ae: &Autoencoder| {
        tch::no_grad(|| ae.loss(&features, &task.y, &data, 0.01).double_value(&[]))
    };
    let before = loss(&autoencoder);
    let how = AutoencoderTraining {
        epochs: 2,
        lr: 0.01,
        batch_size: 200,
        reconstruction_weight: 0.01,
    };
    let epochs = autoencoder.train(&data, &how, &mut rng).unwrap();
    let after = loss(&autoencoder);
    assert_eq!(epochs.len(), 2);
    assert!(epochs.iter().all(|l| l.is_finite()), "{epochs:?}");
    assert!(after < before, "the loss went from {before} to {after}");
    eprintln!("autoencoder loss on task 0's features: {before} -> {after} (epochs {epochs:?})");
}
