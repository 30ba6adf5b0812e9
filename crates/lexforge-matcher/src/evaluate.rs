//! Evaluating a matcher on a split of a prepared dataset: calibration fitted on it, pair
//! classification and calibration error ([`EvalReport`]), passage → book retrieval, and the
//! topic probe.

use std::collections::BTreeMap;

use lexforge_data::Split;
use serde::{Deserialize, Serialize};

use crate::artifacts::{CALIBRATION_FILE, STYLE_CALIBRATION_FILE, json_bytes, write_json};
use crate::calibration::{Calibration, StyleCalibration, ThresholdMetric};
use crate::dataset::PreparedDataset;
use crate::error::{MatcherError, Result};
use crate::matcher::{Matcher, normalize, sigmoid};
use crate::metrics::{
    BinaryMetrics, RetrievalMetrics, binary_metrics, expected_calibration_error, retrieval_metrics,
    roc_auc,
};
use crate::probe::{ProbeReport, linear_probe};

/// Evaluation of a matcher on one split (`eval/metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The split.
    pub split: Split,
    /// Pairs scored.
    pub pairs: usize,
    /// Positive pairs among them.
    pub positives: usize,
    /// ROC-AUC of the raw pair score.
    pub roc_auc: Option<f64>,
    /// ROC-AUC of the plain cosine.
    pub roc_auc_cosine: Option<f64>,
    /// Accuracy, precision, recall, F1 at the calibrated threshold (0.5 on `sigmoid(logit)`
    /// without calibration).
    pub classification: BinaryMetrics,
    /// Expected calibration error (15 bins) of `sigmoid(logit)`.
    pub ece_before: f64,
    /// Expected calibration error of the calibrated probability (`None` without calibration).
    pub ece_after: Option<f64>,
    /// Passage → book retrieval over the split's books (leave-one-out centroids).
    pub retrieval: Option<RetrievalMetrics>,
}

impl Matcher {
    /// How well a linear probe recovers the topic cluster of a chunk from its embedding:
    /// fitted on (at most `max_rows`, evenly spaced) chunks of `fit_split`, scored on the chunks
    /// of `score_split`. Lower is better when topic is a shortcut to remove.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] when a split has no chunks.
    pub fn topic_probe(
        &self,
        dataset: &PreparedDataset,
        fit_split: Split,
        score_split: Split,
        max_rows: usize,
        batch_size: usize,
    ) -> Result<ProbeReport> {
        let pick = |split: Split| -> (Vec<&str>, Vec<u32>) {
            let chunks: Vec<_> = dataset.chunks(split).collect();
            let step = chunks.len().div_ceil(max_rows.max(1)).max(1);
            chunks
                .iter()
                .step_by(step)
                .map(|c| (c.text.as_str(), c.topic))
                .unzip()
        };
        let (fit_texts, fit_topics) = pick(fit_split);
        let (score_texts, score_topics) = pick(score_split);
        if fit_texts.is_empty() || score_texts.is_empty() {
            return Err(MatcherError::InvalidInput {
                reason: "the topic probe needs chunks in both splits".into(),
            });
        }
        let fit = self.embed(&fit_texts, batch_size)?;
        let score = self.embed(&score_texts, batch_size)?;
        linear_probe(&fit, &fit_topics, &score, &score_topics, self.dim())
    }

