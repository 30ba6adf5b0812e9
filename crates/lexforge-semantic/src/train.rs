//! Training a semantic encoder on a corpus set: the run's settings ([`SemanticTrainConfig`]),
//! [`train`], which embeds the corpora, splits them, runs the engine loop on views of the
//! training corpora and writes the encoder directory with its evaluation, and [`resume`].
//!
//! The losses are in `objective.rs`, the views in `views.rs`. Held-out corpora (the last
//! variation of every label combination that has two or more) are the validation set: early
//! stopping watches their loss, and the report gives the heads' accuracy on them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use lexforge_core::{CancelToken, Event, EventSink, JsonlSink, RunDir, RunStatus, RunTarget, Seed};
use lexforge_nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder, minilm_or};
use lexforge_train::{
    BatchSource, CheckpointDir, EarlyStoppingConfig, Resume, StopReason, TrainConfig, TrainContext,
};
use serde::{Deserialize, Serialize};

use crate::artifacts::{
    CONFIG_FILE, CORPORA_FILE, IDS_FILE, METRICS_FILE, SEMANTIC_KIND, WEIGHTS_FILE, save_model,
    write_json,
};
use crate::corpus::CorpusSet;
use crate::embeddings::{CorpusEmbeddings, embed_corpora};
use crate::error::{Result, SemanticError};
use crate::model::{CONFIG_FORMAT, HeadSpec, SemanticConfig, SemanticModel};
use crate::objective::{SemanticLossConfig, SemanticTrainer};
use crate::quantize::{AnyQuantizer, Quantizer, QuantizerConfig, host};
use crate::report::{
    CollisionReport, TrainReport, corpus_codes, corpus_ids, head_accuracy, level_stats,
    reconstruction_cosine,
};
use crate::views::{Views, holdout};

/// Everything a semantic-encoder training run needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SemanticTrainConfig {
    /// The sentence-encoder directory that embeds the corpora (default: the installed
    /// all-MiniLM-L6-v2; a run records the directory it used).
    pub embedding_model: Option<PathBuf>,
    /// Hidden width of the encoder and decoder MLPs.
    pub hidden_dim: usize,
    /// The quantizer.
    pub quantizer: QuantizerConfig,
    /// Loss weights.
    pub loss: SemanticLossConfig,
    /// Views per training corpus (view 0: all words; others: seeded random subsets).
    pub views: usize,
    /// Smallest share of a corpus's words a view keeps (uniform between this and 1).
    pub keep_fraction: f64,
    /// Warmup as a share of `train.max_steps` (overrides `train.warmup_steps` when set).
    pub warmup_fraction: Option<f64>,
    /// Batch size of the embedding model.
    pub embed_batch_size: usize,
    /// The optimizer loop (gradient clipping in `train.optimizer.grad_clip_norm`).
    pub train: TrainConfig,
}

impl Default for SemanticTrainConfig {
    fn default() -> Self {
        SemanticTrainConfig {
            embedding_model: None,
            hidden_dim: 256,
            quantizer: QuantizerConfig::fsq_default(),
            loss: SemanticLossConfig::default(),
            views: 16,
            keep_fraction: 0.5,
            warmup_fraction: Some(0.1),
            embed_batch_size: 128,
            train: TrainConfig {
                max_steps: 400,
                batch_size: 64,
                lr: 3e-3,
                min_lr: 3e-4,
                warmup_steps: 40,
                eval_every: 25,
                eval_batches: None,
                checkpoint_every: 100,
                early_stopping: Some(EarlyStoppingConfig {
                    patience: 6,
                    min_delta: 1e-4,
                }),
                log_every: 10,
                ..TrainConfig::default()
            },
        }
    }
}

