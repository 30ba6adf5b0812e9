//! The matcher training run ([`train`](crate::train), [`resume`](crate::resume)): the
//! bi-encoder trained on a prepared dataset with the lexforge training engine (distilled from a
//! cross-encoder teacher when asked), then saved, calibrated and evaluated, in a run directory
//! that can be resumed.
//!
//! The loss is in `objective.rs`, the settings in `config.rs`, the report in `report.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use lexforge_core::{CancelToken, Event, EventSink, JsonlSink, RunDir, RunStatus, RunTarget};
use lexforge_data::Split;
use lexforge_nn::bert::BertModel;
use lexforge_train::{CheckpointDir, Resume, StopReason, TrainContext, TrainOutcome};

use crate::artifacts::{MATCHER_FORMAT, MATCHER_KIND, TEACHER_DIR, matcher_files, write_json};
use crate::config::MatcherTrainConfig;
use crate::cross::{Teacher, TeacherReport, train_teacher};
use crate::dataset::{Featurize, PairBatch, PairItems, PreparedDataset, ViewItems, rechunk_split};
use crate::error::{MatcherError, Result};
use crate::matcher::Matcher;
use crate::model::{BiEncoder, HeadConfig};
use crate::objective::MatcherModel;
use crate::report::{TeacherGate, TrainReport};

/// Train chunks the topic probe is fitted on (evenly spaced).
const PROBE_ROWS: usize = 400;

/// What a matcher run's manifest records as its config.
#[derive(serde::Serialize, serde::Deserialize)]
struct RunConfig {
    format: u32,
    train: MatcherTrainConfig,
    dataset: std::path::PathBuf,
    dataset_encoder: Option<String>,
}

/// Trains a matcher on the dataset at `dataset_dir` into the new directory `run_dir`, then
/// saves it, calibrates it on validation and evaluates it on test (`eval/metrics.json`). An
/// existing `run_dir` is refused: a stopped run continues with [`resume`]. An empty
/// `config.base_model` means the installed all-MiniLM-L6-v2.
///
/// `device` is the plain device; training runs on its autodiff form.
///
/// # Errors
/// Bad configuration ([`MatcherError::InvalidParameter`]), an unusable dataset
/// ([`MatcherError::Dataset`]), training failures ([`MatcherError::Train`]), I/O.
pub fn train(
    config: &MatcherTrainConfig,
    dataset_dir: &Path,
    run_dir: &Path,
    device: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    RunDir::check_new(run_dir)?;
    let mut config = config.clone();
    if config.base_model.as_os_str().is_empty() {
        config.base_model = lexforge_nn::encoder::minilm_or(None, "base model")?;
    }
    run_training(
        &config,
        dataset_dir,
        RunTarget::Create(run_dir),
        device,
        events,
        cancel,
    )
}

/// Continues the matcher run in `run_dir` from its last checkpoint (a stopped run: killed,
/// cancelled or failed; or a finished one, to train it further), with the config and dataset
/// it recorded, on `device`; `max_steps` raises its step budget.
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
    let (run, mut stored): (RunDir, RunConfig) = RunDir::resume(run_dir, MATCHER_KIND)?;
    if let Some(steps) = max_steps {
        stored.train.train.max_steps = steps;
    }
    run_training(
        &stored.train,
        &stored.dataset,
        RunTarget::Resume(Box::new(run)),
        device,
        events,
        cancel,
    )
}

