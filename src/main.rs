//! The `clbench` command line: parse, run, print the error chain once, set the exit code.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use clbench::{
    config::Plan,
    data::{DatasetRegistry, LoadOptions},
    report,
    results::write_atomic,
    runner,
    strategy::Registry,
};

/// Benchmarks continual-learning strategies against catastrophic forgetting.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Experiment file to run (same as `clbench run FILE`).
    experiment: Option<PathBuf>,
    /// Print no progress lines.
    #[arg(long, short)]
    quiet: bool,
    /// Rerun jobs whose results are already saved.
    #[arg(long)]
    force: bool,
    /// Jobs at once, overriding the file's runner.workers.
    #[arg(long, value_parser = at_least_one())]
    workers: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Run an experiment file: every job of its grid, then the report.
    Run {
        experiment: PathBuf,
        #[arg(long, short)]
        quiet: bool,
        /// List the jobs (and which are already finished, or running in another process) without
        /// running them.
        #[arg(long)]
        dry_run: bool,
        /// Rerun jobs whose results are already saved.
        #[arg(long)]
        force: bool,
        /// Jobs at once, overriding the file's runner.workers.
        #[arg(long, value_parser = at_least_one())]
        workers: Option<usize>,
        /// Run only shard I of N (0-based): the jobs whose position in the plan is I modulo N.
        /// Not needed to share a grid: processes on one results folder claim jobs as they start
        /// them and skip those claimed by others.
        #[arg(long, value_name = "I/N", value_parser = parse_shard)]
        shard: Option<(usize, usize)>,
    },
    /// Write an sbatch script that runs the grid as a Slurm job array (task i runs shard i/N),
    /// into <output>/<name>/slurm/; with --submit, also submit it.
    Slurm {
        experiment: PathBuf,
        #[command(flatten)]
        options: clbench::slurm::SlurmOptions,
        /// Submit the script with sbatch and print the job id.
        #[arg(long)]
        submit: bool,
    },
    /// List the registered strategies with their parameters.
    Strategies,
    /// List the registered datasets with their shapes and parameters.
    Datasets,
    /// List the registered models (backbones) with their parameters.
    Models,
    /// Rebuild the table, summary.csv and charts of an experiment folder from its saved results.
    Report { folder: PathBuf },
    /// Compare the strategies of two experiment folders (two selection modes or protocols of
    /// one benchmark), paired by seed: each strategy's reported configuration in B against A.
    Compare { a: PathBuf, b: PathBuf },
    /// Load a dataset and describe it (checks its folder; downloads missing files unless
    /// --offline).
    Data {
        /// A registered dataset (`clbench datasets` lists them).
        #[arg(long, default_value = "mnist")]
        dataset: String,
        /// The dataset's folder (its `dir` parameter; default: the dataset's environment
        /// variable, else its folder under data/).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Do not download missing files.
        #[arg(long)]
        offline: bool,
    },
}