impl SemanticTrainConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] naming the field; the engine's own checks.
    pub fn validate(&self) -> Result<()> {
        self.quantizer.validate()?;
        if self.hidden_dim == 0 {
            return Err(SemanticError::param("hidden_dim", "must be at least 1"));
        }
        if self.views == 0 {
            return Err(SemanticError::param("views", "must be at least 1"));
        }
        if !(self.keep_fraction > 0.0 && self.keep_fraction <= 1.0) {
            return Err(SemanticError::param("keep_fraction", "must be in (0, 1]"));
        }
        if let Some(w) = self.warmup_fraction
            && !(0.0..1.0).contains(&w)
        {
            return Err(SemanticError::param("warmup_fraction", "must be in [0, 1)"));
        }
        if self.embed_batch_size == 0 {
            return Err(SemanticError::param(
                "embed_batch_size",
                "must be at least 1",
            ));
        }
        let l = &self.loss;
        for (name, v) in [
            ("loss.reconstruction", l.reconstruction),
            ("loss.commitment", l.commitment),
            ("loss.entropy", l.entropy),
            ("loss.diversity", l.diversity),
            ("loss.supervised", l.supervised),
            ("loss.info_nce", l.info_nce),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(SemanticError::param(
                    "loss",
                    format!("{name} = {v} must be finite and >= 0"),
                ));
            }
        }
        if !(l.entropy_temperature > 0.0 && l.temperature > 0.0) {
            return Err(SemanticError::param(
                "loss",
                "temperatures must be positive",
            ));
        }
        self.engine_config().validate()?;
        Ok(())
    }

    /// The engine config with the warmup fraction applied.
    pub fn engine_config(&self) -> TrainConfig {
        let mut t = self.train.clone();
        if let Some(w) = self.warmup_fraction {
            t.warmup_steps = (t.max_steps as f64 * w).round() as u64;
        }
        t
    }

    fn quantizer_name(&self) -> String {
        match self.quantizer {
            QuantizerConfig::Fsq { .. } => "fsq",
            QuantizerConfig::ResidualFsq { .. } => "residual_fsq",
            QuantizerConfig::ResidualVq { .. } => "residual_vq",
        }
        .to_owned()
    }
}

/// The corpus set a run trains on, kept in the run so that [`resume`] has it.
const RUN_CORPORA_FILE: &str = "data/corpora.json";

/// What a run's manifest records as its config.
#[derive(Debug, Serialize, Deserialize)]
struct RunConfig {
    train: SemanticTrainConfig,
    model: serde_json::Value,
}

/// Trains a semantic encoder on `corpora` (embedded with `config.embedding_model`) into the new
/// directory `run_dir`, on `device` (f32), then writes the artifacts:
/// `semantic_encoder.safetensors`, `config.json`, `semantic_ids.json`, `corpora.json`,
/// `eval/metrics.json`, `events.jsonl`, `manifest.json`. An existing `run_dir` is refused: a
/// stopped run continues with [`resume`].
///
/// # Errors
/// Bad configuration, an invalid corpus set, embedding and training failures, I/O.
pub fn train(
    config: &SemanticTrainConfig,
    corpora: &CorpusSet,
    run_dir: &Path,
    device: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    config.validate()?;
    RunDir::check_new(run_dir)?;
    let mut config = config.clone();
    let model = minilm_or(config.embedding_model.as_deref(), "embedding model")?;
    config.embedding_model = Some(model.clone());
    let encoder = BertSentenceEncoder::load(&model, device, &EncoderOptions::default())?;
    run_training(
        &config,
        corpora,
        &encoder,
        RunTarget::Create(run_dir),
        device,
        events,
        cancel,
    )
}

/// Continues the run in `run_dir` from its last checkpoint (a stopped run: killed, cancelled
/// or failed; or a finished one, to train it further), with the config and corpora it
/// recorded, on `device`; `max_steps` raises its step budget.
///
/// # Errors
/// A damaged or foreign run directory, then as [`train`].
pub fn resume(
    run_dir: &Path,
    device: &Device,
    max_steps: Option<u64>,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    let (run, mut stored): (RunDir, RunConfig) = RunDir::resume(run_dir, SEMANTIC_KIND)?;
    if let Some(steps) = max_steps {
        stored.train.train.max_steps = steps;
    }
    let corpora = CorpusSet::load(&run_dir.join(RUN_CORPORA_FILE))?;
    let model = minilm_or(stored.train.embedding_model.as_deref(), "embedding model")?;
    let encoder = BertSentenceEncoder::load(&model, device, &EncoderOptions::default())?;
    run_training(
        &stored.train,
        &corpora,
        &encoder,
        RunTarget::Resume(Box::new(run)),
        device,
        events,
        cancel,
    )
}

