//! Runs a plan: jobs spread over worker threads and devices, each job end to end in its worker.
//!
//! Tensors are not `Sync`, so only plain data crosses threads: the plan, the dataset's bytes and
//! the scenario's index lists go in, a [`JobResult`] comes out. Each worker sets its own libtorch
//! intra-op thread count so that workers x threads does not exceed the cores. A job that fails is
//! recorded with its id and the others go on; the caller turns failures into the exit code.
//! Each job is claimed (see [`claim`]) just before it starts, so that processes sharing the
//! results folder spread the grid between them; a job claimed by a live process is left to it.

pub mod checkpoint;
pub mod claim;
mod continual;
pub mod denormals;
pub mod devices;
mod job;
pub mod memory;
pub mod progress;

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::Instant,
};

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::config::{selection::SearchScore, JobSpec, Phase, Plan, ScenarioKind};
use crate::data::{Dataset, DatasetRegistry, LoadOptions};
use crate::results::{write_json_atomic, JobResult};
use crate::scenario::Scenario;
use crate::strategy::Registry;

pub use job::{model_input, provenance, run_job, run_job_with_model};
pub use progress::{JobEvent, Progress};

/// How the runner talks.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// No progress lines.
    pub quiet: bool,
    /// Rerun jobs that already have a result with the same settings.
    pub force: bool,
    /// Jobs at once, overriding the file's `runner.workers`.
    pub workers: Option<usize>,
    /// Run only shard `i` of `n` (0-based): the jobs whose position in each phase's list is
    /// `i` modulo `n`.
    pub shard: Option<(usize, usize)>,
}

/// What a run produced: finished results and failures, in plan order.
pub struct RunOutcome {
    /// Jobs not run because a result with the same settings was already saved.
    pub skipped: usize,
    /// (job id, who holds it) of each job not run because another live process claimed it.
    pub elsewhere: Vec<(String, String)>,
    pub results: Vec<JobResult>,
    /// (job id, error chain) of each job that failed.
    pub failures: Vec<(String, String)>,
    pub wall_s: f64,
    pub workers: usize,
    pub threads_per_worker: usize,
    pub devices: Vec<String>,
}

/// Loads the experiment's dataset (plain bytes, shared by every job) through the dataset
/// registry, downloads allowed as the dataset's parameters say.
pub fn load_dataset(plan: &Plan) -> Result<Dataset> {
    load_dataset_with(plan, &LoadOptions::default())
}

/// [`load_dataset`] with options (`offline` forbids downloads). The loaded data must have the
/// shape the plan was validated against.
pub fn load_dataset_with(plan: &Plan, opts: &LoadOptions) -> Result<Dataset> {
    let registry = DatasetRegistry::load()?;
    let reg = registry
        .lookup(&plan.dataset.name)
        .map_err(anyhow::Error::msg)?;
    let dataset = (reg.load)(&plan.dataset.params, opts)?;
    for (name, split) in [("train", &dataset.train), ("test", &dataset.test)] {
        if split.shape() != plan.dataset_shape {
            anyhow::bail!(
                "dataset `{}`: its {name} split has shape {:?} but the plugin announced {:?}; \
                 the dataset plugin is wrong",
                reg.name,
                split.shape(),
                plan.dataset_shape
            );
        }
    }
    Ok(dataset)
}

/// Builds the scenario of the plan over `dataset`, as run seed `run_seed` sees it (the same for
/// every seed unless the scenario has `draw_per_seed`).
pub fn build_scenario(plan: &Plan, dataset: &Dataset, run_seed: u64) -> Result<Scenario> {
    let s = &plan.experiment.scenario;
    let (train, test) = (&dataset.train, &dataset.test);
    match s.kind {
        ScenarioKind::Split => Scenario::split(train, test, &s.tasks, s.mode, plan.heads),
        ScenarioKind::Permuted => Scenario::permuted(
            train,
            test,
            s.task_count(),
            s.identity_first,
            s.tasks_seed(run_seed),
            s.mode,
            plan.heads,
        ),
        ScenarioKind::Rotated => Scenario::rotated(
            train,
            test,
            &s.rotation_angles(run_seed),
            s.interpolation,
            s.mode,
            plan.heads,
        ),
    }
    .with_context(|| format!("{}: scenario", plan.file.display()))
}

