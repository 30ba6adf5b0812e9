//! Searching a library of books with a matcher: book centroids ([`Library`]), and the two-stage
//! search (bi-encoder prefilter, optional cross-encoder rerank) that ranks them for a passage.

use std::collections::BTreeMap;

use lexforge_data::Split;
use serde::{Deserialize, Serialize};

use crate::dataset::PreparedDataset;
use crate::error::{MatcherError, Result};
use crate::matcher::{Matcher, normalize};

/// One result of [`Matcher::search`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Book id.
    pub book: String,
    /// Cosine between the passage and the book's centroid.
    pub cosine: f64,
    /// The cross-encoder's best same-book logit between the passage and the book's closest
    /// passages, when the search reranked.
    pub rerank: Option<f64>,
}

/// How [`Matcher::search_with`] searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchOptions {
    /// Books to return.
    pub k: usize,
    /// Books kept by the bi-encoder stage for reranking (at least `k`).
    pub prefilter: usize,
    /// Rerank with the cross-encoder: `None` = when the matcher has a teacher.
    pub rerank: Option<bool>,
    /// Passages per candidate book scored by the cross-encoder (those closest to the query).
    pub passages_per_book: usize,
}

impl Default for SearchOptions {
    /// The top 5, reranking the top 20 with 3 passages each when a teacher is loaded: the
    /// defaults of the CLI's and Python's `search`.
    fn default() -> Self {
        SearchOptions {
            k: 5,
            prefilter: 20,
            rerank: None,
            passages_per_book: 3,
        }
    }
}

impl SearchOptions {
    /// The top `k`, other settings as [`SearchOptions::default`].
    pub fn top(k: usize) -> Self {
        SearchOptions {
            k,
            ..SearchOptions::default()
        }
    }
}

/// Book centroids to search: L2-normalized means of each book's passage embeddings.
#[derive(Debug, Clone)]
pub struct Library {
    books: Vec<String>,
    centroids: Vec<f32>,
    dim: usize,
    /// Each book's passages and their embeddings (rows × dim), for reranking.
    passages: Vec<(Vec<String>, Vec<f32>)>,
    /// The [`Matcher::model_id`] of the matcher that embedded it.
    model_id: String,
}

impl Library {
    /// The model that embedded the library ([`Matcher::model_id`]).
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Book ids, in row order.
    pub fn books(&self) -> &[String] {
        &self.books
    }

    /// Number of books.
    pub fn len(&self) -> usize {
        self.books.len()
    }

    /// Whether there are no books.
    pub fn is_empty(&self) -> bool {
        self.books.is_empty()
    }
}

impl Matcher {
    /// The library of a prepared dataset's books (one centroid per book over its chunks),
    /// only those of `split` when given.
    ///
    /// # Errors
    /// As [`Matcher::library`].
    pub fn library_of_dataset(
        &self,
        dataset: &PreparedDataset,
        split: Option<Split>,
        batch_size: usize,
    ) -> Result<Library> {
        let mut books: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for c in dataset
            .chunks
            .iter()
            .filter(|c| split.is_none_or(|s| c.split == s))
        {
            books
                .entry(c.book.clone())
                .or_default()
                .push(c.text.clone());
        }
        let books: Vec<(String, Vec<String>)> = books.into_iter().collect();
        self.library(&books, batch_size)
    }

