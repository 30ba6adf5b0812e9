//! The [`ModelBackend`] contract and its two implementations, GPT-2 and char-LSTM.

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Int, Tensor};
use lexforge_data::{LmBatch, LmWindows};
use lexforge_nn::char_lstm::{CharLstm, CharLstmConfig};
use lexforge_nn::generate::{GenerateConfig, Generation, generate};
use lexforge_nn::gpt2::{Gpt2, Gpt2Config, load_hf_dir, save_hf_dir};
use lexforge_nn::score::{SequenceScore, score};
use lexforge_tokenizers::{Tokenizer, TokenizerMethod};
use lexforge_train::{
    BoxError, CheckpointDir, LossOutput, StopReason, TrainConfig, TrainContext, TrainModel,
    TrainOutcome, TrainerState, evaluate, train,
};
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{LmError, Result};

/// File name of the model config in a model or run directory.
pub const CONFIG_FILE: &str = "config.json";
/// File name of the weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// A trained network, whatever its architecture: what generation, scoring and evaluation need.
///
/// # Design
/// Object-safe so that a run directory can be loaded without knowing its model type at compile
/// time; each [`ModelBackend`] returns its own implementation.
pub trait LmModel: Send {
    /// The backend that made it (`gpt2`, `char_lstm`).
    fn backend(&self) -> &'static str;
    /// Rows of the embedding table.
    fn vocab_size(&self) -> usize;
    /// Longest sequence it takes, if bounded.
    fn context(&self) -> Option<usize>;
    /// Number of trainable scalars.
    fn num_params(&self) -> usize;
    /// The network's config as written to `config.json`.
    fn config_json(&self) -> serde_json::Value;
    /// Continuations of `prompt` (see [`lexforge_nn::generate::generate`]).
    fn generate(
        &self,
        prompt: &[u32],
        config: &GenerateConfig,
        decode: &dyn Fn(&[u32]) -> String,
    ) -> Result<Vec<Generation>>;
    /// Loss, perplexity and per-token surprisal of `ids` (see [`lexforge_nn::score::score`]).
    fn score(&self, ids: &[u32], top_k: usize) -> Result<SequenceScore>;
    /// Mean loss per predicted token over `data` (in order, at most `max_batches` batches):
    /// `(nats per token, tokens)`.
    fn mean_loss(
        &self,
        data: &LmWindows,
        batch_size: usize,
        max_batches: Option<usize>,
    ) -> Result<(f64, u64)>;
    /// Writes `config.json` and `model.safetensors` into `dir` (each atomically).
    fn save(&self, dir: &Path) -> Result<()>;
}

/// What [`ModelBackend::train`] needs besides the model config.
pub struct LmTrainJob<'a> {
    /// Run id, for events.
    pub run_id: &'a str,
    /// The plain device; the backend trains on its autodiff form.
    pub device: &'a Device,
    /// More plain devices for data parallelism (see [`TrainContext::replicas`]); empty: one.
    pub replicas: &'a [Device],
    /// Training windows.
    pub train: &'a LmWindows,
    /// Validation windows.
    pub valid: &'a LmWindows,
    /// The loop's settings.
    pub config: &'a TrainConfig,
    /// Checkpoints.
    pub checkpoints: &'a CheckpointDir,
    /// Events.
    pub events: &'a dyn lexforge_core::EventSink,
    /// Checked between steps.
    pub cancel: &'a lexforge_core::CancelToken,
    /// Fresh or from the latest checkpoint.
    pub resume: lexforge_train::Resume,
}

/// The result of [`ModelBackend::train`].
pub struct Trained {
    /// The weights of the best evaluation (or the last step when none was evaluated), in
    /// evaluation mode on the plain device.
    pub model: Box<dyn LmModel>,
    /// The loop's final state.
    pub state: TrainerState,
    /// Why the loop ended.
    pub stop: StopReason,
}

