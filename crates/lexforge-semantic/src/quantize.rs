//! Quantizers: continuous latents → discrete codes, one code per ID component.
//!
//! - [`Fsq`]: finite scalar quantization (Mentzer et al. 2023) per component: each component
//!   owns a few latent dimensions, each bounded by `tanh` and rounded to one of its `levels`
//!   (straight-through gradient); the component's code is the mixed-radix index of its rounded
//!   values, so its codebook is implicit (the product of its levels, 32 by default).
//! - [`ResidualFsq`]: FSQ applied to the residual in stages, each stage's input scaled by
//!   `(levels − 1)^stage` so finer stages resolve what coarser ones left; one stage per
//!   component.
//! - [`ResidualVq`]: residual vector quantization with learned codebooks (one per stage),
//!   k-means initialization, exponential-moving-average codebook updates, dead-code
//!   replacement and a commitment loss.
//!
//! All implement [`Quantizer`]; [`AnyQuantizer`] holds one of them inside a model.
//!
//! # Shapes
//! Latents are `[n, latent_dim]`. Codes are host `u32`s, row-major `[n, components]`.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use lexforge_core::Seed;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SemanticError};

/// What quantizing a batch gives.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// Quantized latents with straight-through gradients, `[n, latent_dim]`.
    pub latent: Tensor<2>,
    /// The quantized vector of each component (straight-through), each `[n, part_dim]`: the
    /// inputs of the supervised heads.
    pub parts: Vec<Tensor<2>>,
    /// Codes, row-major `[n, components]`.
    pub codes: Vec<u32>,
    /// Per component, logits of a soft assignment of each row to every code `[n, K]` (the
    /// entropy regularizer's input): minus squared distance over the temperature. Empty when
    /// quantized with temperature 0.
    pub assignment_logits: Vec<Tensor<2>>,
    /// Commitment loss `[1]` (residual VQ only).
    pub commitment: Option<Tensor<1>>,
}

/// The quantizer contract: latents to codes and codes back to latents.
pub trait Quantizer {
    /// Short name (`fsq`, `residual_fsq`, `residual_vq`).
    fn name(&self) -> &'static str;

    /// Width of the latents it quantizes.
    fn latent_dim(&self) -> usize;

    /// Codebook size of each component.
    fn codebook_sizes(&self) -> Vec<usize>;

    /// Quantizes `z` (`[n, latent_dim]`). `temperature` scales the soft-assignment logits;
    /// `0` skips them (`assignment_logits` empty), for callers that need no entropy term.
    ///
    /// # Errors
    /// [`SemanticError::InvalidInput`] when the width is wrong or values are not finite.
    fn quantize(&self, z: Tensor<2>, temperature: f64) -> Result<Quantized>;

    /// The quantized vector of each component of `codes` (row-major `[n, components]`) on
    /// `device`: what [`Quantizer::quantize`] returns as `parts` for latents with these codes.
    ///
    /// # Errors
    /// [`SemanticError::IdOutOfRange`] for a code outside its codebook,
    /// [`SemanticError::IdLength`] for a partial row.
    fn decode_parts(&self, codes: &[u32], device: &Device) -> Result<Vec<Tensor<2>>>;

    /// Whether the latent is the sum of the parts (residual quantizers) rather than their
    /// concatenation.
    fn residual(&self) -> bool;

    /// The quantized latents of `codes` (row-major `[n, components]`) on `device`,
    /// `[n, latent_dim]`: the codebook lookup.
    ///
    /// # Errors
    /// As [`Quantizer::decode_parts`].
    fn decode(&self, codes: &[u32], device: &Device) -> Result<Tensor<2>> {
        let parts = self.decode_parts(codes, device)?;
        if self.residual() {
            let mut iter = parts.into_iter();
            let first = iter
                .next()
                .ok_or_else(|| SemanticError::input("a quantizer without components"))?;
            Ok(iter.fold(first, |a, b| a + b))
        } else {
            Ok(Tensor::cat(parts, 1))
        }
    }
}

/// Which quantizer, with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum QuantizerConfig {
    /// [`Fsq`]: `levels[k]` lists the levels of component `k`'s dimensions.
    Fsq {
        /// Levels per dimension, per component (each ≥ 2).
        levels: Vec<Vec<u32>>,
    },
    /// [`ResidualFsq`]: `stages` stages of one FSQ with `levels`.
    ResidualFsq {
        /// Levels per dimension of every stage.
        levels: Vec<u32>,
        /// Stages (components).
        stages: usize,
    },
    /// [`ResidualVq`].
    ResidualVq {
        /// Codes per stage.
        codebook_size: usize,
        /// Stages (components).
        stages: usize,
        /// Width of the latent and of each code.
        dim: usize,
        /// EMA decay of the codebook statistics.
        decay: f64,
        /// A code whose EMA cluster size falls below this is dead and replaced by a batch
        /// vector (0: never).
        dead_threshold: f64,
        /// Initialize codebooks by residual k-means over the training latents.
        kmeans_init: bool,
    },
}

impl QuantizerConfig {
    /// FSQ with 4 components of levels `[8, 4]` (32 codes each).
    pub fn fsq_default() -> Self {
        QuantizerConfig::Fsq {
            levels: vec![vec![8, 4]; 4],
        }
    }

