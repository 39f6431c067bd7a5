//! The dataset plugins through their registry: every registered dataset loads with the shape it
//! announces; CIFAR-10 and CIFAR-100 on files generated here in the exact official binary format
//! (no real copy is reachable from the test machines), good and damaged; and the `dataset:`
//! section of experiment files. No test touches the network: loads are `offline`.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
};

use clbench::config::Plan;
use clbench::data::{to_chw_shape, DataError, Dataset, DatasetRegistry, LoadOptions, DATA_ENV};
use tch::Device;

const OFFLINE: LoadOptions = LoadOptions { offline: true };

/// Loads dataset `name` with the YAML parameters `yaml`, offline.
fn load(name: &str, yaml: &str) -> Result<Dataset, DataError> {
    let reg = DatasetRegistry::load().unwrap().get(name).unwrap();
    let params = (reg.resolve)(&mapping(yaml)).unwrap_or_else(|e| panic!("{name}: {e}"));
    (reg.load)(&params, &OFFLINE)
}

fn mapping(yaml: &str) -> serde_yaml::Mapping {
    if yaml.trim().is_empty() {
        serde_yaml::Mapping::new()
    } else {
        serde_yaml::from_str(yaml).unwrap()
    }
}

/// Pixel byte `c, r, x` of record `i`: distinct per channel, row, column and record.
fn pixel(i: usize, c: usize, r: usize, x: usize) -> u8 {
    ((c * 80 + r * 5 + x + i * 7) % 256) as u8
}

/// One record: `labels` then 3072 pixel bytes, channel-major, each channel row-major.
fn record(labels: &[u8], i: usize) -> Vec<u8> {
    let mut rec = labels.to_vec();
    for c in 0..3 {
        for r in 0..32 {
            for x in 0..32 {
                rec.push(pixel(i, c, r, x));
            }
        }
    }
    rec
}

/// A CIFAR-10 folder: batch `b` (1..=5) holds records `3(b-1)..3b`, the test batch 2 records;
/// record `i` has label `i % 10`.
fn cifar10_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for b in 1..=5 {
        let bytes: Vec<u8> = (3 * (b - 1)..3 * b)
            .flat_map(|i| record(&[(i % 10) as u8], i))
            .collect();
        fs::write(dir.path().join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    let test: Vec<u8> = (0..2).flat_map(|i| record(&[9 - i as u8], i)).collect();
    fs::write(dir.path().join("test_batch.bin"), test).unwrap();
    dir
}

/// A CIFAR-100 folder: 4 train and 2 test records; record `i` has coarse label `i % 20` and
/// fine label `99 - i`.
fn cifar100_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let records = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| record(&[(i % 20) as u8, (99 - i) as u8], i))
            .collect()
    };
    fs::write(dir.path().join("train.bin"), records(4)).unwrap();
    fs::write(dir.path().join("test.bin"), records(2)).unwrap();
    dir
}

fn dir_yaml(dir: &Path) -> String {
    format!("dir: {:?}\n", dir.display().to_string())
}

/// `CLBENCH_DATA` if set, else the shared copy next to the checkout.
fn mnist_dir() -> PathBuf {
    match std::env::var_os(DATA_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist"),
    }
}

