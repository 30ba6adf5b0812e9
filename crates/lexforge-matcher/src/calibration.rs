//! Calibration of the matcher's cosine similarities, fitted on the validation split.
//!
//! - [`Calibration`]: `p(same book) = sigmoid((cosine − bias) / temperature)`, with
//!   temperature and bias fitted by minimizing the log loss (Platt scaling: a two-parameter
//!   logistic regression, Newton's method), and a decision threshold on `p` chosen to maximize
//!   the validation accuracy or F1. Saved as `calibration.json`.
//! - [`StyleCalibration`]: a monotone map from cosine to a [0, 1] style score: isotonic
//!   regression of the labels on the cosine (pool-adjacent-violators), linearly interpolated
//!   between block centres and blended with a tiny linear ramp so it is strictly increasing on
//!   [−1, 1] and maps into [0, 1]. Saved as `style_calibration.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{MatcherError, Result};
use crate::metrics::{BinaryMetrics, binary_metrics};

/// What the decision threshold maximizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdMetric {
    /// Share of correct decisions.
    #[default]
    Accuracy,
    /// F1 of the "same book" class.
    F1,
}

/// Format version of the calibration files.
pub(crate) const CALIBRATION_SCHEMA: u32 = 1;

/// Cosine → probability, and the decision threshold (`calibration.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// File format version.
    pub schema_version: u32,
    /// Divides `cosine − bias` (> 0).
    pub temperature: f64,
    /// Cosine at which `p = 0.5`.
    pub bias: f64,
    /// `same_book = p >= threshold`.
    pub threshold: f64,
    /// What the threshold was chosen for.
    pub metric: ThresholdMetric,
    /// The metrics on the data it was fitted on, at `threshold`.
    pub fitted: BinaryMetrics,
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn check_inputs(cosines: &[f64], labels: &[bool]) -> Result<()> {
    if cosines.len() != labels.len() {
        return Err(MatcherError::InvalidInput {
            reason: format!("{} scores but {} labels", cosines.len(), labels.len()),
        });
    }
    if let Some(i) = cosines.iter().position(|c| !c.is_finite()) {
        return Err(MatcherError::InvalidInput {
            reason: format!("score {i} is not finite ({})", cosines[i]),
        });
    }
    let pos = labels.iter().filter(|&&l| l).count();
    if pos == 0 || pos == labels.len() {
        return Err(MatcherError::InvalidInput {
            reason: format!(
                "calibration needs both classes; got {pos} positive of {}",
                labels.len()
            ),
        });
    }
    Ok(())
}

