//! The optimizer loop: gradient accumulation, global-norm clipping, the learning-rate
//! schedule, periodic evaluation, early stopping, checkpoints and exact resume.
//!
//! Why our own loop rather than burn-train's `Learner`: see
//! `docs/adr/0002-training-engine.md`. In short, exact resume needs the data position and the
//! dropout RNG under our control, and the pipelines need typed failures (NaN loss with its step)
//! and our [`EventSink`] events rather than burn-train's dashboard. burn's pieces are used
//! where they fit: the optimizer and its record format, gradient accumulation, the module
//! snapshot store for checkpoints.

use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsAccumulator;
use burn::tensor::{Device, FloatDType};
use lexforge_core::{CancelToken, Event, EventSink, Seed};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{BestEval, CheckpointDir, LossScaleState, TrainerState, step_name};
use crate::config::TrainConfig;
use crate::contract::{BatchSource, StepInfo, TrainModel};
use crate::early_stop::{EarlyStopping, Verdict};
use crate::error::{Result, TrainError};
use crate::micro_batch::{Micro, master_dtype, working_copy};
use crate::params::{cast_params, clip_global_norm, scale_grads, with_stable_param_ids};

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `max_steps` reached.
    MaxSteps,
    /// Early stopping's patience ran out.
    EarlyStopped,
    /// The cancel token was triggered; a checkpoint of the last finished step was written.
    Cancelled,
}

/// What [`train`] returns.
#[derive(Debug)]
pub struct TrainOutcome<M> {
    /// The model after the last step (on the training device).
    pub model: M,
    /// The loop's state at the end.
    pub state: TrainerState,
    /// Why it ended.
    pub stop: StopReason,
}

/// Where a run trains and reports.
pub struct TrainContext<'a, B> {
    /// Run id for the `started` event.
    pub run_id: &'a str,
    /// Job kind for the `started` event (`"lm"`, ...).
    pub kind: &'a str,
    /// The training device; must be an autodiff device (`Device::flex().autodiff()`). The model
    /// lives here and the optimizer steps here.
    pub device: &'a Device,
    /// More autodiff devices for data parallelism (empty: one device). Each optimizer step then
    /// takes `grad_accum_steps × (1 + replicas.len())` micro-batches: each device computes the
    /// gradients of its own micro-batches on a copy of the model ([`Module::fork`]), in its own
    /// thread, and the gradients are moved to `device` and averaged there, so the update is the
    /// one a single device would make with that many accumulation steps (up to summation
    /// order). Distinct devices run at the same time; a device listed twice is used in turn.
    pub replicas: &'a [Device],
    /// Training items; shuffled each epoch with the seed.
    pub train: &'a dyn BatchSource<B>,
    /// Validation items; evaluated in order.
    pub valid: &'a dyn BatchSource<B>,
    /// Where checkpoints go.
    pub checkpoints: &'a CheckpointDir,
    /// Receives started, progress, eval, checkpoint, failed and cancelled events. `completed`
    /// is left to the pipeline, which finishes its own artifacts after the loop.
    pub events: &'a dyn EventSink,
    /// Checked between optimizer steps.
    pub cancel: &'a CancelToken,
}

/// Whether to continue from the latest checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Start from the given model.
    Fresh,
    /// Continue from `latest.json` when there is one, else start fresh.
    Latest,
}