/// Every registered dataset that can be loaded here gives the shape its `shape` announced
/// (without reading files) and keeps the [`clbench::data::Split`] invariants. A dataset added
/// later is covered with its default parameters when those load offline.
#[test]
fn every_registered_dataset_loads_with_the_shape_it_announces() {
    let registry = DatasetRegistry::load().unwrap();
    let cifar10 = cifar10_dir();
    let cifar100 = cifar100_dir();
    let fashion = Path::new(clbench::datasets::fashion_mnist::SYSTEM_DIR);
    let mut checked = Vec::new();
    for reg in registry.iter() {
        let yaml = match reg.name {
            "synthetic" => {
                "{train_per_class: 4, test_per_class: 2, classes: 12, channels: 3}".to_string()
            }
            "mnist" if mnist_dir().is_dir() => dir_yaml(&mnist_dir()),
            "fashion_mnist" if fashion.is_dir() => dir_yaml(fashion),
            "cifar10" => dir_yaml(cifar10.path()),
            "cifar100" => dir_yaml(cifar100.path()),
            "hat_cifar" => format!(
                "{{cifar10_dir: {:?}, cifar100_dir: {:?}}}",
                cifar10.path().display().to_string(),
                cifar100.path().display().to_string()
            ),
            _ => String::new(),
        };
        let params = (reg.resolve)(&mapping(&yaml)).unwrap_or_else(|e| panic!("{}: {e}", reg.name));
        let dataset = match (reg.load)(&params, &OFFLINE) {
            Ok(d) => d,
            Err(e) => {
                common::skip(
                    "every_registered_dataset_loads_with_the_shape_it_announces",
                    &format!("{} cannot be loaded here: {e}", reg.name),
                );
                continue;
            }
        };
        let shape = (reg.shape)(&params);
        assert_eq!(dataset.name, reg.name);
        for split in [&dataset.train, &dataset.test] {
            assert_eq!(split.shape(), shape, "{}", reg.name);
            assert!((1..=256).contains(&split.classes), "{}", reg.name);
            assert_eq!(
                split.images.len(),
                split.len() * shape.pixels(),
                "{}",
                reg.name
            );
            assert!(
                split.labels.iter().all(|&l| usize::from(l) < split.classes),
                "{}",
                reg.name
            );
            assert_eq!(split.class_counts().len(), split.classes);
        }
        checked.push(reg.name);
    }
    for name in ["synthetic", "cifar10", "cifar100", "hat_cifar"] {
        assert!(
            checked.contains(&name),
            "{name} was not checked: {checked:?}"
        );
    }
    eprintln!("checked: {checked:?}");
}

#[test]
fn hat_cifar_puts_cifar100_fine_labels_after_cifar10s_and_tasks_may_differ_in_size() {
    let (c10, c100) = (cifar10_dir(), cifar100_dir());
    let yaml = format!(
        "{{cifar10_dir: {:?}, cifar100_dir: {:?}}}",
        c10.path().display().to_string(),
        c100.path().display().to_string()
    );
    let data = load("hat_cifar", &yaml).unwrap();
    // 15 CIFAR-10 records (labels i % 10), then 4 CIFAR-100 ones (fine 99 - i, plus 10).
    let mut want: Vec<u8> = (0..15).map(|i| (i % 10) as u8).collect();
    want.extend([109, 108, 107, 106]);
    assert_eq!(data.train.labels, want);
    assert_eq!((data.train.classes, data.test.labels.len()), (110, 4));
    // Heads of 2 and 4 classes, one after the other.
    let scenario = clbench::scenario::Scenario::split(
        &data.train,
        &data.test,
        &[vec![8, 9], vec![106, 107, 108, 109]],
        clbench::scenario::Mode::Task,
        clbench::scenario::Heads::Multi,
    )
    .unwrap();
    assert_eq!(scenario.outputs, 6);
    assert_eq!(scenario.tasks[1].columns, vec![2, 3, 4, 5]);
    assert_eq!(scenario.tasks[1].column_of_label[109], Some(5));
}

#[test]
fn cifar10_loads_records_in_file_order_with_chw_pixels() {
    let dir = cifar10_dir();
    let data = load("cifar10", &dir_yaml(dir.path())).unwrap();
    assert_eq!(data.name, "cifar10");
    assert_eq!((data.train.len(), data.test.len()), (15, 2));
    let expected: Vec<u8> = (0..15).map(|i| (i % 10) as u8).collect();
    assert_eq!(data.train.labels, expected);
    assert_eq!(data.test.labels, [9, 8]);
    assert_eq!(data.train.shape(), clbench::datasets::cifar10::SHAPE);
    // Record 7 (in data_batch_3.bin) as a [1, 3, 32, 32] tensor: channel, row, column.
    let x = to_chw_shape(&data.train.images_tensor(&[7], Device::Cpu), 3, 32, 32);
    for (c, r, col) in [(0, 0, 0), (1, 0, 0), (2, 31, 31), (1, 17, 3)] {
        let got = x.double_value(&[0, c, r, col]) * 255.0;
        let want = f64::from(pixel(7, c as usize, r as usize, col as usize));
        assert!(
            (got - want).abs() < 1e-3,
            "({c}, {r}, {col}): {got} vs {want}"
        );
    }
    assert_eq!(data.train.images[7 * 3072..8 * 3072], record(&[7], 7)[1..]);
}

