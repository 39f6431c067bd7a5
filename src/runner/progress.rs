//! What the runner tells the user while it works.
//!
//! On a terminal: `indicatif` bars, one for the grid (jobs done, failed, skipped, ETA) and one
//! per worker (its job, task and epoch). Without a terminal (CI, a log file): plain lines, one
//! per finished task and one per finished job. `--quiet`: nothing.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::results::JobResult;

/// An event inside one job.
#[derive(Debug, Clone, Copy)]
pub enum JobEvent {
    /// A pass over a task's data finished.
    Epoch {
        task: usize,
        num_tasks: usize,
        epoch: usize,
        task_loss: f64,
    },
    /// A task was trained and every task evaluated.
    TaskDone {
        task: usize,
        num_tasks: usize,
        /// Mean accuracy on the tasks trained so far.
        seen_mean: f64,
    },
    /// The job goes on from its checkpoint after `tasks_done` finished tasks.
    Resumed { tasks_done: usize, num_tasks: usize },
}

/// The runner's reporter, shared by its workers.
pub enum Progress {
    Quiet,
    Lines {
        total: usize,
        done: std::sync::atomic::AtomicUsize,
    },
    Bars {
        grid: ProgressBar,
        workers: Vec<ProgressBar>,
        _multi: MultiProgress,
    },
}

impl Progress {
    /// Bars when standard error is a terminal, lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool, total: usize, skipped: usize, workers: usize) -> Progress {
        if quiet {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines {
                total,
                done: Default::default(),
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let grid = multi.add(ProgressBar::new(total as u64));
        grid.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} jobs {msg} [{elapsed_precise}, ETA {eta}]",
            )
            .expect("a valid template"),
        );
        grid.set_message(counts(0, skipped, 0));
        let workers = (0..workers)
            .map(|_| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {msg}").expect("a valid template"),
                );
                bar
            })
            .collect();
        Progress::Bars {
            grid,
            workers,
            _multi: multi,
        }
    }

    /// Worker `worker` reports `event` of job `id`.
    pub fn job_event(&self, worker: usize, id: &str, event: JobEvent) {
        match (self, event) {
            (Progress::Quiet, _) => {}
            (
                Progress::Lines { .. },
                JobEvent::Resumed {
                    tasks_done,
                    num_tasks,
                },
            ) => {
                eprintln!(
                    "  {id}: resumed from its checkpoint after task {tasks_done}/{num_tasks}"
                );
            }
            (
                Progress::Bars { grid, .. },
                JobEvent::Resumed {
                    tasks_done,
                    num_tasks,
                },
            ) => {
                grid.println(format!(
                    "{id}: resumed from its checkpoint after task {tasks_done}/{num_tasks}"
                ));
            }
            (
                Progress::Lines { .. },
                JobEvent::TaskDone {
                    task,
                    num_tasks,
                    seen_mean,
                },
            ) => {
                eprintln!("  {id}: task {}/{num_tasks} trained, mean accuracy on tasks seen {seen_mean:.4}", task + 1);
            }
            (Progress::Lines { .. }, JobEvent::Epoch { .. }) => {}
            (
                Progress::Bars { workers, .. },
                JobEvent::Epoch {
                    task,
                    num_tasks,
                    epoch,
                    task_loss,
                },
            ) => {
                if let Some(bar) = workers.get(worker) {
                    bar.set_message(format!(
                        "{id}: task {}/{num_tasks}, pass {}, loss {task_loss:.4}",
                        task + 1,
                        epoch + 1
                    ));
                    bar.tick();
                }
            }
            (
                Progress::Bars { workers, .. },
                JobEvent::TaskDone {
                    task,
                    num_tasks,
                    seen_mean,
                },
            ) => {
                if let Some(bar) = workers.get(worker) {
                    bar.set_message(format!(
                        "{id}: task {}/{num_tasks} done, accuracy so far {seen_mean:.4}",
                        task + 1
                    ));
                }
            }
        }
    }

    /// A job ended; `failed` counts failures so far, `skipped` the jobs skipped as finished and
    /// `elsewhere` those left to other processes.
    pub fn job_finished(
        &self,
        id: &str,
        result: &anyhow::Result<JobResult>,
        failed: usize,
        skipped: usize,
        elsewhere: usize,
    ) {
        match self {
            Progress::Quiet => {}
            Progress::Lines { total, done } => {
                let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                match result {
                    Ok(r) => eprintln!(
                        "[{n}/{total}] {id}: ACC {:.4} BWT {:+.4} forgetting {:.4} ({:.1} s)",
                        r.metrics.acc, r.metrics.bwt, r.metrics.forgetting, r.timings.total_s
                    ),
                    Err(e) => eprintln!("[{n}/{total}] {id} FAILED: {e:#}"),
                }
            }
            Progress::Bars { grid, .. } => {
                if let Err(e) = result {
                    grid.println(format!("{id} FAILED: {e:#}"));
                }
                grid.set_message(counts(failed, skipped, elsewhere));
                grid.inc(1);
            }
        }
    }

    /// A job was not run here: `why` (another process runs it or has finished it); the counts
    /// as for [`Progress::job_finished`].
    pub fn job_left(&self, id: &str, why: &str, failed: usize, skipped: usize, elsewhere: usize) {
        match self {
            Progress::Quiet => {}
            Progress::Lines { total, done } => {
                let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                eprintln!("[{n}/{total}] {id}: skipped, {why}");
            }
            Progress::Bars { grid, .. } => {
                grid.set_message(counts(failed, skipped, elsewhere));
                grid.inc(1);
            }
        }
    }

    /// A line that must be seen (above the bars on a terminal); printed even when quiet.
    pub fn message(&self, text: &str) {
        match self {
            Progress::Bars { grid, .. } => grid.println(format!("clbench: {text}")),
            _ => eprintln!("clbench: {text}"),
        }
    }

    /// Clears the bars.
    pub fn finish(&self) {
        if let Progress::Bars { grid, workers, .. } = self {
            for bar in workers {
                bar.finish_and_clear();
            }
            grid.finish();
        }
    }
}

/// The grid bar's counts: "(F failed, S skipped as finished, E running elsewhere)".
fn counts(failed: usize, skipped: usize, elsewhere: usize) -> String {
    format!("({failed} failed, {skipped} skipped as finished, {elsewhere} running elsewhere)")
}
