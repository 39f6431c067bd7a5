//! Devices and the worker layout: which devices jobs go to, how many run at once, and how many
//! libtorch threads each gets.

use anyhow::{bail, Result};
use tch::Device;

use crate::config::Devices;

/// The devices named by the experiment: `auto` is every CUDA GPU, or the CPU when there is none.
pub fn resolve(devices: &Devices) -> Result<Vec<Device>> {
    match devices {
        Devices::Auto => {
            let n = tch::Cuda::device_count();
            Ok(if n > 0 {
                (0..n as usize).map(Device::Cuda).collect()
            } else {
                vec![Device::Cpu]
            })
        }
        Devices::List(names) => {
            if names.is_empty() {
                bail!("runner.devices is an empty list; use `auto`, `[cpu]` or e.g. `[cuda:0]`");
            }
            names.iter().map(|name| parse_device(name)).collect()
        }
    }
}

/// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`, checked against the GPUs present.
pub fn parse_device(name: &str) -> Result<Device> {
    let gpus = tch::Cuda::device_count() as usize;
    let index = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => match name
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(i) => i,
            None => bail!("unknown device `{name}`; use `cpu`, `cuda` or `cuda:N`"),
        },
    };
    if index >= gpus {
        bail!("device `{name}` is not available: this machine has {gpus} CUDA GPU(s); use `auto` or `[cpu]`");
    }
    Ok(Device::Cuda(index))
}

/// (workers, threads per worker): by default one worker per GPU when there are GPUs, else one
/// per core; never more workers than jobs; the cores shared out so that workers x threads <=
/// cores.
pub fn worker_layout(
    jobs: usize,
    cores: usize,
    workers: Option<usize>,
    threads: Option<usize>,
    gpus: usize,
) -> (usize, usize) {
    let cores = cores.max(1);
    let default = if gpus > 0 { gpus } else { cores };
    let workers = workers.unwrap_or(default).min(jobs.max(1)).max(1);
    let threads = threads.unwrap_or((cores / workers).max(1)).max(1);
    (workers, threads)
}

/// The device of each worker slot: devices taken in turn, so `k * devices` workers put `k` jobs
/// on every device at once.
pub fn slots(devices: &[Device], workers: usize) -> Vec<Device> {
    (0..workers.max(1))
        .map(|w| devices[w % devices.len()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_shares_the_cores() {
        assert_eq!(worker_layout(9, 2, None, None, 0), (2, 1));
        assert_eq!(worker_layout(1, 8, None, None, 0), (1, 8));
        assert_eq!(worker_layout(9, 8, Some(3), None, 0), (3, 2));
        assert_eq!(worker_layout(9, 2, Some(1), Some(4), 0), (1, 4));
        // Two GPUs: one worker each by default, or as many as asked (jobs_per_device x GPUs).
        assert_eq!(worker_layout(50, 16, None, None, 2), (2, 8));
        assert_eq!(worker_layout(50, 16, Some(8), None, 2), (8, 2));
    }

    #[test]
    fn slots_spread_workers_over_the_devices_in_turn() {
        let gpus = [Device::Cuda(0), Device::Cuda(1)];
        assert_eq!(
            slots(&gpus, 5),
            vec![
                Device::Cuda(0),
                Device::Cuda(1),
                Device::Cuda(0),
                Device::Cuda(1),
                Device::Cuda(0)
            ]
        );
        assert_eq!(slots(&[Device::Cpu], 3), vec![Device::Cpu; 3]);
    }

    #[test]
    fn device_names_are_checked() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert!(parse_device("tpu")
            .unwrap_err()
            .to_string()
            .contains("unknown device"));
        if tch::Cuda::device_count() == 0 {
            assert!(parse_device("cuda:0")
                .unwrap_err()
                .to_string()
                .contains("not available"));
        }
    }
}