/// The scenario each job's seed sees: one shared by all, or one per seed with `draw_per_seed`.
fn scenarios_of(
    plan: &Plan,
    dataset: &Dataset,
    jobs: &[&JobSpec],
) -> Result<std::collections::HashMap<u64, Arc<Scenario>>> {
    let seeds = distinct_seeds(jobs.iter().copied());
    if plan.experiment.scenario.draw_per_seed {
        seeds
            .into_iter()
            .map(|seed| Ok((seed, Arc::new(build_scenario(plan, dataset, seed)?))))
            .collect()
    } else {
        let shared = Arc::new(build_scenario(plan, dataset, 0)?);
        Ok(seeds.into_iter().map(|s| (s, shared.clone())).collect())
    }
}

/// The seeds of `jobs`, each once, in order.
fn distinct_seeds<'a>(jobs: impl Iterator<Item = &'a JobSpec>) -> Vec<u64> {
    jobs.map(|j| j.seed)
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect()
}

/// Removes temp files a killed run on this host left behind (see `results::write`), so the
/// folder holds only complete results; other processes' temp files are left alone.
fn remove_stale_temp_files(dir: &std::path::Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if crate::results::is_stale_temp(&name) {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

fn remove_if_present(path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The saved result of `job` under `jobs_dir`, if there is one with the same settings.
///
/// A result saved under another id is migrated once (rewritten under the job's id, atomically,
/// then the old file removed; its numbers untouched): one with the same settings hash and
/// settings under an older label, or one an earlier clbench saved under the job's legacy id
/// (see `JobSpec::legacy`) with the settings it recorded then.
pub fn finished(jobs_dir: &std::path::Path, job: &JobSpec) -> Option<JobResult> {
    // An unreadable file counts as not finished here; `check_output_folder` has already
    // refused it, with its name, before anything ran.
    let read =
        |id: &str| crate::results::read_job_result(&jobs_dir.join(format!("{id}.json"))).ok();
    if let Some(result) = read(&job.id).filter(|r| r.settings == job.settings) {
        return Some(result);
    }
    // The same settings under another label (the label's rules changed): the hash decides.
    let same_hash = job.id.rsplit_once('-').and_then(|(_, hash)| {
        let suffix = format!("-{hash}.json");
        std::fs::read_dir(jobs_dir).ok()?.flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json")?;
            (name.ends_with(&suffix) && id != job.id)
                .then(|| read(id).filter(|r| r.settings == job.settings))
                .flatten()
                .map(|r| (id.to_string(), r))
        })
    });
    let (old_id, mut result) = match same_hash {
        Some(found) => found,
        None => {
            let (old_id, old_settings) = job.legacy.as_ref()?;
            let result = read(old_id).filter(|r| &r.settings == old_settings)?;
            (old_id.clone(), result)
        }
    };
    result.id = job.id.clone();
    result.settings = job.settings.clone();
    write_json_atomic(&jobs_dir.join(format!("{}.json", job.id)), &result).ok()?;
    // The new file is complete; a failure to remove the old one leaves a duplicate, not a loss.
    let _ = std::fs::remove_file(jobs_dir.join(format!("{old_id}.json")));
    Some(result)
}

/// The selection scores of the search runs of `plan` that have a saved result: final ACC of
/// the matrix each was scored on (validation data, or the first tasks). Only these numbers reach
/// the choice.
pub fn search_scores(plan: &Plan) -> Vec<SearchScore> {
    let jobs_dir = plan.out_dir.join("jobs");
    plan.jobs
        .iter()
        .filter(|job| job.phase == Phase::Search)
        .filter_map(|job| {
            let result = finished(&jobs_dir, job)?;
            Some(SearchScore {
                entry: job.entry,
                params: job.params.clone(),
                seed: job.seed,
                score: crate::results::metrics::acc(&result.accuracy),
            })
        })
        .collect()
}

/// Every job of `plan` known now: [`Plan::jobs`] and the runs of the configurations that the
/// saved search results choose.
pub fn planned_jobs(plan: &Plan) -> Vec<JobSpec> {
    let mut jobs = plan.jobs.clone();
    if plan.searches() {
        jobs.extend(plan.report_jobs(&search_scores(plan)).0);
    }
    jobs
}

/// (job id, holder) of each job of `plan` (as [`planned_jobs`] knows them) that a live process
/// has claimed: running elsewhere now. What a run checks before building the report.
pub fn running_elsewhere(plan: &Plan) -> Vec<(String, String)> {
    let claims = claims_of(plan);
    planned_jobs(plan)
        .into_iter()
        .filter_map(|job| Some((job.id.clone(), claims.live_holder(&job.id)?.to_string())))
        .collect()
}

/// The claims of `plan`'s folder, for looking only: the default lease if the variable is bad
/// (the run that claims says so).
fn claims_of(plan: &Plan) -> claim::Claims {
    claim::Claims::new(&plan.out_dir)
        .unwrap_or_else(|_| claim::Claims::with_lease(&plan.out_dir, claim::DEFAULT_LEASE))
}

/// The jobs of one phase that shard `shard` (`i` of `n`) runs: every `n`-th from the `i`-th.
pub fn shard_of(jobs: Vec<JobSpec>, shard: Option<(usize, usize)>) -> Vec<JobSpec> {
    match shard {
        Some((i, n)) => jobs
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i)
            .map(|(_, j)| j)
            .collect(),
        None => jobs,
    }
}

