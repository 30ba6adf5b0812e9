//! Evaluation metrics of the matcher: thresholded classification (accuracy, precision, recall,
//! F1), ranking (ROC-AUC), calibration (expected calibration error) and retrieval (recall@k,
//! MRR). Plain `f64` math on host vectors; every function states what it does with empty input.

use serde::{Deserialize, Serialize};

/// Classification at a threshold: `predicted = probability >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BinaryMetrics {
    /// Share of correct predictions.
    pub accuracy: f64,
    /// TP / (TP + FP); 0 when nothing is predicted positive.
    pub precision: f64,
    /// TP / (TP + FN); 0 when there are no positives.
    pub recall: f64,
    /// Harmonic mean of precision and recall; 0 when both are 0.
    pub f1: f64,
    /// The threshold used.
    pub threshold: f64,
    /// Number of examples.
    pub count: usize,
}

/// Accuracy, precision, recall and F1 of `scores >= threshold` against `labels`. All zeros
/// (and `count` 0) for empty input.
///
/// # Panics
/// When the slices differ in length.
pub(crate) fn binary_metrics(scores: &[f64], labels: &[bool], threshold: f64) -> BinaryMetrics {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let (mut tp, mut fp, mut tn, mut fneg) = (0usize, 0usize, 0usize, 0usize);
    for (&s, &l) in scores.iter().zip(labels) {
        match (s >= threshold, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fneg += 1,
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fneg);
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    BinaryMetrics {
        accuracy: ratio(tp + tn, scores.len()),
        precision,
        recall,
        f1,
        threshold,
        count: scores.len(),
    }
}

/// Area under the ROC curve: the probability that a random positive scores above a random
/// negative, ties counting one half (the Mann–Whitney statistic, as scikit-learn computes it).
/// `None` when there are no positives or no negatives.
///
/// # Panics
/// When the slices differ in length.
pub(crate) fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "one label per score");
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over ties.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            if labels[o] {
                rank_sum_pos += avg;
            }
        }
        i = j + 1;
    }
    let u = rank_sum_pos - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos as f64 * neg as f64))
}

/// Expected calibration error with `bins` equal-width probability bins: the sample-weighted
/// mean of |accuracy − mean confidence| over non-empty bins, where confidence is the
/// probability of the positive class. 0 for empty input.
///
/// # Panics
/// When the slices differ in length or `bins` is 0.
pub(crate) fn expected_calibration_error(probs: &[f64], labels: &[bool], bins: usize) -> f64 {
    assert_eq!(probs.len(), labels.len(), "one label per probability");
    assert!(bins > 0, "at least one bin");
    if probs.is_empty() {
        return 0.0;
    }
    let mut count = vec![0usize; bins];
    let mut conf = vec![0.0f64; bins];
    let mut hits = vec![0.0f64; bins];
    for (&p, &l) in probs.iter().zip(labels) {
        let p = p.clamp(0.0, 1.0);
        let b = ((p * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        conf[b] += p;
        hits[b] += f64::from(u8::from(l));
    }
    let n = probs.len() as f64;
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            let c = count[b] as f64;
            (c / n) * (hits[b] / c - conf[b] / c).abs()
        })
        .sum()
}

/// Retrieval quality from the 1-based rank of the right answer for each query (`None`: not
/// retrieved at all).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    /// Share of queries whose answer is ranked first.
    pub recall_at_1: f64,
    /// Share ranked in the top 5.
    pub recall_at_5: f64,
    /// Share ranked in the top 10.
    pub recall_at_10: f64,
    /// Mean reciprocal rank (0 for an answer not retrieved).
    pub mrr: f64,
    /// Number of queries.
    pub queries: usize,
}

/// [`RetrievalMetrics`] of `ranks`; all zeros for no queries.
pub(crate) fn retrieval_metrics(ranks: &[Option<usize>]) -> RetrievalMetrics {
    let n = ranks.len();
    if n == 0 {
        return RetrievalMetrics {
            recall_at_1: 0.0,
            recall_at_5: 0.0,
            recall_at_10: 0.0,
            mrr: 0.0,
            queries: 0,
        };
    }
    let within = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64;
    let mrr = ranks
        .iter()
        .map(|r| r.map_or(0.0, |r| 1.0 / r.max(1) as f64))
        .sum::<f64>();
    RetrievalMetrics {
        recall_at_1: within(1) / n as f64,
        recall_at_5: within(5) / n as f64,
        recall_at_10: within(10) / n as f64,
        mrr: mrr / n as f64,
        queries: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_counts() {
        let s = [0.9, 0.8, 0.3, 0.6, 0.1];
        let l = [true, false, true, true, false];
        let m = binary_metrics(&s, &l, 0.5);
        // predicted: T T F T F → TP 2, FP 1, FN 1, TN 1
        assert_eq!(m.accuracy, 3.0 / 5.0);
        assert_eq!(m.precision, 2.0 / 3.0);
        assert_eq!(m.recall, 2.0 / 3.0);
        assert!((m.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(binary_metrics(&[], &[], 0.5).count, 0);
    }

    #[test]
    fn auc_matches_the_pairwise_definition_with_ties() {
        let s = [0.1, 0.4, 0.35, 0.8, 0.4];
        let l = [false, false, true, true, true];
        // pairs (pos, neg): 0.35>0.1 ✓, 0.35<0.4 ✗, 0.8>both ✓✓, 0.4>0.1 ✓, 0.4=0.4 ½ → 4.5/6
        assert!((roc_auc(&s, &l).unwrap() - 4.5 / 6.0).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(roc_auc(&[0.1, 0.9], &[false, true]), Some(1.0));
    }

    #[test]
    fn ece_is_zero_when_calibrated_and_large_when_not() {
        let probs: Vec<f64> = (0..1000)
            .map(|i| if i % 2 == 0 { 0.25 } else { 0.75 })
            .collect();
        let labels: Vec<bool> = (0..1000)
            .map(|i| if i % 2 == 0 { i % 8 == 0 } else { i % 8 != 1 })
            .collect();
        assert!(expected_calibration_error(&probs, &labels, 10) < 1e-9);
        let sure = vec![1.0; 10];
        let half: Vec<bool> = (0..10).map(|i| i < 5).collect();
        assert!((expected_calibration_error(&sure, &half, 10) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn retrieval() {
        let m = retrieval_metrics(&[Some(1), Some(3), Some(7), None]);
        assert_eq!(
            (m.recall_at_1, m.recall_at_5, m.recall_at_10),
            (0.25, 0.5, 0.75)
        );
        assert!((m.mrr - (1.0 + 1.0 / 3.0 + 1.0 / 7.0) / 4.0).abs() < 1e-12);
    }
}