    /// Residual FSQ with 4 stages of levels `[8, 4]`.
    pub fn residual_fsq_default() -> Self {
        QuantizerConfig::ResidualFsq {
            levels: vec![8, 4],
            stages: 4,
        }
    }

    /// Residual VQ with 4 stages of 32 codes of width 32.
    pub fn residual_vq_default() -> Self {
        QuantizerConfig::ResidualVq {
            codebook_size: 32,
            stages: 4,
            dim: 32,
            decay: 0.95,
            dead_threshold: 1.0,
            kmeans_init: true,
        }
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let levels_ok = |l: &[u32]| !l.is_empty() && l.iter().all(|&x| (2..=256).contains(&x));
        match self {
            QuantizerConfig::Fsq { levels } => {
                if levels.is_empty() || !levels.iter().all(|l| levels_ok(l)) {
                    return Err(SemanticError::param(
                        "levels",
                        "every component needs at least one dimension with 2..=256 levels",
                    ));
                }
                if levels.iter().any(|l| codebook_size(l) > 1 << 16) {
                    return Err(SemanticError::param(
                        "levels",
                        "a codebook above 65,536 codes",
                    ));
                }
            }
            QuantizerConfig::ResidualFsq { levels, stages } => {
                if !levels_ok(levels) {
                    return Err(SemanticError::param(
                        "levels",
                        "each level must be in 2..=256",
                    ));
                }
                if *stages == 0 {
                    return Err(SemanticError::param("stages", "must be at least 1"));
                }
                if codebook_size(levels) > 1 << 16 {
                    return Err(SemanticError::param(
                        "levels",
                        "a codebook above 65,536 codes",
                    ));
                }
            }
            QuantizerConfig::ResidualVq {
                codebook_size,
                stages,
                dim,
                decay,
                dead_threshold,
                ..
            } => {
                if *codebook_size < 2 {
                    return Err(SemanticError::param("codebook_size", "must be at least 2"));
                }
                if *stages == 0 {
                    return Err(SemanticError::param("stages", "must be at least 1"));
                }
                if *dim == 0 {
                    return Err(SemanticError::param("dim", "must be at least 1"));
                }
                if !(0.0..1.0).contains(decay) {
                    return Err(SemanticError::param("decay", "must be in [0, 1)"));
                }
                if !(dead_threshold.is_finite() && *dead_threshold >= 0.0) {
                    return Err(SemanticError::param("dead_threshold", "must be >= 0"));
                }
            }
        }
        Ok(())
    }

    /// Width of the latents.
    pub fn latent_dim(&self) -> usize {
        match self {
            QuantizerConfig::Fsq { levels } => levels.iter().map(Vec::len).sum(),
            QuantizerConfig::ResidualFsq { levels, .. } => levels.len(),
            QuantizerConfig::ResidualVq { dim, .. } => *dim,
        }
    }

    /// Codebook size of each component.
    pub fn codebook_sizes(&self) -> Vec<usize> {
        match self {
            QuantizerConfig::Fsq { levels } => levels.iter().map(|l| codebook_size(l)).collect(),
            QuantizerConfig::ResidualFsq { levels, stages } => vec![codebook_size(levels); *stages],
            QuantizerConfig::ResidualVq {
                codebook_size,
                stages,
                ..
            } => vec![*codebook_size; *stages],
        }
    }
}

fn codebook_size(levels: &[u32]) -> usize {
    levels.iter().map(|&l| l as usize).product()
}

pub(crate) fn host(t: Tensor<2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec_as::<f32>()
        .map_err(|e| SemanticError::input(format!("cannot read a tensor back: {e:?}")))
}

fn row_tensor(values: Vec<f32>, device: &Device) -> Tensor<2> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [1, n]), device)
}

fn check_latent(z: &Tensor<2>, dim: usize) -> Result<usize> {
    let [n, d] = z.dims();
    if d != dim {
        return Err(SemanticError::input(format!(
            "latents have width {d}, the quantizer expects {dim}"
        )));
    }
    Ok(n)
}

/// Squared distances `[n, K]` between the rows of `x` `[n, d]` and `codebook` `[K, d]`.
fn sq_dist(x: Tensor<2>, codebook: Tensor<2>) -> Tensor<2> {
    let x2 = x.clone().square().sum_dim(1);
    let c2 = codebook.clone().square().sum_dim(1).transpose();
    x2 + c2 - x.matmul(codebook.transpose()).mul_scalar(2.0)
}

/// One FSQ block: dimensions with their levels.
#[derive(Debug, Clone, PartialEq)]
struct FsqBlock {
    levels: Vec<u32>,
}

impl FsqBlock {
    fn dim(&self) -> usize {
        self.levels.len()
    }

    fn size(&self) -> usize {
        codebook_size(&self.levels)
    }

