//! The micro-batches of one optimizer step: the loss and gradients of each on its device (the
//! main one in the calling thread, each distinct replica in its own), and the copy of the model
//! in the device's precision they compute with.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, FloatDType};
use lexforge_core::Seed;

use crate::contract::{BatchSource, TrainModel};
use crate::error::{Result, TrainError, check_loss};
use crate::params::cast_params;

/// The precision `device` computes in when it is not f32 (training then keeps f32 master
/// weights).
pub(crate) fn master_dtype(device: &Device) -> Option<FloatDType> {
    let dtype = device.settings().float_dtype;
    (dtype != FloatDType::F32).then_some(dtype)
}

/// `model` as it computes on `device`: cast to the device's precision when that is not f32.
pub(crate) fn working_copy<M: Module>(model: M, device: &Device) -> M {
    match master_dtype(device) {
        Some(dtype) => cast_params(model, dtype, false),
        None => model,
    }
}

/// What one micro-batch gives.
pub(crate) struct MicroOut {
    /// Its gradients, on the main device, scaled by `scale / divisor`.
    pub(crate) grads: GradientsParams,
    /// Its (unscaled) loss.
    pub(crate) loss: f64,
    pub(crate) targets: usize,
}

/// The settings every micro-batch of one optimizer step shares.
pub(crate) struct Micro<'a, B> {
    pub(crate) train: &'a dyn BatchSource<B>,
    pub(crate) seed: u64,
    pub(crate) step: u64,
    /// Micro-batches per optimizer step (their gradients are averaged).
    pub(crate) divisor: f64,
    /// The loss scale.
    pub(crate) scale: f64,
    pub(crate) main: &'a Device,
}

impl<B> Micro<'_, B> {
    /// Loss and gradients of the micro-batch at data position `pos` on `device`, and the
    /// batch.
    fn one<M: TrainModel<Batch = B>>(
        &self,
        model: &M,
        device: &Device,
        pos: u64,
        indices: &[usize],
    ) -> Result<(MicroOut, B)> {
        let step = self.step;
        let batch = self
            .train
            .batch(indices, device)
            .map_err(|source| TrainError::Step {
                op: "batch",
                step,
                source,
            })?;
        // The backend RNG (dropout) is a function of (seed, data position) only, so a resumed
        // run draws exactly the masks the uninterrupted run drew.
        device.seed(Seed(self.seed).derive(&format!("backend/{pos}")).0);
        let on_main = device == self.main;
        let local = if on_main {
            model.clone()
        } else {
            model.clone().fork(device)
        };
        // Gradients flow through the cast back to the (f32) parameters of `local`.
        let out = working_copy(local.clone(), device)
            .loss(&batch)
            .map_err(|source| TrainError::Step {
                op: "loss",
                step,
                source,
            })?;
        let value = f64::from(out.loss.clone().into_scalar::<f32>());
        check_loss(step, value)?;
        let factor = self.scale / self.divisor;
        let loss = if factor != 1.0 {
            out.loss * factor
        } else {
            out.loss
        };
        let mut grads = GradientsParams::from_grads(loss.backward(), &local);
        if !on_main {
            grads = grads.to_device(self.main, &local);
        }
        let out = MicroOut {
            grads,
            loss: value,
            targets: out.targets,
        };
        Ok((out, batch))
    }

    /// One micro-batch per device: `jobs[0]` on the main device in this thread, `jobs[i]` on
    /// `replicas[i - 1]`, each distinct replica in its own thread. Results in job order, and
    /// the last batch computed on the main device (for [`TrainModel::after_step`]).
    pub(crate) fn run_group<M: TrainModel<Batch = B>>(
        &self,
        model: &M,
        replicas: &[Device],
        jobs: &[(u64, Vec<usize>)],
    ) -> Result<(Vec<MicroOut>, Option<B>)> {
        let Some(((pos0, idx0), rest)) = jobs.split_first() else {
            return Ok((Vec::new(), None));
        };
        if rest.is_empty() {
            let (out, batch) = self.one(model, self.main, *pos0, idx0)?;
            return Ok((vec![out], Some(batch)));
        }
        // A device listed more than once (or the main device again) shares one RNG and pool:
        // run those in turn so the dropout masks stay a function of the data position.
        let parallel = replicas
            .iter()
            .enumerate()
            .all(|(i, d)| d != self.main && !replicas[..i].contains(d));
        if !parallel {
            let (first, mut batch) = self.one(model, self.main, *pos0, idx0)?;
            let mut outs = vec![first];
            for ((pos, idx), device) in rest.iter().zip(replicas) {
                let (out, b) = self.one(model, device, *pos, idx)?;
                if device == self.main {
                    batch = b;
                }
                outs.push(out);
            }
            return Ok((outs, Some(batch)));
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = rest
                .iter()
                .zip(replicas)
                .map(|((pos, idx), device)| {
                    let model = model.clone();
                    let this = &*self;
                    scope.spawn(move || this.one(&model, device, *pos, idx).map(|(out, _)| out))
                })
                .collect();
            let (first, batch) = self.one(model, self.main, *pos0, idx0)?;
            let mut outs = vec![first];
            for h in handles {
                outs.push(h.join().map_err(|_| TrainError::InvalidParameter {
                    parameter: "replicas",
                    reason: "a replica's training thread panicked".into(),
                })??);
            }
            Ok((outs, Some(batch)))
        })
    }
}