/// A language-model architecture the pipeline can train, save and load.
///
/// # Design
/// The contract of `lexforge-lm` (see `../shared/ARCHITECTURE.md`): GPT-2 and char-LSTM
/// implement it; the run pipeline ([`crate::train`], [`crate::resume`]) only talks to this
/// trait. Resolved model configs travel as [`ModelConfig`] plus the tokenizer's vocabulary and
/// the context.
pub trait ModelBackend: Send + Sync {
    /// Name used in configs and `config.json` (`model_type`).
    fn name(&self) -> &'static str;

    /// Tokenizer methods this model makes sense with.
    fn supported_tokenizers(&self) -> &'static [TokenizerMethod];

    /// Checks `spec` against the tokenizer and context and returns the network's full config
    /// (`config.json` content). Fails with a typed error before anything is trained.
    fn prepare(
        &self,
        spec: &ModelConfig,
        tokenizer: &Tokenizer,
        context: usize,
    ) -> Result<serde_json::Value>;

    /// Trains a network of config `resolved` (from [`ModelBackend::prepare`]).
    fn train(&self, resolved: &serde_json::Value, job: &LmTrainJob<'_>) -> Result<Trained>;

    /// Mean validation loss of `model` (see [`LmModel::mean_loss`]).
    fn evaluate(
        &self,
        model: &dyn LmModel,
        data: &LmWindows,
        batch_size: usize,
    ) -> Result<(f64, u64)> {
        model.mean_loss(data, batch_size, None)
    }

    /// Writes `model` as a model directory.
    fn save(&self, model: &dyn LmModel, dir: &Path) -> Result<()> {
        model.save(dir)
    }

    /// Loads a model directory written by [`ModelBackend::save`] (or, for GPT-2, by HF).
    fn load(&self, dir: &Path, device: &Device) -> Result<Box<dyn LmModel>>;
}

/// Every model backend of this build.
pub fn backends() -> Vec<Box<dyn ModelBackend>> {
    vec![Box::new(Gpt2Backend), Box::new(CharLstmBackend)]
}

/// The backend named `name`.
pub fn backend_for(name: &str) -> Result<Box<dyn ModelBackend>> {
    backends()
        .into_iter()
        .find(|b| b.name() == name)
        .ok_or_else(|| {
            LmError::config(
                "model.type",
                format!("unknown model type {name:?} (known: gpt2, char_lstm)"),
            )
        })
}

/// The `eos_token_id` of a network config (`config.json` content), when it has one.
pub fn eos_token_id(config: &serde_json::Value) -> Option<u32> {
    config
        .get("eos_token_id")
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
}

/// The `model_type` of a model directory's `config.json`.
pub fn model_type(dir: &Path) -> Result<String> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| LmError::NotAModel {
        path: dir.to_path_buf(),
        reason: format!("cannot read {CONFIG_FILE}: {e}"),
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| LmError::NotAModel {
        path: dir.to_path_buf(),
        reason: format!("{CONFIG_FILE} is not JSON: {e}"),
    })?;
    value
        .get("model_type")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| LmError::NotAModel {
            path: dir.to_path_buf(),
            reason: format!("{CONFIG_FILE} has no model_type"),
        })
}

/// Mean next-token cross-entropy of `[b, t, v]` logits against `[b, t]` targets
/// ([`lexforge_nn::fused::cross_entropy`]: one fused pass over the widest tensor of the model).
fn lm_loss(logits: Tensor<3>, targets: Tensor<2, Int>) -> Result<LossOutput, BoxError> {
    let [b, t, v] = logits.dims();
    let n = b * t;
    let loss = lexforge_nn::fused::cross_entropy(logits.reshape([n, v]), targets.reshape([n, 1]))?;
    Ok(LossOutput { loss, targets: n })
}

