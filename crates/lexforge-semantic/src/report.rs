//! What a training run reports (`eval/metrics.json`): [`TrainReport`] with the codebook
//! statistics ([`LevelStats`]), collisions ([`CollisionReport`]) and head accuracies
//! ([`HeadAccuracy`]) of every corpus's ID, and the evaluation of a trained model that fills
//! it in.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::Device;
use lexforge_train::StopReason;
use serde::{Deserialize, Serialize};

use crate::corpus::{COMPONENTS, CorpusSet};
use crate::embeddings::CorpusEmbeddings;
use crate::error::Result;
use crate::model::{SemanticModel, matrix};
use crate::quantize::{Quantizer, host};

/// Codebook statistics of one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelStats {
    /// Codes in the codebook.
    pub codebook_size: usize,
    /// Codes used at least once.
    pub used: usize,
    /// `used / codebook_size`.
    pub usage: f64,
    /// `exp` of the entropy of the code distribution (1: one code; `used` when uniform).
    pub perplexity: f64,
    /// Codes never used.
    pub dead: usize,
}

impl LevelStats {
    /// Statistics of per-code counts.
    pub fn from_counts(counts: &[f32]) -> Self {
        let total: f64 = counts.iter().map(|&c| f64::from(c)).sum();
        let used = counts.iter().filter(|&&c| c > 0.0).count();
        let entropy: f64 = counts
            .iter()
            .filter(|&&c| c > 0.0)
            .map(|&c| {
                let p = f64::from(c) / total;
                -p * p.ln()
            })
            .sum();
        LevelStats {
            codebook_size: counts.len(),
            used,
            usage: used as f64 / counts.len().max(1) as f64,
            perplexity: if total > 0.0 { entropy.exp() } else { 0.0 },
            dead: counts.len() - used,
        }
    }
}

/// Exact collisions and prefix occupancy of a set of IDs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollisionReport {
    /// IDs compared.
    pub ids: usize,
    /// Distinct IDs.
    pub unique: usize,
    /// Groups of corpus ids sharing one ID (only groups of two or more).
    pub collisions: Vec<Vec<String>>,
    /// Distinct prefixes of length 1, 2, ... (length = components).
    pub prefix_occupancy: Vec<usize>,
}

impl CollisionReport {
    /// The report of `ids` (corpus id → ID).
    pub fn of(ids: &BTreeMap<String, Vec<u32>>) -> Self {
        let mut groups: BTreeMap<&[u32], Vec<String>> = BTreeMap::new();
        for (name, id) in ids {
            groups.entry(id.as_slice()).or_default().push(name.clone());
        }
        let comps = ids.values().map(Vec::len).max().unwrap_or(0);
        let prefix_occupancy = (1..=comps)
            .map(|len| {
                let set: std::collections::BTreeSet<&[u32]> =
                    ids.values().map(|id| &id[..len.min(id.len())]).collect();
                set.len()
            })
            .collect();
        CollisionReport {
            ids: ids.len(),
            unique: groups.len(),
            collisions: groups.into_values().filter(|g| g.len() > 1).collect(),
            prefix_occupancy,
        }
    }
}

/// Accuracy of one supervised head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadAccuracy {
    /// On held-out corpora, from their IDs alone.
    pub heldout: Option<f64>,
    /// On training corpora.
    pub train: f64,
    /// The majority class's share of the held-out corpora (the trivial baseline).
    pub heldout_majority: Option<f64>,
    /// Classes.
    pub classes: usize,
}

/// What a training run reports (`eval/metrics.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// The encoder directory (the run).
    pub run_dir: PathBuf,
    /// Why training stopped.
    pub stop: StopReason,
    /// Optimizer steps.
    pub steps: u64,
    /// The quantizer's name.
    pub quantizer: String,
    /// Training and held-out corpora.
    pub corpora: BTreeMap<String, usize>,
    /// Per component, codebook statistics over all corpora's IDs.
    pub levels: Vec<LevelStats>,
    /// Collisions among all corpora's IDs.
    pub collisions: CollisionReport,
    /// Per labelled component, the head's accuracy.
    pub heads: BTreeMap<String, HeadAccuracy>,
    /// Mean cosine of `decode(encode(x))` to `x`, on training and held-out corpora.
    pub reconstruction_cosine: BTreeMap<String, f64>,
    /// Wall time of the training loop, seconds.
    pub train_seconds: f64,
}

