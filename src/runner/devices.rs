//! Devices and the worker layout: which devices jobs go to, how many run at once, and how many
//! libtorch threads each gets.

use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};
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

/// Whether `err` says the device itself failed (a CUDA error, a device-side assert, a cuBLAS or
/// cuDNN failure) rather than the job: the device is then taken out of service. Out of memory
/// is the job's (or the packing's: lower `jobs_per_device`), not the device's.
pub fn is_device_failure(err: &anyhow::Error) -> bool {
    let text = format!("{err:#}");
    if text.contains("out of memory") {
        return false;
    }
    [
        "CUDA error",
        "device-side assert",
        "CUBLAS_STATUS",
        "CUDNN_STATUS",
        "cuDNN error",
        "no CUDA-capable device",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// The workers' devices, with those that failed taken out of service: each worker keeps its
/// slot's device while it works, and moves to the next working device in slot order when it
/// does not.
pub struct DevicePool {
    slots: Vec<Device>,
    failed: Mutex<Vec<Device>>,
}

impl DevicePool {
    pub fn new(slots: Vec<Device>) -> DevicePool {
        DevicePool {
            slots,
            failed: Mutex::new(Vec::new()),
        }
    }

    /// The device worker `worker` should use, or `None` when every device has failed.
    pub fn device_for(&self, worker: usize) -> Option<Device> {
        let failed = self.failed.lock().unwrap();
        let n = self.slots.len();
        (0..n)
            .map(|k| self.slots[(worker + k) % n])
            .find(|d| !failed.contains(d))
    }

    /// Takes `device` out of service; returns false if it already was.
    pub fn mark_failed(&self, device: Device) -> bool {
        let mut failed = self.failed.lock().unwrap();
        if failed.contains(&device) {
            return false;
        }
        failed.push(device);
        true
    }

    pub fn failed(&self) -> Vec<Device> {
        self.failed.lock().unwrap().clone()
    }

    /// Runs `job` on worker `worker`'s device; when the device fails under it (see
    /// [`is_device_failure`]), takes the device out of service, calls `on_failure` and runs the
    /// job again on another one. Fails when no device is left.
    pub fn run<T>(
        &self,
        worker: usize,
        mut job: impl FnMut(Device) -> Result<T>,
        mut on_failure: impl FnMut(Device, &anyhow::Error),
    ) -> Result<T> {
        loop {
            let Some(device) = self.device_for(worker) else {
                return Err(anyhow!(
                    "every device has failed ({:?}); see the errors above",
                    self.failed()
                ));
            };
            match job(device) {
                Err(e) if is_device_failure(&e) => {
                    if self.mark_failed(device) {
                        on_failure(device, &e);
                    }
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_device_is_taken_out_and_its_jobs_go_elsewhere() {
        let pool = DevicePool::new(slots(&[Device::Cuda(0), Device::Cuda(1)], 4));
        let mut reported = Vec::new();
        let mut tried = Vec::new();
        // cuda:1 fails every job with a device error; worker 1 starts there.
        let mut job = |d: Device| {
            tried.push(d);
            match d {
                Device::Cuda(1) => Err(anyhow!(
                    "CUDA error: an illegal memory access was encountered"
                )),
                _ => Ok(format!("{d:?}")),
            }
        };
        let done = pool.run(1, &mut job, |d, _| reported.push(d)).unwrap();
        assert_eq!(done, "Cuda(0)");
        assert_eq!(tried, vec![Device::Cuda(1), Device::Cuda(0)]);
        assert_eq!(reported, vec![Device::Cuda(1)]);
        // Every worker now goes to cuda:0, and the failure is reported once.
        for w in 0..4 {
            assert_eq!(pool.device_for(w), Some(Device::Cuda(0)));
        }
        assert!(!pool.mark_failed(Device::Cuda(1)));
    }

    #[test]
    fn job_errors_and_out_of_memory_do_not_take_a_device_out() {
        let pool = DevicePool::new(vec![Device::Cuda(0), Device::Cuda(1)]);
        let err = pool
            .run(
                0,
                |_| -> Result<()> { Err(anyhow!("training diverged on task 2")) },
                |_, _| panic!("not a device failure"),
            )
            .unwrap_err();
        assert!(err.to_string().contains("diverged"));
        let oom = anyhow!("CUDA out of memory. Tried to allocate 2.00 GiB");
        assert!(!is_device_failure(&oom));
        assert!(pool.failed().is_empty());
    }

    #[test]
    fn when_every_device_has_failed_the_job_fails_and_says_so() {
        let pool = DevicePool::new(vec![Device::Cuda(0), Device::Cuda(1)]);
        let err = pool
            .run(
                0,
                |_| -> Result<()> { Err(anyhow!("CUBLAS_STATUS_EXECUTION_FAILED")) },
                |_, _| {},
            )
            .unwrap_err();
        assert!(err.to_string().contains("every device has failed"), "{err}");
        assert_eq!(pool.failed().len(), 2);
        assert_eq!(pool.device_for(0), None);
    }

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
