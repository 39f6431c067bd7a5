//! No panic or hang is reachable from an experiment file: every shipped file, mutated at random
//! (seeded) many times over, is planned and dry-run as `clbench run --dry-run` does, in process.
//! Each mutant must either plan or be rejected with an error that names the file and a line; none
//! may panic, and each must finish within a time bound.
//!
//! Mutations: delete, duplicate or retype a key; numbers replaced by negative, zero, huge, NaN
//! and infinite values; huge lists; unicode, empty and path-like strings; deep nesting; and, on
//! the text, truncation and repeated or deleted lines.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use rand::{seq::SliceRandom, Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_yaml::Value;

use clbench::config::Plan;
use clbench::strategy::Registry;

/// Mutants in all (over every shipped file).
const MUTANTS: usize = 1200;
/// The longest one mutant may take to plan and dry-run.
const BOUND: Duration = Duration::from_secs(10);

fn shipped_files() -> Vec<(PathBuf, String)> {
    common::shipped_experiments()
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// Every path to a value in `v` (mapping keys and list indices), for picking one at random.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                prefix.push(k.clone());
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                prefix.push(Value::Number((i as u64).into()));
                out.push(prefix.clone());
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

/// The value at `path`, and the container holding it.
fn get_mut<'a>(v: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    let mut here = v;
    for key in path {
        here = match here {
            Value::Mapping(m) => m.get_mut(key)?,
            Value::Sequence(s) => s.get_mut(key.as_u64()? as usize)?,
            _ => return None,
        };
    }
    Some(here)
}

/// Removes the entry at `path` from its parent.
fn remove(v: &mut Value, path: &[Value]) {
    let (last, parent) = path.split_last().unwrap();
    match get_mut(v, parent) {
        Some(Value::Mapping(m)) => {
            m.remove(last);
        }
        Some(Value::Sequence(s)) => {
            let i = last.as_u64().unwrap() as usize;
            if i < s.len() {
                s.remove(i);
            }
        }
        _ => {}
    }
}

/// A number chosen to break ranges: negative, zero, huge, non-finite, fractional.
fn odd_number(rng: &mut ChaCha8Rng) -> Value {
    let choices: [Value; 12] = [
        Value::from(-1),
        Value::from(0),
        Value::from(-0.5),
        Value::from(1e308),
        Value::from(-1e308),
        Value::from(f64::NAN),
        Value::from(f64::INFINITY),
        Value::from(f64::NEG_INFINITY),
        Value::from(u64::MAX),
        Value::from(i64::MIN),
        Value::from(1e-320),
        Value::from(0.5),
    ];
    choices.choose(rng).unwrap().clone()
}

fn odd_string(rng: &mut ChaCha8Rng) -> Value {
    let choices = [
        "",
        " ",
        "ünïcødé ✓ 🚀",
        "../../../etc",
        "/",
        "a/b",
        "\u{202e}reversed",
        "null",
        "1e5",
        "ewc",
        "cuda:99",
        "\t",
    ];
    Value::String(choices.choose(rng).unwrap().to_string())
}

/// A value of another type than the one it replaces.
fn retyped(rng: &mut ChaCha8Rng) -> Value {
    match rng.gen_range(0..7) {
        0 => odd_string(rng),
        1 => Value::Bool(rng.gen()),
        2 => Value::Null,
        3 => odd_number(rng),
        4 => Value::Sequence(vec![odd_number(rng), odd_string(rng)]),
        5 => {
            let mut m = serde_yaml::Mapping::new();
            m.insert(odd_string(rng), odd_number(rng));
            Value::Mapping(m)
        }
        _ => Value::Sequence(Vec::new()),
    }
}

/// A list of `n` numbers (a grid axis, seeds, widths, tasks).
fn huge_list(rng: &mut ChaCha8Rng) -> Value {
    let n = *[500usize, 2000, 20000].choose(rng).unwrap();
    Value::Sequence((0..n).map(|i| Value::from(i as u64)).collect())
}

/// `depth` levels of lists or mappings around `inner`.
fn nested(rng: &mut ChaCha8Rng, inner: Value) -> Value {
    let depth = *[10usize, 100, 1000].choose(rng).unwrap();
    (0..depth).fold(inner, |v, _| {
        if rng.gen() {
            Value::Sequence(vec![v])
        } else {
            let mut m = serde_yaml::Mapping::new();
            m.insert(Value::String("k".into()), v);
            Value::Mapping(m)
        }
    })
}