impl TrainReport {
    /// The manifest's metrics: steps, colliding IDs, per-level usage and perplexity, held-out
    /// head accuracies and reconstruction cosines.
    pub(crate) fn manifest_metrics(&self) -> BTreeMap<String, f64> {
        let mut metrics = BTreeMap::new();
        metrics.insert("steps".to_owned(), self.steps as f64);
        metrics.insert(
            "collisions".to_owned(),
            self.collisions
                .collisions
                .iter()
                .map(Vec::len)
                .sum::<usize>() as f64,
        );
        for (k, s) in self.levels.iter().enumerate() {
            metrics.insert(format!("level{k}.usage"), s.usage);
            metrics.insert(format!("level{k}.perplexity"), s.perplexity);
        }
        for (name, h) in &self.heads {
            if let Some(a) = h.heldout {
                metrics.insert(format!("heldout.{name}_accuracy"), a);
            }
        }
        for (split, c) in &self.reconstruction_cosine {
            metrics.insert(format!("{split}.reconstruction_cosine"), *c);
        }
        metrics
    }
}

/// The codes of every corpus of `set` from its full vector, row-major `[corpora,
/// components]`.
pub(crate) fn corpus_codes(
    model: &SemanticModel,
    set: &CorpusSet,
    emb: &CorpusEmbeddings,
    device: &Device,
) -> Result<Vec<u32>> {
    let all_vectors: Vec<f32> = emb.vectors.iter().flatten().copied().collect();
    let x = matrix(all_vectors.clone(), set.corpora.len(), emb.dim, device);
    model.codes(x)
}

/// Corpus id → ID, from the `codes` of the corpora of `set` (in order) of a model with
/// `components` components.
pub(crate) fn corpus_ids(
    set: &CorpusSet,
    codes: &[u32],
    components: usize,
) -> BTreeMap<String, Vec<u32>> {
    set.corpora
        .iter()
        .zip(codes.chunks(components))
        .map(|(c, id)| (c.id.clone(), id.to_vec()))
        .collect()
}

/// Mean cosine of each corpus's decoded ID (`codes`) to its vector, on training (`train`) and
/// held-out (`heldout`) corpora.
pub(crate) fn reconstruction_cosine(
    model: &SemanticModel,
    codes: &[u32],
    emb: &CorpusEmbeddings,
    held: &[bool],
    device: &Device,
) -> Result<BTreeMap<String, f64>> {
    let decoded = host(model.decode_codes(codes, device)?)?;
    let mut cos_sum: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (i, &h) in held.iter().enumerate() {
        let d = emb.dim;
        let cos: f32 = decoded[i * d..(i + 1) * d]
            .iter()
            .zip(&emb.vectors[i])
            .map(|(a, b)| a * b)
            .sum();
        let e = cos_sum
            .entry(if h { "heldout" } else { "train" }.to_owned())
            .or_insert((0.0, 0));
        e.0 += f64::from(cos);
        e.1 += 1;
    }
    Ok(cos_sum
        .into_iter()
        .map(|(k, (s, n))| (k, s / n.max(1) as f64))
        .collect())
}

/// Codebook statistics of each component over `codes`.
pub(crate) fn level_stats(model: &SemanticModel, codes: &[u32]) -> Vec<LevelStats> {
    let sizes = model.quantizer.codebook_sizes();
    let comps = sizes.len();
    (0..comps)
        .map(|k| {
            let mut counts = vec![0f32; sizes[k]];
            for row in codes.chunks(comps) {
                counts[row[k] as usize] += 1.0;
            }
            LevelStats::from_counts(&counts)
        })
        .collect()
}

/// Accuracy of each of the model's heads predicting `labels` (per head, the class of every
/// corpus) from `codes`, on the training and held-out corpora (indices into the set).
pub(crate) fn head_accuracy(
    model: &SemanticModel,
    codes: &[u32],
    labels: &[Vec<u32>],
    (train_idx, held_idx): (&[usize], &[usize]),
    device: &Device,
) -> Result<BTreeMap<String, HeadAccuracy>> {
    let predictions = model.predict_labels(codes, device)?;
    let mut head_report = BTreeMap::new();
    for ((spec, pred), truth) in model.config().heads.iter().zip(&predictions).zip(labels) {
        let acc = |idx: &[usize]| -> Option<f64> {
            (!idx.is_empty()).then(|| {
                idx.iter().filter(|&&i| pred[i] as u32 == truth[i]).count() as f64
                    / idx.len() as f64
            })
        };
        let majority = (!held_idx.is_empty()).then(|| {
            let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
            for &i in held_idx {
                *counts.entry(truth[i]).or_default() += 1;
            }
            counts.values().copied().max().unwrap_or(0) as f64 / held_idx.len() as f64
        });
        head_report.insert(
            COMPONENTS[spec.component].to_owned(),
            HeadAccuracy {
                heldout: acc(held_idx),
                train: acc(train_idx).unwrap_or(0.0),
                heldout_majority: majority,
                classes: spec.classes.len(),
            },
        );
    }
    Ok(head_report)
}
