//! Distillation from the previous task's network, shared by the methods that use it (`lwf`,
//! `ebll`): the soft cross-entropy between a teacher's and a student's outputs, and the
//! bookkeeping of which outputs are distilled ([`Teacher`]).
//!
//! In: the network at the start of each task (frozen as the teacher) and each finished task's
//! output mask. Out: one soft cross-entropy per group of earlier outputs, which each method
//! weighs and reduces its own way (`lwf`: mean over the groups times `T^2`; `ebll`: their sum,
//! as CLsurvey's code). Nothing here changes a loss or the model.
//!
//! The teacher's softmax is over a group of earlier outputs. The student's is over the same
//! outputs when they are a head apart from the current one (the task scenario), and over every
//! output the current task trains on when those include the earlier ones (the class scenario: all
//! classes seen so far, the teacher's targets being zero on the new classes, as van de Ven &
//! Tolias's code does).

use anyhow::Result;
use tch::{Device, Kind, Tensor};

use super::{SavedState, TaskContext};
use crate::model::{masked_logits, Net};

/// Whether every output in `inner` is in `outer` (Bool masks of one shape).
pub fn is_subset(inner: &Tensor, outer: &Tensor) -> bool {
    inner
        .logical_and(&outer.logical_not())
        .any()
        .int64_value(&[])
        == 0
}

/// `-sum softmax(teacher/T) * log_softmax(student/T)`, batch mean: the teacher's softmax over
/// `teacher_mask`'s columns, the student's over `student_mask`'s (which must contain
/// `teacher_mask`; the targets are zero on the extra columns). No `T^2` factor: this is
/// CLsurvey's `distillation_loss` (see `ebll`).
pub fn soft_cross_entropy(
    student: &Tensor,
    teacher: &Tensor,
    teacher_mask: &Tensor,
    student_mask: &Tensor,
    temperature: f64,
) -> Tensor {
    let target = (masked_logits(teacher, teacher_mask) / temperature).softmax(-1, Kind::Float);
    let log_p = (masked_logits(student, student_mask) / temperature).log_softmax(-1, Kind::Float);
    // Columns outside the teacher's have target 0 and maybe log_p -inf: take them out first.
    let terms = (target * log_p).masked_fill(&teacher_mask.logical_not(), 0.0);
    -terms
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        .mean(Kind::Float)
}

/// [`soft_cross_entropy`] times `T^2` (Hinton et al.'s scaling, which keeps the gradient's size
/// independent of T): LwF's distillation loss.
pub fn distillation(
    student: &Tensor,
    teacher: &Tensor,
    teacher_mask: &Tensor,
    student_mask: &Tensor,
    temperature: f64,
) -> Tensor {
    soft_cross_entropy(student, teacher, teacher_mask, student_mask, temperature)
        * (temperature * temperature)
}

/// The previous task's network and the earlier tasks' outputs it is distilled on.
#[derive(Default)]
pub struct Teacher {
    /// The network at the start of the current task, frozen; none during the first task.
    network: Option<Net>,
    /// Output masks of earlier tasks (Bool [outputs]), none a subset of another.
    old_outputs: Vec<Tensor>,
    /// For each of `old_outputs`, the outputs the student's softmax runs over during the
    /// current task (set by `before_task`).
    student_outputs: Vec<Tensor>,
}

impl Teacher {
    pub fn new() -> Teacher {
        Teacher::default()
    }

    /// Freezes the model as the teacher (from the second task on) and picks the student's
    /// outputs for each earlier group.
    pub fn before_task(&mut self, ctx: &TaskContext) -> Result<()> {
        if ctx.task > 0 {
            self.network = Some(ctx.model.frozen_copy()?);
        }
        let current = &ctx.data.mask;
        self.student_outputs = self
            .old_outputs
            .iter()
            .map(|old| match is_subset(old, current) {
                true => current.shallow_clone(),
                false => old.shallow_clone(),
            })
            .collect();
        Ok(())
    }

    /// The frozen network, from the second task on.
    pub fn network(&self) -> Option<&Net> {
        self.network.as_ref()
    }

    /// The bytes of the frozen network's parameters and buffers (0 before the second task):
    /// what the teacher keeps beyond [`save_into`](Self::save_into)'s masks.
    pub fn network_bytes(&self) -> u64 {
        self.network.as_ref().map_or(0, |net| {
            net.params()
                .values()
                .chain(net.buffers().values())
                .map(crate::core::state::tensor_bytes)
                .sum()
        })
    }

    /// How many groups of earlier outputs are distilled.
    pub fn groups(&self) -> usize {
        self.old_outputs.len()
    }

    /// The sum over the groups of `loss(student, teacher, teacher_mask, student_mask)`, or `None`
    /// when there is no earlier group.
    pub fn summed(
        &self,
        student: &Tensor,
        teacher: &Tensor,
        loss: impl Fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Tensor,
    ) -> Option<Tensor> {
        self.old_outputs
            .iter()
            .zip(&self.student_outputs)
            .map(|(teacher_mask, student_mask)| loss(student, teacher, teacher_mask, student_mask))
            .reduce(|a, b| a + b)
    }

    /// Adds the finished task's outputs to the distilled groups.
    pub fn after_task(&mut self, ctx: &TaskContext) {
        let mask = ctx.data.mask.shallow_clone();
        // Nested masks (the class scenario) keep the largest; equal ones (domain) keep one.
        if self.old_outputs.iter().any(|m| is_subset(&mask, m)) {
            return;
        }
        self.old_outputs.retain(|m| !is_subset(m, &mask));
        self.old_outputs.push(mask);
    }

    /// The earlier groups' masks (`masks`, `mask0`, ...); the network is the model itself at the
    /// next `before_task`, so it is rebuilt from the checkpoint's model.
    pub fn save_into(&self, state: &mut SavedState) {
        state.put_count("masks", self.old_outputs.len());
        for (i, mask) in self.old_outputs.iter().enumerate() {
            state.put(format!("mask{i}"), mask);
        }
    }

    /// Takes out what [`save_into`](Self::save_into) stored.
    pub fn load_from(&mut self, state: &mut SavedState, device: Device) -> Result<()> {
        let n = state.take_count("masks")?;
        self.old_outputs = (0..n)
            .map(|i| state.take(&format!("mask{i}"), device))
            .collect::<Result<_>>()?;
        Ok(())
    }
}
