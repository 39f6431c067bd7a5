//! What the benches share: the MNIST-sized MLP and MNIST-shaped random data.
//!
//! Data come from a seeded ChaCha RNG (not libtorch's global generator), so every bench sees the
//! same inputs whatever ran before it. Nothing here is timed.

use clbench::model::{MlpSpec, Net};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

/// Where the benches run, and the name their groups carry.
pub const DEVICE: Device = Device::Cpu;
pub const DEVICE_NAME: &str = "cpu";

/// Threads libtorch may use: the bench machine has 2 cores.
pub const THREADS: i32 = 2;

/// MNIST image size and classes.
pub const PIXELS: i64 = 784;
pub const CLASSES: i64 = 10;

/// The 784-400-400-10 ReLU MLP with a single head.
pub fn mnist_mlp(seed: u64) -> Net {
    let spec = MlpSpec {
        inputs: PIXELS,
        hidden: vec![400, 400],
        outputs: CLASSES,
    };
    Net::mlp(&spec, DEVICE, seed)
}

/// `n` random images with pixels in [0, 1] (Float [n, 784]) and labels drawn uniformly from
/// `classes` (Int64 [n]).
pub fn mnist_like(n: usize, classes: &[i64], seed: u64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f32> = (0..n * PIXELS as usize).map(|_| rng.gen::<f32>()).collect();
    let y: Vec<i64> = (0..n)
        .map(|_| classes[rng.gen_range(0..classes.len())])
        .collect();
    let x = Tensor::from_slice(&x)
        .view([n as i64, PIXELS])
        .to_device(DEVICE);
    (x, Tensor::from_slice(&y).to_device(DEVICE))
}

/// Bool [10], true on `columns`.
pub fn column_mask(columns: &[i64]) -> Tensor {
    let m: Vec<bool> = (0..CLASSES).map(|c| columns.contains(&c)).collect();
    Tensor::from_slice(&m).to_device(DEVICE)
}

/// The conv net of `experiments/split_fashion_mnist_task.yaml`: conv 5x5 (16) - pool - conv 5x5
/// (32) - pool - fc 128, on 1x28x28 inputs, one head of ten columns.
pub fn fashion_conv(seed: u64) -> Net {
    let spec = clbench::model::NetSpec {
        model: "conv",
        params: serde_json::json!({
            "channels": [16, 32], "kernel": 5, "stride": 1, "padding": 2, "pool": 2,
            "pool_every": 1, "batch_norm": false, "conv_dropout": 0.0, "hidden": [128],
            "dropout": 0.0,
        }),
        input: clbench::model::InputShape {
            channels: 1,
            height: 28,
            width: 28,
        },
        outputs: CLASSES,
    };
    Net::new(&spec, DEVICE, seed).expect("the conv model builds")
}

/// `n` real Fashion-MNIST training images and labels when the Debian package is installed
/// (`/usr/share/datasets/fashion-mnist`), else MNIST-shaped random data; says which.
pub fn fashion_or_random(n: usize, seed: u64) -> (Tensor, Tensor) {
    let dir = std::path::Path::new("/usr/share/datasets/fashion-mnist");
    let params = serde_json::json!({ "dir": dir, "download": false });
    let registry = clbench::data::DatasetRegistry::load().expect("dataset registry");
    let loaded = registry
        .get("fashion_mnist")
        .and_then(|reg| (reg.load)(&params, &clbench::data::LoadOptions { offline: true }).ok());
    match loaded {
        Some(data) => {
            eprintln!("bench data: real Fashion-MNIST from {}", dir.display());
            let idx: Vec<i64> = (0..n as i64).collect();
            (
                data.train.images_tensor(&idx, DEVICE),
                data.train.labels_tensor(&idx, DEVICE),
            )
        }
        None => {
            eprintln!("bench data: random MNIST-shaped inputs (Fashion-MNIST not installed)");
            mnist_like(n, &(0..CLASSES).collect::<Vec<_>>(), seed)
        }
    }
}

/// The median wall time of `runs` calls of `f`, in seconds (for the ratio lines printed after a
/// group; criterion's own estimates are in its report). Unused by the fisher bench.
#[allow(dead_code)]
pub fn median_secs(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = std::time::Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}
