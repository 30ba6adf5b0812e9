//! Finite scalar quantization: [`Fsq`] (one block of bounded, rounded dimensions per
//! component, implicit codebooks) and [`ResidualFsq`] (one FSQ applied to the residual in
//! nested stages).

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

use super::{
    Quantized, Quantizer, QuantizerConfig, check_codes, check_latent, codebook_size, host,
    row_tensor, sq_dist,
};
use crate::error::Result;

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
    /// [`SemanticError::InvalidParameter`](crate::SemanticError::InvalidParameter) for
    /// unusable levels.
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
    /// [`SemanticError::InvalidParameter`](crate::SemanticError::InvalidParameter) for
    /// unusable values.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize::test_util::{device, t2};

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
}
