//! A linear probe: how much of a label (the topic) is still linearly predictable from
//! embeddings. Used to measure what the topic adversary removed (lower accuracy is better).

use serde::{Deserialize, Serialize};

use crate::error::{MatcherError, Result};

/// What [`linear_probe`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Accuracy of the probe on the held-out rows.
    pub accuracy: f64,
    /// Accuracy of always answering the most frequent training label (the floor).
    pub majority: f64,
    /// Rows the probe was fitted on.
    pub train_rows: usize,
    /// Rows it was scored on.
    pub test_rows: usize,
}

/// Fits a multinomial logistic regression (full-batch gradient descent with L2 weight decay
/// 1e-3, 300 steps, deterministic) on the raw `train` rows and scores it on `test` rows.
///
/// # Shapes
/// `train`: `train_labels.len() × dim` row-major; `test`: `test_labels.len() × dim`.
///
/// # Errors
/// [`MatcherError::InvalidInput`] for empty sets, sizes that do not match `dim`, or
/// non-finite values.
pub fn linear_probe(
    train: &[f32],
    train_labels: &[u32],
    test: &[f32],
    test_labels: &[u32],
    dim: usize,
) -> Result<ProbeReport> {
    let invalid = |reason: String| MatcherError::InvalidInput { reason };
    if dim == 0 || train_labels.is_empty() || test_labels.is_empty() {
        return Err(invalid("a probe needs training and test rows".into()));
    }
    if train.len() != train_labels.len() * dim || test.len() != test_labels.len() * dim {
        return Err(invalid(format!(
            "{} / {} values for {} / {} rows of {dim}",
            train.len(),
            test.len(),
            train_labels.len(),
            test_labels.len()
        )));
    }
    if train.iter().chain(test).any(|v| !v.is_finite()) {
        return Err(invalid("embeddings contain NaN or infinite values".into()));
    }
    let k = train_labels
        .iter()
        .chain(test_labels)
        .map(|&l| l as usize + 1)
        .max()
        .unwrap_or(1);
    let n = train_labels.len();
    let fit = fit_logistic(train, train_labels, dim, k, 300, 1e-3);
    let mut probs = vec![0.0f64; k];
    let z = |row: &[f32]| -> Vec<f64> { row.iter().map(|&x| f64::from(x)).collect() };
    let (w, b) = (&fit.weight, &fit.bias);
    let mut correct = 0usize;
    for (row, &y) in test.chunks_exact(dim).zip(test_labels) {
        softmax_row(w, b, &z(row), &mut probs);
        let best = (0..k)
            .max_by(|&i, &j| probs[i].total_cmp(&probs[j]).then(j.cmp(&i)))
            .unwrap_or(0);
        correct += usize::from(best == y as usize);
    }
    let mut counts = vec![0usize; k];
    for &y in train_labels {
        counts[y as usize] += 1;
    }
    let majority_label = (0..k)
        .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
        .unwrap_or(0);
    let majority = test_labels
        .iter()
        .filter(|&&y| y as usize == majority_label)
        .count();
    Ok(ProbeReport {
        accuracy: correct as f64 / test_labels.len() as f64,
        majority: majority as f64 / test_labels.len() as f64,
        train_rows: n,
        test_rows: test_labels.len(),
    })
}

/// A linear classifier `logits = W x + b`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LinearFit {
    /// `k × dim`, row-major (one row per class).
    pub weight: Vec<f64>,
    /// `k`.
    pub bias: Vec<f64>,
}

/// Multinomial logistic regression on the raw rows `x` (`labels.len() × dim`), fitted by
/// `steps` full-batch gradient-descent steps (learning rate 0.5) with L2 weight decay `decay`,
/// from zero: deterministic. Raw features, not standardized: a direction of negligible
/// magnitude should not count as "predictable", and the decay bounds how far the fit can
/// amplify one. Labels must be below `k`.
pub(crate) fn fit_logistic(
    x: &[f32],
    labels: &[u32],
    dim: usize,
    k: usize,
    steps: usize,
    decay: f64,
) -> LinearFit {
    let n = labels.len().max(1);
    let xs: Vec<Vec<f64>> = x
        .chunks_exact(dim)
        .map(|row| row.iter().map(|&v| f64::from(v)).collect())
        .collect();
    let mut w = vec![0.0f64; k * dim];
    let mut b = vec![0.0f64; k];
    let lr = 0.5;
    let mut probs = vec![0.0f64; k];
    for _ in 0..steps {
        let mut gw = vec![0.0f64; k * dim];
        let mut gb = vec![0.0f64; k];
        for (x, &y) in xs.iter().zip(labels) {
            softmax_row(&w, &b, x, &mut probs);
            for c in 0..k {
                let g = probs[c] - f64::from(u8::from(c == y as usize));
                gb[c] += g / n as f64;
                for (gwi, xi) in gw[c * dim..(c + 1) * dim].iter_mut().zip(x) {
                    *gwi += g * xi / n as f64;
                }
            }
        }
        for (wi, gi) in w.iter_mut().zip(&gw) {
            *wi -= lr * (gi + decay * *wi);
        }
        for (bi, gi) in b.iter_mut().zip(&gb) {
            *bi -= lr * gi;
        }
    }
    LinearFit { weight: w, bias: b }
}

fn softmax_row(w: &[f64], b: &[f64], x: &[f64], out: &mut [f64]) {
    let dim = x.len();
    for (c, o) in out.iter_mut().enumerate() {
        *o = b[c]
            + w[c * dim..(c + 1) * dim]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum::<f64>();
    }
    let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for o in out.iter_mut() {
        *o = (*o - max).exp();
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separable_labels_are_found_and_noise_is_not() {
        // Label = sign of the first coordinate; the second is noise.
        let mut state = 12345u64;
        let mut rand = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        let mut noise_labels = Vec::new();
        for i in 0..400 {
            let a = rand();
            rows.extend([a, rand()]);
            labels.push(u32::from(a > 0.0));
            noise_labels.push((i % 2) as u32);
        }
        let (tr, te) = rows.split_at(600);
        let r = linear_probe(tr, &labels[..300], te, &labels[300..], 2).unwrap();
        assert!(r.accuracy > 0.95, "{r:?}");
        let r = linear_probe(tr, &noise_labels[..300], te, &noise_labels[300..], 2).unwrap();
        assert!(r.accuracy < 0.65, "{r:?}");
        assert!(linear_probe(&[], &[], te, &labels[300..], 2).is_err());
        assert!(linear_probe(&[f32::NAN, 0.0], &[0], &[0.0, 0.0], &[0], 2).is_err());
    }
}