/// Runs `plan`: its jobs, then, when the selection searches, the chosen configurations on the
/// report seeds. Each result is written to `<out_dir>/jobs/<id>.json` as it finishes. A search
/// that has not finished on every search seed (another shard's part, or a failed run) leaves its
/// entry's reported runs for a later run.
pub fn run_plan(
    plan: &Plan,
    registry: &Registry,
    dataset: Arc<Dataset>,
    opts: RunOptions,
) -> Result<RunOutcome> {
    let started = Instant::now();
    let mut outcome = run_jobs(
        plan,
        registry,
        &dataset,
        &shard_of(plan.jobs.clone(), opts.shard),
        opts,
    )?;
    if !plan.searches() {
        return Ok(outcome);
    }
    let (report, chosen) = plan.report_jobs(&search_scores(plan));
    if !opts.quiet {
        eprintln!("clbench: {}:", plan.selection_label());
        for (entry, params, score) in &chosen {
            eprintln!(
                "  entry {entry} ({}): {} (selection score {:.4})",
                plan.experiment.strategies[*entry]
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or("?"),
                crate::report::summary::params_label(params),
                score
            );
        }
        let entries: BTreeSet<usize> = plan.candidates.iter().map(|c| c.entry).collect();
        let waiting = entries.len() - chosen.len();
        if waiting > 0 {
            eprintln!(
                "clbench: {waiting} strategy entr(ies) still wait for search runs; rerun once they have finished"
            );
        }
    }
    let second = run_jobs(
        plan,
        registry,
        &dataset,
        &shard_of(report, opts.shard),
        opts,
    )?;
    outcome.skipped += second.skipped;
    outcome.elsewhere.extend(second.elsewhere);
    outcome.results.extend(second.results);
    outcome.failures.extend(second.failures);
    outcome.wall_s = started.elapsed().as_secs_f64();
    outcome.workers = outcome.workers.max(second.workers);
    Ok(outcome)
}