    /// `half_l`, `offset`, `shift` and `half_width` per dimension.
    fn constants(&self) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let eps = 1e-3f64;
        let mut half_l = Vec::new();
        let mut offset = Vec::new();
        let mut shift = Vec::new();
        let mut half_width = Vec::new();
        for &l in &self.levels {
            let h = (f64::from(l) - 1.0) * (1.0 + eps) / 2.0;
            let o = if l % 2 == 0 { 0.5 } else { 0.0 };
            half_l.push(h as f32);
            offset.push(o as f32);
            shift.push((o / h).atanh() as f32);
            half_width.push(f64::from(l / 2) as f32);
        }
        (half_l, offset, shift, half_width)
    }

    /// Mixed-radix code of one row of rounded values.
    fn code(&self, rounded: &[f32]) -> u32 {
        let mut code = 0u32;
        let mut basis = 1u32;
        for (&v, &l) in rounded.iter().zip(&self.levels) {
            let hw = (l / 2) as i64;
            let digit = (v.round() as i64 + hw).clamp(0, i64::from(l) - 1) as u32;
            code += digit * basis;
            basis *= l;
        }
        code
    }

    /// Normalized code vector of `code`.
    fn code_vector(&self, mut code: u32) -> Vec<f32> {
        self.levels
            .iter()
            .map(|&l| {
                let digit = code % l;
                code /= l;
                let hw = (l / 2) as f32;
                (digit as f32 - hw) / hw
            })
            .collect()
    }

    /// The implicit codebook `[K, dim]`.
    fn codebook(&self, device: &Device) -> Tensor<2> {
        let k = self.size();
        let values: Vec<f32> = (0..k as u32).flat_map(|c| self.code_vector(c)).collect();
        Tensor::from_data(TensorData::new(values, [k, self.dim()]), device)
    }
}

/// Finite scalar quantization, one block of dimensions per component.
#[derive(Module, Debug)]
pub struct Fsq {
    #[module(skip)]
    levels: Vec<Vec<u32>>,
}

impl Fsq {
    /// FSQ with `levels[k]` for component `k`.
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] for unusable levels.
    pub fn new(levels: Vec<Vec<u32>>) -> Result<Self> {
        QuantizerConfig::Fsq {
            levels: levels.clone(),
        }
        .validate()?;
        Ok(Fsq { levels })
    }

    fn blocks(&self) -> Vec<FsqBlock> {
        self.levels
            .iter()
            .map(|l| FsqBlock { levels: l.clone() })
            .collect()
    }
}

impl Quantizer for Fsq {
    fn name(&self) -> &'static str {
        "fsq"
    }

    fn latent_dim(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    fn codebook_sizes(&self) -> Vec<usize> {
        self.levels.iter().map(|l| codebook_size(l)).collect()
    }

    fn quantize(&self, z: Tensor<2>, temperature: f64) -> Result<Quantized> {
        let n = check_latent(&z, self.latent_dim())?;
        let device = z.device();
        let blocks = self.blocks();
        let dim = self.latent_dim();
        // Every block at once (their per-dimension constants side by side): the same
        // element-wise formulas as `FsqBlock::quantize`, a handful of ops and one host read
        // for the whole latent instead of per block.
        let (mut half_l, mut offset, mut shift, mut half_width) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for b in &blocks {
            let (h, o, sh, w) = b.constants();
            half_l.extend(h);
            offset.extend(o);
            shift.extend(sh);
            half_width.extend(w);
        }
        let bounded = (z + row_tensor(shift, &device)).tanh() * row_tensor(half_l, &device)
            - row_tensor(offset, &device);
        let rounded = bounded.clone().round();
        let ste = bounded.clone() + (rounded.clone() - bounded.clone()).detach();
        let hw = row_tensor(half_width, &device);
        let values = host(rounded)?;
        let latent = ste / hw.clone();
        let soft = (temperature > 0.0).then(|| bounded / hw);
        let mut parts = Vec::new();
        let mut logits = Vec::new();
        let mut codes = vec![0u32; n * blocks.len()];
        let mut start = 0;
        for (k, b) in blocks.iter().enumerate() {
            let d = b.dim();
            for i in 0..n {
                let row = &values[i * dim + start..i * dim + start + d];
                codes[i * blocks.len() + k] = b.code(row);
            }
            parts.push(latent.clone().slice([0..n, start..start + d]));
            if let Some(soft) = &soft {
                let sk = soft.clone().slice([0..n, start..start + d]);
                logits.push(-sq_dist(sk, b.codebook(&device)) / temperature);
            }
            start += d;
        }
        Ok(Quantized {
            latent,
            parts,
            codes,
            assignment_logits: logits,
            commitment: None,
        })
    }

    fn decode_parts(&self, codes: &[u32], device: &Device) -> Result<Vec<Tensor<2>>> {
        let blocks = self.blocks();
        let c = blocks.len();
        check_codes(codes, &self.codebook_sizes())?;
        let n = codes.len() / c;
        Ok(blocks
            .iter()
            .enumerate()
            .map(|(k, b)| {
                let values: Vec<f32> = codes
                    .chunks(c)
                    .flat_map(|row| b.code_vector(row[k]))
                    .collect();
                Tensor::from_data(TensorData::new(values, [n, b.dim()]), device)
            })
            .collect())
    }

    fn residual(&self) -> bool {
        false
    }
}

