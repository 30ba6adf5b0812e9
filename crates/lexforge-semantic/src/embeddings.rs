//! Word and corpus vectors of a corpus set from one embedding model: every distinct word is
//! embedded once, and a corpus vector is the L2-normalized mean of its words' vectors.

use std::collections::BTreeMap;

use lexforge_nn::encoder::SentenceEncoder;

use crate::corpus::CorpusSet;
use crate::error::Result;

/// Word and corpus vectors of a corpus set from one embedding model.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusEmbeddings {
    /// The embedding model's id.
    pub model_id: String,
    /// Its dimension.
    pub dim: usize,
    /// Per corpus, its word vectors (row-major `[words, dim]`).
    pub words: Vec<Vec<f32>>,
    /// Per corpus, the L2-normalized mean of its word vectors `[dim]`.
    pub vectors: Vec<Vec<f32>>,
}

/// L2-normalized mean of `rows` (row-major, width `dim`).
pub fn mean_vector(rows: &[f32], dim: usize) -> Vec<f32> {
    let mut mean = vec![0f32; dim];
    for row in rows.chunks(dim) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    mean.iter().map(|v| v / norm).collect()
}

/// Embeds every distinct word of `set` once with `encoder` and builds the corpus vectors.
///
/// # Errors
/// Encoder errors; [`SemanticError::EmptyCorpus`](crate::SemanticError::EmptyCorpus) via
/// [`CorpusSet::validate`].
pub fn embed_corpora(
    set: &CorpusSet,
    encoder: &dyn SentenceEncoder,
    batch_size: usize,
) -> Result<CorpusEmbeddings> {
    set.validate()?;
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &set.corpora {
        for w in &c.words {
            let next = index.len();
            index.entry(w.as_str()).or_insert(next);
        }
    }
    let mut unique: Vec<&str> = vec![""; index.len()];
    for (w, &i) in &index {
        unique[i] = w;
    }
    let emb = encoder.encode(&unique, batch_size)?;
    let dim = emb.dim();
    let mut words = Vec::with_capacity(set.corpora.len());
    let mut vectors = Vec::with_capacity(set.corpora.len());
    for c in &set.corpora {
        let rows: Vec<f32> = c
            .words
            .iter()
            .flat_map(|w| emb.row(index[w.as_str()]).to_vec())
            .collect();
        vectors.push(mean_vector(&rows, dim));
        words.push(rows);
    }
    Ok(CorpusEmbeddings {
        model_id: encoder.model_id().to_owned(),
        dim,
        words,
        vectors,
    })
}