/// Runs `jobs` of `plan`, writing each result to `<out_dir>/jobs/<id>.json` as it finishes.
fn run_jobs(
    plan: &Plan,
    registry: &Registry,
    dataset: &Arc<Dataset>,
    jobs: &[JobSpec],
    opts: RunOptions,
) -> Result<RunOutcome> {
    let started = Instant::now();
    let jobs_dir = plan.out_dir.join("jobs");
    let (todo, skipped): (Vec<&JobSpec>, Vec<&JobSpec>) = jobs
        .iter()
        .partition(|job| opts.force || finished(&jobs_dir, job).is_none());
    if todo.is_empty() && skipped.is_empty() {
        return Ok(RunOutcome {
            skipped: 0,
            elsewhere: Vec::new(),
            results: Vec::new(),
            failures: Vec::new(),
            wall_s: 0.0,
            workers: 0,
            threads_per_worker: 0,
            devices: Vec::new(),
        });
    }
    let scenarios = scenarios_of(plan, dataset, &todo)?;
    let devices = devices::resolve(&plan.experiment.runner.devices)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runner = &plan.experiment.runner;
    let gpus = devices.iter().filter(|d| d.is_cuda()).count();
    let (workers, threads) = devices::worker_layout(
        todo.len(),
        cores,
        opts.workers
            .or(runner.workers)
            .or(runner.jobs_per_device.map(|k| k * devices.len())),
        runner.threads_per_worker,
        gpus,
    );
    let device_pool = devices::DevicePool::new(devices::slots(&devices, workers));
    std::fs::create_dir_all(&jobs_dir)
        .with_context(|| format!("creating {}", jobs_dir.display()))?;
    remove_stale_temp_files(&jobs_dir)?;
    let checkpoints_dir = plan.out_dir.join("checkpoints");
    if checkpoints_dir.exists() {
        remove_stale_temp_files(&checkpoints_dir)?;
    }
    let claims = claim::Claims::new(&plan.out_dir)?;
    if claims.dir().exists() {
        remove_stale_temp_files(claims.dir())?;
    }
    if !opts.quiet {
        if !skipped.is_empty() {
            eprintln!(
                "clbench: skipping {} finished job(s) with unchanged settings (--force reruns them)",
                skipped.len()
            );
        }
        eprintln!(
            "clbench: {} jobs on {} worker(s) x {} thread(s), devices {:?}; results in {}",
            todo.len(),
            workers,
            threads,
            devices,
            plan.out_dir.display()
        );
    }
    let flush = plan.experiment.runner.flush_denormal;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .start_handler(move |_| {
            if flush {
                denormals::flush_denormals_to_zero();
            }
        })
        .build()?;
    let progress = Progress::new(opts.quiet, todo.len(), skipped.len(), workers);
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let (finished_elsewhere, elsewhere) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let outcomes: Vec<(String, Ran)> = pool.install(|| {
        todo.par_iter()
            .map(|job| {
                // Claimed here, as the job starts, so that the grid spreads over the processes
                // sharing the folder as they free up; held until the result is written.
                let claimed = match claims.acquire(&job.id) {
                    Ok(claim::Acquired::Busy(holder)) => {
                        let n = elsewhere.fetch_add(1, SeqCst) + 1;
                        let done = skipped.len() + finished_elsewhere.load(SeqCst);
                        let why = format!("running elsewhere ({holder})");
                        progress.job_left(&job.id, &why, failed.load(SeqCst), done, n);
                        return (job.id.clone(), Ran::Elsewhere(holder.to_string()));
                    }
                    // Another process may have finished it and let go of its claim just now.
                    Ok(claim::Acquired::Mine(claim))
                        if !opts.force && finished(&jobs_dir, job).is_some() =>
                    {
                        drop(claim);
                        let done = skipped.len() + finished_elsewhere.fetch_add(1, SeqCst) + 1;
                        let n = elsewhere.load(SeqCst);
                        let why = "finished elsewhere";
                        progress.job_left(&job.id, why, failed.load(SeqCst), done, n);
                        return (job.id.clone(), Ran::FinishedElsewhere);
                    }
                    Ok(claim::Acquired::Mine(claim)) => Ok(claim),
                    Err(e) => Err(e.context("claiming the job")),
                };
                tch::set_num_threads(threads as i32);
                let worker = rayon::current_thread_index().unwrap_or(0);
                let on_event = |event| progress.job_event(worker, &job.id, event);
                let checkpoint = runner
                    .checkpoints
                    .then(|| checkpoint::path(&plan.out_dir, &job.id));
                let result = (|| -> Result<JobResult> {
                    let _claim = claimed?;
                    if let (Some(path), true) = (&checkpoint, opts.force) {
                        // --force reruns from the first task.
                        remove_if_present(path)?;
                    }
                    // Each worker is pinned to its slot's device while that device works; a job
                    // whose device fails under it goes on (from its checkpoint) elsewhere.
                    let r = device_pool.run(
                        worker,
                        |device| {
                            // The job shares its task tensors with the worker's other jobs.
                            let _shared = crate::scenario::cache::Scope::enter(
                                dataset,
                                &scenarios[&job.seed],
                            );
                            unless_panicked(|| {
                                run_job(
                                    plan,
                                    registry,
                                    dataset,
                                    &scenarios[&job.seed],
                                    job,
                                    device,
                                    checkpoint.as_deref(),
                                    &on_event,
                                )
                            })
                        },
                        |device, e| {
                            progress.message(&format!(
                                "device {device:?} failed under job {} and is out of service \
                                 for this run ({e:#}); its jobs go to the other devices",
                                job.id
                            ))
                        },
                    )?;
                    write_json_atomic(&jobs_dir.join(format!("{}.json", job.id)), &r)?;
                    // Only once the result is safely written.
                    if let Some(path) = &checkpoint {
                        remove_if_present(path)?;
                    }
                    Ok(r)
                })()
                .with_context(|| format!("job {}", job.id));
                let failures =
                    failed.load(std::sync::atomic::Ordering::SeqCst) + usize::from(result.is_err());
                if result.is_err() {
                    failed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                progress.job_finished(
                    &job.id,
                    &result,
                    failures,
                    skipped.len() + finished_elsewhere.load(SeqCst),
                    elsewhere.load(SeqCst),
                );
                (job.id.clone(), Ran::Here(Box::new(result)))
            })
            .collect()
    });
    progress.finish();
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let mut elsewhere = Vec::new();
    for (id, outcome) in outcomes {
        match outcome {
            Ran::Here(result) => match *result {
                Ok(r) => results.push(r),
                Err(e) => failures.push((id, format!("{e:#}"))),
            },
            Ran::Elsewhere(holder) => elsewhere.push((id, holder)),
            Ran::FinishedElsewhere => {}
        }
    }
    Ok(RunOutcome {
        skipped: skipped.len() + finished_elsewhere.into_inner(),
        elsewhere,
        results,
        failures,
        wall_s: started.elapsed().as_secs_f64(),
        workers,
        threads_per_worker: threads,
        devices: devices.iter().map(|d| format!("{d:?}")).collect(),
    })
}

/// What became of a job this process set out to run.
enum Ran {
    /// Boxed: a result is large beside the other variants.
    Here(Box<Result<JobResult>>),
    /// Left to the live process that holds its claim (described).
    Elsewhere(String),
    /// Another process wrote its result before this one claimed it.
    FinishedElsewhere,
}

/// Runs `f`, turning a panic inside it into an error with the panic's message, so that the job
/// fails with its id and the other jobs finish. libtorch's C++ exceptions (an allocation that
/// fails, a shape that does not fit) reach Rust as panics from tch, and a network too large to
/// build stops there (see `LayerBuilder`).
fn unless_panicked<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "no message".into());
            Err(anyhow::anyhow!("stopped by a panic: {message}"))
        }
    }
}

