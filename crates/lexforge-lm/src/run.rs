//! The run pipeline: corpus → tokenizer → token files → training → evaluation → samples, in a
//! run directory that a killed job resumes from.
//!
//! # Run directory
//! ```text
//! RUN/
//!   manifest.json          kind "lm", the full LmRunConfig, status, headline metrics
//!   tokenizer/             the tokenizer artifact (tokenizer.json + its manifest)
//!   tokenizer.json         a copy, so HF `AutoTokenizer.from_pretrained(RUN)` works
//!   config.json            the network config (HF GPT2Config for gpt2)
//!   model.safetensors      best-by-validation weights (HF names for gpt2), at the end
//!   data/                  train.tokens, validation.tokens (u32 LE), corpus.json
//!   checkpoints/           see lexforge_train::CheckpointDir
//!   events.jsonl           every event, appended
//!   eval/metrics.json      val loss, perplexity, bits per token and per character, ...
//!   eval/samples.jsonl     one seeded sample per configured prompt
//! ```
//! Every file but `events.jsonl`, `checkpoints/` and the manifest is listed in the manifest
//! with its sha256 and verified before a resume.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lexforge_core::{
    CancelToken, CorpusProvider, Event, EventSink, JsonlSink, Precision, RunDir, RunStatus,
    StageMode, TextFiles,
};
use lexforge_data::{
    LmWindows, SplitPlan, TRAIN_TOKENS, TokenFile, TokenizeOptions, TokenizedCorpus,
    TrainDocuments, VALIDATION_TOKENS, tokenize_corpus,
};
use lexforge_tokenizers::{Tokenizer, TokenizerTrainRequest};
use lexforge_train::{CheckpointDir, Resume, StopReason};
use serde::{Deserialize, Serialize};

use crate::config::LmRunConfig;
use crate::error::{LmError, Result};
use crate::model::{
    CONFIG_FILE, LmModel, LmTrainJob, ModelBackend, WEIGHTS_FILE, backend_for, eos_token_id,
};

/// The tokenizer artifact directory inside a run.
pub const TOKENIZER_DIR: &str = "tokenizer";
const CORPUS_FILE: &str = "data/corpus.json";
const METRICS_FILE: &str = "eval/metrics.json";
const SAMPLES_FILE: &str = "eval/samples.jsonl";
const EVENTS_FILE: &str = "events.jsonl";

/// What a finished (or cancelled) run reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// The run directory.
    pub run_dir: PathBuf,
    /// `completed` or `cancelled`.
    pub status: RunStatus,
    /// Why training ended.
    pub stop: StopReason,
    /// Optimizer steps done.
    pub steps: u64,
    /// The metrics of `eval/metrics.json` (empty when cancelled).
    pub metrics: BTreeMap<String, f64>,
}

/// One seeded sample of `eval/samples.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The prompt.
    pub prompt: String,
    /// The generated continuation (without the prompt).
    pub completion: String,
    /// Tokens generated.
    pub tokens_generated: usize,
    /// Why it stopped.
    pub finish: lexforge_nn::generate::FinishReason,
}

/// Trains a new run as `config` describes into the new directory `run_dir`, on `device` (in
/// the precision the device computes in: see [`lexforge_core::Precision::apply`]). An existing
/// `run_dir` is refused ([`lexforge_core::Error::RunExists`]): continue it with [`resume`].
///
/// Fails before creating anything for a bad config; a failure while preparing (tokenizer,
/// tokenization, empty validation, a model that does not fit the tokenizer) removes the run
/// directory again; a failure during training (NaN loss, full disk) leaves it with status
/// `failed` and its checkpoints, to be resumed with [`resume`].
pub fn train(
    config: &LmRunConfig,
    run_dir: &Path,
    device: &lexforge_core::Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    config.validate()?;
    let precision = Precision::of(device);
    let backend = backend_for(config.model.backend())?;
    let mut run = RunDir::create_at(run_dir, "lm", StageMode::InPlace)?;
    let run_path = run.path().to_path_buf();
    let prepared = match prepare(config, backend.as_ref(), &mut run, device, precision) {
        Ok(p) => p,
        Err(e) => {
            drop(run);
            // Nothing worth keeping exists yet: leave no half-made run behind.
            let _ = std::fs::remove_dir_all(&run_path);
            let _ = events.send(Event::Failed {
                step: None,
                error: e.to_string(),
            });
            return Err(e);
        }
    };
    execute(
        config,
        backend.as_ref(),
        run,
        prepared,
        device,
        Resume::Fresh,
        events,
        cancel,
    )
}

