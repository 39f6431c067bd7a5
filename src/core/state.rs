//! [`SavedState`]: named tensors that carry a strategy's (or an optimizer's) state across a
//! restart between tasks.
//!
//! A job's checkpoint (`runner::checkpoint`) stores the model, the optimizer and the strategy
//! after every finished task, so a killed job resumes from there. Each part contributes a
//! `SavedState` under its own prefix; names are `/`-separated paths (`fisher/trunk.0.weight`),
//! so parameter names with dots stay intact. Counts are stored as Int64 scalars. Loading takes
//! entries out one by one and [`finish`](SavedState::finish) fails on leftovers, so a state saved
//! by a different version of a strategy is an error, not a silent half-restore.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use tch::{Device, Tensor};

use super::params::ParamMap;

/// Named tensors, ordered by name.
#[derive(Debug, Default)]
pub struct SavedState {
    tensors: BTreeMap<String, Tensor>,
}

impl SavedState {
    pub fn new() -> SavedState {
        SavedState::default()
    }

    pub fn from_tensors(tensors: BTreeMap<String, Tensor>) -> SavedState {
        SavedState { tensors }
    }

    pub fn into_tensors(self) -> BTreeMap<String, Tensor> {
        self.tensors
    }

    /// A copy whose tensors are copied too, so that training, which updates a strategy's or an
    /// optimizer's tensors in place, cannot change it (a rollback point).
    pub fn deep_copy(&self) -> SavedState {
        SavedState::from_tensors(
            self.tensors
                .iter()
                .map(|(k, v)| (k.clone(), v.detach().copy()))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The bytes of its tensors' elements, numel × element size summed over every entry (the
    /// counts of [`put_count`](Self::put_count) are 8 bytes each): what the state holds in
    /// memory, not the size of a checkpoint file.
    pub fn bytes(&self) -> u64 {
        self.tensors.values().map(tensor_bytes).sum()
    }

    /// Stores `tensor` (shared, not copied: the checkpoint writes it out at once).
    pub fn put(&mut self, name: impl Into<String>, tensor: &Tensor) {
        self.tensors.insert(name.into(), tensor.shallow_clone());
    }

    /// Stores every entry of `map` as `prefix/name`.
    pub fn put_map(&mut self, prefix: &str, map: &ParamMap) {
        for (name, tensor) in map {
            self.put(format!("{prefix}/{name}"), tensor);
        }
    }

    /// Stores a count as an Int64 scalar.
    pub fn put_count(&mut self, name: impl Into<String>, count: usize) {
        self.tensors.insert(name.into(), Tensor::from(count as i64));
    }

    /// Moves every entry into `self` under `prefix/`.
    pub fn put_all(&mut self, prefix: &str, other: SavedState) {
        for (name, tensor) in other.tensors {
            self.tensors.insert(format!("{prefix}/{name}"), tensor);
        }
    }

    /// Takes out entry `name`, moved to `device`.
    pub fn take(&mut self, name: &str, device: Device) -> Result<Tensor> {
        self.tensors
            .remove(name)
            .map(|t| t.to_device(device))
            .ok_or_else(|| anyhow!("the saved state has no entry {name:?}"))
    }

    /// Takes out every `prefix/name` entry as a map keyed by `name`; `None` when there is none.
    pub fn take_map(&mut self, prefix: &str, device: Device) -> Option<ParamMap> {
        let entries = self.take_all(prefix);
        (!entries.is_empty()).then(|| {
            entries
                .tensors
                .into_iter()
                .map(|(name, t)| (name, t.to_device(device)))
                .collect()
        })
    }

    /// Stores a penalty term, an importance map and its anchor, under `importance/` and
    /// `anchor/` (nothing when `term` is `None`, before the first task).
    pub fn put_term(
        &mut self,
        importance: &str,
        anchor: &str,
        term: Option<&(ParamMap, ParamMap)>,
    ) {
        if let Some((weights, point)) = term {
            self.put_map(importance, weights);
            self.put_map(anchor, point);
        }
    }

    /// Takes out a term stored with [`put_term`](Self::put_term): `None` when neither half is
    /// there, an error when only one is.
    pub fn take_term(
        &mut self,
        importance: &str,
        anchor: &str,
        device: Device,
    ) -> Result<Option<(ParamMap, ParamMap)>> {
        match (
            self.take_map(importance, device),
            self.take_map(anchor, device),
        ) {
            (Some(weights), Some(point)) => Ok(Some((weights, point))),
            (None, None) => Ok(None),
            _ => bail!("the saved state has only one of {importance:?} and {anchor:?}"),
        }
    }

    /// Takes out a count stored with [`put_count`](Self::put_count).
    pub fn take_count(&mut self, name: &str) -> Result<usize> {
        let t = self.take(name, Device::Cpu)?;
        usize::try_from(t.int64_value(&[])).map_err(|_| anyhow!("negative count {name:?}"))
    }

    /// Takes out every entry under `prefix/` as a state of its own (prefix removed).
    pub fn take_all(&mut self, prefix: &str) -> SavedState {
        let start = format!("{prefix}/");
        let names: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(&start))
            .cloned()
            .collect();
        SavedState::from_tensors(
            names
                .into_iter()
                .map(|k| {
                    let tensor = self.tensors.remove(&k).unwrap();
                    (k[start.len()..].to_string(), tensor)
                })
                .collect(),
        )
    }

    /// Fails when entries are left that nobody took: the state came from something else.
    pub fn finish(self, what: &str) -> Result<()> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let names: Vec<&String> = self.tensors.keys().take(5).collect();
        bail!(
            "the saved state of {what} has entries this version does not know ({} in all, e.g. {names:?}); \
             delete the checkpoint to restart the job from its first task",
            self.tensors.len()
        )
    }
}