/// Trains `model` with `config`. See the module documentation.
///
/// # Errors
/// [`TrainError::InvalidParameter`] for a bad config (or a device without autodiff),
/// [`TrainError::NotEnoughData`] when the training data cannot fill a batch or validation is
/// empty, [`TrainError::Checkpoint`] for a damaged checkpoint on resume,
/// [`TrainError::NonFiniteLoss`] with the step when the loss is NaN or infinite (the last
/// checkpoint is left as it was), [`TrainError::Step`] for model or data errors, and I/O errors.
/// Every error after the `started` event is also reported as a `failed` event.
pub fn train<M: TrainModel>(
    config: &TrainConfig,
    ctx: &TrainContext<'_, M::Batch>,
    model: M,
    resume: Resume,
) -> Result<TrainOutcome<M>> {
    config.validate()?;
    if !ctx.device.is_autodiff() {
        return Err(TrainError::InvalidParameter {
            parameter: "device",
            reason: "training needs an autodiff device (`device.autodiff()`)".into(),
        });
    }
    if ctx.train.len() < config.batch_size {
        return Err(TrainError::NotEnoughData {
            split: "train",
            items: ctx.train.len(),
            batch_size: config.batch_size,
        });
    }
    if ctx.valid.is_empty() {
        return Err(TrainError::NotEnoughData {
            split: "validation",
            items: 0,
            batch_size: 1,
        });
    }
    // Reduced precision: the model, the optimizer and the checkpoints keep f32 master weights;
    // each micro-batch computes with a copy cast to the device's precision (see `Micro::one`).
    let model = with_stable_param_ids(model);
    let optimizer = config.optimizer.build()?;
    let (model, optimizer, state) = match resume {
        Resume::Latest => match ctx.checkpoints.latest()? {
            Some(name) => {
                let loaded = ctx.checkpoints.load(&name, model, optimizer, ctx.device)?;
                tracing::info!(checkpoint = %name, step = loaded.2.step, "resuming");
                loaded
            }
            None => (model, optimizer, fresh_state(config)),
        },
        Resume::Fresh => (model, optimizer, fresh_state(config)),
    };
    // After loading too: burn's store keeps a checkpoint's f32 as it is, a fresh model is in
    // the device's precision.
    let model = match master_dtype(ctx.device) {
        Some(_) => cast_params(model, FloatDType::F32, true),
        None => model,
    };
    let mut state = state;
    if config.loss_scaling.active_on(ctx.device) {
        state.loss_scale.get_or_insert(LossScaleState {
            scale: config.loss_scaling.init_scale,
            good_steps: 0,
            skipped_steps: 0,
        });
    } else {
        state.loss_scale = None;
    }
    ctx.events.send(Event::Started {
        run_id: ctx.run_id.to_owned(),
        kind: ctx.kind.to_owned(),
        total: Some(config.max_steps),
    })?;
    let mut lp = Loop {
        config,
        ctx,
        optimizer,
        clock_base: state.elapsed_secs,
        state,
        order: None,
        clock: Instant::now(),
    };
    match lp.run(model) {
        Ok(out) => Ok(out),
        Err(e) => {
            // Best effort: the error itself is what the caller needs.
            let _ = ctx.events.send(Event::Failed {
                step: Some(lp.state.step),
                error: e.to_string(),
            });
            let _ = ctx.events.flush();
            Err(e)
        }
    }
}

fn fresh_state(config: &TrainConfig) -> TrainerState {
    TrainerState {
        step: 0,
        micro_batches: 0,
        tokens: 0,
        early_stopping: config.early_stopping.clone().map(EarlyStopping::new),
        best: None,
        last_val_loss: None,
        elapsed_secs: 0.0,
        seed: config.seed,
        loss_scale: None,
    }
}

struct Loop<'a, 'c, B> {
    config: &'a TrainConfig,
    ctx: &'a TrainContext<'c, B>,
    optimizer: crate::optimizer::AdamW,
    state: TrainerState,
    /// The shuffled order of the current epoch.
    order: Option<(u64, Vec<usize>)>,
    clock: Instant,
    clock_base: f64,
}

impl<B> Loop<'_, '_, B> {
    fn elapsed(&self) -> f64 {
        self.clock_base + self.clock.elapsed().as_secs_f64()
    }

    /// The item indices of micro-batch number `pos` (epoch-wise shuffled, last partial batch
    /// of an epoch dropped).
    fn indices(&mut self, pos: u64) -> Vec<usize> {
        let bs = self.config.batch_size;
        let n = self.ctx.train.len();
        let per_epoch = (n / bs) as u64;
        let (epoch, offset) = (pos / per_epoch, (pos % per_epoch) as usize);
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut Seed(self.config.seed).rng(&format!("train-order/{epoch}")));
            self.order = Some((epoch, order));
        }
        let order = self
            .order
            .as_ref()
            .map(|(_, o)| o.as_slice())
            .unwrap_or(&[]);
        order[offset * bs..(offset + 1) * bs].to_vec()
    }

    fn epoch(&self) -> f64 {
        let per_epoch = (self.ctx.train.len() / self.config.batch_size) as f64;
        self.state.micro_batches as f64 / per_epoch
    }
}