fn run_training(
    config: &SemanticTrainConfig,
    set: &CorpusSet,
    encoder: &dyn SentenceEncoder,
    target: RunTarget<'_>,
    device: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    config.validate()?;
    set.validate()?;
    require_f32(device)?;
    let engine = config.engine_config();
    let seed = Seed(engine.seed);
    let emb = embed_corpora(set, encoder, config.embed_batch_size)?;
    let held = holdout(set, seed);
    let (heads, labels) = supervised_heads(config, set);
    let semantic_config = SemanticConfig {
        format: CONFIG_FORMAT,
        encoder_type: "mlp".into(),
        input_dim: emb.dim,
        embedding_model: emb.model_id.clone(),
        embedding_model_path: config.embedding_model.clone(),
        hidden_dim: config.hidden_dim,
        quantizer: config.quantizer.clone(),
        heads,
    };
    let plain = device.clone().without_autodiff();
    let ad = plain.clone().autodiff();
    seed.apply_to(&ad);
    let model = SemanticModel::new(&semantic_config, &ad)?;
    let split = Split::new(held)?;
    let model = init_codebooks(model, config, &emb, &split.train, &labels, seed, &ad)?;
    let trainer = SemanticTrainer {
        model,
        loss: config.loss.clone(),
        seed: engine.seed,
    };
    let (train_views, valid_views) =
        training_views(config, &emb, &split, &labels, seed, engine.batch_size)?;

    let run = open_run(target, config, &semantic_config, set, device)?;
    let out = run.path().to_path_buf();
    let log = JsonlSink::open(&out.join("events.jsonl"))?;
    let fan = lexforge_core::Tee(&log, events);
    let checkpoints = CheckpointDir::new(out.join("checkpoints"), engine.keep_checkpoints)?;
    let run_id = out.file_name().map_or_else(
        || "semantic".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let ctx = TrainContext {
        run_id: &run_id,
        kind: "semantic",
        device: &ad,
        replicas: &[],
        train: &train_views,
        valid: &valid_views,
        checkpoints: &checkpoints,
        events: &fan,
        cancel,
    };
    let clock = std::time::Instant::now();
    let outcome = lexforge_train::train(&engine, &ctx, trainer, Resume::Latest)?;
    let train_seconds = clock.elapsed().as_secs_f64();
    let mut corpora = BTreeMap::new();
    corpora.insert("train".to_owned(), split.train.len());
    corpora.insert("heldout".to_owned(), split.heldout.len());
    // The evaluation fields stay empty when the run was cancelled.
    let mut report = TrainReport {
        run_dir: out.clone(),
        stop: outcome.stop,
        steps: outcome.state.step,
        quantizer: config.quantizer_name(),
        corpora,
        levels: Vec::new(),
        collisions: CollisionReport::of(&BTreeMap::new()),
        heads: BTreeMap::new(),
        reconstruction_cosine: BTreeMap::new(),
        train_seconds,
    };
    if outcome.stop == StopReason::Cancelled {
        return Ok(report);
    }
    let trained = if checkpoints.dir("best").exists() {
        checkpoints.load_weights("best", outcome.model)?
    } else {
        outcome.model
    };
    let model = trained.valid().model;
    let ids = evaluate(&model, set, &emb, &split, &labels, &plain, &mut report)?;
    write_artifacts(run, &model, &ids, set, &report, &fan)?;
    Ok(report)
}

/// Which corpora train and which are held out.
struct Split {
    /// Per corpus of the set, whether it is held out.
    held: Vec<bool>,
    /// The training corpora (indices into the set).
    train: Vec<usize>,
    /// The held-out corpora (indices into the set).
    heldout: Vec<usize>,
}

impl Split {
    /// The split of the holdout mask `held`.
    ///
    /// # Errors
    /// [`SemanticError::NoCorpora`] when either side is empty.
    fn new(held: Vec<bool>) -> Result<Self> {
        let train: Vec<usize> = (0..held.len()).filter(|&i| !held[i]).collect();
        let heldout: Vec<usize> = (0..held.len()).filter(|&i| held[i]).collect();
        if train.is_empty() || heldout.is_empty() {
            return Err(SemanticError::NoCorpora {
                reason: format!(
                    "{} corpora cannot be split into training and held-out sets",
                    held.len()
                ),
            });
        }
        Ok(Split {
            held,
            train,
            heldout,
        })
    }
}

/// Refuses a device whose float type is not f32: EMA codebook updates and k-means run on the
/// host in f32 against the master weights.
fn require_f32(device: &Device) -> Result<()> {
    let dtype = device.settings().float_dtype;
    if dtype != burn::tensor::FloatDType::F32 {
        return Err(lexforge_core::Error::UnsupportedPrecision {
            precision: format!("{dtype:?}").to_ascii_lowercase(),
            device: format!("{device:?} (semantic training)"),
            supported: "f32 (encoding with a trained semantic encoder takes any)".into(),
        }
        .into());
    }
    Ok(())
}

/// The supervised heads (style, complexity and era when they have two or more classes and a
/// component of their own; none when the supervised loss is off) and, per head, the class of
/// every corpus of `set`.
fn supervised_heads(
    config: &SemanticTrainConfig,
    set: &CorpusSet,
) -> (Vec<HeadSpec>, Vec<Vec<u32>>) {
    let heads: Vec<HeadSpec> = if config.loss.supervised > 0.0 {
        (0..3)
            .map(|k| HeadSpec {
                component: k,
                classes: set.label_values(k),
            })
            .filter(|h| {
                h.classes.len() >= 2 && h.component < config.quantizer.codebook_sizes().len()
            })
            .collect()
    } else {
        Vec::new()
    };
    let labels: Vec<Vec<u32>> = heads
        .iter()
        .map(|h| {
            set.corpora
                .iter()
                .map(|c| {
                    let v = c.labels.component(h.component);
                    h.classes.iter().position(|x| *x == v).unwrap_or(0) as u32
                })
                .collect()
        })
        .collect();
    (heads, labels)
}

/// Residual-VQ codebooks (with `kmeans_init`) start at the k-means of the initial latents of
/// every training view; other quantizers are returned as they are.
fn init_codebooks(
    mut model: SemanticModel,
    config: &SemanticTrainConfig,
    emb: &CorpusEmbeddings,
    train_idx: &[usize],
    labels: &[Vec<u32>],
    seed: Seed,
    device: &Device,
) -> Result<SemanticModel> {
    if let QuantizerConfig::ResidualVq {
        kmeans_init: true, ..
    } = config.quantizer
    {
        let views = Views::new(
            emb,
            train_idx.to_vec(),
            (config.views, config.keep_fraction),
            seed,
            false,
            labels,
        );
        let all: Vec<usize> = (0..views.len()).collect();
        let b = views
            .batch(&all, device)
            .map_err(|e| SemanticError::input(e.to_string()))?;
        let latents = host(model.encode_latent(b.input).detach())?;
        if let AnyQuantizer::ResidualVq(q) = model.quantizer {
            model.quantizer = AnyQuantizer::ResidualVq(q.init_kmeans(&latents, seed)?);
        }
    }
    Ok(model)
}

/// Opens the run directory (created, or the one resumed), marks its manifest running with this
/// run's settings, and keeps the corpora in it for [`resume`].
fn open_run(
    target: RunTarget<'_>,
    config: &SemanticTrainConfig,
    semantic_config: &SemanticConfig,
    set: &CorpusSet,
    device: &Device,
) -> Result<RunDir> {
    let stored = RunConfig {
        train: config.clone(),
        model: serde_json::to_value(semantic_config).map_err(|source| {
            lexforge_core::Error::Serialize {
                what: "semantic config",
                source,
            }
        })?,
    };
    let stored =
        serde_json::to_value(&stored).map_err(|source| lexforge_core::Error::Serialize {
            what: "semantic run config",
            source,
        })?;
    let mut run = target.begin(SEMANTIC_KIND, stored, Some(config.train.seed), device)?;
    let corpora =
        serde_json::to_vec_pretty(set).map_err(|source| lexforge_core::Error::Serialize {
            what: "corpora",
            source,
        })?;
    run.write_artifact(RUN_CORPORA_FILE, &corpora)?;
    Ok(run)
}

/// The views of the training corpora (`config.views` each) and of the held-out corpora (one
/// each, the whole corpus).
///
/// # Errors
/// [`SemanticError::InvalidParameter`] when the training views cannot fill a batch of
/// `batch_size`.
fn training_views<'a>(
    config: &SemanticTrainConfig,
    emb: &'a CorpusEmbeddings,
    split: &Split,
    labels: &'a [Vec<u32>],
    seed: Seed,
    batch_size: usize,
) -> Result<(Views<'a>, Views<'a>)> {
    let pair = config.loss.info_nce > 0.0;
    let train_views = Views::new(
        emb,
        split.train.clone(),
        (config.views, config.keep_fraction),
        seed,
        pair,
        labels,
    );
    let valid_views = Views::new(
        emb,
        split.heldout.clone(),
        (1, config.keep_fraction),
        seed,
        pair,
        labels,
    );
    if train_views.len() < batch_size {
        return Err(SemanticError::param(
            "batch_size",
            format!(
                "{} training views ({} corpora × {} views) cannot fill a batch of {}",
                train_views.len(),
                split.train.len(),
                config.views,
                batch_size
            ),
        ));
    }
    Ok((train_views, valid_views))
}