/// numel × element size of `t`, in bytes.
pub fn tensor_bytes(t: &Tensor) -> u64 {
    t.numel() as u64 * t.kind().elt_size_in_bytes() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_counts_and_nested_states_round_trip() {
        let mut map = ParamMap::new();
        map.insert("trunk.0.weight".into(), Tensor::from_slice(&[1.0f32, 2.0]));
        map.insert("head.bias".into(), Tensor::from_slice(&[3.0f32]));
        let mut inner = SavedState::new();
        inner.put_map("fisher", &map);
        inner.put_count("tasks", 3);
        let mut outer = SavedState::new();
        outer.put_all("strategy", inner);
        assert_eq!(outer.tensors.len(), 3);

        let mut inner = outer.take_all("strategy");
        outer.finish("outer").unwrap();
        assert_eq!(inner.take_count("tasks").unwrap(), 3);
        let back = inner.take_map("fisher", Device::Cpu).unwrap();
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            map.keys().collect::<Vec<_>>()
        );
        assert_eq!(
            Vec::<f32>::try_from(&back["trunk.0.weight"]).unwrap(),
            vec![1.0, 2.0]
        );
        assert!(inner.take_map("anchor", Device::Cpu).is_none());
        inner.finish("inner").unwrap();
    }

    #[test]
    fn leftovers_and_missing_entries_are_errors() {
        let mut state = SavedState::new();
        state.put_count("unexpected", 1);
        assert!(state.take("missing", Device::Cpu).is_err());
        let mut half = SavedState::new();
        half.put_map(
            "omega",
            &ParamMap::from([("w".to_string(), Tensor::from(1.0f32))]),
        );
        assert!(half.take_term("omega", "anchor", Device::Cpu).is_err());
        let err = state.finish("ewc").unwrap_err().to_string();
        assert!(err.contains("ewc") && err.contains("unexpected"), "{err}");
    }

    #[test]
    fn bytes_are_numel_times_element_size() {
        let mut state = SavedState::new();
        state.put("w", &Tensor::zeros([3, 4], (tch::Kind::Float, Device::Cpu)));
        state.put("d", &Tensor::zeros([5], (tch::Kind::Double, Device::Cpu)));
        state.put_count("tasks", 2);
        assert_eq!(state.bytes(), 12 * 4 + 5 * 8 + 8);
        assert_eq!(SavedState::new().bytes(), 0);
    }
}