impl<B> Loop<'_, '_, B> {
    fn run<M: TrainModel<Batch = B>>(&mut self, mut model: M) -> Result<TrainOutcome<M>> {
        let config = self.config;
        let schedule = config.schedule();
        let accum = config.grad_accum_steps;
        let mut window = Window::new();
        let mut stop = StopReason::MaxSteps;
        while self.state.step < config.max_steps {
            if self.ctx.cancel.is_cancelled() {
                stop = StopReason::Cancelled;
                break;
            }
            let step = self.state.step;
            let lr = schedule.lr(step);
            let mut acc = GradientsAccumulator::<M>::new();
            let mut step_loss = 0.0;
            let mut last_batch = None;
            let devices = 1 + self.ctx.replicas.len();
            let micro_per_step = accum as usize * devices;
            let scale = self.state.loss_scale.map_or(1.0, |s| s.scale);
            for _ in 0..accum {
                let first = self.state.micro_batches;
                let jobs: Vec<(u64, Vec<usize>)> = (0..devices as u64)
                    .map(|i| (first + i, self.indices(first + i)))
                    .collect();
                let micro = Micro {
                    train: self.ctx.train,
                    seed: config.seed,
                    step,
                    divisor: micro_per_step as f64,
                    scale,
                    main: self.ctx.device,
                };
                let (outs, batch) = micro.run_group(&model, self.ctx.replicas, &jobs)?;
                for out in outs {
                    step_loss += out.loss / micro_per_step as f64;
                    acc.accumulate(&model, out.grads);
                    self.state.micro_batches += 1;
                    self.state.tokens += out.targets as u64;
                    window.tokens += out.targets as u64;
                }
                last_batch = batch;
            }
            let clip = config.optimizer.grad_clip_norm.map(f64::from);
            let grads = acc.grads();
            let grads = if scale != 1.0 {
                scale_grads(&model, grads, 1.0 / scale)
            } else {
                grads
            };
            let (grads, grad_norm) = clip_global_norm(&model, grads, clip);
            let skip = match self.state.loss_scale.as_mut() {
                Some(ls) if !grad_norm.is_finite() => {
                    // Overflow: drop this update, try again with half the scale.
                    ls.scale = (ls.scale * 0.5).max(1.0);
                    ls.good_steps = 0;
                    ls.skipped_steps += 1;
                    tracing::warn!(step, scale = ls.scale, "gradients overflowed; step skipped");
                    true
                }
                Some(ls) => {
                    ls.good_steps += 1;
                    if ls.good_steps >= config.loss_scaling.growth_interval {
                        ls.scale = (ls.scale * 2.0).min(65536.0);
                        ls.good_steps = 0;
                    }
                    false
                }
                None => false,
            };
            if !skip {
                model = self.optimizer.step(lr, model, grads);
            }
            self.state.step += 1;
            if let Some(batch) = &last_batch {
                let per_epoch = (self.ctx.train.len() / config.batch_size) as u64;
                let done = self.state.micro_batches;
                let info = StepInfo {
                    step: self.state.step,
                    epoch: (done - 1) / per_epoch,
                    epoch_end: done.is_multiple_of(per_epoch),
                };
                let (updated, metrics) =
                    model
                        .after_step(batch, &info)
                        .map_err(|source| TrainError::Step {
                            op: "after_step",
                            step: self.state.step,
                            source,
                        })?;
                model = updated;
                if !metrics.is_empty() {
                    self.ctx.events.send(Event::Progress {
                        step: self.state.step,
                        total: Some(config.max_steps),
                        metrics,
                    })?;
                }
            }
            window.add(step_loss, grad_norm);
            let step = self.state.step;
            let last = step == config.max_steps;
            if step.is_multiple_of(config.log_every) || last {
                let mut metrics = window.take();
                metrics.insert("lr".into(), lr);
                metrics.insert("epoch".into(), self.epoch());
                self.ctx.events.send(Event::Progress {
                    step,
                    total: Some(config.max_steps),
                    metrics,
                })?;
            }
            let eval_due =
                (config.eval_every > 0 && step.is_multiple_of(config.eval_every)) || last;
            if eval_due && self.eval_and_maybe_stop(&model)? {
                stop = StopReason::EarlyStopped;
                break;
            }
            if (config.checkpoint_every > 0 && step.is_multiple_of(config.checkpoint_every)) || last
            {
                self.checkpoint(&model, &step_name(step), true)?;
            }
        }
        if stop != StopReason::MaxSteps {
            // Keep the work of every finished step.
            let name = step_name(self.state.step);
            if self.ctx.checkpoints.latest()?.as_deref() != Some(name.as_str()) {
                self.checkpoint(&model, &name, true)?;
            }
        }
        if stop == StopReason::Cancelled {
            self.ctx.events.send(Event::Cancelled {
                step: Some(self.state.step),
            })?;
        }
        self.ctx.events.flush()?;
        Ok(TrainOutcome {
            model,
            state: self.state.clone(),
            stop,
        })
    }