/// Component names for errors.
fn component_name(k: usize) -> &'static str {
    crate::corpus::COMPONENTS.get(k).copied().unwrap_or("extra")
}

/// Checks that `codes` is whole rows of in-range codes.
pub(crate) fn check_codes(codes: &[u32], sizes: &[usize]) -> Result<()> {
    let c = sizes.len();
    if !codes.len().is_multiple_of(c) {
        return Err(SemanticError::IdLength {
            expected: c,
            found: codes.len() % c,
        });
    }
    for row in codes.chunks(c) {
        for (k, (&v, &size)) in row.iter().zip(sizes).enumerate() {
            if v as usize >= size {
                return Err(SemanticError::IdOutOfRange {
                    component: k,
                    name: component_name(k),
                    value: i64::from(v),
                    size,
                });
            }
        }
    }
    Ok(())
}

/// Residual FSQ: the latent is bounded once (`tanh`, into `(-1, 1)` per dimension), then
/// quantized in `stages` nested uniform stages. Stage `s` covers `[-R_s, R_s]` with `R_s =
/// (L − 1)^-s` per dimension of `L` levels and rounds to `L` evenly spaced values there; what
/// it leaves lies within half a step, which is exactly the next stage's range. So every stage
/// multiplies the resolution by `L`, and a stage's code is the mixed-radix index of its
/// per-dimension digits.
#[derive(Module, Debug)]
pub struct ResidualFsq {
    #[module(skip)]
    levels: Vec<u32>,
    #[module(skip)]
    stages: usize,
}

impl ResidualFsq {
    /// Residual FSQ with `levels` per stage and `stages` stages.
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] for unusable values.
    pub fn new(levels: Vec<u32>, stages: usize) -> Result<Self> {
        QuantizerConfig::ResidualFsq {
            levels: levels.clone(),
            stages,
        }
        .validate()?;
        Ok(ResidualFsq { levels, stages })
    }

    /// Half-range `R_s` of stage `s` per dimension.
    fn ranges(&self, s: usize) -> Vec<f32> {
        self.levels
            .iter()
            .map(|&l| (f64::from(l) - 1.0).powi(-(s as i32)) as f32)
            .collect()
    }

    /// Normalized grid value of `digit` of `levels` levels, in `[-1, 1]`.
    fn grid(digit: u32, levels: u32) -> f32 {
        -1.0 + 2.0 * digit as f32 / (levels - 1) as f32
    }

    /// The normalized implicit codebook `[K, dim]` of one stage.
    fn codebook(&self, device: &Device) -> Tensor<2> {
        let k = codebook_size(&self.levels);
        let mut values = Vec::with_capacity(k * self.levels.len());
        for code in 0..k as u32 {
            let mut c = code;
            for &l in &self.levels {
                values.push(Self::grid(c % l, l));
                c /= l;
            }
        }
        Tensor::from_data(TensorData::new(values, [k, self.levels.len()]), device)
    }
}

impl Quantizer for ResidualFsq {
    fn name(&self) -> &'static str {
        "residual_fsq"
    }

    fn latent_dim(&self) -> usize {
        self.levels.len()
    }

    fn codebook_sizes(&self) -> Vec<usize> {
        vec![codebook_size(&self.levels); self.stages]
    }

    fn quantize(&self, z: Tensor<2>, temperature: f64) -> Result<Quantized> {
        let n = check_latent(&z, self.latent_dim())?;
        let device = z.device();
        let d = self.latent_dim();
        let codebook = self.codebook(&device);
        let half_steps: Vec<f32> = self.levels.iter().map(|&l| (l - 1) as f32 / 2.0).collect();
        let half_steps_t = row_tensor(half_steps.clone(), &device);
        let mut residual = z.tanh();
        let mut parts = Vec::new();
        let mut logits = Vec::new();
        let mut codes = vec![0u32; n * self.stages];
        for s in 0..self.stages {
            let range = row_tensor(self.ranges(s), &device);
            // Normalized to [-1, 1], then to grid units [0, L - 1].
            let t = (residual.clone() / range.clone()).clamp(-1.0, 1.0);
            let g = (t.clone() + 1.0) * half_steps_t.clone();
            let rounded = g.clone().round();
            let digits = host(rounded.clone())?;
            let t_q = rounded / half_steps_t.clone() - 1.0;
            let ste = t.clone() + (t_q - t.clone()).detach();
            for i in 0..n {
                let mut code = 0u32;
                let mut basis = 1u32;
                for (j, &l) in self.levels.iter().enumerate() {
                    let digit = (digits[i * d + j].round() as i64).clamp(0, i64::from(l) - 1);
                    code += digit as u32 * basis;
                    basis *= l;
                }
                codes[i * self.stages + s] = code;
            }
            if temperature > 0.0 {
                logits.push(-sq_dist(t, codebook.clone()) / temperature);
            }
            let q = ste * range;
            residual = residual - q.clone().detach();
            parts.push(q);
        }
        let mut latent = parts[0].clone();
        for p in &parts[1..] {
            latent = latent + p.clone();
        }
        Ok(Quantized {
            latent,
            parts,
            codes,
            assignment_logits: logits,
            commitment: None,
        })
    }

    fn decode_parts(&self, codes: &[u32], device: &Device) -> Result<Vec<Tensor<2>>> {
        check_codes(codes, &self.codebook_sizes())?;
        let d = self.latent_dim();
        let n = codes.len() / self.stages;
        Ok((0..self.stages)
            .map(|s| {
                let range = self.ranges(s);
                let mut values = Vec::with_capacity(n * d);
                for row in codes.chunks(self.stages) {
                    let mut c = row[s];
                    for (&l, &r) in self.levels.iter().zip(&range) {
                        values.push(Self::grid(c % l, l) * r);
                        c /= l;
                    }
                }
                Tensor::from_data(TensorData::new(values, [n, d]), device)
            })
            .collect())
    }

    fn residual(&self) -> bool {
        true
    }
}