/// Continues the run in `dir` from its latest checkpoint (or from the start when none was
/// written) on `device`, optionally with a new `max_steps`. The run's files are verified
/// first.
pub fn resume(
    dir: &Path,
    device: &lexforge_core::Device,
    max_steps: Option<u64>,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    let (run, mut config): (RunDir, LmRunConfig) = RunDir::resume(dir, "lm")?;
    if let Some(steps) = max_steps {
        config.train.max_steps = steps;
    }
    config.validate()?;
    let precision = Precision::of(device);
    let backend = backend_for(config.model.backend())?;
    let mut run = run;
    // The corpus summary is the last file preparation writes: without it the run was stopped
    // while preparing (tokenizer, token files), and preparing again gives the same files.
    let prepared = if dir.join(CORPUS_FILE).is_file() {
        let tokenizer = Tokenizer::load(dir.join(TOKENIZER_DIR))?;
        let corpus: TokenizedCorpus = read_json(&dir.join(CORPUS_FILE))?;
        let resolved: serde_json::Value = read_json(&dir.join(CONFIG_FILE))?;
        Prepared {
            tokenizer,
            resolved,
            corpus,
        }
    } else {
        tracing::info!(path = %dir.display(), "the run stopped while preparing; preparing again");
        clear_preparation(dir)?;
        prepare(&config, backend.as_ref(), &mut run, device, precision)?
    };
    execute(
        &config,
        backend.as_ref(),
        run,
        prepared,
        device,
        Resume::Latest,
        events,
        cancel,
    )
}

/// Removes what an interrupted preparation may have left in the run directory `dir`: the
/// tokenizer directory (saving refuses an existing one) and its staging directories. The
/// other files it writes are replaced atomically when preparing again.
fn clear_preparation(dir: &Path) -> Result<()> {
    let staging = format!(".{TOKENIZER_DIR}.partial-");
    for entry in std::fs::read_dir(dir)
        .map_err(|e| lexforge_core::Error::io("read directory", dir, e))?
        .flatten()
    {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == TOKENIZER_DIR || name.starts_with(&staging) {
            let path = entry.path();
            std::fs::remove_dir_all(&path)
                .map_err(|e| lexforge_core::Error::io("remove", &path, e))?;
        }
    }
    Ok(())
}

struct Prepared {
    tokenizer: Tokenizer,
    resolved: serde_json::Value,
    corpus: TokenizedCorpus,
}