#[test]
fn cifar100_fine_and_coarse_labels() {
    let dir = cifar100_dir();
    let fine = load("cifar100", &dir_yaml(dir.path())).unwrap();
    assert_eq!((fine.train.len(), fine.test.len()), (4, 2));
    assert_eq!(fine.train.labels, [99, 98, 97, 96]);
    assert_eq!((fine.train.classes, fine.train.channels), (100, 3));
    assert_eq!(fine.train.images[3072..2 * 3072], record(&[1, 98], 1)[2..]);
    let coarse = load(
        "cifar100",
        &format!("{}labels: coarse\n", dir_yaml(dir.path())),
    )
    .unwrap();
    assert_eq!(coarse.train.labels, [0, 1, 2, 3]);
    assert_eq!(coarse.train.classes, 20);
    assert_eq!(coarse.train.images, fine.train.images);
}

/// Loads `name` from `dir` expecting an error whose message names `file` and contains each of
/// `needles`.
fn expect_error(name: &str, dir: &Path, file: &str, needles: &[&str]) -> String {
    let err = load(name, &dir_yaml(dir)).expect_err("loading damaged data must fail");
    let msg = err.to_string();
    assert!(msg.contains(file), "message does not name {file}: {msg}");
    for needle in needles {
        assert!(msg.contains(needle), "message lacks {needle:?}: {msg}");
    }
    msg
}

#[test]
fn truncated_cifar_file() {
    let dir = cifar10_dir();
    let path = dir.path().join("data_batch_3.bin");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    expect_error(
        "cifar10",
        dir.path(),
        "data_batch_3.bin",
        &[
            "CIFAR-10",
            "truncated",
            "2 whole records of 3073 bytes",
            "2973 bytes over",
            "re-download it",
            "CLBENCH_CIFAR10",
        ],
    );
}

#[test]
fn records_of_the_wrong_size() {
    // CIFAR-100 records (3074 bytes) where CIFAR-10 (3073) is expected.
    let dir = cifar10_dir();
    let wrong: Vec<u8> = (0..3).flat_map(|i| record(&[1, 2], i)).collect();
    fs::write(dir.path().join("test_batch.bin"), wrong).unwrap();
    expect_error(
        "cifar10",
        dir.path(),
        "test_batch.bin",
        &["not a CIFAR-10 file", "3074-byte records", "CIFAR-100"],
    );
    // And CIFAR-10 records where CIFAR-100 is expected.
    let dir = cifar100_dir();
    let wrong: Vec<u8> = (0..2).flat_map(|i| record(&[1], i)).collect();
    fs::write(dir.path().join("train.bin"), wrong).unwrap();
    expect_error(
        "cifar100",
        dir.path(),
        "train.bin",
        &["not a CIFAR-100 file", "3073-byte records"],
    );
    let dir = cifar100_dir();
    fs::write(dir.path().join("test.bin"), b"").unwrap();
    expect_error("cifar100", dir.path(), "test.bin", &["empty"]);
}

#[test]
fn labels_out_of_range() {
    let dir = cifar10_dir();
    let bytes: Vec<u8> = [record(&[3], 0), record(&[10], 1)].concat();
    fs::write(dir.path().join("data_batch_5.bin"), bytes).unwrap();
    expect_error(
        "cifar10",
        dir.path(),
        "data_batch_5.bin",
        &["label 10 of record 1 (byte offset 3073) is outside 0..=9"],
    );
    let dir = cifar100_dir();
    let bytes: Vec<u8> = [record(&[0, 100], 0)].concat();
    fs::write(dir.path().join("train.bin"), bytes).unwrap();
    expect_error(
        "cifar100",
        dir.path(),
        "train.bin",
        &["fine label 100 of record 0", "outside 0..=99"],
    );
    // The coarse label is checked even when the fine one is used.
    let bytes: Vec<u8> = [record(&[20, 5], 0)].concat();
    fs::write(dir.path().join("train.bin"), bytes).unwrap();
    expect_error(
        "cifar100",
        dir.path(),
        "train.bin",
        &["coarse label 20 of record 0", "outside 0..=19"],
    );
}

#[test]
fn missing_cifar_folder_offline_says_where_and_how() {
    let empty = tempfile::tempdir().unwrap();
    let nowhere = empty.path().join("nowhere");
    let msg = expect_error(
        "cifar10",
        &nowhere,
        "nowhere",
        &[
            "CIFAR-10 files missing",
            "data_batch_1.bin",
            "test_batch.bin",
            "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            "CLBENCH_CIFAR10",
            "dataset.download: true",
        ],
    );
    assert!(
        !nowhere.exists(),
        "an offline load created the folder: {msg}"
    );
    expect_error(
        "cifar100",
        &nowhere,
        "nowhere",
        &[
            "train.bin, test.bin",
            "cifar-100-binary.tar.gz",
            "CLBENCH_CIFAR100",
        ],
    );
    // Only the missing files are listed.
    let dir = cifar10_dir();
    fs::remove_file(dir.path().join("data_batch_2.bin")).unwrap();
    let err = load("cifar10", &dir_yaml(dir.path())).unwrap_err();
    assert!(
        matches!(&err, DataError::Missing { files, .. } if files == &["data_batch_2.bin"]),
        "{err}"
    );
}

