//! The semantic encoder: embedding → MLP → quantizer → ID; quantized latent → MLP → embedding.
//!
//! ```text
//! x [n, input_dim] ─ enc_in ─ GELU ─ enc_out ─ z [n, latent] ─ quantizer ─┬─ codes [n, 4]
//!                                                                         ├─ parts ─ heads (labels)
//!                                                                         └─ z_q ─ dec_in ─ GELU ─ dec_out ─ x̂
//! ```

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SemanticError};
use crate::quantize::{AnyQuantizer, Quantized, Quantizer, QuantizerConfig};

/// Format version of `config.json`.
pub const CONFIG_FORMAT: u32 = 1;

/// A supervised head: predicts the label of one ID component from its quantized vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    /// The component (0 style, 1 complexity, 2 era).
    pub component: usize,
    /// Its classes, in index order.
    pub classes: Vec<String>,
}

/// Everything needed to rebuild the semantic encoder (`config.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticConfig {
    /// [`CONFIG_FORMAT`].
    pub format: u32,
    /// Architecture of the encoder and decoder (`mlp`).
    pub encoder_type: String,
    /// Width of the embeddings (the embedding model's dimension).
    pub input_dim: usize,
    /// The embedding model's id (`SentenceEncoder::model_id`): inference refuses another.
    pub embedding_model: String,
    /// Where the embedding model was loaded from at training time (a hint for loading).
    #[serde(default)]
    pub embedding_model_path: Option<std::path::PathBuf>,
    /// Hidden width of the encoder and decoder MLPs.
    pub hidden_dim: usize,
    /// The quantizer.
    pub quantizer: QuantizerConfig,
    /// Supervised heads (empty: none).
    #[serde(default)]
    pub heads: Vec<HeadSpec>,
}