fn check_method(backend: &dyn ModelBackend, tokenizer: &Tokenizer) -> Result<()> {
    let supported = backend.supported_tokenizers();
    match tokenizer.method() {
        Some(m) if !supported.contains(&m) => Err(LmError::UnsupportedTokenizer {
            model: backend.name(),
            method: m.to_string(),
            supported: supported
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
        _ => Ok(()),
    }
}

fn eos_of(tokenizer: &Tokenizer) -> Option<u32> {
    ["<|endoftext|>", "</s>", "[SEP]"]
        .iter()
        .find_map(|t| tokenizer.token_to_id(t))
}

// ---------------------------------------------------------------------------------------------
// GPT-2

/// GPT-2 as a trainable module.
#[derive(Module, Debug)]
pub struct Gpt2Lm {
    /// The network.
    pub net: Gpt2,
}

impl TrainModel for Gpt2Lm {
    type Batch = LmBatch;
    fn loss(&self, batch: &LmBatch) -> std::result::Result<LossOutput, BoxError> {
        let logits = self.net.forward(batch.inputs.clone())?;
        lm_loss(logits, batch.targets.clone())
    }
}

/// The GPT-2 backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gpt2Backend;

struct Gpt2Model {
    config: Gpt2Config,
    lm: Gpt2Lm,
}

impl ModelBackend for Gpt2Backend {
    fn name(&self) -> &'static str {
        "gpt2"
    }

    fn supported_tokenizers(&self) -> &'static [TokenizerMethod] {
        &[
            TokenizerMethod::Bpe,
            TokenizerMethod::WordPiece,
            TokenizerMethod::Unigram,
            TokenizerMethod::Char,
        ]
    }

    fn prepare(
        &self,
        spec: &ModelConfig,
        tokenizer: &Tokenizer,
        context: usize,
    ) -> Result<serde_json::Value> {
        let ModelConfig::Gpt2(g) = spec else {
            return Err(LmError::config("model.type", "expected gpt2"));
        };
        check_method(self, tokenizer)?;
        let mut config = Gpt2Config::new(
            tokenizer.vocab_size(),
            context,
            g.n_embd,
            g.n_layer,
            g.n_head,
        );
        config.resid_pdrop = g.dropout;
        config.embd_pdrop = g.dropout;
        config.attn_pdrop = g.dropout;
        config.tie_word_embeddings = g.tie_word_embeddings;
        config.eos_token_id = eos_of(tokenizer);
        config.bos_token_id = config.eos_token_id;
        config.validate()?;
        to_json(&config)
    }

    fn train(&self, resolved: &serde_json::Value, job: &LmTrainJob<'_>) -> Result<Trained> {
        let config: Gpt2Config = from_json(resolved)?;
        let device = job.device.clone().autodiff();
        lexforge_core::Seed(job.config.seed).apply_to(&device);
        let lm = Gpt2Lm {
            net: Gpt2::new(&config, &device)?,
        };
        let outcome = run_engine(job, &device, lm)?;
        let lm = best_weights(job, outcome.model)?;
        Ok(Trained {
            model: Box::new(Gpt2Model {
                config,
                lm: lm.valid(),
            }),
            state: outcome.state,
            stop: outcome.stop,
        })
    }

    fn load(&self, dir: &Path, device: &Device) -> Result<Box<dyn LmModel>> {
        let (config, net) = load_hf_dir(dir, device)?;
        Ok(Box::new(Gpt2Model {
            config,
            lm: Gpt2Lm { net },
        }))
    }
}

impl LmModel for Gpt2Model {
    fn backend(&self) -> &'static str {
        "gpt2"
    }
    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }
    fn context(&self) -> Option<usize> {
        Some(self.config.n_positions)
    }
    fn num_params(&self) -> usize {
        self.lm.num_params()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
    fn generate(
        &self,
        prompt: &[u32],
        config: &GenerateConfig,
        decode: &dyn Fn(&[u32]) -> String,
    ) -> Result<Vec<Generation>> {
        Ok(generate(&self.lm.net, prompt, config, decode)?)
    }
    fn score(&self, ids: &[u32], top_k: usize) -> Result<SequenceScore> {
        Ok(score(&self.lm.net, ids, top_k)?)
    }
    fn mean_loss(
        &self,
        data: &LmWindows,
        batch_size: usize,
        max_batches: Option<usize>,
    ) -> Result<(f64, u64)> {
        let device = self.lm.net.wte.weight.val().device();
        Ok(evaluate(&self.lm, data, &device, batch_size, max_batches)?)
    }
    fn save(&self, dir: &Path) -> Result<()> {
        Ok(save_hf_dir(&self.lm.net, &self.config, dir)?)
    }
}