/// One structural mutation of `doc`.
fn mutate_value(rng: &mut ChaCha8Rng, doc: &mut Value) {
    let mut all = Vec::new();
    paths(doc, &mut Vec::new(), &mut all);
    let Some(path) = all.choose(rng).cloned() else {
        return;
    };
    match rng.gen_range(0..8) {
        0 => remove(doc, &path),
        1 => {
            // Duplicate a mapping entry under a near name (a copied-and-edited key).
            let (last, parent) = path.split_last().unwrap();
            let copy = get_mut(doc, &path).cloned();
            if let (Some(Value::Mapping(m)), Some(copy), Some(k)) =
                (get_mut(doc, parent), copy, last.as_str())
            {
                m.insert(Value::String(format!("{k}_")), copy);
            }
        }
        2 => *get_mut(doc, &path).unwrap() = retyped(rng),
        3 | 4 => {
            // Numbers are the commonest edit: replace a number (or anything) by an odd one.
            let target = get_mut(doc, &path).unwrap();
            *target = odd_number(rng);
        }
        5 => *get_mut(doc, &path).unwrap() = huge_list(rng),
        6 => *get_mut(doc, &path).unwrap() = odd_string(rng),
        _ => {
            let target = get_mut(doc, &path).unwrap();
            let inner = target.clone();
            *target = nested(rng, inner);
        }
    }
}

/// One textual mutation of `text`: truncation, a repeated or deleted line, a tab, a stray
/// character.
fn mutate_text(rng: &mut ChaCha8Rng, text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return text.to_string();
    }
    let i = rng.gen_range(0..lines.len());
    match rng.gen_range(0..5) {
        0 => {
            let mut cut = rng.gen_range(0..text.len().max(1));
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].to_string()
        }
        1 => {
            let mut l = lines.clone();
            l.insert(i, lines[i]);
            l.join("\n")
        }
        2 => {
            let mut l = lines.clone();
            l.remove(i);
            l.join("\n")
        }
        3 => {
            let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
            l[i] = format!("\t{}", l[i]);
            l.join("\n")
        }
        _ => {
            let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
            let stray = *["{", "]", ":", "- ", "&a", "*a", "!!binary"]
                .choose(rng)
                .unwrap();
            l[i].push_str(stray);
            l.join("\n")
        }
    }
}

enum Outcome {
    Planned,
    Rejected(String),
}

/// Plans `text` and dry-runs the plan into `out_dir`, as `clbench run --dry-run` does.
fn plan_and_dry_run(text: &str, name: &str, out_dir: &Path) -> Outcome {
    let registry = Registry::load().unwrap();
    match Plan::from_str(text, Path::new(name), &registry) {
        Err(e) => Outcome::Rejected(e.to_string()),
        Ok(mut plan) => {
            // The file's own `output` could name any folder: read results only from an empty
            // one (the dry run reads the folder, and must not depend on this machine's).
            plan.out_dir = out_dir.to_path_buf();
            clbench::runner::check_output_folder(&plan).unwrap();
            let listing = clbench::runner::dry_run(&plan, false, None);
            assert!(listing.contains("jobs, "), "{listing}");
            Outcome::Planned
        }
    }
}

#[test]
fn mutated_experiment_files_never_panic_or_hang_and_every_rejection_names_a_line() {
    let files = shipped_files();
    assert!(files.len() >= 12);
    let out = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let started = Instant::now();
    let (mut planned, mut rejected) = (0, 0);
    let mut unlocated = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..MUTANTS {
        let (path, text) = &files[i % files.len()];
        let mut doc: Value = serde_yaml::from_str(text).unwrap();
        for _ in 0..rng.gen_range(1..=2) {
            mutate_value(&mut rng, &mut doc);
        }
        let mut mutant = serde_yaml::to_string(&doc).unwrap();
        if rng.gen_bool(0.15) {
            mutant = mutate_text(&mut rng, &mutant);
        }
        let name = format!("mutant{i}.yaml");
        let (tx, rx) = mpsc::channel();
        let (t, n, o) = (mutant.clone(), name.clone(), out.path().to_path_buf());
        let one = Instant::now();
        let worker = std::thread::spawn(move || {
            let _ = tx.send(plan_and_dry_run(&t, &n, &o));
        });
        let outcome = match rx.recv_timeout(BOUND) {
            Ok(outcome) => outcome,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "mutant {i} of {} took over {BOUND:?}:\n{mutant}",
                path.display()
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = worker.join();
                panic!(
                    "mutant {i} of {} panicked (message above):\n{mutant}",
                    path.display()
                )
            }
        };
        worker.join().unwrap();
        slowest = slowest.max(one.elapsed());
        match outcome {
            Outcome::Planned => planned += 1,
            Outcome::Rejected(message) => {
                rejected += 1;
                let located = message
                    .strip_prefix(&format!("{name}:"))
                    .and_then(|rest| rest.split(':').next())
                    .is_some_and(|line| line.parse::<usize>().is_ok());
                if !located {
                    unlocated.push(format!("{}: {message}", path.display()));
                }
            }
        }
    }
    let took = started.elapsed();
    // Shown with `cargo test --test fuzz_config -- --nocapture`.
    println!(
        "{MUTANTS} mutants of {} files: {planned} planned, {rejected} rejected, 0 panics, 0 hangs; \
         {:.1} s in all, slowest {:.2} s",
        files.len(),
        took.as_secs_f64(),
        slowest.as_secs_f64()
    );
    assert!(
        unlocated.is_empty(),
        "{} rejection(s) without a line:\n{}",
        unlocated.len(),
        unlocated.join("\n")
    );
    assert!(
        rejected > MUTANTS / 4,
        "mutations too mild: {rejected} rejected"
    );
}