impl SemanticConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.format != CONFIG_FORMAT {
            return Err(SemanticError::param(
                "format",
                format!(
                    "config format {} is not supported (this build reads {CONFIG_FORMAT})",
                    self.format
                ),
            ));
        }
        if self.encoder_type != "mlp" {
            return Err(SemanticError::param(
                "encoder_type",
                format!("{:?} is not supported (mlp)", self.encoder_type),
            ));
        }
        if self.input_dim == 0 || self.hidden_dim == 0 {
            return Err(SemanticError::param(
                "hidden_dim",
                "input and hidden widths must be at least 1",
            ));
        }
        self.quantizer.validate()?;
        let components = self.quantizer.codebook_sizes().len();
        for h in &self.heads {
            if h.component >= components {
                return Err(SemanticError::param(
                    "heads",
                    format!("component {} of {components}", h.component),
                ));
            }
            if h.classes.len() < 2 {
                return Err(SemanticError::param(
                    "heads",
                    format!(
                        "component {} has {} class(es); a head needs 2",
                        h.component,
                        h.classes.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What the model computes for a batch.
#[derive(Debug, Clone)]
pub struct Forward {
    /// Continuous latents before quantization `[n, latent]`.
    pub latent: Tensor<2>,
    /// The quantizer's output.
    pub quantized: Quantized,
    /// Reconstructions `[n, input_dim]` (not normalized).
    pub reconstruction: Tensor<2>,
    /// Logits of each head `[n, classes]`, in [`SemanticConfig::heads`] order.
    pub head_logits: Vec<Tensor<2>>,
}

/// The semantic encoder module.
#[derive(Module, Debug)]
pub struct SemanticModel {
    /// `input_dim → hidden`.
    pub enc_in: Linear,
    /// `hidden → latent`.
    pub enc_out: Linear,
    /// `latent → hidden`.
    pub dec_in: Linear,
    /// `hidden → input_dim`.
    pub dec_out: Linear,
    /// The quantizer (residual-VQ codebooks are parameters without gradients).
    pub quantizer: AnyQuantizer,
    /// Supervised heads, `part_dim → classes`.
    pub heads: Vec<Linear>,
    /// Code counts of the current epoch `[components, max K + 1]` (last column: replaced
    /// dead codes); no gradient. Carried by checkpoints so per-epoch statistics survive a
    /// resume.
    pub usage: Param<Tensor<2>>,
    #[module(skip)]
    config: SemanticConfig,
}

impl SemanticModel {
    /// A freshly initialized model (seed the device first for reproducible weights).
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] for a bad config.
    pub fn new(config: &SemanticConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let latent = config.quantizer.latent_dim();
        let h = config.hidden_dim;
        let quantizer = AnyQuantizer::new(&config.quantizer, device)?;
        let dims = part_dims(&config.quantizer);
        let heads = config
            .heads
            .iter()
            .map(|s| LinearConfig::new(dims[s.component], s.classes.len()).init(device))
            .collect();
        let sizes = config.quantizer.codebook_sizes();
        let max_k = sizes.iter().copied().max().unwrap_or(1);
        Ok(SemanticModel {
            enc_in: LinearConfig::new(config.input_dim, h).init(device),
            enc_out: LinearConfig::new(h, latent).init(device),
            dec_in: LinearConfig::new(latent, h).init(device),
            dec_out: LinearConfig::new(h, config.input_dim).init(device),
            quantizer,
            heads,
            usage: Param::from_tensor(Tensor::zeros([sizes.len(), max_k + 1], device))
                .set_require_grad(false),
            config: config.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SemanticConfig {
        &self.config
    }

    /// Continuous latents of `x` `[n, input_dim]` → `[n, latent]`.
    pub fn encode_latent(&self, x: Tensor<2>) -> Tensor<2> {
        self.enc_out.forward(gelu(self.enc_in.forward(x)))
    }

    /// Reconstruction of quantized latents `[n, latent]` → `[n, input_dim]`.
    pub fn decode_latent(&self, z: Tensor<2>) -> Tensor<2> {
        self.dec_out.forward(gelu(self.dec_in.forward(z)))
    }

    /// The whole forward pass.
    ///
    /// # Errors
    /// [`SemanticError::InvalidInput`] for a wrong input width or non-finite latents.
    pub fn forward(&self, x: Tensor<2>, temperature: f64) -> Result<Forward> {
        let [_, d] = x.dims();
        if d != self.config.input_dim {
            return Err(SemanticError::input(format!(
                "vectors have width {d}, the encoder expects {}",
                self.config.input_dim
            )));
        }
        let latent = self.encode_latent(x);
        let quantized = self.quantizer.quantize(latent.clone(), temperature)?;
        let reconstruction = self.decode_latent(quantized.latent.clone());
        let head_logits = self
            .config
            .heads
            .iter()
            .zip(&self.heads)
            .map(|(spec, head)| head.forward(quantized.parts[spec.component].clone()))
            .collect();
        Ok(Forward {
            latent,
            quantized,
            reconstruction,
            head_logits,
        })
    }

    /// Codes of `x` `[n, input_dim]`, row-major `[n, components]`.
    ///
    /// # Errors
    /// As [`SemanticModel::forward`].
    pub fn codes(&self, x: Tensor<2>) -> Result<Vec<u32>> {
        let latent = self.encode_latent(x);
        Ok(self.quantizer.quantize(latent, 0.0)?.codes)
    }

    /// The embedding-space vectors of `codes` (row-major `[n, components]`), L2-normalized
    /// `[n, input_dim]`.
    ///
    /// # Errors
    /// [`SemanticError::IdOutOfRange`] / [`SemanticError::IdLength`].
    pub fn decode_codes(&self, codes: &[u32], device: &Device) -> Result<Tensor<2>> {
        let z = self.quantizer.decode(codes, device)?;
        Ok(l2_normalize(self.decode_latent(z)))
    }

    /// Head predictions (class index per row, per head) from codes alone.
    ///
    /// # Errors
    /// As [`SemanticModel::decode_codes`].
    pub fn predict_labels(&self, codes: &[u32], device: &Device) -> Result<Vec<Vec<usize>>> {
        let parts = self.quantizer.decode_parts(codes, device)?;
        let mut out = Vec::new();
        for (spec, head) in self.config.heads.iter().zip(&self.heads) {
            let logits = crate::quantize::host(head.forward(parts[spec.component].clone()))?;
            let k = spec.classes.len();
            out.push(
                logits
                    .chunks(k)
                    .map(|row| {
                        row.iter()
                            .enumerate()
                            .max_by(|a, b| a.1.total_cmp(b.1))
                            .map_or(0, |(i, _)| i)
                    })
                    .collect(),
            );
        }
        Ok(out)
    }
}

/// Width of each component's quantized vector (the heads' inputs).
fn part_dims(q: &QuantizerConfig) -> Vec<usize> {
    match q {
        QuantizerConfig::Fsq { levels } => levels.iter().map(Vec::len).collect(),
        QuantizerConfig::ResidualFsq { levels, stages } => vec![levels.len(); *stages],
        QuantizerConfig::ResidualVq { dim, stages, .. } => vec![*dim; *stages],
    }
}

/// Rows divided by their L2 norm (rows of zeros stay zero).
pub(crate) fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// `[rows, cols]` tensor from host values.
pub(crate) fn matrix(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}
