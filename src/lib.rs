//! clbench: benchmarks of continual-learning strategies against catastrophic forgetting.
//!
//! The pipeline, one module a stage:
//!
//! ```text
//! core/      leaf types: parameter maps, saved state, atomic writes, the generic plugin registry
//! config/    YAML experiment file -> validated plan of jobs (grid expanded, plugins resolved,
//!            each job's identity a label plus a hash of its settings)
//! data/      Split and Dataset, the dataset registry, IDX/CIFAR readers, downloads, transforms;
//!            datasets/*.rs are the plugins
//! scenario/  dataset -> tasks (task-, domain-, class-incremental), output masks
//! model/     Net: a backbone (models/*.rs are the plugins) plus heads; layers that record for
//!            the per-sample Fisher
//! train/     one task's loop, calling the strategy's hooks; evaluation
//! strategy/  the Strategy trait and its registry; strategies/*.rs are the plugins
//! fisher/    diagonal Fisher estimators, exact per-sample gradients per layer kind
//! importance MAS's label-free importance
//! runner/    jobs spread over workers and devices; one job end to end
//! results/   job results on disk (atomic writes); ACC, BWT, forgetting
//! report/    summary table, CSV and charts, from the results only
//! ```

// Lets the plugin files say `clbench::…`, as a plugin outside the crate would.
extern crate self as clbench;

/// The PyTorch version that tch binds and scripts/setup installs.
pub const TORCH_VERSION: &str = "2.11.0";
/// The pinned tch version.
pub const TCH_VERSION: &str = "0.24.0";

pub mod config;
pub mod core;
pub mod data;
pub mod fisher;
pub mod importance;
pub mod model;
pub mod report;
pub mod results;
pub mod runner;
pub mod scenario;
pub mod slurm;
pub mod strategy;
pub mod train;

/// The strategies, one module per file of `strategies/`, found by build.rs.
pub mod strategies {
    include!(concat!(env!("OUT_DIR"), "/strategies_modules.rs"));
}

/// The model backbones, one module per file of `models/`, found by build.rs.
pub mod models {
    include!(concat!(env!("OUT_DIR"), "/models_modules.rs"));
}

/// The datasets, one module per file of `datasets/`, found by build.rs.
pub mod datasets {
    include!(concat!(env!("OUT_DIR"), "/datasets_modules.rs"));
}