    /// Evaluates, records the best checkpoint, and returns whether early stopping says stop.
    fn eval_and_maybe_stop<M: TrainModel<Batch = B>>(&mut self, model: &M) -> Result<bool> {
        let step = self.state.step;
        let plain = self.ctx.device.clone().without_autodiff();
        let (val_loss, targets) = evaluate(
            &working_copy(model.valid(), &plain),
            self.ctx.valid,
            &plain,
            self.config.batch_size,
            self.config.eval_batches,
        )
        .map_err(|e| match e {
            TrainError::Step { op, source, .. } => TrainError::Step { op, step, source },
            other => other,
        })?;
        self.state.last_val_loss = Some(val_loss);
        let mut metrics = std::collections::BTreeMap::new();
        metrics.insert("val_loss".into(), val_loss);
        metrics.insert("val_perplexity".into(), val_loss.exp());
        metrics.insert("val_targets".into(), targets as f64);
        self.ctx.events.send(Event::Eval { step, metrics })?;
        let improved =
            val_loss.is_finite() && self.state.best.is_none_or(|b| val_loss < b.val_loss);
        if improved {
            self.state.best = Some(BestEval { step, val_loss });
            self.checkpoint(model, "best", false)?;
        }
        Ok(match self.state.early_stopping.as_mut() {
            Some(es) => es.observe(val_loss) == Verdict::Stop,
            None => false,
        })
    }

    fn checkpoint<M: Module>(&mut self, model: &M, name: &str, periodic: bool) -> Result<()> {
        self.state.elapsed_secs = self.elapsed();
        let path =
            self.ctx
                .checkpoints
                .save(name, model, &self.optimizer, &self.state, periodic)?;
        let rel = path
            .strip_prefix(
                self.ctx
                    .checkpoints
                    .path()
                    .parent()
                    .unwrap_or(self.ctx.checkpoints.path()),
            )
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        self.ctx.events.send(Event::Checkpoint {
            step: self.state.step,
            path: rel,
        })?;
        Ok(())
    }
}

/// Mean loss per target of `model` over `data` (in order, in batches of `batch_size`, at most
/// `max_batches` of them), weighted by each batch's target count. Returns the mean and the
/// number of targets. `model` should be in evaluation mode ([`Module::valid`]) and `device`
/// the plain device it lives on.
pub fn evaluate<M: TrainModel>(
    model: &M,
    data: &dyn BatchSource<M::Batch>,
    device: &Device,
    batch_size: usize,
    max_batches: Option<usize>,
) -> Result<(f64, u64)> {
    if data.is_empty() {
        return Err(TrainError::NotEnoughData {
            split: "validation",
            items: 0,
            batch_size: 1,
        });
    }
    let n = data.len();
    let batches = n.div_ceil(batch_size.max(1));
    let batches = max_batches.map_or(batches, |m| m.min(batches));
    let mut sum = 0.0;
    let mut targets = 0u64;
    for b in 0..batches {
        let indices: Vec<usize> = (b * batch_size..((b + 1) * batch_size).min(n)).collect();
        let batch = data
            .batch(&indices, device)
            .map_err(|source| TrainError::Step {
                op: "batch",
                step: 0,
                source,
            })?;
        let out = model.loss(&batch).map_err(|source| TrainError::Step {
            op: "evaluate",
            step: 0,
            source,
        })?;
        let value = f64::from(out.loss.into_scalar::<f32>());
        sum += value * out.targets as f64;
        targets += out.targets as u64;
    }
    Ok((sum / targets.max(1) as f64, targets))
}

/// Loss, gradient norm and throughput between two progress events.
struct Window {
    started: Instant,
    loss: f64,
    grad_norm: f64,
    steps: u64,
    tokens: u64,
}

impl Window {
    fn new() -> Self {
        Window {
            started: Instant::now(),
            loss: 0.0,
            grad_norm: 0.0,
            steps: 0,
            tokens: 0,
        }
    }

