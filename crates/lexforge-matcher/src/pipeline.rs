//! Books → prepared dataset → trained, calibrated, evaluated matcher in one call
//! (`lexforge matcher pipeline`, Python `lexforge.matcher.pipeline`).
//!
//! Both stages live in `run_dir`: `dataset/` (a staged run: present only when complete) and
//! `matcher/`. Calling [`pipeline`] again reuses a complete dataset and matcher and resumes a
//! stopped matcher, so a killed pipeline continues where it was.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lexforge_core::{CancelToken, EventSink, Manifest, RunStatus};
use lexforge_data::{BookDirectory, PrepareConfig, PrepareSummary};
use lexforge_nn::encoder::{BertSentenceEncoder, EncoderOptions, minilm_or};
use serde::{Deserialize, Serialize};

use crate::config::MatcherTrainConfig;
use crate::error::{MatcherError, Result};
use crate::report::TrainReport;

/// The dataset directory inside a pipeline's directory.
pub const DATASET_DIR: &str = "dataset";
/// The matcher directory inside a pipeline's directory.
pub const MATCHER_DIR: &str = "matcher";

/// The two stages' settings (`lexforge matcher pipeline --config`: a `prepare` table and a
/// `matcher` table).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Data preparation.
    pub prepare: PrepareConfig,
    /// Matcher training (an empty `base_model` is the installed all-MiniLM-L6-v2).
    pub matcher: MatcherTrainConfig,
}

/// What [`pipeline`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineReport {
    /// The pipeline's directory.
    pub run_dir: PathBuf,
    /// The dataset preparation's summary; `None` when a complete dataset was reused.
    pub dataset: Option<PrepareSummary>,
    /// The matcher's training report (read back when a complete matcher was reused).
    pub matcher: TrainReport,
}

/// A stage directory's status: `None` without a manifest.
fn stage_status(dir: &Path) -> Option<RunStatus> {
    Manifest::load(dir).ok().map(|m| m.status)
}

/// Prepares the books of `books_dir` (`{author}/{title}.txt`, with the catalogue `metadata`
/// when given) into `run_dir/dataset` and trains, calibrates and evaluates a matcher on it
/// into `run_dir/matcher`, on `device`. With training on views and no `books` of its own, the
/// matcher re-chunks the training books from `books_dir`.
///
/// # Errors
/// A bad config, unreadable books, an unusable dataset, training failures, I/O.
#[allow(clippy::too_many_arguments, reason = "the inputs of one pipeline run")]
pub fn pipeline(
    config: &PipelineConfig,
    books_dir: &Path,
    metadata: Option<&Path>,
    run_dir: &Path,
    device: &Device,
    events: &dyn EventSink,
    cancel: &CancelToken,
) -> Result<PipelineReport> {
    let mut cfg = config.clone();
    let given = Some(cfg.matcher.base_model.as_path()).filter(|p| !p.as_os_str().is_empty());
    cfg.matcher.base_model = minilm_or(given, "base model")?;
    // Training on views reads more of each training book than the pairs use, from the books
    // being prepared.
    if let Some(v) = cfg.matcher.views.as_mut()
        && v.books.is_none()
    {
        v.books = Some(books_dir.to_path_buf());
    }
    cfg.prepare.validate()?;
    cfg.matcher.validate()?;

    let dataset_dir = run_dir.join(DATASET_DIR);
    let dataset = if stage_status(&dataset_dir) == Some(RunStatus::Completed) {
        None
    } else {
        let encoder = BertSentenceEncoder::load(
            &cfg.matcher.base_model,
            device,
            &EncoderOptions {
                max_seq_length: Some(cfg.matcher.max_seq_length),
                ..EncoderOptions::default()
            },
        )?;
        let mut books = BookDirectory::new(books_dir);
        if let Some(csv) = metadata {
            books = books.with_metadata(csv);
        }
        std::fs::create_dir_all(run_dir)
            .map_err(|e| lexforge_core::Error::io("create directory", run_dir, e))?;
        Some(lexforge_data::prepare(
            &books,
            &encoder,
            device,
            &cfg.prepare,
            &dataset_dir,
            events,
            cancel,
        )?)
    };

    let matcher_dir = run_dir.join(MATCHER_DIR);
    let matcher = match stage_status(&matcher_dir) {
        Some(RunStatus::Completed) => read_report(&matcher_dir.join("eval/metrics.json"))?,
        Some(_) => crate::train::resume(&matcher_dir, device, None, events, cancel)?,
        None => crate::train::train(
            &cfg.matcher,
            &dataset_dir,
            &matcher_dir,
            device,
            events,
            cancel,
        )?,
    };
    Ok(PipelineReport {
        run_dir: run_dir.to_path_buf(),
        dataset,
        matcher,
    })
}

fn read_report(path: &Path) -> Result<TrainReport> {
    let text =
        std::fs::read_to_string(path).map_err(|e| lexforge_core::Error::io("read", path, e))?;
    serde_json::from_str(&text).map_err(|e| MatcherError::Artifact {
        path: path.to_path_buf(),
        reason: format!("not a matcher training report: {e}"),
    })
}
