//! Losses of the bi-encoder and its adversary, as burn tensor functions (differentiable on an
//! autodiff device, plain on any other).
//!
//! - [`supcon_loss`]: supervised contrastive loss (Khosla et al. 2020), labels = book.
//! - [`info_nce_loss`]: InfoNCE with in-batch negatives (multiple-negatives ranking).
//! - [`pairwise_loss`]: logistic loss on labelled pairs from a scaled, shifted cosine.
//! - [`soft_pairwise_loss`]: the same against soft targets (distillation from a teacher's
//!   probabilities; the binary KL up to a constant).
//! - [`margin_mse_loss`]: margin-MSE distillation on (anchor, positive, negative) triples.
//! - [`grad_reverse`]: identity forward, gradient × −λ backward (the topic adversary).

use burn::tensor::activation::relu;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::{MatcherError, Result};

fn invalid(reason: impl Into<String>) -> MatcherError {
    MatcherError::InvalidInput {
        reason: reason.into(),
    }
}

fn host_matrix(values: Vec<f32>, rows: usize, cols: usize, like: &Tensor<2>) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(values, [rows, cols]), &like.device())
}

/// Supervised contrastive loss of L2-normalized `embeddings` with class `labels`: for each
/// anchor with at least one other member of its class, minus the mean log-probability of its
/// positives under a softmax over all other rows at `temperature`; averaged over those
/// anchors.
///
/// # Shapes
/// `embeddings`: `[n, d]`, `labels`: `n` → `[1]`.
///
/// # Errors
/// [`MatcherError::InvalidInput`] when `labels` does not have `n` entries, the temperature is
/// not positive, or no anchor has a positive.
pub fn supcon_loss(embeddings: Tensor<2>, labels: &[u32], temperature: f64) -> Result<Tensor<1>> {
    let [n, _] = embeddings.dims();
    if labels.len() != n {
        return Err(invalid(format!(
            "{} labels for {n} embeddings",
            labels.len()
        )));
    }
    if temperature.is_nan() || temperature <= 0.0 {
        return Err(invalid(format!(
            "temperature {temperature} must be positive"
        )));
    }
    let mut self_mask = vec![0.0f32; n * n];
    let mut positives = vec![0.0f32; n * n];
    let mut weights = vec![0.0f32; n];
    for i in 0..n {
        self_mask[i * n + i] = -1e9;
        let mut count = 0usize;
        for j in 0..n {
            if i != j && labels[i] == labels[j] {
                positives[i * n + j] = 1.0;
                count += 1;
            }
        }
        if count > 0 {
            weights[i] = 1.0 / count as f32;
        }
    }
    let anchors = weights.iter().filter(|&&w| w > 0.0).count();
    if anchors == 0 {
        return Err(invalid(
            "no anchor has a positive: a SupCon batch needs at least two rows of one class",
        ));
    }
    for w in &mut weights {
        *w /= anchors as f32;
    }
    let logits = embeddings.clone().matmul(embeddings.clone().transpose()) / temperature
        + host_matrix(self_mask, n, n, &embeddings);
    let max = logits.clone().detach().max_dim(1);
    let shifted = logits - max;
    let log_denominator = shifted.clone().exp().sum_dim(1).log();
    let log_prob = shifted - log_denominator;
    let pos = host_matrix(positives, n, n, &embeddings);
    let w = host_matrix(weights, n, 1, &embeddings);
    Ok(((log_prob * pos).sum_dim(1) * w).sum().neg())
}

/// InfoNCE with in-batch negatives: row `i` of `anchors` should match row `i` of `candidates`
/// among all rows of `candidates` (cross-entropy over `anchors @ candidates^T / temperature`);
/// `symmetric` averages with the same loss in the other direction. `groups` (one id per row),
/// when given, removes in-batch "negatives" of the same group as the anchor (another passage
/// of the same book is not a negative).
///
/// # Shapes
/// `anchors`, `candidates`: `[n, d]`, `groups`: `n` → `[1]`.
///
/// # Errors
/// [`MatcherError::InvalidInput`] for different shapes, fewer than 2 rows, or a non-positive
/// temperature.
pub fn info_nce_loss(
    anchors: Tensor<2>,
    candidates: Tensor<2>,
    temperature: f64,
    symmetric: bool,
    groups: Option<&[u32]>,
) -> Result<Tensor<1>> {
    let [n, d] = anchors.dims();
    if groups.is_some_and(|g| g.len() != n) {
        return Err(invalid(format!(
            "{} group ids for {n} rows",
            groups.map_or(0, <[u32]>::len)
        )));
    }
    if candidates.dims() != [n, d] {
        return Err(invalid(format!(
            "anchors {:?} and candidates {:?} differ",
            [n, d],
            candidates.dims()
        )));
    }
    if n < 2 {
        return Err(invalid(
            "InfoNCE needs at least 2 rows (in-batch negatives)",
        ));
    }
    if temperature.is_nan() || temperature <= 0.0 {
        return Err(invalid(format!(
            "temperature {temperature} must be positive"
        )));
    }
    let targets = Tensor::<2, Int>::from_data(
        TensorData::new((0..n as i64).collect::<Vec<_>>(), [n, 1]),
        &anchors.device(),
    );
    // −1e9 on off-diagonal pairs of the same group (symmetric, so one mask serves both ways).
    let mask = groups.map(|g| {
        let mut m = vec![0.0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                if i != j && g[i] == g[j] {
                    m[i * n + j] = -1e9;
                }
            }
        }
        host_matrix(m, n, n, &anchors)
    });
    let masked = |x: Tensor<2>| match &mask {
        Some(m) => x + m.clone(),
        None => x,
    };
    let forward = masked(anchors.clone().matmul(candidates.clone().transpose()) / temperature);
    let loss = lexforge_nn::fused::cross_entropy(forward, targets.clone())?;
    if !symmetric {
        return Ok(loss);
    }
    let backward = masked(candidates.matmul(anchors.transpose()) / temperature);
    let other = lexforge_nn::fused::cross_entropy(backward, targets)?;
    Ok((loss + other) / 2.0)
}