fn run_training(
    config: &MatcherTrainConfig,
    dataset_dir: &Path,
    target: RunTarget<'_>,
    device: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    config.validate()?;
    let dataset = PreparedDataset::open(dataset_dir)?;
    let mut head = config.head.clone();
    if head.topics == Some(0) {
        head.topics = Some(dataset.topics());
    }
    let plain = device.clone().without_autodiff();
    let base = base_matcher(config, &head, &dataset, &plain)?;
    let body_frozen =
        config.random_init.is_none() && config.frozen_layers > base.model().bert.layers.len();
    let bs = config.eval_batch_size;
    let featurize = |texts: &[&str]| base.featurize(texts, body_frozen, bs);
    let mut book_index = BTreeMap::new();
    let train_items = training_items(config, &dataset, &featurize, &mut book_index, cancel)?;
    let valid_items = PairItems::new(
        dataset.pairs(Split::Validation),
        &featurize,
        &mut book_index,
    )?;
    let ad = if config.gradient_checkpointing {
        plain.clone().autodiff().gradient_checkpointing()
    } else {
        plain.clone().autodiff()
    };
    let encoder = initial_encoder(config, &base, &head, &ad)?;

    let run = open_run(config, dataset_dir, &dataset, target, device)?;
    let out = &run.path().to_path_buf();
    let log = JsonlSink::open(&out.join("events.jsonl"))?;
    let fan = lexforge_core::Tee(&log, events);

    // Distillation: the teacher's logits for every training pair (training it first when the
    // matcher directory has none yet).
    let mut teacher_report = None;
    let mut gate = None;
    let mut loss = config.loss.clone();
    let train_items = if config.loss.distill > 0.0 {
        let (teacher, trained) = teacher_for(config, &dataset, out, device, &plain, &fan, cancel)?;
        teacher_report = trained;
        // The teacher must beat the bi-encoder on validation before distillation uses it:
        // here the bi-encoder as training starts; after training, the trained one (reranking).
        let g = initial_gate(&teacher, &base, &dataset, config.eval_batch_size)?;
        let distill = g.distilled;
        let (teacher_auc, start_auc) =
            (g.teacher_validation_roc_auc, g.untrained_validation_roc_auc);
        gate = Some(g);
        if distill {
            distilled_items(
                &teacher,
                &dataset,
                &featurize,
                &mut book_index,
                config.eval_batch_size,
            )?
        } else {
            tracing::warn!(
                teacher = ?teacher_auc,
                bi_encoder = ?start_auc,
                "the teacher does not beat the bi-encoder on validation; training without distillation"
            );
            loss.distill = 0.0;
            train_items
        }
    } else {
        train_items
    };
    let model = MatcherModel::new(encoder, loss);
    let checkpoints = CheckpointDir::new(out.join("checkpoints"), config.train.keep_checkpoints)?;
    let run_id = out.file_name().map_or_else(
        || "matcher".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let ctx = TrainContext {
        run_id: &run_id,
        kind: "matcher",
        device: &ad,
        replicas: &[],
        train: train_items.as_source(),
        valid: &valid_items,
        checkpoints: &checkpoints,
        events: &fan,
        cancel,
    };
    let outcome = lexforge_train::train(&config.train, &ctx, model, Resume::Latest)?;
    let mut report = new_report(out, &outcome, &dataset, teacher_report);
    if outcome.stop == StopReason::Cancelled {
        return Ok(report);
    }
    let mut matcher = save_trained(config, base, outcome, &checkpoints, out, &plain)?;
    let bs = config.eval_batch_size;
    if let Err(e) = matcher.calibrate(&dataset, Split::Validation, config.threshold_metric, bs) {
        // An unusable model (scores ranking pairs backwards) is still saved and evaluated; the
        // report says why it has no calibration.
        tracing::warn!(error = %e, "calibration failed; the matcher is saved uncalibrated");
        report.calibration_error = Some(e.to_string());
    }
    report.validation = Some(matcher.evaluate(&dataset, Split::Validation, bs)?);
    if let Some(g) = gate.as_mut() {
        g.after_training(report.validation.as_ref().and_then(|v| v.roc_auc));
        if !g.rerank {
            // A teacher that does not beat the trained bi-encoder would make reranked search
            // worse: the matcher is saved without it.
            tracing::warn!(
                teacher = ?g.teacher_validation_roc_auc,
                bi_encoder = ?g.trained_validation_roc_auc,
                "the teacher does not beat the trained bi-encoder on validation; not kept for reranking"
            );
            let dir = out.join(TEACHER_DIR);
            std::fs::remove_dir_all(&dir)
                .map_err(|e| lexforge_core::Error::io("remove teacher directory", &dir, e))?;
            matcher = Matcher::load_unfinished(out, &plain)?;
        }
    }
    report.teacher_gate = gate;
    if !dataset.pairs(Split::Test).is_empty() {
        evaluate_test(&matcher, config, &dataset, &plain, &mut report)?;
    }
    finish_run(run, &report, out, &fan)?;
    Ok(report)
}

/// The matcher training starts from: the base encoder with a fresh `head` on the plain device,
/// its style channel's IDF (when it has one) fitted on the training books' chunks.
fn base_matcher(
    config: &MatcherTrainConfig,
    head: &HeadConfig,
    dataset: &PreparedDataset,
    plain: &Device,
) -> Result<Matcher> {
    let mut base =
        Matcher::from_base(&config.base_model, head, Some(config.max_seq_length), plain)?;
    if let Some(channel) = base.model_mut().style_channel.as_mut() {
        let texts: Vec<&str> = dataset
            .chunks(Split::Train)
            .map(|c| c.text.as_str())
            .collect();
        let mut hasher = channel.hasher().clone();
        hasher.fit_idf(&texts);
        channel.set_idf(hasher.idf().to_vec())?;
    }
    Ok(base)
}

/// A source of training batches: prepared pairs or book-balanced views.
trait TrainItems {
    fn as_source(&self) -> &dyn lexforge_train::BatchSource<PairBatch>;
}

impl<T: lexforge_train::BatchSource<PairBatch>> TrainItems for T {
    fn as_source(&self) -> &dyn lexforge_train::BatchSource<PairBatch> {
        self
    }
}

/// The training batches: book-balanced views of the training chunks (rechunked from
/// `views.books` when given) with `views`, else the prepared training pairs.
fn training_items(
    config: &MatcherTrainConfig,
    dataset: &PreparedDataset,
    featurize: &Featurize<'_>,
    book_index: &mut BTreeMap<String, u32>,
    cancel: &CancelToken,
) -> Result<Box<dyn TrainItems>> {
    Ok(match &config.views {
        Some(v) => Box::new(ViewItems::new(
            dataset,
            &match &v.books {
                Some(books) => {
                    rechunk_split(dataset, Split::Train, books, v.chunks_per_book, cancel)?
                }
                None => dataset.chunks(Split::Train).cloned().collect(),
            },
            v,
            config.train.seed,
            featurize,
            book_index,
        )?),
        None => Box::new(PairItems::new(
            dataset.pairs(Split::Train),
            featurize,
            book_index,
        )?),
    })
}

/// The bi-encoder to train, on the autodiff device `ad`: the base body (or a random one of
/// `random_init`'s shape) with a fresh `head`, its parameters initialized from the run's seed.
fn initial_encoder(
    config: &MatcherTrainConfig,
    base: &Matcher,
    head: &HeadConfig,
    ad: &Device,
) -> Result<BiEncoder> {
    // Parameter init (random body, heads) from the run's seed.
    lexforge_core::Seed(config.train.seed).apply_to(ad);
    let body = match &config.random_init {
        Some(c) => BertModel::new(c, ad)?,
        None => base.model().bert.clone().fork(ad),
    };
    Ok(BiEncoder::new(body, base.model().pooling(), head, ad)?.with_frozen(config.frozen_layers))
}

/// Opens the run directory (created in place, or the one being resumed) and marks it running
/// with this run's configuration, seed and device.
fn open_run(
    config: &MatcherTrainConfig,
    dataset_dir: &Path,
    dataset: &PreparedDataset,
    target: RunTarget<'_>,
    device: &Device,
) -> Result<RunDir> {
    let stored = RunConfig {
        format: MATCHER_FORMAT,
        train: config.clone(),
        dataset: dataset_dir.to_path_buf(),
        dataset_encoder: dataset.encoder_id.clone(),
    };
    let stored =
        serde_json::to_value(&stored).map_err(|source| lexforge_core::Error::Serialize {
            what: "matcher run config",
            source,
        })?;
    Ok(target.begin(MATCHER_KIND, stored, Some(config.train.seed), device)?)
}

/// The cross-encoder teacher in `out/teacher`, trained there first when it has none (with the
/// report of that training).
///
/// # Errors
/// [`lexforge_core::Error::Cancelled`] when its training was cancelled.
fn teacher_for(
    config: &MatcherTrainConfig,
    dataset: &PreparedDataset,
    out: &Path,
    device: &Device,
    plain: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<(Teacher, Option<TeacherReport>)> {
    let teacher_dir = out.join(TEACHER_DIR);
    let mut report = None;
    if !teacher_dir.join("head").join("config.json").is_file() {
        let r = train_teacher(
            &config.teacher,
            &config.base_model,
            dataset,
            &teacher_dir,
            device,
            events,
            cancel,
        )?;
        if r.stop == StopReason::Cancelled {
            return Err(MatcherError::Core(lexforge_core::Error::Cancelled));
        }
        report = Some(r);
    }
    Ok((Teacher::load(&teacher_dir, plain)?, report))
}

/// The validation pairs as text pairs, and their labels.
fn validation_pairs(dataset: &PreparedDataset) -> (Vec<(&str, &str)>, Vec<bool>) {
    let pairs = dataset.pairs(Split::Validation);
    let texts = pairs
        .iter()
        .map(|p| (p.text1.as_str(), p.text2.as_str()))
        .collect();
    let labels = pairs.iter().map(|p| p.label == 1).collect();
    (texts, labels)
}

/// The teacher against the untrained bi-encoder `base` on the validation pairs: whether the
/// student is distilled from it.
fn initial_gate(
    teacher: &Teacher,
    base: &Matcher,
    dataset: &PreparedDataset,
    batch_size: usize,
) -> Result<TeacherGate> {
    let (valid, labels) = validation_pairs(dataset);
    let teacher_auc = crate::metrics::roc_auc(&teacher.logits(&valid, batch_size)?, &labels);
    let (start_logits, _) = base.raw_scores(&valid, batch_size)?;
    let start_auc = crate::metrics::roc_auc(&start_logits, &labels);
    Ok(TeacherGate::before_training(teacher_auc, start_auc))
}

/// The training pairs with the teacher's logits as distillation targets.
fn distilled_items(
    teacher: &Teacher,
    dataset: &PreparedDataset,
    featurize: &Featurize<'_>,
    book_index: &mut BTreeMap<String, u32>,
    batch_size: usize,
) -> Result<Box<dyn TrainItems>> {
    let pairs: Vec<(&str, &str)> = dataset
        .pairs(Split::Train)
        .iter()
        .map(|p| (p.text1.as_str(), p.text2.as_str()))
        .collect();
    let logits = teacher.logits(&pairs, batch_size)?;
    let pairs = PairItems::new(dataset.pairs(Split::Train), featurize, book_index)?;
    Ok(Box::new(pairs.with_teacher(
        logits.into_iter().map(|l| l as f32).collect(),
    )?))
}

/// The report of a run that has just trained: steps, how it stopped, pairs and books per
/// split, the teacher's training; the evaluations are filled in later.
fn new_report(
    out: &Path,
    outcome: &TrainOutcome<MatcherModel>,
    dataset: &PreparedDataset,
    teacher: Option<TeacherReport>,
) -> TrainReport {
    TrainReport {
        run_dir: out.to_path_buf(),
        stop: outcome.stop,
        steps: outcome.state.step,
        pairs: Split::ALL
            .iter()
            .map(|&s| (s.name().to_owned(), dataset.pairs(s).len()))
            .collect(),
        books: Split::ALL
            .iter()
            .map(|&s| {
                (
                    s.name().to_owned(),
                    dataset.books.iter().filter(|b| b.split == s).count(),
                )
            })
            .collect(),
        baseline: None,
        test: None,
        validation: None,
        calibration_error: None,
        teacher,
        topic_probe: None,
        topic_probe_baseline: None,
        teacher_gate: None,
    }
}

/// Saves the trained bi-encoder (the best checkpoint's weights when there is one) as the
/// matcher in `out`, and loads it back on the plain device.
fn save_trained(
    config: &MatcherTrainConfig,
    base: Matcher,
    outcome: TrainOutcome<MatcherModel>,
    checkpoints: &CheckpointDir,
    out: &Path,
    plain: &Device,
) -> Result<Matcher> {
    let trained = if checkpoints.dir("best").exists() {
        checkpoints.load_weights("best", outcome.model)?
    } else {
        outcome.model
    };
    let trained = trained.valid().encoder.with_frozen(0);
    let bert_config = config
        .random_init
        .clone()
        .unwrap_or_else(|| base.bert_config().clone());
    let matcher = base.with_model(trained, bert_config);
    matcher.save(out)?;
    Matcher::load_unfinished(out, plain)
}

/// Evaluates the trained `matcher` and the untrained base encoder on the test split, and the
/// topic probe of both when the dataset has topics, into `report`.
fn evaluate_test(
    matcher: &Matcher,
    config: &MatcherTrainConfig,
    dataset: &PreparedDataset,
    plain: &Device,
    report: &mut TrainReport,
) -> Result<()> {
    let bs = config.eval_batch_size;
    let test = matcher.evaluate(dataset, Split::Test, bs)?;
    let untrained = Matcher::from_base(
        &config.base_model,
        &HeadConfig {
            projection_dim: None,
            style_features: false,
            pair_features: false,
            topics: None,
            ..HeadConfig::default()
        },
        Some(config.max_seq_length),
        plain,
    )?;
    report.baseline = Some(untrained.evaluate(dataset, Split::Test, bs)?);
    report.test = Some(test);
    if dataset.topics() >= 2 {
        report.topic_probe =
            Some(matcher.topic_probe(dataset, Split::Train, Split::Test, PROBE_ROWS, bs)?);
        report.topic_probe_baseline =
            Some(untrained.topic_probe(dataset, Split::Train, Split::Test, PROBE_ROWS, bs)?);
    }
    Ok(())
}

/// Writes `eval/metrics.json`, records the matcher's files and metrics in the manifest, marks
/// the run completed and sends the `Completed` event.
fn finish_run(
    mut run: RunDir,
    report: &TrainReport,
    out: &Path,
    events: &dyn EventSink,
) -> Result<()> {
    write_json(&out.join("eval").join("metrics.json"), report)?;
    for rel in matcher_files(out)? {
        run.record_artifact(&rel)?;
    }
    let metrics = report.manifest_metrics();
    run.manifest_mut().metrics = metrics.clone();
    run.finish(RunStatus::Completed)?;
    events.send(Event::Completed { metrics })?;
    Ok(())
}