/// Residual vector quantization with EMA-updated codebooks.
///
/// The codebooks and their EMA statistics are parameters without gradients (so checkpoints
/// carry them); [`ResidualVq::ema_update`] changes them after each optimizer step.
#[derive(Module, Debug)]
pub struct ResidualVq {
    /// `[stages, K, dim]`.
    pub codebooks: Param<Tensor<3>>,
    /// EMA cluster sizes `[stages, K]`.
    pub cluster_size: Param<Tensor<2>>,
    /// EMA sums of assigned vectors `[stages, K, dim]`.
    pub embed_sum: Param<Tensor<3>>,
    #[module(skip)]
    stages: usize,
    #[module(skip)]
    size: usize,
    #[module(skip)]
    dim: usize,
    #[module(skip)]
    decay: f64,
    #[module(skip)]
    dead_threshold: f64,
}

/// What one EMA update did, per stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmaReport {
    /// Dead codes found (and replaced) per stage.
    pub replaced: Vec<usize>,
}

fn frozen<const D: usize>(t: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(t.detach()).set_require_grad(false)
}

impl ResidualVq {
    /// Codebooks initialized from a normal distribution (scale 1/√dim); see
    /// [`ResidualVq::init_kmeans`] for data-driven initialization.
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] for unusable values or another config type.
    pub fn new(config: &QuantizerConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let QuantizerConfig::ResidualVq {
            codebook_size,
            stages,
            dim,
            decay,
            dead_threshold,
            ..
        } = *config
        else {
            return Err(SemanticError::param(
                "quantizer",
                "not a residual-VQ config",
            ));
        };
        let std = 1.0 / (dim as f64).sqrt();
        let books = Tensor::<3>::random(
            [stages, codebook_size, dim],
            burn::tensor::Distribution::Normal(0.0, std),
            device,
        );
        Ok(ResidualVq {
            codebooks: frozen(books.clone()),
            cluster_size: frozen(Tensor::ones([stages, codebook_size], device)),
            embed_sum: frozen(books),
            stages,
            size: codebook_size,
            dim,
            decay,
            dead_threshold,
        })
    }

    /// The codebooks on the host, `[stages, K, dim]` row-major.
    ///
    /// # Errors
    /// When the values cannot be read back.
    pub fn codebooks_host(&self) -> Result<Vec<f32>> {
        host(
            self.codebooks
                .val()
                .reshape([self.stages * self.size, self.dim]),
        )
    }

    /// Codebook of stage `s`, `[K, dim]`.
    fn stage(&self, s: usize) -> Tensor<2> {
        self.codebooks
            .val()
            .slice([s..s + 1, 0..self.size, 0..self.dim])
            .reshape([self.size, self.dim])
    }

    fn set_state(self, books: Vec<f32>, sizes: Vec<f32>, sums: Vec<f32>) -> Self {
        let device = self.codebooks.val().device();
        let (s, k, d) = (self.stages, self.size, self.dim);
        let t3 = |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [s, k, d]), &device);
        ResidualVq {
            codebooks: Param::initialized(self.codebooks.id, t3(books)).set_require_grad(false),
            cluster_size: Param::initialized(
                self.cluster_size.id,
                Tensor::from_data(TensorData::new(sizes, [s, k]), &device),
            )
            .set_require_grad(false),
            embed_sum: Param::initialized(self.embed_sum.id, t3(sums)).set_require_grad(false),
            ..self
        }
    }

    /// Residual k-means over `latents` (host `[n, dim]`): stage `s`'s codebook is the k-means
    /// of what earlier stages left. With fewer rows than codes, the remaining codes are rows
    /// plus small seeded noise.
    ///
    /// # Errors
    /// [`SemanticError::InvalidInput`] for no rows or a wrong width.
    pub fn init_kmeans(self, latents: &[f32], seed: Seed) -> Result<Self> {
        let d = self.dim;
        if latents.is_empty() || !latents.len().is_multiple_of(d) {
            return Err(SemanticError::input(format!(
                "k-means needs whole rows of width {d}, got {} values",
                latents.len()
            )));
        }
        let n = latents.len() / d;
        let mut residual = latents.to_vec();
        let mut books = Vec::with_capacity(self.stages * self.size * d);
        let mut sizes = Vec::with_capacity(self.stages * self.size);
        let mut sums = Vec::with_capacity(self.stages * self.size * d);
        for s in 0..self.stages {
            let config = lexforge_data::TopicConfig {
                k: self.size,
                max_iterations: 30,
            };
            let clusters = lexforge_data::kmeans(
                lexforge_data::Vectors {
                    data: &residual,
                    dim: d,
                },
                &config,
                seed.derive(&format!("rvq-kmeans/{s}")),
            )?;
            let mut book = clusters.centroids.clone();
            let mut rng = seed.derive(&format!("rvq-fill/{s}")).rng("fill");
            while book.len() < self.size * d {
                let r = rng.random_range(0..n);
                let scale = 1e-2f32;
                book.extend(
                    residual[r * d..(r + 1) * d]
                        .iter()
                        .map(|v| v + scale * (rng.random::<f32>() - 0.5)),
                );
            }
            let mut counts = vec![0f32; self.size];
            for i in 0..n {
                let row = &residual[i * d..(i + 1) * d];
                let (c, _) = nearest(row, &book, d);
                counts[c] += 1.0;
                for (r, b) in residual[i * d..(i + 1) * d]
                    .iter_mut()
                    .zip(&book[c * d..(c + 1) * d])
                {
                    *r -= b;
                }
            }
            for (c, &count) in counts.iter().enumerate() {
                let w = count.max(1.0);
                sizes.push(w);
                sums.extend(book[c * d..(c + 1) * d].iter().map(|v| v * w));
            }
            books.extend(book);
        }
        Ok(self.set_state(books, sizes, sums))
    }

    /// One EMA step from the batch latents `latents` (host `[n, dim]`, computed with the
    /// current encoder): per stage, assign residuals to their nearest code, decay the cluster
    /// sizes and sums toward the batch's, set each code to its (Laplace-smoothed) mean, then
    /// replace codes whose cluster size fell below the dead threshold by random batch
    /// residuals (seeded by `seed`).
    ///
    /// # Errors
    /// [`SemanticError::InvalidInput`] for a wrong width; read-back failures.
    pub fn ema_update(self, latents: &[f32], seed: Seed) -> Result<(Self, EmaReport)> {
        let (st, k, d) = (self.stages, self.size, self.dim);
        if latents.is_empty() || !latents.len().is_multiple_of(d) {
            return Err(SemanticError::input(format!(
                "EMA update needs whole rows of width {d}, got {} values",
                latents.len()
            )));
        }
        let n = latents.len() / d;
        let mut books = self.codebooks_host()?;
        let mut sizes = host(self.cluster_size.val())?;
        let mut sums = host(self.embed_sum.val().reshape([st * k, d]))?;
        let decay = self.decay as f32;
        let mut residual = latents.to_vec();
        let mut replaced = Vec::with_capacity(st);
        let eps = 1e-5f32;
        for s in 0..st {
            let book = &mut books[s * k * d..(s + 1) * k * d];
            let mut counts = vec![0f32; k];
            let mut batch_sums = vec![0f32; k * d];
            let inputs = residual.clone();
            for i in 0..n {
                let row = &inputs[i * d..(i + 1) * d];
                let (c, _) = nearest(row, book, d);
                counts[c] += 1.0;
                for (j, &v) in row.iter().enumerate() {
                    batch_sums[c * d + j] += v;
                    residual[i * d + j] -= book[c * d + j];
                }
            }
            let size = &mut sizes[s * k..(s + 1) * k];
            let sum = &mut sums[s * k * d..(s + 1) * k * d];
            for c in 0..k {
                size[c] = decay * size[c] + (1.0 - decay) * counts[c];
                for j in 0..d {
                    sum[c * d + j] = decay * sum[c * d + j] + (1.0 - decay) * batch_sums[c * d + j];
                }
            }
            let total: f32 = size.iter().sum();
            for c in 0..k {
                let smoothed = (size[c] + eps) / (total + k as f32 * eps) * total;
                for j in 0..d {
                    book[c * d + j] = sum[c * d + j] / smoothed.max(eps);
                }
            }
            let mut dead = 0;
            if self.dead_threshold > 0.0 {
                let mut rng = seed.derive(&format!("rvq-dead/{s}")).rng("replace");
                let threshold = self.dead_threshold as f32;
                for c in 0..k {
                    if size[c] < threshold {
                        dead += 1;
                        let r = rng.random_range(0..n);
                        let row = &inputs[r * d..(r + 1) * d];
                        book[c * d..(c + 1) * d].copy_from_slice(row);
                        size[c] = threshold;
                        for j in 0..d {
                            sum[c * d + j] = row[j] * threshold;
                        }
                    }
                }
            }
            replaced.push(dead);
        }
        Ok((self.set_state(books, sizes, sums), EmaReport { replaced }))
    }
}