fn prepare(
    config: &LmRunConfig,
    backend: &dyn ModelBackend,
    run: &mut RunDir,
    device: &lexforge_core::Device,
    precision: Precision,
) -> Result<Prepared> {
    {
        let m = run.manifest_mut();
        m.config =
            serde_json::to_value(config).map_err(|source| lexforge_core::Error::Serialize {
                what: "lm config",
                source,
            })?;
        m.seed = Some(config.seed);
        m.device = Some(format!("{device:?}"));
        m.precision = Some(precision.to_string());
    }
    run.save_manifest()?;
    let corpus: Arc<dyn CorpusProvider> = Arc::new(TextFiles::new(config.corpus.paths.clone()));
    let split = TokenizeOptions {
        validation_fraction: config.corpus.validation_fraction,
        seed: config.seed,
        separator: None,
        ..TokenizeOptions::default()
    };
    let plan = SplitPlan::plan(corpus.as_ref(), &split)?;
    let tokenizer = match (&config.tokenizer.path, &config.tokenizer.train) {
        (Some(path), _) => Tokenizer::load(path)?,
        (None, Some(spec)) => {
            let mut request = TokenizerTrainRequest::new(TrainDocuments::new(corpus.clone(), plan));
            request.seed = config.seed;
            Tokenizer::train(&spec.config(), &request, &lexforge_core::NoopSink)?
        }
        (None, None) => return Err(LmError::config("tokenizer", "no tokenizer given")),
    };
    tokenizer.save(run.artifact_path(TOKENIZER_DIR)?)?;
    run.record_artifact("tokenizer/tokenizer.json")?;
    run.record_artifact("tokenizer/manifest.json")?;
    run.write_artifact("tokenizer.json", tokenizer.to_json()?.as_bytes())?;

    let resolved = backend.prepare(&config.model, &tokenizer, config.context)?;
    let json =
        serde_json::to_vec_pretty(&resolved).map_err(|source| lexforge_core::Error::Serialize {
            what: "model config",
            source,
        })?;
    run.write_artifact(CONFIG_FILE, &json)?;

    let options = TokenizeOptions {
        separator: eos_token_id(&resolved),
        ..split
    };
    let data_dir = run.path().join("data");
    let corpus_stats = tokenize_corpus(corpus.as_ref(), &tokenizer, &data_dir, &options)?;
    run.record_artifact(&format!("data/{TRAIN_TOKENS}"))?;
    run.record_artifact(&format!("data/{VALIDATION_TOKENS}"))?;
    let json = serde_json::to_vec_pretty(&corpus_stats).map_err(|source| {
        lexforge_core::Error::Serialize {
            what: "corpus stats",
            source,
        }
    })?;
    run.write_artifact(CORPUS_FILE, &json)?;
    let valid = windows(
        run.path(),
        VALIDATION_TOKENS,
        config.context,
        config.context,
    )?;
    if lexforge_train::BatchSource::is_empty(&valid) {
        return Err(LmError::EmptyValidation {
            tokens: corpus_stats.validation_tokens as usize,
            context: config.context,
        });
    }
    Ok(Prepared {
        tokenizer,
        resolved,
        corpus: corpus_stats,
    })
}

fn windows(run: &Path, file: &str, context: usize, stride: usize) -> Result<LmWindows> {
    let tokens = TokenFile::open(&run.join("data").join(file))?;
    Ok(LmWindows::new(tokens, context, stride)?)
}

