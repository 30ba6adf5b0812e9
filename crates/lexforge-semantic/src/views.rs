//! What the trainer batches: the held-out split and *views* of corpora.
//!
//! Each training item is one *view* of a corpus: the L2-normalized mean of a seeded random
//! subset of its word vectors (view 0 is the whole corpus), so a few dozen corpora give
//! hundreds of distinct inputs. Held-out corpora (the last variation of every label
//! combination that has two or more) are the validation set.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor};
use lexforge_core::Seed;
use lexforge_train::{BatchSource, BoxError};
use rand::Rng;
use rand::seq::SliceRandom;

use crate::corpus::CorpusSet;
use crate::embeddings::{CorpusEmbeddings, mean_vector};
use crate::model::matrix;

/// Which corpora are held out: the last variation of every (style, complexity, era) with two
/// or more variations; when that leaves none, a seeded fifth of the corpora (at least one).
pub(crate) fn holdout(set: &CorpusSet, seed: Seed) -> Vec<bool> {
    let mut max_var: BTreeMap<(String, String, String), (u32, usize)> = BTreeMap::new();
    for c in &set.corpora {
        let l = &c.labels;
        let e = max_var
            .entry((l.style.clone(), l.complexity.clone(), l.era.clone()))
            .or_insert((0, 0));
        e.0 = e.0.max(l.variation);
        e.1 += 1;
    }
    let held: Vec<bool> = set
        .corpora
        .iter()
        .map(|c| {
            let l = &c.labels;
            let (v, count) = max_var[&(l.style.clone(), l.complexity.clone(), l.era.clone())];
            count >= 2 && l.variation == v
        })
        .collect();
    if held.iter().any(|&h| h) || set.corpora.len() < 2 {
        return held;
    }
    let mut order: Vec<usize> = (0..set.corpora.len()).collect();
    order.shuffle(&mut seed.rng("semantic-holdout"));
    let k = (set.corpora.len() / 5).max(1);
    let mut held = vec![false; set.corpora.len()];
    for &i in &order[..k] {
        held[i] = true;
    }
    held
}

/// One batch: views of corpora with their targets and labels.
#[derive(Debug, Clone)]
pub(crate) struct SemanticBatch {
    /// Inputs `[n, dim]` (one view per row).
    pub input: Tensor<2>,
    /// Second views `[n, dim]` for InfoNCE.
    pub input_b: Option<Tensor<2>>,
    /// Full corpus vectors `[n, dim]`.
    pub target: Tensor<2>,
    /// Corpus index of each row.
    pub corpus: Vec<usize>,
    /// Class of each row, per head.
    pub labels: Vec<Vec<u32>>,
}

/// Views of a subset of the corpora, batched by index.
pub(crate) struct Views<'a> {
    emb: &'a CorpusEmbeddings,
    corpora: Vec<usize>,
    views: usize,
    keep: f64,
    seed: Seed,
    pair: bool,
    /// Per head, the class of every corpus of the set.
    labels: &'a [Vec<u32>],
    /// Every item's view vectors (and second views when `pair`), computed once.
    cache: Vec<f32>,
    cache_b: Vec<f32>,
}

impl<'a> Views<'a> {
    pub(crate) fn new(
        emb: &'a CorpusEmbeddings,
        corpora: Vec<usize>,
        (views, keep): (usize, f64),
        seed: Seed,
        pair: bool,
        labels: &'a [Vec<u32>],
    ) -> Self {
        let mut v = Views {
            emb,
            corpora,
            views,
            keep,
            seed,
            pair,
            labels,
            cache: Vec::new(),
            cache_b: Vec::new(),
        };
        let n = v.corpora.len() * v.views;
        let mut cache = Vec::with_capacity(n * emb.dim);
        let mut cache_b = Vec::new();
        for i in 0..n {
            let c = v.corpora[i / v.views];
            cache.extend(v.view(c, i % v.views, "a"));
            if pair {
                cache_b.extend(v.view(c, i % v.views, "b"));
            }
        }
        v.cache = cache;
        v.cache_b = cache_b;
        v
    }

    fn view(&self, c: usize, v: usize, tag: &str) -> Vec<f32> {
        let dim = self.emb.dim;
        if v == 0 && tag == "a" {
            return self.emb.vectors[c].clone();
        }
        let rows = &self.emb.words[c];
        let n = rows.len() / dim;
        let mut rng = self
            .seed
            .derive(&format!("view/{c}/{v}/{tag}"))
            .rng("words");
        let frac = self.keep + (1.0 - self.keep) * rng.random::<f64>();
        let m = ((frac * n as f64).round() as usize).clamp(1, n);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let picked: Vec<f32> = order[..m]
            .iter()
            .flat_map(|&i| rows[i * dim..(i + 1) * dim].to_vec())
            .collect();
        mean_vector(&picked, dim)
    }
}

impl BatchSource<SemanticBatch> for Views<'_> {
    fn len(&self) -> usize {
        self.corpora.len() * self.views
    }

    fn batch(
        &self,
        indices: &[usize],
        device: &Device,
    ) -> std::result::Result<SemanticBatch, BoxError> {
        let dim = self.emb.dim;
        let n = indices.len();
        let mut input = Vec::with_capacity(n * dim);
        let mut input_b = Vec::new();
        let mut target = Vec::with_capacity(n * dim);
        let mut corpus = Vec::with_capacity(n);
        for &i in indices {
            let c = self.corpora[i / self.views];
            input.extend_from_slice(&self.cache[i * dim..(i + 1) * dim]);
            if self.pair {
                input_b.extend_from_slice(&self.cache_b[i * dim..(i + 1) * dim]);
            }
            target.extend_from_slice(&self.emb.vectors[c]);
            corpus.push(c);
        }
        let labels = self
            .labels
            .iter()
            .map(|per| corpus.iter().map(|&c| per[c]).collect())
            .collect();
        Ok(SemanticBatch {
            input: matrix(input, n, dim, device),
            input_b: self.pair.then(|| matrix(input_b, n, dim, device)),
            target: matrix(target, n, dim, device),
            corpus,
            labels,
        })
    }
}