fn nearest(row: &[f32], book: &[f32], d: usize) -> (usize, f32) {
    let mut best = (0, f32::INFINITY);
    for (c, code) in book.chunks(d).enumerate() {
        let dist: f32 = row.iter().zip(code).map(|(a, b)| (a - b) * (a - b)).sum();
        if dist < best.1 {
            best = (c, dist);
        }
    }
    best
}

impl Quantizer for ResidualVq {
    fn name(&self) -> &'static str {
        "residual_vq"
    }

    fn latent_dim(&self) -> usize {
        self.dim
    }

    fn codebook_sizes(&self) -> Vec<usize> {
        vec![self.size; self.stages]
    }

    fn quantize(&self, z: Tensor<2>, temperature: f64) -> Result<Quantized> {
        let n = check_latent(&z, self.dim)?;
        let mut residual = z.clone();
        let mut parts = Vec::new();
        let mut logits = Vec::new();
        let mut codes = vec![0u32; n * self.stages];
        let mut commitment: Option<Tensor<1>> = None;
        let mut total: Option<Tensor<2>> = None;
        for s in 0..self.stages {
            let book = self.stage(s);
            let dist = sq_dist(residual.clone(), book.clone());
            let host_dist = host(dist.clone().detach())?;
            if host_dist.iter().any(|v| !v.is_finite()) {
                return Err(SemanticError::input("latents are not finite"));
            }
            let mut idx = Vec::with_capacity(n);
            for i in 0..n {
                let row = &host_dist[i * self.size..(i + 1) * self.size];
                let (mut best, mut best_v) = (0usize, f32::INFINITY);
                for (c, &v) in row.iter().enumerate() {
                    if v < best_v {
                        best = c;
                        best_v = v;
                    }
                }
                codes[i * self.stages + s] = best as u32;
                idx.push(best as i64);
            }
            let idx = Tensor::<1, burn::tensor::Int>::from_data(
                TensorData::new(idx, [n]),
                &residual.device(),
            );
            let q = book.select(0, idx).detach();
            let commit = (residual.clone() - q.clone()).square().mean();
            commitment = Some(match commitment {
                Some(c) => c + commit,
                None => commit,
            });
            parts.push(residual.clone() + (q.clone() - residual.clone()).detach());
            if temperature > 0.0 {
                logits.push(-dist / temperature);
            }
            total = Some(match total {
                Some(t) => t + q.clone(),
                None => q.clone(),
            });
            residual = residual - q;
        }
        let total = total.ok_or_else(|| SemanticError::param("stages", "must be at least 1"))?;
        Ok(Quantized {
            latent: z.clone() + (total - z).detach(),
            parts,
            codes,
            assignment_logits: logits,
            commitment: commitment.map(|c| c / self.stages as f64),
        })
    }

    fn decode_parts(&self, codes: &[u32], device: &Device) -> Result<Vec<Tensor<2>>> {
        check_codes(codes, &self.codebook_sizes())?;
        let books = self.codebooks_host()?;
        let (k, d) = (self.size, self.dim);
        let n = codes.len() / self.stages;
        Ok((0..self.stages)
            .map(|s| {
                let values: Vec<f32> = codes
                    .chunks(self.stages)
                    .flat_map(|row| {
                        let off = (s * k + row[s] as usize) * d;
                        books[off..off + d].to_vec()
                    })
                    .collect();
                Tensor::from_data(TensorData::new(values, [n, d]), device)
            })
            .collect())
    }

    fn residual(&self) -> bool {
        true
    }
}