#[allow(clippy::too_many_arguments)]
fn execute(
    config: &LmRunConfig,
    backend: &dyn ModelBackend,
    mut run: RunDir,
    prepared: Prepared,
    device: &lexforge_core::Device,
    resume: Resume,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<TrainReport> {
    let run_path = run.path().to_path_buf();
    let log = JsonlSink::open(&run_path.join(EVENTS_FILE))?;
    let sink = Fanout(vec![&log, events]);
    let result = (|| -> Result<TrainReport> {
        let train_cfg = config.train_config();
        let stride = config.corpus.stride.unwrap_or(config.context);
        let train_windows = windows(&run_path, TRAIN_TOKENS, config.context, stride)?;
        let valid = windows(&run_path, VALIDATION_TOKENS, config.context, config.context)?;
        let checkpoints =
            CheckpointDir::new(run_path.join("checkpoints"), train_cfg.keep_checkpoints)?;
        let replicas = config.replica_devices(device)?;
        let job = LmTrainJob {
            run_id: run.manifest().run_id.as_str(),
            device,
            replicas: &replicas,
            train: &train_windows,
            valid: &valid,
            config: &train_cfg,
            checkpoints: &checkpoints,
            events: &sink,
            cancel,
            resume,
        };
        let trained = backend.train(&prepared.resolved, &job)?;
        if trained.stop == StopReason::Cancelled {
            return Ok(TrainReport {
                run_dir: run_path.clone(),
                status: RunStatus::Cancelled,
                stop: trained.stop,
                steps: trained.state.step,
                metrics: BTreeMap::new(),
            });
        }
        let model = trained.model;
        model.save(&run_path)?;
        run.record_artifact(WEIGHTS_FILE)?;
        run.record_artifact(CONFIG_FILE)?;
        // Reduced precision trains f32 master weights, and that is what was saved; evaluate
        // and sample with the model as it loads and computes on this device.
        let model = if device.settings().float_dtype == burn::tensor::FloatDType::F32 {
            model
        } else {
            backend.load(&run_path, device)?
        };

        let mut metrics = evaluation_metrics(
            model.as_ref(),
            &valid,
            &prepared.corpus,
            &run_path,
            train_cfg.batch_size,
        )?;
        metrics.insert("steps".into(), trained.state.step as f64);
        metrics.insert("tokens_seen".into(), trained.state.tokens as f64);
        metrics.insert("train_seconds".into(), trained.state.elapsed_secs);
        metrics.insert("num_params".into(), model.num_params() as f64);
        if let Some(best) = trained.state.best {
            metrics.insert("best_step".into(), best.step as f64);
        }
        let json = serde_json::to_vec_pretty(&metrics).map_err(|source| {
            lexforge_core::Error::Serialize {
                what: "metrics",
                source,
            }
        })?;
        run.write_artifact(METRICS_FILE, &json)?;

        let samples = samples(config, model.as_ref(), &prepared.tokenizer)?;
        let mut lines = Vec::new();
        for s in &samples {
            let line =
                serde_json::to_string(s).map_err(|source| lexforge_core::Error::Serialize {
                    what: "sample",
                    source,
                })?;
            lines.extend_from_slice(line.as_bytes());
            lines.push(b'\n');
        }
        run.write_artifact(SAMPLES_FILE, &lines)?;
        run.manifest_mut().metrics = metrics.clone();
        Ok(TrainReport {
            run_dir: run_path.clone(),
            status: RunStatus::Completed,
            stop: trained.stop,
            steps: trained.state.step,
            metrics,
        })
    })();
    match result {
        Ok(report) => {
            if report.status == RunStatus::Completed {
                sink.send(Event::Completed {
                    metrics: report.metrics.clone(),
                })?;
            }
            sink.flush()?;
            run.finish(report.status)?;
            Ok(report)
        }
        Err(e) => {
            if !matches!(e, LmError::Train(_)) {
                // The engine reports its own failures.
                let _ = sink.send(Event::Failed {
                    step: None,
                    error: e.to_string(),
                });
            }
            let _ = sink.flush();
            let _ = run.finish(RunStatus::Failed);
            Err(e)
        }
    }
}

/// Recomputes the validation metrics of a finished run (loss, perplexity, bits per token and
/// per character, unigram baseline) from its verified files, on `device`.
pub fn evaluate(dir: &Path, device: &lexforge_core::Device) -> Result<BTreeMap<String, f64>> {
    let lm = crate::LanguageModel::load(dir, device)?;
    let manifest = lexforge_core::Manifest::load(dir)?;
    let config: LmRunConfig =
        serde_json::from_value(manifest.config).map_err(|e| LmError::NotAModel {
            path: dir.to_path_buf(),
            reason: format!("the manifest's config is not an lm config: {e}"),
        })?;
    let corpus: TokenizedCorpus = read_json(&dir.join(CORPUS_FILE))?;
    let valid = windows(dir, VALIDATION_TOKENS, config.context, config.context)?;
    let mut metrics =
        evaluation_metrics(lm.model(), &valid, &corpus, dir, config.train.batch_size)?;
    metrics.insert("num_params".into(), lm.model().num_params() as f64);
    Ok(metrics)
}

/// Validation loss, perplexity, bits per token and per character, and the unigram baseline.
fn evaluation_metrics(
    model: &dyn LmModel,
    valid: &LmWindows,
    corpus: &TokenizedCorpus,
    run: &Path,
    batch_size: usize,
) -> Result<BTreeMap<String, f64>> {
    let ln2 = std::f64::consts::LN_2;
    let (val_loss, scored) = model.mean_loss(valid, batch_size, None)?;
    let tokens_per_char = corpus.validation_tokens as f64 / corpus.validation_chars.max(1) as f64;
    let unigram = unigram_entropy(&run.join("data").join(TRAIN_TOKENS), model.vocab_size())?;
    let mut m = BTreeMap::new();
    m.insert("val_loss".into(), val_loss);
    m.insert("val_perplexity".into(), val_loss.exp());
    m.insert("val_bits_per_token".into(), val_loss / ln2);
    m.insert("val_bits_per_char".into(), val_loss * tokens_per_char / ln2);
    m.insert("val_tokens_scored".into(), scored as f64);
    m.insert("val_tokens".into(), corpus.validation_tokens as f64);
    m.insert("val_chars".into(), corpus.validation_chars as f64);
    m.insert("train_tokens".into(), corpus.train_tokens as f64);
    m.insert("unigram_entropy".into(), unigram);
    m.insert(
        "val_loss_over_unigram".into(),
        val_loss / unigram.max(1e-12),
    );
    Ok(m)
}

/// Entropy (nats) of the unigram distribution of the ids in a token file: the loss of the best
/// context-free model fitted on them.
pub fn unigram_entropy(path: &Path, vocab: usize) -> Result<f64> {
    let file = TokenFile::open(path)?;
    let mut counts = vec![0u64; vocab.max(1)];
    let chunk = 1 << 20;
    let mut start = 0;
    while start < file.len() {
        let n = chunk.min(file.len() - start);
        for id in file.read(start, n)? {
            if let Some(c) = counts.get_mut(id as usize) {
                *c += 1;
            }
        }
        start += n;
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Ok(0.0);
    }
    let t = total as f64;
    Ok(counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / t;
            -p * p.ln()
        })
        .sum())
}