/// Fills the evaluation fields of `report` for the trained `model`: the IDs of every corpus
/// (from its full vector), their codebook statistics and collisions, the heads' accuracy and
/// the reconstruction cosines. Returns corpus id → ID.
fn evaluate(
    model: &SemanticModel,
    set: &CorpusSet,
    emb: &CorpusEmbeddings,
    split: &Split,
    labels: &[Vec<u32>],
    device: &Device,
    report: &mut TrainReport,
) -> Result<BTreeMap<String, Vec<u32>>> {
    let codes = corpus_codes(model, set, emb, device)?;
    let ids = corpus_ids(set, &codes, model.quantizer.codebook_sizes().len());
    report.reconstruction_cosine = reconstruction_cosine(model, &codes, emb, &split.held, device)?;
    report.levels = level_stats(model, &codes);
    report.heads = head_accuracy(
        model,
        &codes,
        labels,
        (&split.train, &split.heldout),
        device,
    )?;
    report.collisions = CollisionReport::of(&ids);
    Ok(ids)
}

/// Writes the model, its IDs, corpora and `report` into the run directory (`report.run_dir`),
/// records them in the manifest and completes the run with the report's metrics (also sent to
/// `events` as [`Event::Completed`]).
fn write_artifacts(
    mut run: RunDir,
    model: &SemanticModel,
    ids: &BTreeMap<String, Vec<u32>>,
    set: &CorpusSet,
    report: &TrainReport,
    events: &dyn EventSink,
) -> Result<()> {
    let out = &report.run_dir;
    save_model(model, ids, set, out)?;
    write_json(&out.join(METRICS_FILE), report)?;
    for rel in [
        WEIGHTS_FILE,
        CONFIG_FILE,
        IDS_FILE,
        CORPORA_FILE,
        METRICS_FILE,
        RUN_CORPORA_FILE,
    ] {
        run.record_artifact(rel)?;
    }
    let metrics = report.manifest_metrics();
    run.manifest_mut().metrics = metrics.clone();
    run.finish(RunStatus::Completed)?;
    events.send(Event::Completed { metrics })?;
    Ok(())
}