    fn add(&mut self, loss: f64, grad_norm: f64) {
        self.loss += loss;
        self.grad_norm += grad_norm;
        self.steps += 1;
    }

    fn take(&mut self) -> std::collections::BTreeMap<String, f64> {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let steps = self.steps.max(1) as f64;
        let mut m = std::collections::BTreeMap::new();
        m.insert("loss".into(), self.loss / steps);
        m.insert("grad_norm".into(), self.grad_norm / steps);
        m.insert("tokens_per_s".into(), self.tokens as f64 / secs);
        *self = Window::new();
        m
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, MutexGuard};

    use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
    use burn::tensor::{Tensor, TensorData};
    use lexforge_core::{EventRecord, Result as CoreResult};

    use super::*;
    use crate::config::{LossScaling, LossScalingMode};
    use crate::contract::{BoxError, LossOutput};
    use crate::early_stop::EarlyStoppingConfig;
    use crate::optimizer::OptimizerConfig;

    /// Training tests share burn's process-wide backend RNG; run them one at a time.
    fn serial() -> MutexGuard<'static, ()> {
        crate::serial_rng()
    }

    #[derive(Module, Debug)]
    struct Mlp {
        l1: Linear,
        drop: Dropout,
        l2: Linear,
    }

    impl Mlp {
        fn new(device: &Device) -> Self {
            device.seed(7);
            Mlp {
                l1: LinearConfig::new(4, 16).init(device),
                drop: DropoutConfig::new(0.2).init(),
                l2: LinearConfig::new(16, 1).init(device),
            }
        }
    }

    /// `(x [b, 4], y [b, 1])`.
    type Xy = (Tensor<2>, Tensor<2>);

    impl TrainModel for Mlp {
        type Batch = Xy;
        fn loss(&self, (x, y): &Xy) -> std::result::Result<LossOutput, BoxError> {
            let h = burn::tensor::activation::relu(self.l1.forward(x.clone()));
            let pred = self.l2.forward(self.drop.forward(h));
            Ok(LossOutput {
                loss: (pred - y.clone()).powf_scalar(2.0).mean().reshape([1]),
                targets: y.dims()[0],
            })
        }
    }

    /// y = x0 - 2 x1 + 0.5 x2 x3 on a deterministic sequence of points; `scale` blows the
    /// targets up.
    struct Points {
        n: usize,
        offset: usize,
        scale: f32,
    }

    impl BatchSource<Xy> for Points {
        fn len(&self) -> usize {
            self.n
        }
        fn batch(&self, indices: &[usize], device: &Device) -> std::result::Result<Xy, BoxError> {
            let mut xs = Vec::new();
            let mut ys = Vec::new();
            for &i in indices {
                let j = (i + self.offset) as f32;
                let x = [
                    (j * 0.37).sin(),
                    (j * 0.11).cos(),
                    (j * 0.05).sin(),
                    (j * 0.23).cos(),
                ];
                ys.push((x[0] - 2.0 * x[1] + 0.5 * x[2] * x[3]) * self.scale);
                xs.extend(x);
            }
            let b = indices.len();
            Ok((
                Tensor::from_data(TensorData::new(xs, [b, 4]), device),
                Tensor::from_data(TensorData::new(ys, [b, 1]), device),
            ))
        }
    }

    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<Event>>,
        fail_at_step: Option<u64>,
        cancel_at_step: Option<(u64, CancelToken)>,
    }

    impl EventSink for Recorder {
        fn emit(&self, record: &EventRecord) -> CoreResult<()> {
            if let Event::Progress { step, .. } = &record.event {
                if self.fail_at_step == Some(*step) {
                    return Err(lexforge_core::Error::Cancelled);
                }
                if let Some((s, token)) = &self.cancel_at_step
                    && s == step
                {
                    token.cancel();
                }
            }
            self.events.lock().unwrap().push(record.event.clone());
            Ok(())
        }
    }

    fn config() -> TrainConfig {
        TrainConfig {
            max_steps: 12,
            batch_size: 4,
            grad_accum_steps: 2,
            lr: 1e-2,
            min_lr: 1e-3,
            warmup_steps: 2,
            eval_every: 4,
            checkpoint_every: 3,
            log_every: 1,
            seed: 11,
            ..TrainConfig::default()
        }
    }

    fn weights(m: &Mlp) -> Vec<f32> {
        let mut out = Vec::new();
        for t in [m.l1.weight.val(), m.l2.weight.val()] {
            out.extend(
                t.into_data()
                    .convert::<f32>()
                    .try_to_vec_as::<f32>()
                    .unwrap(),
            );
        }
        out
    }

    fn run_with(
        dir: &std::path::Path,
        config: &TrainConfig,
        sink: &Recorder,
        cancel: &CancelToken,
        resume: Resume,
        scale: f32,
    ) -> Result<TrainOutcome<Mlp>> {
        run_on(dir, config, sink, cancel, resume, scale, &[])
    }

    fn run_on(
        dir: &std::path::Path,
        config: &TrainConfig,
        sink: &Recorder,
        cancel: &CancelToken,
        resume: Resume,
        scale: f32,
        replicas: &[Device],
    ) -> Result<TrainOutcome<Mlp>> {
        let device = Device::flex().autodiff();
        let train_data = Points {
            n: 37,
            offset: 0,
            scale,
        };
        let valid = Points {
            n: 10,
            offset: 1000,
            scale: 1.0,
        };
        let ckpt = CheckpointDir::new(dir.join("checkpoints"), 2)?;
        let ctx = TrainContext {
            run_id: "t",
            kind: "test",
            device: &device,
            replicas,
            train: &train_data,
            valid: &valid,
            checkpoints: &ckpt,
            events: sink,
            cancel,
        };
        train(config, &ctx, Mlp::new(&device), resume)
    }

    fn run(
        dir: &std::path::Path,
        config: &TrainConfig,
        sink: &Recorder,
        resume: Resume,
    ) -> Result<TrainOutcome<Mlp>> {
        run_with(dir, config, sink, &CancelToken::new(), resume, 1.0)
    }

    #[test]
    fn learns_and_reports_in_order() {
        let _g = serial();
        let dir = tempfile::tempdir().unwrap();
        let sink = Recorder::default();
        let cfg = TrainConfig {
            max_steps: 40,
            lr: 5e-2,
            min_lr: 5e-3,
            ..config()
        };
        let out = run(dir.path(), &cfg, &sink, Resume::Fresh).unwrap();
        assert_eq!(out.stop, StopReason::MaxSteps);
        assert_eq!((out.state.step, out.state.micro_batches), (40, 80));
        let events = sink.events.lock().unwrap();
        assert!(matches!(
            events[0],
            Event::Started {
                total: Some(40),
                ..
            }
        ));
        let evals: Vec<f64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Eval { metrics, .. } => Some(metrics["val_loss"]),
                _ => None,
            })
            .collect();
        assert_eq!(evals.len(), 10);
        assert!(evals[9] < evals[0] * 0.5, "{evals:?}");
        let progress: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Progress { metrics, .. } => Some(metrics),
                _ => None,
            })
            .collect();
        assert_eq!(progress.len(), 40);
        for key in ["loss", "lr", "tokens_per_s", "grad_norm", "epoch"] {
            assert!(progress[0][key].is_finite(), "{key}");
        }
        let ckpts = dir.path().join("checkpoints");
        assert!(ckpts.join("best/state.json").exists());
        assert!(ckpts.join("step-000039").exists() && ckpts.join("step-000040").exists());
        assert!(!ckpts.join("step-000036").exists(), "pruned to 2");
    }

    #[test]
    fn resume_after_a_crash_is_bitwise_identical() {
        let _g = serial();
        let cfg = config();
        let a = tempfile::tempdir().unwrap();
        let full = run(a.path(), &cfg, &Recorder::default(), Resume::Fresh).unwrap();

        // Crash between checkpoints: step 7 fails after the checkpoint of step 6.
        let b = tempfile::tempdir().unwrap();
        let crashing = Recorder {
            fail_at_step: Some(7),
            ..Recorder::default()
        };
        let err = run(b.path(), &cfg, &crashing, Resume::Fresh).unwrap_err();
        assert!(matches!(err, TrainError::Core(_)), "{err}");
        let ckpts = CheckpointDir::new(b.path().join("checkpoints"), 2).unwrap();
        assert_eq!(ckpts.latest().unwrap().as_deref(), Some("step-000006"));
        let resumed = run(b.path(), &cfg, &Recorder::default(), Resume::Latest).unwrap();
        assert_eq!(resumed.state.step, 12);
        assert_eq!(resumed.state.micro_batches, full.state.micro_batches);
        assert_eq!(resumed.state.best, full.state.best);
        let (x, y) = (weights(&full.model), weights(&resumed.model));
        assert!(
            x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
            "weights differ"
        );

        // The comparison can fail: another seed (data order, dropout) gives other weights.
        let c = tempfile::tempdir().unwrap();
        let other = run(
            c.path(),
            &TrainConfig { seed: 12, ..cfg },
            &Recorder::default(),
            Resume::Fresh,
        )
        .unwrap();
        assert_ne!(weights(&other.model), x);
    }

    #[test]
    fn cancel_stops_between_steps_and_keeps_a_checkpoint() {
        let _g = serial();
        let dir = tempfile::tempdir().unwrap();
        let cancel = CancelToken::new();
        let sink = Recorder {
            cancel_at_step: Some((5, cancel.clone())),
            ..Recorder::default()
        };
        let out = run_with(dir.path(), &config(), &sink, &cancel, Resume::Fresh, 1.0).unwrap();
        assert_eq!((out.stop, out.state.step), (StopReason::Cancelled, 5));
        let ckpts = CheckpointDir::new(dir.path().join("checkpoints"), 2).unwrap();
        assert_eq!(ckpts.latest().unwrap().as_deref(), Some("step-000005"));
        let events = sink.events.lock().unwrap();
        assert!(matches!(
            events.last(),
            Some(Event::Cancelled { step: Some(5) })
        ));
    }

    #[test]
    fn a_diverging_loss_fails_with_its_step_and_keeps_the_last_checkpoint() {
        let _g = serial();
        let dir = tempfile::tempdir().unwrap();
        let sink = Recorder::default();
        let cfg = TrainConfig {
            lr: 10.0,
            min_lr: 1.0,
            optimizer: OptimizerConfig {
                grad_clip_norm: None,
                ..OptimizerConfig::default()
            },
            ..config()
        };
        let err = run_with(
            dir.path(),
            &cfg,
            &sink,
            &CancelToken::new(),
            Resume::Fresh,
            1e30,
        )
        .unwrap_err();
        let TrainError::NonFiniteLoss { step, .. } = err else {
            panic!("{err}")
        };
        let events = sink.events.lock().unwrap();
        assert!(
            matches!(events.last(), Some(Event::Failed { step: Some(s), .. }) if *s == step),
            "{:?}",
            events.last()
        );
        let ckpts = CheckpointDir::new(dir.path().join("checkpoints"), 2).unwrap();
        assert!(ckpts.latest().unwrap().is_none_or(|n| n <= step_name(step)));
    }

    #[test]
    fn a_damaged_checkpoint_is_refused_on_resume() {
        let _g = serial();
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            max_steps: 3,
            ..config()
        };
        run(dir.path(), &cfg, &Recorder::default(), Resume::Fresh).unwrap();
        let model = dir.path().join("checkpoints/step-000003/model.safetensors");
        let mut bytes = std::fs::read(&model).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&model, bytes).unwrap();
        let more = TrainConfig {
            max_steps: 6,
            ..cfg
        };
        let err = run(dir.path(), &more, &Recorder::default(), Resume::Latest).unwrap_err();
        assert!(matches!(err, TrainError::Checkpoint { .. }), "{err}");
        assert!(err.to_string().contains("sha256"), "{err}");
    }

    #[test]
    fn a_checkpoint_moved_aside_by_an_interrupted_replacement_is_restored() {
        let _g = serial();
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            max_steps: 3,
            eval_every: 1,
            ..config()
        };
        run(dir.path(), &cfg, &Recorder::default(), Resume::Fresh).unwrap();
        let ckpts = dir.path().join("checkpoints");
        let best = std::fs::read(ckpts.join("best/model.safetensors")).unwrap();
        // A kill between `best` → `.old-best-PID` and the new `best` taking its place.
        std::fs::rename(ckpts.join("best"), ckpts.join(".old-best-4242")).unwrap();
        let store = CheckpointDir::new(&ckpts, 2).unwrap();
        store.remove_temporaries();
        assert_eq!(
            std::fs::read(ckpts.join("best/model.safetensors")).unwrap(),
            best
        );
        assert!(!ckpts.join(".old-best-4242").exists());
        // Beside a checkpoint of that name, a moved-aside copy is stale and removed.
        std::fs::create_dir(ckpts.join(".old-step-000003-4242")).unwrap();
        store.remove_temporaries();
        assert!(!ckpts.join(".old-step-000003-4242").exists());
        assert!(ckpts.join("step-000003/state.json").is_file());
    }

    #[test]
    fn early_stopping_ends_the_run_and_bad_configs_are_refused() {
        let _g = serial();
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            max_steps: 200,
            lr: 1e-9,
            min_lr: 1e-9,
            eval_every: 1,
            early_stopping: Some(EarlyStoppingConfig {
                patience: 2,
                min_delta: 0.1,
            }),
            ..config()
        };
        let out = run(dir.path(), &cfg, &Recorder::default(), Resume::Fresh).unwrap();
        assert_eq!(out.stop, StopReason::EarlyStopped);
        assert_eq!(
            out.state.step, 4,
            "best at 1, then 3 evaluations without improvement"
        );
        for bad in [
            TrainConfig {
                batch_size: 0,
                ..config()
            },
            TrainConfig {
                max_steps: 0,
                ..config()
            },
            TrainConfig {
                grad_accum_steps: 0,
                ..config()
            },
            TrainConfig {
                batch_size: 100,
                ..config()
            },
        ] {
            let err = run(dir.path(), &bad, &Recorder::default(), Resume::Fresh).unwrap_err();
            assert!(
                matches!(
                    err,
                    TrainError::InvalidParameter { .. } | TrainError::NotEnoughData { .. }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn data_parallel_matches_accumulation_on_one_device() {
        let _g = serial();
        let cancel = CancelToken::new();
        let sink = Recorder::default();
        let cfg = |accum| TrainConfig {
            grad_accum_steps: accum,
            ..config()
        };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let one = run_on(a.path(), &cfg(2), &sink, &cancel, Resume::Fresh, 1.0, &[]).unwrap();
        // flex has one device: a replica on it runs in turn, with the same arithmetic.
        let replica = [Device::flex().autodiff()];
        let two = run_on(
            b.path(),
            &cfg(1),
            &sink,
            &cancel,
            Resume::Fresh,
            1.0,
            &replica,
        )
        .unwrap();
        assert_eq!(one.state.micro_batches, two.state.micro_batches);
        assert_eq!(one.state.tokens, two.state.tokens);
        assert_eq!(weights(&one.model), weights(&two.model));
    }

    #[test]
    fn loss_scaling_is_exact_in_f32_and_skips_overflowing_steps() {
        let _g = serial();
        let sink = Recorder::default();
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let plain = run(dirs[0].path(), &config(), &sink, Resume::Fresh).unwrap();
        assert_eq!(plain.state.loss_scale, None, "auto is off in f32");
        let scaled_cfg = TrainConfig {
            loss_scaling: LossScaling {
                mode: LossScalingMode::On,
                init_scale: 1024.0,
                growth_interval: 5,
            },
            ..config()
        };
        let scaled = run(dirs[1].path(), &scaled_cfg, &sink, Resume::Fresh).unwrap();
        // Powers of two scale and unscale exactly.
        assert_eq!(weights(&plain.model), weights(&scaled.model));
        let ls = scaled.state.loss_scale.unwrap();
        // It doubled every 5 good steps, up to the 65536 cap.
        let doublings = i32::try_from(scaled.state.step / 5).unwrap();
        let want = (1024.0 * 2f64.powi(doublings)).min(65536.0);
        assert_eq!((ls.scale, ls.skipped_steps), (want, 0), "{ls:?}");
        // A scale beyond f32's range: steps are skipped until it is small enough.
        let huge = TrainConfig {
            loss_scaling: LossScaling {
                init_scale: 2f64.powi(140),
                ..scaled_cfg.loss_scaling.clone()
            },
            ..config()
        };
        let out = run(dirs[2].path(), &huge, &sink, Resume::Fresh).unwrap();
        let ls = out.state.loss_scale.unwrap();
        assert!(ls.skipped_steps >= 1, "{ls:?}");
        assert!(ls.scale < 2f64.powi(140));
        assert!(weights(&out.model).iter().all(|w| w.is_finite()));
        let bad = TrainConfig {
            loss_scaling: LossScaling {
                init_scale: 0.5,
                ..LossScaling::default()
            },
            ..config()
        };
        assert!(matches!(
            bad.validate(),
            Err(TrainError::InvalidParameter {
                parameter: "loss_scaling.init_scale",
                ..
            })
        ));
    }
}