fn main() -> ExitCode {
    // A panic inside a job (libtorch's C++ exceptions arrive as panics) fails that job with its
    // message, reported with the job's id; one line here says where it came from, and the
    // backtrace is there for whoever asks for it.
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("clbench: {info} (RUST_BACKTRACE=1 shows where)");
        }));
    }
    let cli = Cli::parse();
    let outcome = match (cli.command, cli.experiment) {
        (
            Some(Command::Run {
                experiment,
                quiet,
                dry_run,
                force,
                workers,
                shard,
            }),
            _,
        ) => run(
            &experiment,
            runner::RunOptions {
                quiet: quiet || cli.quiet,
                force: force || cli.force,
                workers: workers.or(cli.workers),
                shard: None,
            },
            dry_run,
            shard,
        ),
        (
            Some(Command::Slurm {
                experiment,
                options,
                submit,
            }),
            _,
        ) => slurm(&experiment, &options, submit),
        (Some(Command::Strategies), _) => strategies(),
        (Some(Command::Datasets), _) => datasets(),
        (Some(Command::Models), _) => models(),
        (Some(Command::Report { folder }), _) => rebuild_report(&folder),
        (Some(Command::Compare { a, b }), _) => compare_folders(&a, &b),
        (
            Some(Command::Data {
                dataset,
                dir,
                offline,
            }),
            _,
        ) => describe_data(&dataset, dir, offline),
        (None, Some(experiment)) => run(
            &experiment,
            runner::RunOptions {
                quiet: cli.quiet,
                force: cli.force,
                workers: cli.workers,
                shard: None,
            },
            false,
            None,
        ),
        (None, None) => {
            eprintln!("clbench: give an experiment file, e.g. `clbench experiments/split_mnist.yaml`, or see --help");
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A count of 1 or more (`--workers 0` would run nothing, or hang a pool).
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

/// `I/N` with I < N.
fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let parse = || -> Option<(usize, usize)> {
        let (i, n) = text.split_once('/')?;
        Some((i.trim().parse().ok()?, n.trim().parse().ok()?))
    };
    match parse() {
        Some((i, n)) if i < n => Ok((i, n)),
        _ => Err(format!(
            "`{text}` is not a shard: give I/N with 0 <= I < N, e.g. 0/4"
        )),
    }
}

fn run(
    file: &std::path::Path,
    opts: runner::RunOptions,
    dry_run: bool,
    shard: Option<(usize, usize)>,
) -> Result<ExitCode> {
    let quiet = opts.quiet;
    let registry = Registry::load()?;
    let plan = Plan::from_file(file, &registry)?;
    let opts = runner::RunOptions { shard, ..opts };
    // Before any data is read or any job trains: a saved result this clbench cannot read would
    // otherwise be skipped or overwritten.
    runner::check_output_folder(&plan)?;
    if dry_run {
        print!("{}", runner::dry_run(&plan, opts.force, shard));
        return Ok(ExitCode::SUCCESS);
    }
    let dataset =
        runner::load_dataset(&plan).with_context(|| format!("{}: dataset", plan.file.display()))?;
    if !quiet {
        eprintln!(
            "clbench: {} from {}: {} training and {} test images",
            dataset.name,
            dataset.source,
            dataset.train.len(),
            dataset.test.len()
        );
    }
    std::fs::create_dir_all(&plan.out_dir)
        .with_context(|| format!("creating {}", plan.out_dir.display()))?;
    let saved = clbench::config::ExperimentFile {
        format_version: Some(clbench::results::FORMAT_VERSION),
        ..plan.experiment.clone()
    };
    write_atomic(
        &plan.out_dir.join("experiment.yaml"),
        serde_yaml::to_string(&saved)?.as_bytes(),
    )?;
    let outcome = runner::run_plan(&plan, &registry, Arc::new(dataset), opts)?;
    let elsewhere = if outcome.elsewhere.is_empty() {
        String::new()
    } else {
        format!(", {} left to other processes", outcome.elsewhere.len())
    };
    // Jobs other processes (sharing the folder) still run: the report waits for them.
    let pending = runner::running_elsewhere(&plan);
    if let Some((i, n)) = shard {
        // Shards share one folder: the report is built once, after all of them.
        println!(
            "shard {i}/{n}: {} jobs run ({} skipped as finished{elsewhere}) in {:.1} s; when every shard has finished, \
             `clbench report {}` builds the report",
            outcome.results.len(),
            outcome.skipped,
            outcome.wall_s,
            plan.out_dir.display()
        );
    } else if !pending.is_empty() {
        // Processes sharing the folder: the one that finishes last (finding no live claim on
        // the plan's jobs) builds the report from every saved result; this one leaves it.
        println!(
            "{} jobs run ({} skipped as finished{elsewhere}) in {:.1} s; {} job(s) still run in \
             other processes:",
            outcome.results.len(),
            outcome.skipped,
            outcome.wall_s,
            pending.len()
        );
        for (id, holder) in &pending {
            println!("  {id}: {holder}");
        }
        println!(
            "the report is left to the process that finishes last (or `clbench report {}` once \
             they are done)",
            plan.out_dir.display()
        );
    } else {
        // The report covers this plan's jobs; results of jobs since removed from the file stay
        // on disk (and in `clbench report`), but not in this table.
        let ids: std::collections::BTreeSet<String> = runner::planned_jobs(&plan)
            .into_iter()
            .map(|j| j.id)
            .collect();
        let results: Vec<_> = report::load_results(&plan.out_dir)?
            .into_iter()
            .filter(|r| ids.contains(&r.id))
            .collect();
        let table = report::write_report(
            &plan.out_dir,
            &results,
            Some(&plan.experiment),
            Some(&plan.selection_label()),
        )?;
        println!("\n{}", plan.experiment.name);
        print!("{table}");
        println!(
            "{} jobs run ({} skipped as finished{elsewhere}) in {:.1} s on {} worker(s) x {} thread(s); results, summary.csv and charts in {}",
            outcome.results.len(),
            outcome.skipped,
            outcome.wall_s,
            outcome.workers,
            outcome.threads_per_worker,
            plan.out_dir.display()
        );
        // Jobs left to other processes that ended without a result (failed there).
        let saved: std::collections::BTreeSet<&str> =
            results.iter().map(|r| r.id.as_str()).collect();
        let missing: Vec<&str> = outcome
            .elsewhere
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| !saved.contains(id))
            .collect();
        if !missing.is_empty() {
            println!(
                "{} job(s) left to other processes have no result (failed there?); the report \
                 leaves them out and a rerun retries them: {}",
                missing.len(),
                missing.join(", ")
            );
        }
    }
    if outcome.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("\n{} job(s) failed:", outcome.failures.len());
        for (id, error) in &outcome.failures {
            eprintln!("  {id}: {error}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn slurm(
    file: &std::path::Path,
    opts: &clbench::slurm::SlurmOptions,
    submit: bool,
) -> Result<ExitCode> {
    let registry = Registry::load()?;
    let plan = Plan::from_file(file, &registry)?;
    let workdir = std::env::current_dir().context("reading the current folder")?;
    let exe = std::env::current_exe().context("locating the clbench binary")?;
    let script = clbench::slurm::sbatch_script(&plan, &exe, &workdir, opts)?;
    let path = clbench::slurm::script_path(&plan, &workdir);
    write_atomic(&path, script.as_bytes())?;
    let tasks = clbench::slurm::task_count(plan.jobs.len(), opts)?;
    println!(
        "wrote {} ({} jobs in {tasks} array tasks)",
        path.display(),
        plan.jobs.len()
    );
    if !submit {
        println!("submit it with: sbatch {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let out = std::process::Command::new("sbatch")
        .arg("--parsable")
        .arg(&path)
        .output()
        .context("running sbatch (is Slurm installed and on PATH?)")?;
    if !out.status.success() {
        anyhow::bail!(
            "sbatch {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    println!(
        "submitted job array {id}; `squeue -j {id}` shows it; when it is done: clbench report {}",
        plan.out_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// One registered plugin in a listing: its line, extra lines (paper, shape), and each parameter
/// with the default its config type resolves to (the one source of defaults).
fn print_plugin(
    name: &str,
    summary: &str,
    extra: &[String],
    params: &[clbench::core::ParamSpec],
    resolve: fn(&serde_yaml::Mapping) -> Result<serde_json::Value, String>,
) {
    println!("{name:<14} {summary}");
    for line in extra {
        println!("{:<14} {line}", "");
    }
    let defaults = resolve(&serde_yaml::Mapping::new()).unwrap_or(serde_json::Value::Null);
    for spec in params {
        let (param, meaning) = (spec.name, spec.doc);
        let range = match spec.range {
            clbench::core::Range::Any => String::new(),
            range => format!(" ({range})"),
        };
        // A parameter the config leaves out of its resolved form at its default (so that
        // results from before it existed keep their ids) has its default in the description.
        match defaults.get(param) {
            Some(default) => println!("{:<14}   {param} = {default}{range}: {meaning}", ""),
            None => println!("{:<14}   {param}{range}: {meaning}", ""),
        }
    }
}

fn paper_line(paper: &str) -> Vec<String> {
    if paper.is_empty() {
        Vec::new()
    } else {
        vec![format!("paper: {paper}")]
    }
}

fn strategies() -> Result<ExitCode> {
    for reg in Registry::load()?.iter() {
        print_plugin(
            reg.name,
            reg.summary,
            &paper_line(reg.paper),
            reg.params,
            reg.resolve,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn models() -> Result<ExitCode> {
    for reg in clbench::model::ModelRegistry::load()?.iter() {
        print_plugin(
            reg.name,
            reg.summary,
            &paper_line(reg.paper),
            reg.params,
            reg.resolve,
        );
    }
    println!("(every model also takes `heads: multi | single`; the framework adds the heads)");
    Ok(ExitCode::SUCCESS)
}

/// The results of `folder` that belong to its saved experiment (a result of settings since
/// changed, another id kept on disk, is left out, as `clbench run` leaves it out), with the
/// experiment's selection label when the saved file still plans.
fn saved_experiment_results(
    folder: &std::path::Path,
) -> Result<(Vec<clbench::results::JobResult>, Option<String>)> {
    let mut results = report::load_results(folder)?;
    let saved = folder.join("experiment.yaml");
    let mut selection = None;
    if let Ok(mut plan) = Plan::from_file(&saved, &Registry::load()?) {
        // The saved file names its own output folder; the results are here.
        plan.out_dir = folder.to_path_buf();
        let ids: std::collections::BTreeSet<String> = runner::planned_jobs(&plan)
            .into_iter()
            .map(|j| j.id)
            .collect();
        selection = Some(plan.selection_label());
        let before = results.len();
        results.retain(|r| ids.contains(&r.id));
        if results.len() < before {
            eprintln!(
                "clbench: {} result(s) of other settings than {} left out",
                before - results.len(),
                saved.display()
            );
        }
    }
    if results.is_empty() {
        anyhow::bail!(
            "{}: no job results under jobs/; run the experiment first",
            folder.display()
        );
    }
    Ok((results, selection))
}

fn rebuild_report(folder: &std::path::Path) -> Result<ExitCode> {
    let (results, selection) = saved_experiment_results(folder)?;
    let experiment = report::load_experiment(folder)?;
    print!(
        "{}",
        report::write_report(folder, &results, experiment.as_ref(), selection.as_deref())?
    );
    Ok(ExitCode::SUCCESS)
}

fn compare_folders(a: &std::path::Path, b: &std::path::Path) -> Result<ExitCode> {
    let groups = |folder: &std::path::Path| -> Result<(Vec<report::summary::Group>, String)> {
        let (results, selection) = saved_experiment_results(folder)?;
        let reported: Vec<_> = results
            .into_iter()
            .filter(|r| !report::summary::is_search(r))
            .collect();
        let label = selection.unwrap_or_else(|| "selection unknown".into());
        Ok((report::summary::group(&reported), label))
    };
    let (ga, la) = groups(a)?;
    let (gb, lb) = groups(b)?;
    let name = |p: &std::path::Path| {
        p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    };
    let (na, nb) = (name(a), name(b));
    let between = report::between::Between::of_groups(&ga, &gb);
    println!("A = {na}: configurations {la}.\nB = {nb}: configurations {lb}.\n");
    print!("{}", between.markdown("A", "B"));
    Ok(ExitCode::SUCCESS)
}

fn datasets() -> Result<ExitCode> {
    for reg in DatasetRegistry::load()?.iter() {
        let defaults =
            (reg.resolve)(&serde_yaml::Mapping::new()).unwrap_or(serde_json::Value::Null);
        let shape = (reg.shape)(&defaults);
        let line = format!(
            "shape: {} channel(s) x {}x{}, {} classes (with the defaults)",
            shape.channels, shape.rows, shape.cols, shape.classes
        );
        print_plugin(reg.name, reg.summary, &[line], reg.params, reg.resolve);
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_data(name: &str, dir: Option<PathBuf>, offline: bool) -> Result<ExitCode> {
    let registry = DatasetRegistry::load()?;
    let reg = registry.lookup(name).map_err(anyhow::Error::msg)?;
    let mut params = serde_yaml::Mapping::new();
    if let Some(dir) = dir {
        params.insert("dir".into(), dir.display().to_string().into());
    }
    let params =
        (reg.resolve)(&params).map_err(|message| anyhow::anyhow!("dataset `{name}`: {message}"))?;
    let dataset = (reg.load)(&params, &LoadOptions { offline })?;
    println!("{} from {}", dataset.name, dataset.source);
    for (name, split) in [("train", &dataset.train), ("test", &dataset.test)] {
        println!(
            "{name}: {} images of {} channel(s) x {}x{}, {} classes; per class: {:?}",
            split.len(),
            split.channels,
            split.rows,
            split.cols,
            split.classes,
            split.class_counts()
        );
    }
    Ok(ExitCode::SUCCESS)
}
