//! The files of a matcher directory: their names, and how they are written (each file
//! atomically) and listed.
//!
//! # Directory layout
//! ```text
//! matcher/
//!   encoder/                  the fine-tuned body as an HF / sentence-transformers directory
//!   head/config.json          HeadFile: head configuration, pooling, max_seq_length
//!   head/model.safetensors    head, pair head, topic head and score affine
//!   calibration.json          Platt temperature + bias, decision threshold (optional)
//!   style_calibration.json    isotonic cosine → style map (optional)
//!   teacher/                  the cross-encoder teacher (optional)
//!   eval/metrics.json         evaluation report (optional)
//! ```
//! `Matcher::load` reads the calibrations and the teacher when present.

use std::path::Path;

use lexforge_nn::bert::{BertConfig, save_hf_dir_from};
use lexforge_nn::encoder::TOKENIZER_FILE;
use serde::Serialize;

use crate::error::Result;

/// Layout version of a matcher directory written by this build (`head/config.json`'s `format`).
pub(crate) const MATCHER_FORMAT: u32 = 1;
/// Manifest `kind` of a matcher directory.
pub(crate) const MATCHER_KIND: &str = "matcher";
/// The head's directory.
pub(crate) const HEAD_DIR: &str = "head";
/// The fine-tuned body's directory.
pub(crate) const ENCODER_DIR: &str = "encoder";
/// Where a matcher keeps its cross-encoder teacher.
pub(crate) const TEACHER_DIR: &str = "teacher";
/// Calibration file name.
pub(crate) const CALIBRATION_FILE: &str = "calibration.json";
/// Style calibration file name.
pub(crate) const STYLE_CALIBRATION_FILE: &str = "style_calibration.json";
/// Files of a sentence-transformers directory copied next to the fine-tuned weights.
const COPIED: [&str; 7] = [
    TOKENIZER_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// The files of a saved matcher under `dir` (relative, `/`-separated): the encoder and head
/// directories, calibrations and the evaluation report; not checkpoints, events or the
/// manifest.
pub(crate) fn matcher_files(dir: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| lexforge_core::Error::io("read directory", dir, e))?;
        let mut names: Vec<_> = entries.filter_map(|e| e.ok()).collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if path.is_dir() {
                walk(&path, &rel, out)?;
            } else if !name.starts_with('.') {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for sub in ["encoder", "head", "eval", "teacher/encoder", "teacher/head"] {
        let d = dir.join(sub);
        if d.is_dir() {
            walk(&d, sub, &mut out)?;
        }
    }
    for f in [CALIBRATION_FILE, STYLE_CALIBRATION_FILE] {
        if dir.join(f).is_file() {
            out.push(f.to_owned());
        }
    }
    Ok(out)
}

/// Writes `bert` as an HF / sentence-transformers directory `dir`: `config.json` +
/// `model.safetensors`, and the tokenizer and pooling files copied from `base`. Atomic per file.
///
/// # Errors
/// I/O errors naming the file.
pub(crate) fn save_encoder_dir(
    bert: &lexforge_nn::bert::BertModel,
    config: &BertConfig,
    base: &Path,
    dir: &Path,
) -> Result<()> {
    save_hf_dir_from(bert, config, Some(base), dir)?;
    for name in COPIED {
        let from = base.join(name);
        if from.is_file() {
            let bytes =
                std::fs::read(&from).map_err(|e| lexforge_core::Error::io("read", &from, e))?;
            let to = dir.join(name);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| lexforge_core::Error::io("create directory", parent, e))?;
            }
            lexforge_core::atomic_write(&to, &bytes)?;
        }
    }
    Ok(())
}

/// `value` as pretty JSON.
pub(crate) fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    Ok(
        serde_json::to_vec_pretty(value).map_err(|source| lexforge_core::Error::Serialize {
            what: "matcher file",
            source,
        })?,
    )
}

/// Writes `value` as pretty JSON, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| lexforge_core::Error::io("create directory", parent, e))?;
    }
    Ok(lexforge_core::atomic_write(path, &json_bytes(value)?)?)
}