    /// Fits the calibration (Platt temperature + bias on the raw pair score, threshold for
    /// `metric`) and the isotonic style map on `split` of `dataset`, keeps them in the
    /// matcher, and writes them into its directory when it has one.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] when the split has no pairs of one class or the scores
    /// rank the pairs backwards; I/O errors.
    pub fn calibrate(
        &mut self,
        dataset: &PreparedDataset,
        split: Split,
        metric: ThresholdMetric,
        batch_size: usize,
    ) -> Result<(Calibration, StyleCalibration)> {
        let pairs = dataset.pairs(split);
        let texts: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.text1.as_str(), p.text2.as_str()))
            .collect();
        let labels: Vec<bool> = pairs.iter().map(|p| p.label == 1).collect();
        let (logits, cos) = self.raw_scores(&texts, batch_size)?;
        let calibration = Calibration::fit(&logits, &labels, metric)?;
        let style = StyleCalibration::fit(&cos, &labels)?;
        self.set_calibrations(calibration.clone(), style.clone());
        if let Some(dir) = self.dir() {
            if dir.join(lexforge_core::MANIFEST_FILE).is_file() {
                // Verified before anything changes; the new files are recorded in it.
                let mut run = lexforge_core::RunDir::open(dir)?;
                run.write_artifact(CALIBRATION_FILE, &json_bytes(&calibration)?)?;
                run.write_artifact(STYLE_CALIBRATION_FILE, &json_bytes(&style)?)?;
                run.save_manifest()?;
            } else {
                write_json(&dir.join(CALIBRATION_FILE), &calibration)?;
                write_json(&dir.join(STYLE_CALIBRATION_FILE), &style)?;
            }
        }
        Ok((calibration, style))
    }

    /// Evaluates on `split` of `dataset`: pair classification, calibration error before and
    /// after calibration, and passage → book retrieval (each chunk of the split against the
    /// split's book centroids, its own chunk left out of its book's centroid).
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] when the split has no pairs.
    pub fn evaluate(
        &self,
        dataset: &PreparedDataset,
        split: Split,
        batch_size: usize,
    ) -> Result<EvalReport> {
        let pairs = dataset.pairs(split);
        if pairs.is_empty() {
            return Err(MatcherError::InvalidInput {
                reason: format!("the {} split has no pairs", split.name()),
            });
        }
        let texts: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.text1.as_str(), p.text2.as_str()))
            .collect();
        let labels: Vec<bool> = pairs.iter().map(|p| p.label == 1).collect();
        let (logits, cos) = self.raw_scores(&texts, batch_size)?;
        let raw_p: Vec<f64> = logits.iter().map(|&l| sigmoid(l)).collect();
        let (probs, threshold) = match self.calibration() {
            Some(c) => (
                logits.iter().map(|&l| c.probability(l)).collect::<Vec<_>>(),
                c.threshold,
            ),
            None => (raw_p.clone(), 0.5),
        };
        let retrieval = self.retrieval(dataset, split, batch_size)?;
        Ok(EvalReport {
            split,
            pairs: pairs.len(),
            positives: labels.iter().filter(|&&l| l).count(),
            roc_auc: roc_auc(&logits, &labels),
            roc_auc_cosine: roc_auc(&cos, &labels),
            classification: binary_metrics(&probs, &labels, threshold),
            ece_before: expected_calibration_error(&raw_p, &labels, 15),
            ece_after: self
                .calibration()
                .map(|_| expected_calibration_error(&probs, &labels, 15)),
            retrieval,
        })
    }

    fn retrieval(
        &self,
        dataset: &PreparedDataset,
        split: Split,
        batch_size: usize,
    ) -> Result<Option<RetrievalMetrics>> {
        let chunks: Vec<_> = dataset.chunks(split).collect();
        let mut book_of: BTreeMap<&str, usize> = BTreeMap::new();
        for c in &chunks {
            let next = book_of.len();
            book_of.entry(c.book.as_str()).or_insert(next);
        }
        if book_of.len() < 2 {
            return Ok(None);
        }
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        let e = self.embed(&texts, batch_size)?;
        let dim = self.dim();
        let nb = book_of.len();
        let mut sums = vec![0.0f32; nb * dim];
        let mut counts = vec![0usize; nb];
        for (c, row) in chunks.iter().zip(e.chunks_exact(dim)) {
            let b = book_of[c.book.as_str()];
            counts[b] += 1;
            for (s, x) in sums[b * dim..(b + 1) * dim].iter_mut().zip(row) {
                *s += x;
            }
        }
        let mut ranks = Vec::new();
        for (c, row) in chunks.iter().zip(e.chunks_exact(dim)) {
            let own = book_of[c.book.as_str()];
            if counts[own] < 2 {
                continue;
            }
            let score = |b: usize| -> f32 {
                let mut centroid: Vec<f32> = sums[b * dim..(b + 1) * dim].to_vec();
                if b == own {
                    for (s, x) in centroid.iter_mut().zip(row) {
                        *s -= x;
                    }
                }
                normalize(&mut centroid);
                centroid.iter().zip(row).map(|(a, b)| a * b).sum()
            };
            let mine = score(own);
            let better = (0..nb).filter(|&b| b != own && score(b) > mine).count();
            ranks.push(Some(better + 1));
        }
        Ok((!ranks.is_empty()).then(|| retrieval_metrics(&ranks)))
    }
}
