//! Residual vector quantization ([`ResidualVq`]): learned codebooks, one per stage, with
//! k-means initialization, exponential-moving-average updates, dead-code replacement and a
//! commitment loss.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use lexforge_core::Seed;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Quantized, Quantizer, QuantizerConfig, check_codes, check_latent, host, sq_dist};
use crate::error::{Result, SemanticError};

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
                ..lexforge_data::TopicConfig::default()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize::test_util::{device, t2};

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