// ---- the `dataset:` section of an experiment file ----

fn experiment(dataset: &str, tasks: &str) -> String {
    format!(
        "name: t
dataset:
{dataset}
scenario:
  kind: split
  mode: task
  tasks: {tasks}
training:
  optimizer: adam
  lr: 0.01
  batch_size: 16
seeds: [1]
strategies:
  - name: naive
"
    )
}

fn plan(text: &str) -> Result<Plan, String> {
    let registry = clbench::strategy::Registry::load().unwrap();
    Plan::from_str(text, Path::new("test.yaml"), &registry).map_err(|e| e.to_string())
}

#[test]
fn unknown_dataset_name_suggests_and_lists() {
    let err = plan(&experiment("  name: cifar1O", "[[0, 1]]")).unwrap_err();
    assert!(err.starts_with("test.yaml:3:3: "), "{err}");
    assert!(
        err.contains("did you mean `cifar10`?")
            && err.contains(&DatasetRegistry::load().unwrap().names().join(", ")),
        "{err}"
    );
}

#[test]
fn unknown_dataset_key_is_located_and_lists_the_allowed_keys() {
    let err = plan(&experiment("  name: cifar100\n  dri: x", "[[0, 1]]")).unwrap_err();
    assert!(
        err.starts_with("test.yaml:4:3: dataset `cifar100`: "),
        "{err}"
    );
    assert!(
        err.contains("unknown field `dri`") && err.contains("`labels`"),
        "{err}"
    );
    let err = plan(&experiment(
        "  name: cifar100\n  labels: medium",
        "[[0, 1]]",
    ))
    .unwrap_err();
    assert!(err.starts_with("test.yaml:4:3: "), "{err}");
    // Flow style.
    let text = experiment("", "[[0, 1]]").replace("dataset:\n\n", "dataset: {name: mnist, x: 1}\n");
    let err = plan(&text).unwrap_err();
    assert!(err.starts_with("test.yaml:2:24: "), "{err}");
}

#[test]
fn task_classes_are_checked_against_the_dataset() {
    let err = plan(&experiment("  name: cifar10", "[[0, 1], [9, 10]]")).unwrap_err();
    assert!(err.starts_with("test.yaml:7:3: "), "{err}");
    assert!(
        err.contains("class 10") && err.contains("`cifar10` has 10 classes"),
        "{err}"
    );
    let ok = plan(&experiment("  name: cifar100", "[[50, 99], [0, 1]]")).unwrap();
    assert_eq!(ok.dataset_shape.classes, 100);
    assert_eq!(
        (
            ok.dataset.name.as_str(),
            ok.dataset.params["labels"].as_str()
        ),
        ("cifar100", Some("fine"))
    );
    let err = plan(&experiment(
        "  name: cifar100\n  labels: coarse",
        "[[0, 25]]",
    ))
    .unwrap_err();
    assert!(err.contains("has 20 classes"), "{err}");
    let err = plan(&experiment(
        "  name: synthetic\n  classes: 4",
        "[[0, 1], [2, 3], [4, 5]]",
    ))
    .unwrap_err();
    assert!(
        err.contains("class 4") && err.contains("4 classes"),
        "{err}"
    );
    // A synthetic spec out of range is a located error, not a panic.
    let err = plan(&experiment("  name: synthetic\n  classes: 300", "[[0, 1]]")).unwrap_err();
    assert!(
        err.starts_with("test.yaml:4:3: dataset `synthetic`: classes is 300"),
        "{err}"
    );
    let rotated = experiment("  name: cifar10", "[[0, 1]]")
        .replace("kind: split", "kind: rotated\n  angles: [0, 90]");
    let err = plan(&rotated).unwrap_err();
    assert!(err.contains("single-channel"), "{err}");
}

