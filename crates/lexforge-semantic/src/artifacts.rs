//! The layout of a semantic-encoder directory: its file names, and the functions that write
//! and read its files.
//!
//! ```text
//! semantic_encoder.safetensors   encoder, decoder, quantizer state, heads
//! config.json                    SemanticConfig (quantizer, input_dim, embedding model id)
//! semantic_ids.json              corpus id → [style, complexity, era, variation]
//! corpora.json                   the corpora it was trained on
//! eval/metrics.json              the training report
//! manifest.json                  sha256 of every file above
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::corpus::CorpusSet;
use crate::error::{Result, SemanticError};
use crate::model::SemanticModel;

/// Manifest `kind` of a semantic-encoder directory.
pub(crate) const SEMANTIC_KIND: &str = "semantic_encoder";
/// Weights file.
pub(crate) const WEIGHTS_FILE: &str = "semantic_encoder.safetensors";
/// Config file.
pub(crate) const CONFIG_FILE: &str = "config.json";
/// Corpus id → ID file.
pub(crate) const IDS_FILE: &str = "semantic_ids.json";
/// The corpora the encoder was trained on.
pub(crate) const CORPORA_FILE: &str = "corpora.json";
/// Evaluation report.
pub(crate) const METRICS_FILE: &str = "eval/metrics.json";
/// The generator directory inside a semantic-encoder directory.
pub const GENERATOR_DIR: &str = "generator";

/// Writes `value` as pretty JSON, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| lexforge_core::Error::io("create directory", parent, e))?;
    }
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|source| lexforge_core::Error::Serialize {
            what: "semantic encoder file",
            source,
        })?;
    Ok(lexforge_core::atomic_write(path, &bytes)?)
}

/// Reads a JSON file of a semantic-encoder directory.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| lexforge_core::Error::io("read semantic encoder file", path, e))?;
    serde_json::from_str(&text).map_err(|e| SemanticError::Artifact {
        path: path.to_path_buf(),
        reason: format!("not valid: {e}"),
    })
}

/// Writes the weights, config, IDs and corpora of `model` into `dir` (each file atomically).
pub(crate) fn save_model(
    model: &SemanticModel,
    ids: &BTreeMap<String, Vec<u32>>,
    set: &CorpusSet,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| lexforge_core::Error::io("create directory", dir, e))?;
    let dest = dir.join(WEIGHTS_FILE);
    let cannot = |e: String| SemanticError::Artifact {
        path: dest.clone(),
        reason: format!("cannot write the weights: {e}"),
    };
    let mut store = SafetensorsStore::from_bytes(None).clear_metadata();
    model
        .save_into(&mut store)
        .map_err(|e| cannot(e.to_string()))?;
    let bytes = store.get_bytes().map_err(|e| cannot(e.to_string()))?;
    lexforge_core::atomic_write(&dest, &bytes)?;
    write_json(&dir.join(CONFIG_FILE), model.config())?;
    write_json(&dir.join(IDS_FILE), ids)?;
    set.save(&dir.join(CORPORA_FILE))
}