/// Checks the results folder of `plan` before anything runs: every saved job result must be one
/// this clbench reads (see [`crate::results::check_jobs_folder`]), and a saved `experiment.yaml`
/// must not be of a newer format. The error names the file and what to do.
pub fn check_output_folder(plan: &Plan) -> Result<()> {
    crate::results::check_jobs_folder(&plan.out_dir.join("jobs"))?;
    let saved = plan.out_dir.join("experiment.yaml");
    // An unreadable copy is rewritten by the run; only a newer format is kept from harm.
    if let Some(value) = std::fs::read_to_string(&saved)
        .ok()
        .and_then(|text| serde_yaml::from_str::<serde_json::Value>(&text).ok())
    {
        crate::results::check_format(&saved, &value, "saved experiment")?;
    }
    Ok(())
}

/// What `clbench run --dry-run` prints: each planned job of the shard (search runs marked), which
/// of them are finished and which claimed by a live process (running elsewhere), the counts, and how a selection will add its chosen runs. Reads only the
/// results folder; trains and writes nothing.
pub fn dry_run(plan: &Plan, force: bool, shard: Option<(usize, usize)>) -> String {
    use std::fmt::Write;
    let jobs_dir = plan.out_dir.join("jobs");
    let planned = shard_of(planned_jobs(plan), shard);
    let mut out = String::new();
    let mut finished = 0;
    let mut elsewhere = 0;
    let claims = claims_of(plan);
    let scenario = &plan.experiment.scenario;
    if scenario.draw_per_seed {
        for seed in distinct_seeds(planned.iter()) {
            let _ = writeln!(out, "scenario (seed {seed}): {}", scenario.describe(seed));
        }
    } else {
        let _ = writeln!(out, "scenario: {}", scenario.describe(0));
    }
    for job in &planned {
        let done = !force && self::finished(&jobs_dir, job).is_some();
        let holder = (!done).then(|| claims.live_holder(&job.id)).flatten();
        finished += usize::from(done);
        elsewhere += usize::from(holder.is_some());
        let phase = match job.phase {
            crate::config::Phase::Search => "  [search]",
            crate::config::Phase::Report => "",
        };
        let state = match (done, holder) {
            (true, _) => "  (finished: would skip)".to_string(),
            (false, Some(holder)) => format!("  (running elsewhere: {holder}; would skip)"),
            (false, None) => String::new(),
        };
        let _ = writeln!(out, "{}{phase}{state}", job.id);
    }
    let _ = writeln!(
        out,
        "{} jobs, {} to run, {finished} finished, {elsewhere} running elsewhere; results in {}",
        planned.len(),
        planned.len() - finished - elsewhere,
        plan.out_dir.display()
    );
    if plan.searches() {
        let entries: std::collections::BTreeSet<usize> =
            plan.candidates.iter().map(|c| c.entry).collect();
        let _ = writeln!(
            out,
            "selection: {}; {} strategy entr(ies) get their runs on {} report seed(s) once their search has chosen",
            plan.selection_label(),
            entries.len(),
            plan.experiment.seeds.len()
        );
    }
    out
}
