//! Hugging Face model directories: safetensors tensors by HF name in, and out, for every model
//! of this crate (`gpt2`, `bert`).
//!
//! Reading checks each tensor's presence and shape against the config and converts f32, f16 and
//! bf16 to f32; every failure is a typed error naming the file and the tensor. Writing collects
//! tensors under HF names and writes `model.safetensors` (f32) and `config.json` atomically.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use serde::de::DeserializeOwned;

use crate::error::{NnError, Result};

/// The weights file of a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The config file of a model directory.
pub const CONFIG_FILE: &str = "config.json";

/// Reads and parses a JSON file.
///
/// # Errors
/// [`lexforge_core::Error::Io`] (not found included) or [`lexforge_core::Error::Json`].
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<T> {
    let text =
        std::fs::read_to_string(path).map_err(|e| lexforge_core::Error::io(what, path, e))?;
    serde_json::from_str(&text).map_err(|source| {
        NnError::Core(lexforge_core::Error::Json {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// How a checkpoint stores a linear layer's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// `[in, out]`, as burn's `Linear` (HF `Conv1D`, GPT-2).
    InOut,
    /// `[out, in]`, torch `nn.Linear` (BERT, RoBERTa): transposed on the way in and out.
    OutIn,
}

/// Parses safetensors bytes, naming `path` on failure.
pub fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| NnError::Weights {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Typed access to the tensors of one safetensors file, under an optional name prefix
/// (`transformer.`, `bert.`, `roberta.`).
pub struct HfReader<'a> {
    path: &'a Path,
    st: &'a SafeTensors<'a>,
    prefix: String,
    device: &'a Device,
}

impl<'a> HfReader<'a> {
    /// A reader of `st` (read from `path`) placing tensors on `device`.
    pub fn new(path: &'a Path, st: &'a SafeTensors<'a>, prefix: &str, device: &'a Device) -> Self {
        HfReader {
            path,
            st,
            prefix: prefix.to_owned(),
            device,
        }
    }

    /// The same file read without a prefix (heads stored beside the prefixed body).
    pub fn unprefixed(&self) -> HfReader<'a> {
        HfReader::new(self.path, self.st, "", self.device)
    }

    /// Whether the (prefixed) tensor exists.
    pub fn has(&self, name: &str) -> bool {
        self.st.tensor(&format!("{}{name}", self.prefix)).is_ok()
    }

    /// The tensor `name` (prefixed), checked to have shape `expected`, as f32.
    ///
    /// # Errors
    /// [`NnError::MissingTensor`], [`NnError::ShapeMismatch`], or [`NnError::Weights`] for a
    /// dtype other than F32/F16/BF16.
    pub fn get<const D: usize>(&self, name: &str, expected: [usize; D]) -> Result<Tensor<D>> {
        Ok(Tensor::from_data(
            self.get_data(name, expected)?,
            self.device,
        ))
    }

    /// The values of tensor `name` (prefixed), checked to have shape `expected`, as f32 host
    /// data (for callers that place them on a device themselves).
    ///
    /// # Errors
    /// As [`HfReader::get`].
    pub fn get_data(&self, name: &str, expected: impl AsRef<[usize]>) -> Result<TensorData> {
        let expected = expected.as_ref();
        let full = format!("{}{name}", self.prefix);
        let view = self.st.tensor(&full).map_err(|_| NnError::MissingTensor {
            path: self.path.to_path_buf(),
            name: full.clone(),
        })?;
        if view.shape() != expected {
            return Err(NnError::ShapeMismatch {
                path: self.path.to_path_buf(),
                name: full,
                expected: expected.to_vec(),
                got: view.shape().to_vec(),
            });
        }
        let bytes = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(NnError::Weights {
                    path: self.path.to_path_buf(),
                    reason: format!("tensor {full} has dtype {other:?}; expected F32, F16 or BF16"),
                });
            }
        };
        Ok(TensorData::new(values, expected.to_vec()))
    }

    /// Fills `lin` from `{name}.weight` / `{name}.bias` stored in `layout`.
    pub fn linear(
        &self,
        lin: &mut Linear,
        name: &str,
        layout: WeightLayout,
        d_in: usize,
        d_out: usize,
    ) -> Result<()> {
        let weight = match layout {
            WeightLayout::InOut => self.get(&format!("{name}.weight"), [d_in, d_out])?,
            WeightLayout::OutIn => self
                .get::<2>(&format!("{name}.weight"), [d_out, d_in])?
                .transpose(),
        };
        lin.weight = Param::from_tensor(weight);
        lin.bias = Some(Param::from_tensor(
            self.get(&format!("{name}.bias"), [d_out])?,
        ));
        Ok(())
    }

    /// Fills `ln` from `{name}.weight` / `{name}.bias` (or the `gamma` / `beta` names of old
    /// BERT checkpoints).
    pub fn norm(&self, ln: &mut LayerNorm, name: &str, d: usize) -> Result<()> {
        let (w, b) = if !self.has(&format!("{name}.weight")) && self.has(&format!("{name}.gamma")) {
            ("gamma", "beta")
        } else {
            ("weight", "bias")
        };
        ln.gamma = Param::from_tensor(self.get(&format!("{name}.{w}"), [d])?);
        ln.beta = Some(Param::from_tensor(self.get(&format!("{name}.{b}"), [d])?));
        Ok(())
    }
}

/// Collects tensors under HF names and writes a model directory.
#[derive(Default)]
pub struct HfWriter {
    tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)>,
}