impl Calibration {
    /// Fits temperature, bias and threshold on `(cosine, same_book)` pairs.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for mismatched lengths, non-finite scores, or a single
    /// class.
    pub fn fit(cosines: &[f64], labels: &[bool], metric: ThresholdMetric) -> Result<Self> {
        check_inputs(cosines, labels)?;
        // Logistic regression p = sigmoid(a·x + b) on standardized scores (raw logits can be
        // large, which would saturate the sigmoid at the first step), by Newton's method with
        // step halving (every step lowers the penalized loss) and a tiny ridge on the slope
        // (separable data would otherwise send it to infinity).
        let n = cosines.len() as f64;
        let mean = cosines.iter().sum::<f64>() / n;
        let sd = (cosines.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n)
            .sqrt()
            .max(1e-12);
        let zs: Vec<f64> = cosines.iter().map(|x| (x - mean) / sd).collect();
        let ridge = 1e-4;
        let loss = |a: f64, b: f64| -> f64 {
            zs.iter()
                .zip(labels)
                .map(|(&z, &y)| {
                    let t = a * z + b;
                    // −log sigmoid(±t), stable.
                    let m = if y { -t } else { t };
                    m.max(0.0) + (-m.abs()).exp().ln_1p()
                })
                .sum::<f64>()
                + 0.5 * ridge * a * a
        };
        let (mut a, mut b) = (0.0f64, 0.0f64);
        let mut current = loss(a, b);
        for _ in 0..100 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (ridge * a, 0.0, ridge, 0.0, 0.0);
            for (&z, &y) in zs.iter().zip(labels) {
                let p = sigmoid(a * z + b);
                let r = p - f64::from(u8::from(y));
                let w = (p * (1.0 - p)).max(1e-12);
                ga += r * z;
                gb += r;
                haa += w * z * z;
                hab += w * z;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if !det.is_finite() || det.abs() < 1e-300 {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            let mut step = 1.0;
            let mut improved = false;
            while step > 1e-6 {
                let next = loss(a - step * da, b - step * db);
                if next <= current {
                    a -= step * da;
                    b -= step * db;
                    improved = current - next > 1e-12 * current.max(1.0);
                    current = next;
                    break;
                }
                step /= 2.0;
            }
            if !improved {
                break;
            }
        }
        // Back to raw scores: a·(x − mean)/sd + b.
        let (a, b) = (a / sd, b - a * mean / sd);
        if a <= 0.0 || !a.is_finite() || !b.is_finite() {
            return Err(MatcherError::InvalidInput {
                reason: format!(
                    "higher cosine does not mean same book on this data (slope {a:.4}); the \
                     model is not usable for calibration"
                ),
            });
        }
        let temperature = 1.0 / a;
        let bias = -b / a;
        let probs: Vec<f64> = cosines
            .iter()
            .map(|&x| sigmoid((x - bias) / temperature))
            .collect();
        // Candidate thresholds: midpoints between sorted distinct probabilities, plus 0.5.
        let mut sorted = probs.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        let mut candidates = vec![0.5];
        candidates.extend(sorted.windows(2).map(|w| (w[0] + w[1]) / 2.0));
        let score = |m: &BinaryMetrics| match metric {
            ThresholdMetric::Accuracy => m.accuracy,
            ThresholdMetric::F1 => m.f1,
        };
        let mut best = binary_metrics(&probs, labels, 0.5);
        for &t in &candidates {
            let m = binary_metrics(&probs, labels, t);
            // Ties prefer the threshold closest to 0.5.
            if score(&m) > score(&best)
                || (score(&m) == score(&best) && (t - 0.5).abs() < (best.threshold - 0.5).abs())
            {
                best = m;
            }
        }
        Ok(Calibration {
            schema_version: CALIBRATION_SCHEMA,
            temperature,
            bias,
            threshold: best.threshold,
            metric,
            fitted: best,
        })
    }

    /// `p(same book)` for a cosine.
    pub fn probability(&self, cosine: f64) -> f64 {
        sigmoid((cosine - self.bias) / self.temperature)
    }

    /// The decision for a cosine.
    pub fn same_book(&self, cosine: f64) -> bool {
        self.probability(cosine) >= self.threshold
    }

    /// Reads and checks `calibration.json`.
    ///
    /// # Errors
    /// [`MatcherError::Calibration`] naming the file for unreadable JSON, a future schema
    /// version, or values that cannot be a calibration.
    pub fn load(path: &Path) -> Result<Self> {
        let c: Calibration = read_json(path)?;
        let bad = |reason: String| MatcherError::Calibration {
            path: path.to_path_buf(),
            reason,
        };
        if c.schema_version != CALIBRATION_SCHEMA {
            return Err(bad(format!(
                "schema version {} (this build reads {CALIBRATION_SCHEMA})",
                c.schema_version
            )));
        }
        if !c.temperature.is_finite()
            || c.temperature <= 0.0
            || !c.bias.is_finite()
            || !(0.0..=1.0).contains(&c.threshold)
        {
            return Err(bad(format!(
                "temperature {} (must be > 0), bias {}, threshold {} (must be in [0, 1])",
                c.temperature, c.bias, c.threshold
            )));
        }
        Ok(c)
    }
}

/// Cosine → style score in [0, 1], strictly increasing (`style_calibration.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StyleCalibration {
    /// File format version.
    pub schema_version: u32,
    /// Knot cosines, strictly increasing.
    pub x: Vec<f64>,
    /// Isotonic values at the knots, strictly increasing, in [0, 1].
    pub y: Vec<f64>,
    /// Weight of the linear ramp `(cosine + 1) / 2` that makes the map strictly increasing.
    pub ramp: f64,
}

/// Weight of the strictly increasing ramp blended into the isotonic fit.
const RAMP: f64 = 1e-3;