fn samples(
    config: &LmRunConfig,
    model: &dyn LmModel,
    tokenizer: &Tokenizer,
) -> Result<Vec<Sample>> {
    let eos = eos_token_id(&model.config_json());
    let gen_config = config.samples_config(eos);
    let decode = |ids: &[u32]| tokenizer.decode(ids, true).unwrap_or_default();
    let mut out = Vec::new();
    for prompt in &config.samples.prompts {
        let mut ids = tokenizer.encode(prompt)?;
        if ids.is_empty() {
            ids.extend(eos);
        }
        if ids.is_empty() || model.context().is_some_and(|c| ids.len() >= c) {
            continue;
        }
        for g in model.generate(&ids, &gen_config, &decode)? {
            out.push(Sample {
                prompt: prompt.clone(),
                completion: g.text,
                tokens_generated: g.tokens_generated,
                finish: g.finish,
            });
        }
    }
    Ok(out)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| lexforge_core::Error::io("read", path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| {
        lexforge_core::Error::Json {
            path: path.to_path_buf(),
            source,
        }
        .into()
    })
}

/// Sends every event to several borrowed sinks (the run's `events.jsonl` and the caller's).
struct Fanout<'a>(Vec<&'a dyn EventSink>);

impl EventSink for Fanout<'_> {
    fn emit(&self, record: &lexforge_core::EventRecord) -> lexforge_core::Result<()> {
        for s in &self.0 {
            s.emit(record)?;
        }
        Ok(())
    }
    fn flush(&self) -> lexforge_core::Result<()> {
        for s in &self.0 {
            s.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_file(dir: &Path, ids: &[u32]) -> PathBuf {
        let path = dir.join("t.tokens");
        let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn unigram_entropy_is_the_entropy_of_the_token_counts() {
        let dir = tempfile::tempdir().unwrap();
        let two = token_file(dir.path(), &[0, 1, 1, 0, 0, 1]);
        assert!((unigram_entropy(&two, 4).unwrap() - std::f64::consts::LN_2).abs() < 1e-12);
        let one = token_file(dir.path(), &[3, 3, 3]);
        assert_eq!(unigram_entropy(&one, 4).unwrap(), 0.0);
        // p = (1/2, 1/4, 1/4): H = 1.5 bits.
        let skew = token_file(dir.path(), &[2, 2, 0, 1]);
        let h = unigram_entropy(&skew, 3).unwrap();
        assert!((h - 1.5 * std::f64::consts::LN_2).abs() < 1e-12, "{h}");
    }
}