impl HfWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `t` (as f32) under `name`.
    pub fn put<const D: usize>(&mut self, name: impl Into<String>, t: Tensor<D>) -> Result<()> {
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .try_into_vec_as::<f32>()
            .map_err(|e| NnError::InvalidInput {
                reason: format!("cannot read back a parameter: {e:?}"),
            })?;
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors.insert(name.into(), (shape, bytes));
        Ok(())
    }

    /// Copies every f32 tensor of the safetensors file `file` whose name starts with `prefix`,
    /// bytes unchanged (weights lexforge does not model but a checkpoint should keep, such as
    /// a BERT pooler). Returns how many were copied; a file without such tensors copies none.
    ///
    /// # Errors
    /// I/O errors naming the file; [`NnError::InvalidInput`] for a damaged file or a matching
    /// tensor that is not f32.
    pub fn copy_from(&mut self, file: &Path, prefix: &str) -> Result<usize> {
        let bytes = std::fs::read(file).map_err(|e| lexforge_core::Error::io("read", file, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| NnError::InvalidInput {
            reason: format!("{}: not a safetensors file: {e}", file.display()),
        })?;
        let mut copied = 0;
        for (name, view) in st.tensors() {
            if !name.starts_with(prefix) {
                continue;
            }
            if view.dtype() != Dtype::F32 {
                return Err(NnError::InvalidInput {
                    reason: format!("{}: {name} is {:?}, not f32", file.display(), view.dtype()),
                });
            }
            self.tensors
                .insert(name, (view.shape().to_vec(), view.data().to_vec()));
            copied += 1;
        }
        Ok(copied)
    }

    /// Adds `{name}.weight` (in `layout`) and `{name}.bias`.
    pub fn linear(&mut self, name: &str, lin: &Linear, layout: WeightLayout) -> Result<()> {
        let w = lin.weight.val();
        let w = match layout {
            WeightLayout::InOut => w,
            WeightLayout::OutIn => w.transpose(),
        };
        self.put(format!("{name}.weight"), w)?;
        let bias = lin.bias.as_ref().ok_or_else(|| NnError::InvalidInput {
            reason: format!("{name} has no bias; HF checkpoints expect one"),
        })?;
        self.put(format!("{name}.bias"), bias.val())
    }

    /// Adds `{name}.weight` and `{name}.bias` of a layer norm.
    pub fn norm(&mut self, name: &str, ln: &LayerNorm) -> Result<()> {
        self.put(format!("{name}.weight"), ln.gamma.val())?;
        let beta = ln.beta.as_ref().ok_or_else(|| NnError::InvalidInput {
            reason: format!("{name} has no bias; HF checkpoints expect one"),
        })?;
        self.put(format!("{name}.bias"), beta.val())
    }

    /// Writes `model.safetensors` and `config.json` (`config` serialized) into `dir`, each
    /// atomically.
    pub fn write<C: serde::Serialize>(&self, dir: &Path, config: &C) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| lexforge_core::Error::io("create directory", dir, e))?;
        let metadata = std::collections::HashMap::from([("format".to_owned(), "pt".to_owned())]);
        lexforge_core::atomic_write(&dir.join(WEIGHTS_FILE), &self.to_bytes(metadata)?)?;
        let json = serde_json::to_vec_pretty(config).map_err(|source| {
            lexforge_core::Error::Serialize {
                what: "model config",
                source,
            }
        })?;
        lexforge_core::atomic_write(&dir.join(CONFIG_FILE), &json)?;
        Ok(())
    }

    /// The collected tensors as safetensors bytes (f32, names sorted) with `metadata` in the
    /// header.
    pub fn to_bytes(&self, metadata: std::collections::HashMap<String, String>) -> Result<Vec<u8>> {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(name, (shape, data))| {
                safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| NnError::InvalidInput {
                        reason: format!("tensor {name}: {e}"),
                    })
            })
            .collect::<Result<_>>()?;
        safetensors::serialize(views, Some(metadata)).map_err(|e| NnError::InvalidInput {
            reason: format!("cannot serialize weights: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn copy_from_keeps_the_prefixed_tensors_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("base.safetensors");
        let mut base = HfWriter::new();
        let pooler: Vec<u8> = [0.5f32, -1.25, 3.0, f32::MIN_POSITIVE]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        base.tensors
            .insert("pooler.dense.weight".into(), (vec![2, 2], pooler.clone()));
        base.tensors
            .insert("encoder.x".into(), (vec![1], 1f32.to_le_bytes().to_vec()));
        std::fs::write(&file, base.to_bytes(Default::default()).unwrap()).unwrap();

        let mut w = HfWriter::new();
        assert_eq!(w.copy_from(&file, "pooler.").unwrap(), 1);
        assert_eq!(
            w.tensors.get("pooler.dense.weight"),
            Some(&(vec![2, 2], pooler))
        );
        assert!(!w.tensors.contains_key("encoder.x"));
        std::fs::write(&file, b"not safetensors").unwrap();
        assert!(matches!(
            w.copy_from(&file, "pooler."),
            Err(NnError::InvalidInput { .. })
        ));
    }
}
