//! `clbench slurm`: an sbatch script that runs an experiment's grid as a Slurm job array.
//!
//! Array task `i` of `n` runs `clbench run FILE --shard i/n`: the jobs whose position in the
//! plan is `i` modulo `n`. With `--dynamic` every task runs `clbench run FILE` instead and takes
//! the next job nobody has claimed (`runner::claim`), so a task that draws short jobs goes on to
//! others and the grid spreads by the jobs' real lengths, not by their positions. Every task
//! writes into the experiment's one results folder, which must be on a file system all nodes
//! share; results are written atomically and keyed by job id, so tasks never clash, and a
//! resubmitted array skips finished jobs and resumes killed ones from their checkpoints. With
//! `--gpus-per-task`, Slurm sets `CUDA_VISIBLE_DEVICES` for each task, and `devices: auto` then
//! uses exactly the GPUs it was given. When the tasks are done, `clbench report FOLDER` builds
//! the report from whatever shards have finished.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::Plan;

/// What goes into the script besides the plan (also `clbench slurm`'s options).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SlurmOptions {
    /// Array tasks (shards); at most the number of jobs. Default: one per job.
    #[arg(long)]
    pub tasks: Option<usize>,
    /// At most this many array tasks running at once.
    #[arg(long)]
    pub max_running: Option<usize>,
    /// Slurm partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Wall-time limit per task, in Slurm's format, e.g. 4:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per task.
    #[arg(long)]
    pub cpus_per_task: Option<usize>,
    /// GPUs per task; Slurm sets CUDA_VISIBLE_DEVICES and `devices: auto` uses them.
    #[arg(long)]
    pub gpus_per_task: Option<usize>,
    /// Memory per task, in Slurm's format, e.g. 16G.
    #[arg(long)]
    pub mem: Option<String>,
    /// Tasks take the next unclaimed job of the whole grid (`clbench run` without `--shard`)
    /// instead of a fixed shard each: no task idles while another has jobs left.
    #[arg(long)]
    pub dynamic: bool,
}

/// The number of array tasks for `jobs` jobs.
pub fn task_count(jobs: usize, opts: &SlurmOptions) -> Result<usize> {
    if jobs == 0 {
        bail!("the experiment has no jobs");
    }
    match opts.tasks {
        Some(0) => bail!("--tasks must be at least 1"),
        Some(n) => Ok(n.min(jobs)),
        None => Ok(jobs),
    }
}

/// The sbatch script for `plan`, run by the `clbench` binary at `exe` from `workdir` (where the
/// experiment file's relative paths resolve).
pub fn sbatch_script(
    plan: &Plan,
    exe: &Path,
    workdir: &Path,
    opts: &SlurmOptions,
) -> Result<String> {
    let n = task_count(plan.jobs.len(), opts)?;
    let file = absolute(&plan.file)?;
    let out_dir = absolute(&workdir.join(&plan.out_dir))?;
    let logs = out_dir.join("slurm");
    let name = &plan.experiment.name;
    let mut s = String::from("#!/bin/bash\n");
    let mut directive = |line: String| {
        s.push_str("#SBATCH ");
        s.push_str(&line);
        s.push('\n');
    };
    directive(format!("--job-name=clbench-{name}"));
    directive(match opts.max_running {
        Some(k) => format!("--array=0-{}%{k}", n - 1),
        None => format!("--array=0-{}", n - 1),
    });
    directive(format!("--output={}/%A_%a.out", logs.display()));
    if let Some(p) = &opts.partition {
        directive(format!("--partition={p}"));
    }
    if let Some(t) = &opts.time {
        directive(format!("--time={t}"));
    }
    if let Some(c) = opts.cpus_per_task {
        directive(format!("--cpus-per-task={c}"));
    }
    if let Some(g) = opts.gpus_per_task {
        directive(format!("--gpus-per-task={g}"));
    }
    if let Some(m) = &opts.mem {
        directive(format!("--mem={m}"));
    }
    let (how, run_args) = if opts.dynamic {
        (
            "Each task takes the next job no process has claimed",
            String::new(),
        )
    } else {
        (
            "Each task runs one shard of the grid",
            format!(" --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\""),
        )
    };
    s.push_str(&format!(
        "\n# Written by clbench {} for {} ({} jobs in {n} array tasks).\n\
         # {how}; all write to {}, which every node must see.\n\
         # Submit with `sbatch <this file>`; resubmitting skips finished jobs. When the tasks are\n\
         # done: {} report {}\n\
         {}\
         set -euo pipefail\n\
         cd {}\n\
         exec {} run {}{run_args}\n",
        env!("CARGO_PKG_VERSION"),
        file.display(),
        plan.jobs.len(),
        out_dir.display(),
        quote(exe),
        quote(&out_dir),
        if plan.searches() {
            "# The selection searches first: a task runs the chosen configurations only once the\n\
             # search runs they depend on have finished, so resubmit after this array is done.\n"
        } else {
            ""
        },
        quote(workdir),
        quote(exe),
        quote(&file),
    ));
    Ok(s)
}

/// Where [`sbatch_script`]'s output is written for `plan`.
pub fn script_path(plan: &Plan, workdir: &Path) -> PathBuf {
    workdir
        .join(&plan.out_dir)
        .join("slurm")
        .join(format!("{}.sbatch", plan.experiment.name))
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// `path` quoted for bash.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_default_to_one_per_job_and_never_exceed_the_jobs() {
        let opts = |tasks| SlurmOptions {
            tasks,
            ..Default::default()
        };
        assert_eq!(task_count(10, &opts(None)).unwrap(), 10);
        assert_eq!(task_count(10, &opts(Some(4))).unwrap(), 4);
        assert_eq!(task_count(3, &opts(Some(8))).unwrap(), 3);
        assert!(task_count(3, &opts(Some(0))).is_err());
        assert!(task_count(0, &opts(None)).is_err());
    }

    #[test]
    fn paths_are_quoted_for_bash() {
        assert_eq!(quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
    }
}