    /// A library of books from their passages: each book's centroid is the L2-normalized
    /// mean of its passages' embeddings.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for a book without passages or an empty passage.
    pub fn library(&self, books: &[(String, Vec<String>)], batch_size: usize) -> Result<Library> {
        let dim = self.dim();
        let mut centroids = Vec::with_capacity(books.len() * dim);
        let mut stored = Vec::with_capacity(books.len());
        for (id, passages) in books {
            if passages.is_empty() {
                return Err(MatcherError::InvalidInput {
                    reason: format!("book {id} has no passages"),
                });
            }
            let texts: Vec<&str> = passages.iter().map(String::as_str).collect();
            let e = self.embed(&texts, batch_size)?;
            let mut c = vec![0.0f32; dim];
            for row in e.chunks_exact(dim) {
                for (a, b) in c.iter_mut().zip(row) {
                    *a += b;
                }
            }
            normalize(&mut c);
            centroids.extend(c);
            stored.push((passages.clone(), e));
        }
        Ok(Library {
            books: books.iter().map(|b| b.0.clone()).collect(),
            centroids,
            dim,
            passages: stored,
            model_id: self.model_id().to_owned(),
        })
    }

    /// The `k` books of `library` whose centroids are closest to `passage`, best first,
    /// reranked by the cross-encoder when the matcher has one ([`SearchOptions::top`]).
    ///
    /// # Errors
    /// As [`Matcher::search_with`].
    pub fn search(&self, passage: &str, library: &Library, k: usize) -> Result<Vec<SearchHit>> {
        self.search_with(passage, library, &SearchOptions::top(k))
    }

    /// Two-stage search: the bi-encoder ranks every book by centroid cosine and keeps
    /// `prefilter`; the cross-encoder (when reranking) scores the passage against each
    /// candidate's `passages_per_book` closest passages and ranks by the best logit.
    ///
    /// # Errors
    /// [`MatcherError::InvalidInput`] for an empty passage, a library built by a matcher of
    /// another dimension, or `rerank: Some(true)` without a teacher.
    pub fn search_with(
        &self,
        passage: &str,
        library: &Library,
        options: &SearchOptions,
    ) -> Result<Vec<SearchHit>> {
        if library.model_id != self.model_id() {
            return Err(MatcherError::LibraryMismatch {
                library: library.model_id.clone(),
                matcher: self.model_id().to_owned(),
            });
        }
        let rerank = match (options.rerank, self.teacher()) {
            (Some(true), None) => {
                return Err(MatcherError::InvalidInput {
                    reason: "reranking needs a cross-encoder teacher (train with distill > 0, \
                             or put one in the matcher's teacher/ directory)"
                        .into(),
                });
            }
            (Some(false), _) | (None, None) => None,
            (_, Some(t)) => Some(t),
        };
        let q = self.embed(&[passage], 1)?;
        let dot = |row: &[f32]| row.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>();
        let mut scored: Vec<(usize, f32)> = library
            .centroids
            .chunks_exact(library.dim)
            .map(dot)
            .enumerate()
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let Some(teacher) = rerank else {
            return Ok(scored
                .into_iter()
                .take(options.k)
                .map(|(i, s)| SearchHit {
                    book: library.books[i].clone(),
                    cosine: f64::from(s),
                    rerank: None,
                })
                .collect());
        };
        let keep = options.prefilter.max(options.k);
        let mut hits = Vec::with_capacity(keep);
        for (i, s) in scored.into_iter().take(keep) {
            let (texts, rows) = &library.passages[i];
            let mut near: Vec<(usize, f32)> = rows
                .chunks_exact(library.dim)
                .map(dot)
                .enumerate()
                .collect();
            near.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let pairs: Vec<(&str, &str)> = near
                .iter()
                .take(options.passages_per_book.max(1))
                .map(|&(j, _)| (passage, texts[j].as_str()))
                .collect();
            let best = teacher
                .logits(&pairs, 16)?
                .into_iter()
                .fold(f64::NEG_INFINITY, f64::max);
            hits.push(SearchHit {
                book: library.books[i].clone(),
                cosine: f64::from(s),
                rerank: Some(best),
            });
        }
        hits.sort_by(|a, b| {
            b.rerank
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&a.rerank.unwrap_or(f64::NEG_INFINITY))
                .then(b.cosine.total_cmp(&a.cosine))
        });
        hits.truncate(options.k);
        Ok(hits)
    }
}