/// Mean binary cross-entropy of `logits` against `targets` in [0, 1], computed stably as
/// `max(x, 0) − x·t + log(1 + e^(−|x|))`.
///
/// # Shapes
/// `logits`, `targets`: `[n, 1]` → `[1]`.
pub fn bce_with_logits(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let softplus = relu(logits.clone()) + logits.clone().abs().neg().exp().log1p();
    (softplus - logits * targets).mean()
}

/// Row-wise cosine of two L2-normalized batches.
///
/// # Shapes
/// `u`, `v`: `[n, d]` → `[n, 1]`.
pub(crate) fn row_cosine(u: Tensor<2>, v: Tensor<2>) -> Tensor<2> {
    (u * v).sum_dim(1)
}

fn pair_logits(u: Tensor<2>, v: Tensor<2>, scale: f64, shift: f64) -> Result<Tensor<2>> {
    if u.dims() != v.dims() {
        return Err(invalid(format!(
            "pair sides {:?} and {:?} differ",
            u.dims(),
            v.dims()
        )));
    }
    if scale.is_nan() || scale <= 0.0 {
        return Err(invalid(format!("scale {scale} must be positive")));
    }
    Ok((row_cosine(u, v) - shift) * scale)
}

/// Logistic loss on labelled pairs: `p(same) = sigmoid(scale · (cos(u, v) − shift))`.
///
/// # Shapes
/// `u`, `v`: `[n, d]` L2-normalized, `labels`: `n` → `[1]`.
///
/// # Errors
/// [`MatcherError::InvalidInput`] for mismatched sizes or a non-positive scale.
pub fn pairwise_loss(
    u: Tensor<2>,
    v: Tensor<2>,
    labels: &[bool],
    scale: f64,
    shift: f64,
) -> Result<Tensor<1>> {
    let targets: Vec<f32> = labels.iter().map(|&l| f32::from(u8::from(l))).collect();
    soft_pairwise_loss(u, v, &targets, scale, shift)
}

/// [`pairwise_loss`] against soft targets in [0, 1] (a teacher's probabilities): the binary
/// cross-entropy, equal to the KL divergence from the teacher up to the teacher's entropy.
///
/// # Errors
/// As [`pairwise_loss`], and for targets outside [0, 1].
pub fn soft_pairwise_loss(
    u: Tensor<2>,
    v: Tensor<2>,
    targets: &[f32],
    scale: f64,
    shift: f64,
) -> Result<Tensor<1>> {
    let [n, _] = u.dims();
    if targets.len() != n {
        return Err(invalid(format!("{} targets for {n} pairs", targets.len())));
    }
    if let Some(t) = targets.iter().find(|t| !(0.0..=1.0).contains(*t)) {
        return Err(invalid(format!("target {t} is outside [0, 1]")));
    }
    let logits = pair_logits(u.clone(), v, scale, shift)?;
    let t = host_matrix(targets.to_vec(), n, 1, &u);
    Ok(bce_with_logits(logits, t))
}

/// Margin-MSE distillation: the student's margin `cos(a, p) − cos(a, n)` regressed on the
/// teacher's margin for the same triple.
///
/// # Shapes
/// `anchor`, `positive`, `negative`: `[n, d]`, `teacher_margins`: `n` → `[1]`.
///
/// # Errors
/// [`MatcherError::InvalidInput`] for mismatched sizes.
pub fn margin_mse_loss(
    anchor: Tensor<2>,
    positive: Tensor<2>,
    negative: Tensor<2>,
    teacher_margins: &[f32],
) -> Result<Tensor<1>> {
    let [n, _] = anchor.dims();
    if positive.dims() != anchor.dims()
        || negative.dims() != anchor.dims()
        || teacher_margins.len() != n
    {
        return Err(invalid(
            "margin-MSE needs equally many anchors, positives, negatives and margins",
        ));
    }
    let student = row_cosine(anchor.clone(), positive) - row_cosine(anchor.clone(), negative);
    let teacher = host_matrix(teacher_margins.to_vec(), n, 1, &anchor);
    let diff = student - teacher;
    Ok((diff.clone() * diff).mean())
}