impl StyleCalibration {
    /// Isotonic regression of `labels` on `cosines` (pool-adjacent-violators), see the module
    /// docs.
    ///
    /// # Errors
    /// As [`Calibration::fit`].
    pub fn fit(cosines: &[f64], labels: &[bool]) -> Result<Self> {
        check_inputs(cosines, labels)?;
        let mut order: Vec<usize> = (0..cosines.len()).collect();
        order.sort_by(|&a, &b| cosines[a].total_cmp(&cosines[b]));
        // Blocks of (sum x, sum y, count); equal x values start in one block.
        let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let x = cosines[order[i]];
            let (mut sy, mut n) = (0.0, 0.0);
            while i < order.len() && cosines[order[i]] == x {
                sy += f64::from(u8::from(labels[order[i]]));
                n += 1.0;
                i += 1;
            }
            blocks.push((x * n, sy, n));
            // Pool while the previous block's mean is not below this one's (merging equal
            // means too, so the knots come out strictly increasing).
            while blocks.len() >= 2 {
                let (x2, y2, n2) = blocks[blocks.len() - 1];
                let (x1, y1, n1) = blocks[blocks.len() - 2];
                if y1 / n1 >= y2 / n2 {
                    blocks.pop();
                    let last = blocks.len() - 1;
                    blocks[last] = (x1 + x2, y1 + y2, n1 + n2);
                } else {
                    break;
                }
            }
        }
        let x = blocks.iter().map(|b| b.0 / b.2).collect();
        let y = blocks.iter().map(|b| b.1 / b.2).collect();
        Ok(StyleCalibration {
            schema_version: CALIBRATION_SCHEMA,
            x,
            y,
            ramp: RAMP,
        })
    }

    /// The style score of a cosine: in [0, 1], strictly increasing in `cosine` on [−1, 1].
    pub fn score(&self, cosine: f64) -> f64 {
        let c = cosine.clamp(-1.0, 1.0);
        let iso = if self.x.is_empty() {
            0.5
        } else if c <= self.x[0] {
            self.y[0]
        } else if c >= self.x[self.x.len() - 1] {
            self.y[self.y.len() - 1]
        } else {
            let j = self.x.partition_point(|&k| k <= c);
            let (x0, x1, y0, y1) = (self.x[j - 1], self.x[j], self.y[j - 1], self.y[j]);
            y0 + (y1 - y0) * (c - x0) / (x1 - x0)
        };
        ((1.0 - self.ramp) * iso + self.ramp * (c + 1.0) / 2.0).clamp(0.0, 1.0)
    }

    /// Reads and checks `style_calibration.json`.
    ///
    /// # Errors
    /// [`MatcherError::Calibration`] naming the file for unreadable JSON, another schema
    /// version, or knots that are not strictly increasing in [−1, 1] × [0, 1].
    pub fn load(path: &Path) -> Result<Self> {
        let s: StyleCalibration = read_json(path)?;
        let bad = |reason: String| MatcherError::Calibration {
            path: path.to_path_buf(),
            reason,
        };
        if s.schema_version != CALIBRATION_SCHEMA {
            return Err(bad(format!(
                "schema version {} (this build reads {CALIBRATION_SCHEMA})",
                s.schema_version
            )));
        }
        let increasing = |v: &[f64]| v.windows(2).all(|w| w[0] < w[1]);
        if s.x.len() != s.y.len()
            || s.x.is_empty()
            || !increasing(&s.x)
            || !increasing(&s.y)
            || s.x.iter().any(|v| !(-1.0..=1.0).contains(v))
            || s.y.iter().any(|v| !(0.0..=1.0).contains(v))
            || !(s.ramp > 0.0 && s.ramp < 1.0)
        {
            return Err(bad(
                "knots must be equally many, strictly increasing, cosines in [-1, 1] and \
                 scores in [0, 1], with a ramp in (0, 1)"
                    .to_owned(),
            ));
        }
        Ok(s)
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| MatcherError::Core(lexforge_core::Error::io("read calibration", path, e)))?;
    serde_json::from_str(&text).map_err(|e| MatcherError::Calibration {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::expected_calibration_error;

    /// Cosines of a noisy matcher: positives around 0.6, negatives around 0.2.
    fn data(n: usize) -> (Vec<f64>, Vec<bool>) {
        let mut state = 12345u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|i| {
                let pos = i % 2 == 0;
                let noise = (uniform() + uniform() + uniform() - 1.5) * 0.3;
                ((if pos { 0.6 } else { 0.2 }) + noise, pos)
            })
            .unzip()
    }

    #[test]
    fn platt_scaling_lowers_ece_and_the_threshold_is_good() {
        let (x, y) = data(4000);
        let c = Calibration::fit(&x, &y, ThresholdMetric::Accuracy).unwrap();
        assert!(c.temperature > 0.0 && (c.bias - 0.4).abs() < 0.05, "{c:?}");
        let raw: Vec<f64> = x.iter().map(|v| (v + 1.0) / 2.0).collect();
        let cal: Vec<f64> = x.iter().map(|&v| c.probability(v)).collect();
        let before = expected_calibration_error(&raw, &y, 15);
        let after = expected_calibration_error(&cal, &y, 15);
        assert!(after < before && after < 0.03, "ECE {before} -> {after}");
        assert!(c.fitted.accuracy > 0.85, "{:?}", c.fitted);
        let f1 = Calibration::fit(&x, &y, ThresholdMetric::F1).unwrap();
        assert!(f1.fitted.f1 >= c.fitted.f1 - 1e-12);

        // Raw logits of large magnitude (a learned scale of 40 and a shift) calibrate to the
        // same probabilities: the fit is affine-invariant and does not saturate.
        let logits: Vec<f64> = x.iter().map(|v| 40.0 * v + 12.0).collect();
        let l = Calibration::fit(&logits, &y, ThresholdMetric::Accuracy).unwrap();
        for (&v, &z) in x.iter().zip(&logits).take(200) {
            assert!((c.probability(v) - l.probability(z)).abs() < 1e-6);
        }
        assert_eq!(l.fitted.accuracy, c.fitted.accuracy);
    }

    #[test]
    fn isotonic_map_is_strictly_increasing_into_unit_interval() {
        let (x, y) = data(2000);
        let s = StyleCalibration::fit(&x, &y).unwrap();
        assert!(s.x.windows(2).all(|w| w[0] < w[1]));
        assert!(s.y.windows(2).all(|w| w[0] < w[1]));
        let mut prev = -1.0;
        for i in 0..=2000 {
            let c = -1.0 + i as f64 / 1000.0;
            let v = s.score(c);
            assert!((0.0..=1.0).contains(&v));
            assert!(v > prev, "not strictly increasing at {c}: {prev} -> {v}");
            prev = v;
        }
        assert!(s.score(0.9) > 0.9 && s.score(-0.2) < 0.1);
    }

    #[test]
    fn bad_inputs_and_files_are_typed() {
        assert!(matches!(
            Calibration::fit(&[0.1, 0.2], &[true, true], ThresholdMetric::Accuracy),
            Err(MatcherError::InvalidInput { .. })
        ));
        assert!(matches!(
            StyleCalibration::fit(&[f64::NAN, 0.2], &[true, false]),
            Err(MatcherError::InvalidInput { .. })
        ));
        // Inverted data: higher cosine means different book.
        let (x, y) = data(200);
        let flipped: Vec<bool> = y.iter().map(|l| !l).collect();
        assert!(Calibration::fit(&x, &flipped, ThresholdMetric::Accuracy).is_err());

        let dir = tempfile::tempdir().unwrap();
        let c = Calibration::fit(&x, &y, ThresholdMetric::Accuracy).unwrap();
        let p = dir.path().join("calibration.json");
        std::fs::write(&p, serde_json::to_vec(&c).unwrap()).unwrap();
        // serde_json's default float parsing may differ from the written value in the last bit.
        let back = Calibration::load(&p).unwrap();
        assert!((back.temperature - c.temperature).abs() < 1e-12);
        assert!((back.bias - c.bias).abs() < 1e-12);
        assert!((back.threshold - c.threshold).abs() < 1e-12);
        assert_eq!(back.metric, c.metric);
        std::fs::write(&p, b"{\"temperature\": ").unwrap();
        assert!(matches!(
            Calibration::load(&p),
            Err(MatcherError::Calibration { .. })
        ));
        let mut future = serde_json::to_value(&c).unwrap();
        future["schema_version"] = 2.into();
        std::fs::write(&p, future.to_string()).unwrap();
        assert!(matches!(
            Calibration::load(&p),
            Err(MatcherError::Calibration { .. })
        ));
        let s = StyleCalibration::fit(&x, &y).unwrap();
        let q = dir.path().join("style_calibration.json");
        let mut broken = serde_json::to_value(&s).unwrap();
        broken["y"][0] = 2.0.into();
        std::fs::write(&q, broken.to_string()).unwrap();
        assert!(matches!(
            StyleCalibration::load(&q),
            Err(MatcherError::Calibration { .. })
        ));
    }
}
