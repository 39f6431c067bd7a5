//! A job's id is a readable label plus a hash of everything its outcome depends on: changing
//! the model kind, one transform, the dataset or any other setting changes every id; changing
//! nothing keeps them, so finished results are found again.

mod common;

fn ids(text: &str) -> Vec<String> {
    common::plan_from(text)
        .jobs
        .into_iter()
        .map(|j| j.id)
        .collect()
}

#[test]
fn every_setting_enters_the_id_and_an_unchanged_file_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::synthetic_yaml(
        "ids",
        dir.path(),
        "  - name: naive\n  - name: ewc\n    lambda: 10.0\n",
    );
    let before = ids(&base);
    assert_eq!(before, ids(&base), "the same file gave other ids");
    assert_eq!(before.len(), 4);
    // Short and readable: the strategy, the parameters the file sets, the seed, then the hash.
    assert!(
        before[2].starts_with("ewc_lambda=10.0_seed1-"),
        "{}",
        before[2]
    );
    assert!(before.iter().all(|id| id.len() < 40), "{before:?}");

    let changes = [
        (
            "model kind",
            base.replace(
                "model:\n  hidden: [32]",
                "model:\n  name: conv\n  channels: [4]\n  hidden: [32]",
            ),
        ),
        ("model width", base.replace("hidden: [32]", "hidden: [33]")),
        (
            "one transform",
            base.replace("scenario:", "transforms: {pad: 2}\nscenario:"),
        ),
        (
            "augmentation",
            base.replace(
                "scenario:",
                "transforms: {horizontal_flip: true}\nscenario:",
            ),
        ),
        (
            "dataset",
            base.replace("seed: 3, train_per_class", "seed: 4, train_per_class"),
        ),
        (
            "scenario",
            base.replace("mode: task", "mode: class")
                .replace("hidden: [32]", "hidden: [32]\n  heads: single"),
        ),
        ("training", base.replace("lr: 0.01", "lr: 0.02")),
    ];
    for (what, text) in changes {
        let after = ids(&text);
        assert_eq!(after.len(), before.len(), "{what}");
        for (a, b) in before.iter().zip(&after) {
            assert_ne!(a, b, "changing the {what} kept the id {a}");
        }
    }
    // A strategy parameter changes that strategy's jobs only.
    let merge_sum = ids(&base.replace("lambda: 10.0", "lambda: 10.0\n    merge: sum"));
    assert_eq!(merge_sum[..2], before[..2]);
    assert!(merge_sum[2..].iter().zip(&before[2..]).all(|(a, b)| a != b));
    assert!(
        merge_sum[2].starts_with("ewc_lambda=10.0_merge=sum_seed1-"),
        "{}",
        merge_sum[2]
    );
    // A setting written out at its default value is the same setting, and the same job.
    let explicit_default = base.replace("lambda: 10.0", "lambda: 10.0\n    merge: mean");
    assert_eq!(ids(&explicit_default), before);
}