/// Gradient reversal: returns `x` unchanged, but the gradient flowing back through it is
/// multiplied by `−lambda` (`x·(1 + λ)` with the first term detached, minus `λ·x`).
pub fn grad_reverse<const D: usize>(x: Tensor<D>, lambda: f64) -> Tensor<D> {
    x.clone().detach() * (1.0 + lambda) - x * lambda
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    fn tensor(rows: &[&[f32]], device: &Device) -> Tensor<2> {
        let (r, c) = (rows.len(), rows[0].len());
        let flat: Vec<f32> = rows.iter().flat_map(|x| x.iter().copied()).collect();
        Tensor::<2>::from_data(TensorData::new(flat, [r, c]), device)
    }

    fn value(t: Tensor<1>) -> f64 {
        f64::from(t.into_data().try_to_vec_as::<f32>().unwrap()[0])
    }

    fn normalize(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn supcon_matches_a_hand_computation() {
        let d = Device::flex();
        let rows: Vec<Vec<f32>> = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]]
            .iter()
            .map(|r| normalize(r))
            .collect();
        let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
        let labels = [0, 0, 1, 1];
        let t = 0.5;
        let got = value(supcon_loss(tensor(&refs, &d), &labels, t).unwrap());
        let dot =
            |a: &[f32], b: &[f32]| f64::from(a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>());
        let mut expect = 0.0;
        for i in 0..4 {
            let denom: f64 = (0..4)
                .filter(|&j| j != i)
                .map(|j| (dot(&rows[i], &rows[j]) / t).exp())
                .sum();
            let p = if i % 2 == 0 { i + 1 } else { i - 1 };
            expect += -((dot(&rows[i], &rows[p]) / t).exp() / denom).ln();
        }
        expect /= 4.0;
        assert!((got - expect).abs() < 1e-5, "{got} vs {expect}");
        assert!(supcon_loss(tensor(&refs, &d), &[0, 1, 2, 3], t).is_err());
    }

    #[test]
    fn info_nce_and_pairwise_behave() {
        let d = Device::flex();
        let a = tensor(&[&[1.0, 0.0], &[0.0, 1.0]], &d);
        let good = value(info_nce_loss(a.clone(), a.clone(), 0.1, true, None).unwrap());
        let swapped = tensor(&[&[0.0, 1.0], &[1.0, 0.0]], &d);
        let bad = value(info_nce_loss(a.clone(), swapped.clone(), 0.1, false, None).unwrap());
        assert!(good < 1e-3 && bad > 5.0, "{good} {bad}");
        // Two positives of one group: neither is the other's negative, so each row has only
        // its own candidate left and the loss is 0 whatever the ranking.
        let grouped =
            value(info_nce_loss(a.clone(), swapped.clone(), 0.1, true, Some(&[7, 7])).unwrap());
        assert!(grouped < 1e-6, "{grouped}");
        let b = tensor(&[&[1.0, 0.0], &[0.9, 0.1]], &d);
        let near = value(info_nce_loss(b.clone(), b.clone(), 0.1, true, None).unwrap());
        let masked = value(info_nce_loss(b.clone(), b.clone(), 0.1, true, Some(&[3, 3])).unwrap());
        assert!(masked < 1e-6 && near > 0.1, "{near} {masked}");
        assert!(info_nce_loss(a.clone(), a.clone(), 0.1, true, Some(&[1])).is_err());
        let same = value(pairwise_loss(a.clone(), a.clone(), &[true, true], 10.0, 0.5).unwrap());
        let wrong = value(pairwise_loss(a.clone(), a.clone(), &[false, false], 10.0, 0.5).unwrap());
        assert!(same < 0.01 && wrong > 4.0, "{same} {wrong}");
        // BCE of logit 0 against 0.5 is ln 2.
        let half = value(bce_with_logits(
            tensor(&[&[0.0]], &d),
            tensor(&[&[0.5]], &d),
        ));
        assert!((half - std::f64::consts::LN_2).abs() < 1e-6);
        let mm = value(margin_mse_loss(a.clone(), a.clone(), swapped, &[1.0, 1.0]).unwrap());
        assert!(mm < 1e-10);
    }

    #[test]
    fn gradient_reversal_flips_the_gradient_only() {
        let d = Device::flex().autodiff();
        let x = tensor(&[&[1.0, 2.0]], &d).require_grad();
        let y = grad_reverse(x.clone(), 0.5);
        assert_eq!(
            y.clone().into_data().try_to_vec_as::<f32>().unwrap(),
            vec![1.0, 2.0]
        );
        let grads = (y * 3.0).sum().backward();
        let g = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec_as::<f32>()
            .unwrap();
        assert_eq!(g, vec![-1.5, -1.5]);
    }
}