// ---------------------------------------------------------------------------------------------
// char-LSTM

/// The char-LSTM as a trainable module.
#[derive(Module, Debug)]
pub struct CharLstmLm {
    /// The network.
    pub net: CharLstm,
}

impl TrainModel for CharLstmLm {
    type Batch = LmBatch;
    fn loss(&self, batch: &LmBatch) -> std::result::Result<LossOutput, BoxError> {
        let (logits, _) = self.net.forward(batch.inputs.clone(), None);
        lm_loss(logits, batch.targets.clone())
    }
}

/// The char-LSTM backend. Its `config.json` is the [`CharLstmConfig`] with
/// `model_type = "char_lstm"`; weights are burn's module snapshot in SafeTensors.
#[derive(Debug, Clone, Copy, Default)]
pub struct CharLstmBackend;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CharLstmFile {
    model_type: String,
    #[serde(flatten)]
    config: CharLstmConfig,
    #[serde(default)]
    eos_token_id: Option<u32>,
}

struct CharLstmModel {
    file: CharLstmFile,
    lm: CharLstmLm,
}

impl ModelBackend for CharLstmBackend {
    fn name(&self) -> &'static str {
        "char_lstm"
    }

    fn supported_tokenizers(&self) -> &'static [TokenizerMethod] {
        // Character-level by design; a subword vocabulary works but loses the point (and the
        // fair bits-per-character comparison with GPT-2 is made through the metrics instead).
        &[
            TokenizerMethod::Char,
            TokenizerMethod::Bpe,
            TokenizerMethod::Unigram,
        ]
    }

    fn prepare(
        &self,
        spec: &ModelConfig,
        tokenizer: &Tokenizer,
        _context: usize,
    ) -> Result<serde_json::Value> {
        let ModelConfig::CharLstm(c) = spec else {
            return Err(LmError::config("model.type", "expected char_lstm"));
        };
        check_method(self, tokenizer)?;
        let mut config =
            CharLstmConfig::new(tokenizer.vocab_size(), c.d_embed, c.d_hidden, c.n_layers);
        config.dropout = c.dropout;
        config.validate()?;
        to_json(&CharLstmFile {
            model_type: "char_lstm".to_owned(),
            config,
            eos_token_id: eos_of(tokenizer),
        })
    }

    fn train(&self, resolved: &serde_json::Value, job: &LmTrainJob<'_>) -> Result<Trained> {
        let file: CharLstmFile = from_json(resolved)?;
        let device = job.device.clone().autodiff();
        lexforge_core::Seed(job.config.seed).apply_to(&device);
        let lm = CharLstmLm {
            net: CharLstm::new(&file.config, &device)?,
        };
        let outcome = run_engine(job, &device, lm)?;
        let lm = best_weights(job, outcome.model)?;
        Ok(Trained {
            model: Box::new(CharLstmModel {
                file,
                lm: lm.valid(),
            }),
            state: outcome.state,
            stop: outcome.stop,
        })
    }

    fn load(&self, dir: &Path, device: &Device) -> Result<Box<dyn LmModel>> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| lexforge_core::Error::io("read model config", &path, e))?;
        let file: CharLstmFile =
            serde_json::from_str(&text).map_err(|source| lexforge_core::Error::Json {
                path: path.clone(),
                source,
            })?;
        let mut lm = CharLstmLm {
            net: CharLstm::new(&file.config, device)?,
        };
        let weights = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&weights)
            .map_err(|e| lexforge_core::Error::io("read weights", &weights, e))?;
        let applied = lm
            .net
            .load_from(&mut SafetensorsStore::from_bytes(Some(bytes)))
            .map_err(|e| lexforge_nn::NnError::Weights {
                path: weights.clone(),
                reason: e.to_string(),
            })?;
        if !applied.missing.is_empty() || !applied.errors.is_empty() {
            return Err(lexforge_nn::NnError::Weights {
                path: weights,
                reason: format!(
                    "{} tensors missing, {} do not fit",
                    applied.missing.len(),
                    applied.errors.len()
                ),
            }
            .into());
        }
        // burn's store keeps the file's f32; compute in the device's precision.
        let lm = lexforge_train::cast_params(lm, device.settings().float_dtype, true);
        Ok(Box::new(CharLstmModel { file, lm }))
    }
}