/// One of the quantizers, as a module field.
#[derive(Module, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per model, never in a collection"
)]
pub enum AnyQuantizer {
    /// [`Fsq`].
    Fsq(Fsq),
    /// [`ResidualFsq`].
    ResidualFsq(ResidualFsq),
    /// [`ResidualVq`].
    ResidualVq(ResidualVq),
}

impl AnyQuantizer {
    /// The quantizer of `config` on `device` (residual-VQ codebooks random until
    /// [`ResidualVq::init_kmeans`]).
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] for unusable values.
    pub fn new(config: &QuantizerConfig, device: &Device) -> Result<Self> {
        Ok(match config {
            QuantizerConfig::Fsq { levels } => AnyQuantizer::Fsq(Fsq::new(levels.clone())?),
            QuantizerConfig::ResidualFsq { levels, stages } => {
                AnyQuantizer::ResidualFsq(ResidualFsq::new(levels.clone(), *stages)?)
            }
            QuantizerConfig::ResidualVq { .. } => {
                AnyQuantizer::ResidualVq(ResidualVq::new(config, device)?)
            }
        })
    }

    fn inner(&self) -> &dyn Quantizer {
        match self {
            AnyQuantizer::Fsq(q) => q,
            AnyQuantizer::ResidualFsq(q) => q,
            AnyQuantizer::ResidualVq(q) => q,
        }
    }
}