/// The older `synthetic:` nesting and the flat form give the same plan settings and data.
#[test]
fn nested_synthetic_form_still_works() {
    let nested = plan(&experiment(
        "  name: synthetic\n  synthetic: {seed: 3, train_per_class: 6, test_per_class: 2}",
        "[[0, 1]]",
    ))
    .unwrap();
    let flat = plan(&experiment(
        "  name: synthetic\n  seed: 3\n  train_per_class: 6\n  test_per_class: 2",
        "[[0, 1]]",
    ))
    .unwrap();
    assert_eq!(nested.dataset, flat.dataset);
    assert_eq!(nested.jobs[0].settings, flat.jobs[0].settings);
    assert_eq!(nested.jobs[0].settings["dataset"]["name"], "synthetic");
    let a = clbench::runner::load_dataset(&nested).unwrap();
    let b = clbench::runner::load_dataset(&flat).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.train.len(), 60);
}

/// The settings clbench recorded before dataset plugins, rebuilt for old results to match.
#[test]
fn legacy_settings_match_the_old_format() {
    let nested =
        "  name: synthetic\n  synthetic: {seed: 3, train_per_class: 60, test_per_class: 20}";
    let cases = [
        (
            "  name: mnist",
            Some(r#"{"name":"mnist","dir":null,"download":true,"synthetic":null}"#),
        ),
        (
            "  name: mnist\n  dir: /x\n  download: false",
            Some(r#"{"name":"mnist","dir":"/x","download":false,"synthetic":null}"#),
        ),
        (
            nested,
            Some(
                r#"{"name":"synthetic","dir":null,"download":true,"synthetic":{"seed":3,"train_per_class":60,"test_per_class":20,"classes":10,"rows":28,"cols":28,"noise":0.25}}"#,
            ),
        ),
        (
            "  name: synthetic",
            Some(r#"{"name":"synthetic","dir":null,"download":true,"synthetic":null}"#),
        ),
        ("  name: synthetic\n  seed: 3", None),
        ("  name: synthetic\n  synthetic: {channels: 3}", None),
        ("  name: cifar10", None),
    ];
    for (dataset, want) in cases {
        let p = plan(&experiment(dataset, "[[0, 1]]")).unwrap();
        let got = p.dataset.legacy_settings(&p.experiment.dataset);
        let want: Option<serde_json::Value> = want.map(|w| serde_json::from_str(w).unwrap());
        assert_eq!(got, want, "{dataset}");
    }
}

/// `clbench datasets` lists every registered dataset with its parameters; `clbench data`
/// loads the one `--dataset` names.
#[test]
fn the_datasets_and_data_subcommands() {
    let clbench = env!("CARGO_BIN_EXE_clbench");
    let out = std::process::Command::new(clbench)
        .arg("datasets")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for reg in DatasetRegistry::load().unwrap().iter() {
        assert!(
            text.contains(reg.name) && text.contains(reg.summary),
            "{text}"
        );
        for spec in reg.params {
            let param = spec.name;
            assert!(text.contains(&format!("{param} = ")), "{param}: {text}");
        }
    }
    assert!(text.contains("labels = \"fine\""), "{text}");

    let dir = cifar10_dir();
    let out = std::process::Command::new(clbench)
        .args(["data", "--dataset", "cifar10", "--offline", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("train: 15 images of 3 channel(s) x 32x32, 10 classes"),
        "{text}"
    );
    let out = std::process::Command::new(clbench)
        .args(["data", "--dataset", "cifar100", "--offline", "--dir"])
        .arg(dir.path().join("nowhere"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("CIFAR-100 files missing"),
        "{err}"
    );
}

/// A tiny split experiment on generated colour CIFAR-10 files runs end to end: the network gets
/// 3 x 32 x 32 inputs.
#[test]
fn a_tiny_cifar10_experiment_runs_end_to_end() {
    let data = cifar10_dir();
    let test: Vec<u8> = (0..10).flat_map(|i| record(&[i as u8], i)).collect();
    fs::write(data.path().join("test_batch.bin"), test).unwrap();
    let out = tempfile::tempdir().unwrap();
    let text = experiment(
        &format!("  name: cifar10\n  {}  download: false", dir_yaml(data.path())),
        "[[0, 1], [2, 3]]",
    )
    .replace("batch_size: 16", "batch_size: 4\n  epochs: 1")
    .replace(
        "strategies:",
        &format!(
            "model:\n  hidden: [8]\nrunner:\n  devices: [cpu]\n  workers: 1\noutput: {:?}\nstrategies:",
            out.path().display().to_string()
        ),
    );
    let file = out.path().join("cifar.yaml");
    fs::write(&file, &text).unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_clbench"))
        .args(["run", "--quiet"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{text}\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let jobs = fs::read_dir(out.path().join("t/jobs")).unwrap().count();
    assert_eq!(jobs, 1);
}