impl LmModel for CharLstmModel {
    fn backend(&self) -> &'static str {
        "char_lstm"
    }
    fn vocab_size(&self) -> usize {
        self.file.config.vocab_size
    }
    fn context(&self) -> Option<usize> {
        None
    }
    fn num_params(&self) -> usize {
        self.lm.num_params()
    }
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.file).unwrap_or_default()
    }
    fn generate(
        &self,
        prompt: &[u32],
        config: &GenerateConfig,
        decode: &dyn Fn(&[u32]) -> String,
    ) -> Result<Vec<Generation>> {
        Ok(generate(&self.lm.net, prompt, config, decode)?)
    }
    fn score(&self, ids: &[u32], top_k: usize) -> Result<SequenceScore> {
        Ok(score(&self.lm.net, ids, top_k)?)
    }
    fn mean_loss(
        &self,
        data: &LmWindows,
        batch_size: usize,
        max_batches: Option<usize>,
    ) -> Result<(f64, u64)> {
        let device = self.lm.net.proj.weight.val().device();
        Ok(evaluate(&self.lm, data, &device, batch_size, max_batches)?)
    }
    fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| lexforge_core::Error::io("create directory", dir, e))?;
        let mut store = SafetensorsStore::from_bytes(None).clear_metadata();
        self.lm
            .net
            .save_into(&mut store)
            .map_err(|e| lexforge_nn::NnError::Weights {
                path: dir.join(WEIGHTS_FILE),
                reason: e.to_string(),
            })?;
        let bytes = store
            .get_bytes()
            .map_err(|e| lexforge_nn::NnError::Weights {
                path: dir.join(WEIGHTS_FILE),
                reason: e.to_string(),
            })?;
        lexforge_core::atomic_write(&dir.join(WEIGHTS_FILE), &bytes)?;
        let json = serde_json::to_vec_pretty(&self.file).map_err(|source| {
            lexforge_core::Error::Serialize {
                what: "model config",
                source,
            }
        })?;
        lexforge_core::atomic_write(&dir.join(CONFIG_FILE), &json)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// shared

fn run_engine<M: TrainModel<Batch = LmBatch>>(
    job: &LmTrainJob<'_>,
    device: &Device,
    model: M,
) -> Result<TrainOutcome<M>> {
    let replicas: Vec<Device> = job.replicas.iter().map(|d| d.clone().autodiff()).collect();
    let ctx = TrainContext {
        run_id: job.run_id,
        kind: "lm",
        device,
        replicas: &replicas,
        train: job.train,
        valid: job.valid,
        checkpoints: job.checkpoints,
        events: job.events,
        cancel: job.cancel,
    };
    Ok(train(job.config, &ctx, model, job.resume)?)
}

/// The weights of the best evaluation, when a `best` checkpoint exists; else `last`.
fn best_weights<M: TrainModel>(job: &LmTrainJob<'_>, last: M) -> Result<M> {
    if job.checkpoints.dir("best").exists() {
        Ok(job.checkpoints.load_weights("best", last)?)
    } else {
        Ok(last)
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|source| {
        lexforge_core::Error::Serialize {
            what: "model config",
            source,
        }
        .into()
    })
}

fn from_json<T: for<'de> Deserialize<'de>>(value: &serde_json::Value) -> Result<T> {
    serde_json::from_value(value.clone()).map_err(|e| LmError::config("model", e.to_string()))
}