impl Quantizer for AnyQuantizer {
    fn name(&self) -> &'static str {
        self.inner().name()
    }

    fn latent_dim(&self) -> usize {
        self.inner().latent_dim()
    }

    fn codebook_sizes(&self) -> Vec<usize> {
        self.inner().codebook_sizes()
    }

    fn quantize(&self, z: Tensor<2>, temperature: f64) -> Result<Quantized> {
        self.inner().quantize(z, temperature)
    }

    fn decode_parts(&self, codes: &[u32], device: &Device) -> Result<Vec<Tensor<2>>> {
        self.inner().decode_parts(codes, device)
    }

    fn residual(&self) -> bool {
        self.inner().residual()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    fn t2(values: Vec<f32>, rows: usize, cols: usize) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values, [rows, cols]), &device())
    }

    #[test]
    fn fsq_codes_round_trip_through_decode() {
        let q = Fsq::new(vec![vec![8, 4], vec![5]]).unwrap();
        assert_eq!(q.codebook_sizes(), vec![32, 5]);
        let z = t2(vec![0.3, -2.0, 0.0, 5.0, 5.0, -5.0, -0.1, 0.2, 0.7], 3, 3);
        let out = q.quantize(z, 0.1).unwrap();
        let decoded = host(q.decode(&out.codes, &device()).unwrap()).unwrap();
        let latent = host(out.latent).unwrap();
        for (a, b) in decoded.iter().zip(&latent) {
            assert!((a - b).abs() < 1e-6, "{decoded:?} vs {latent:?}");
        }
        // Extremes reach the corner codes: levels [8, 4] → code 7 + 3·8 = 31; 5 levels → 0.
        assert_eq!(out.codes[2], 31);
        assert_eq!(out.codes[3], 0);
        // Every code of a block decodes to a distinct vector.
        let b = FsqBlock { levels: vec![8, 4] };
        let mut all: Vec<Vec<i32>> = (0..32)
            .map(|c| {
                b.code_vector(c)
                    .iter()
                    .map(|v| (v * 100.0) as i32)
                    .collect()
            })
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 32);
    }

    #[test]
    fn out_of_range_codes_are_typed_errors() {
        let q = Fsq::new(vec![vec![8, 4]; 4]).unwrap();
        let err = q.decode(&[0, 1, 32, 0], &device()).unwrap_err();
        assert!(matches!(
            err,
            SemanticError::IdOutOfRange {
                component: 2,
                value: 32,
                size: 32,
                ..
            }
        ));
        assert!(matches!(
            q.decode(&[0, 1, 2], &device()).unwrap_err(),
            SemanticError::IdLength { .. }
        ));
    }

    #[test]
    fn residual_fsq_refines_stage_by_stage() {
        let q = ResidualFsq::new(vec![8, 4], 4).unwrap();
        let z = t2(vec![0.123, -0.456, 0.9, 0.01], 2, 2);
        let out = q.quantize(z, 0.1).unwrap();
        let decoded = host(q.decode(&out.codes, &device()).unwrap()).unwrap();
        let latent = host(out.latent).unwrap();
        for (a, b) in decoded.iter().zip(&latent) {
            assert!((a - b).abs() < 1e-5);
        }
        // Latents one stage cannot tell apart get different codes in later stages.
        let close = t2(vec![0.10, 0.20, 0.13, 0.21], 2, 2);
        let codes = q.quantize(close.clone(), 0.1).unwrap().codes;
        assert_eq!(codes[0], codes[4], "{codes:?}");
        assert_ne!(codes[..4], codes[4..], "{codes:?}");
        let one = ResidualFsq::new(vec![8, 4], 1).unwrap();
        let codes1 = one.quantize(close, 0.1).unwrap().codes;
        assert_eq!(codes1[0], codes1[1], "{codes1:?}");
    }

    #[test]
    fn rvq_kmeans_ema_and_dead_code_replacement() {
        let config = QuantizerConfig::ResidualVq {
            codebook_size: 8,
            stages: 2,
            dim: 4,
            decay: 0.5,
            dead_threshold: 1.0,
            kmeans_init: true,
        };
        let d = device();
        let q = ResidualVq::new(&config, &d).unwrap();
        // Collapse: every vector near one point; codebook initialized far away.
        let mut rng = Seed(1).rng("data");
        let data: Vec<f32> = (0..64 * 4)
            .map(|_| 5.0 + 0.01 * (rng.random::<f32>() - 0.5))
            .collect();
        let mut q = q;
        let mut used_before = 0;
        for step in 0..6 {
            let out = q.quantize(t2(data.clone(), 64, 4), 1.0).unwrap();
            let mut stage0: Vec<u32> = out.codes.iter().step_by(2).copied().collect();
            stage0.sort();
            stage0.dedup();
            if step == 0 {
                used_before = stage0.len();
            }
            let (next, report) = q.ema_update(&data, Seed(step)).unwrap();
            if step == 0 {
                assert!(report.replaced[0] > 0, "{report:?}");
            }
            q = next;
        }
        let out = q.quantize(t2(data.clone(), 64, 4), 1.0).unwrap();
        let mut stage0: Vec<u32> = out.codes.iter().step_by(2).copied().collect();
        stage0.sort();
        stage0.dedup();
        assert_eq!(used_before, 1);
        assert!(stage0.len() > 1, "usage after replacement {}", stage0.len());
        // Decoding gives the sum of the stage codes, close to the data after k-means.
        let q2 = ResidualVq::new(&config, &d)
            .unwrap()
            .init_kmeans(&data, Seed(3))
            .unwrap();
        let out = q2.quantize(t2(data.clone(), 64, 4), 1.0).unwrap();
        let dec = host(q2.decode(&out.codes, &d).unwrap()).unwrap();
        let err: f32 = dec
            .iter()
            .zip(&data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 0.02, "{err}");
        assert!(out.commitment.is_some());
    }
}
