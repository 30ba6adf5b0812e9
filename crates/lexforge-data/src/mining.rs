//! Hard-negative mining: book centroids from chunk embeddings, and each book's nearest other
//! books by a blocked inner-product search on a burn device.
//!
//! The search computes `queries[block] @ keys[block]^T` on the device and keeps a running
//! top-K per query row on the host, so memory is bounded by `block × block` scores, never by
//! `N²`. Ties are broken by the lower key index, so results are deterministic.

use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// Parameters of neighbour mining.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MiningConfig {
    /// Chunks per book embedded and averaged into the book's centroid (seeded sample).
    pub num_chunks_for_embed: usize,
    /// Neighbour books kept per book.
    pub top_k: usize,
    /// Never list a book by the same author as a neighbour.
    pub exclude_same_author: bool,
    /// Rows and columns of one score block of the search.
    pub block_size: usize,
}

impl Default for MiningConfig {
    fn default() -> Self {
        MiningConfig {
            num_chunks_for_embed: 32,
            top_k: 5,
            exclude_same_author: true,
            block_size: 1024,
        }
    }
}

impl MiningConfig {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`DataError::InvalidParameter`] naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("num_chunks_for_embed", self.num_chunks_for_embed),
            ("top_k", self.top_k),
            ("block_size", self.block_size),
        ] {
            if v == 0 {
                return Err(DataError::InvalidParameter {
                    parameter: name,
                    reason: "must be at least 1".to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// One neighbour of a query.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// Row of the key matrix.
    pub index: usize,
    /// Inner product (cosine for L2-normalized rows).
    pub score: f32,
}

/// Row-major `[rows, dim]` f32 vectors.
#[derive(Debug, Clone, Copy)]
pub struct Vectors<'a> {
    /// The values, `rows * dim` of them.
    pub data: &'a [f32],
    /// Width.
    pub dim: usize,
}

impl Vectors<'_> {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }
}

/// For each query row, the `k` key rows with the largest inner product, best first, skipping
/// pairs for which `exclude(query, key)` is true. Computes blocks of at most `block × block`
/// scores on `device`.
///
/// # Errors
/// [`DataError::InvalidParameter`] when the widths differ, `k` or `block` is 0, or the
/// data length is not a multiple of the width.
pub fn top_k_inner_product(
    queries: Vectors<'_>,
    keys: Vectors<'_>,
    k: usize,
    block: usize,
    device: &Device,
    exclude: &(dyn Fn(usize, usize) -> bool + Sync),
) -> Result<Vec<Vec<Neighbour>>> {
    let bad = |parameter, reason: String| DataError::InvalidParameter { parameter, reason };
    if queries.dim != keys.dim || queries.dim == 0 {
        return Err(bad(
            "vectors",
            format!("query width {} vs key width {}", queries.dim, keys.dim),
        ));
    }
    if !queries.data.len().is_multiple_of(queries.dim) || !keys.data.len().is_multiple_of(keys.dim)
    {
        return Err(bad(
            "vectors",
            "data length is not a multiple of the width".to_owned(),
        ));
    }
    if k == 0 || block == 0 {
        return Err(bad("top_k", "k and block must be at least 1".to_owned()));
    }
    let d = queries.dim;
    let (nq, nk) = (queries.rows(), keys.rows());
    let mut best: Vec<Vec<Neighbour>> = vec![Vec::with_capacity(k + 1); nq];
    // Key blocks go to the device once per query block; for the sizes here (books, chunks)
    // the key side is the smaller cost.
    for q0 in (0..nq).step_by(block) {
        let q1 = (q0 + block).min(nq);
        let q = Tensor::<2>::from_data(
            TensorData::new(queries.data[q0 * d..q1 * d].to_vec(), [q1 - q0, d]),
            device,
        );
        for k0 in (0..nk).step_by(block) {
            let k1 = (k0 + block).min(nk);
            let kt = Tensor::<2>::from_data(
                TensorData::new(keys.data[k0 * d..k1 * d].to_vec(), [k1 - k0, d]),
                device,
            );
            let scores = q
                .clone()
                .matmul(kt.transpose())
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| bad("vectors", format!("cannot read scores back: {e:?}")))?;
            let width = k1 - k0;
            best[q0..q1]
                .par_iter_mut()
                .enumerate()
                .for_each(|(r, heap)| {
                    let qi = q0 + r;
                    for (c, &s) in scores[r * width..(r + 1) * width].iter().enumerate() {
                        let ki = k0 + c;
                        if exclude(qi, ki) || s.is_nan() {
                            continue;
                        }
                        push_top_k(
                            heap,
                            k,
                            Neighbour {
                                index: ki,
                                score: s,
                            },
                        );
                    }
                });
        }
    }
    Ok(best)
}

/// Inserts `n` into `heap` (sorted best first, at most `k` long) if it belongs there. Keys
/// arrive in increasing index order, so an equal score never displaces an earlier key.
fn push_top_k(heap: &mut Vec<Neighbour>, k: usize, n: Neighbour) {
    if heap.len() == k && heap.last().is_some_and(|w| w.score >= n.score) {
        return;
    }
    let pos = heap.partition_point(|h| h.score >= n.score);
    heap.insert(pos, n);
    heap.truncate(k);
}

/// The L2-normalized mean of `rows` of `vectors` (all zeros when `rows` is empty or the mean
/// is zero).
pub fn centroid(vectors: Vectors<'_>, rows: &[usize]) -> Vec<f32> {
    let d = vectors.dim;
    let mut c = vec![0.0f64; d];
    for &r in rows {
        for (a, &v) in c.iter_mut().zip(&vectors.data[r * d..(r + 1) * d]) {
            *a += f64::from(v);
        }
    }
    let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
    if norm > 0.0 {
        c.iter().map(|v| (v / norm) as f32).collect()
    } else {
        vec![0.0; d]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(q: &[f32], keys: &[f32], d: usize, k: usize, skip: usize) -> Vec<usize> {
        let mut s: Vec<(usize, f32)> = keys
            .chunks(d)
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(i, row)| (i, row.iter().zip(q).map(|(a, b)| a * b).sum()))
            .collect();
        s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        s.into_iter().take(k).map(|x| x.0).collect()
    }

    #[test]
    fn blocked_search_equals_brute_force_for_every_block_size() {
        let (n, d) = (37, 8);
        let mut state = 7u64;
        let data: Vec<f32> = (0..n * d)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect();
        let v = Vectors {
            data: &data,
            dim: d,
        };
        let device = Device::flex();
        for block in [1, 5, 16, 64] {
            let got = top_k_inner_product(v, v, 4, block, &device, &|q, k| q == k).unwrap();
            for (qi, row) in got.iter().enumerate() {
                let ids: Vec<usize> = row.iter().map(|n| n.index).collect();
                assert_eq!(ids, brute(&data[qi * d..(qi + 1) * d], &data, d, 4, qi));
            }
        }
    }

    #[test]
    fn ties_keep_the_lower_index_and_bad_shapes_are_errors() {
        let data = [1.0f32, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        let v = Vectors {
            data: &data,
            dim: 2,
        };
        let got = top_k_inner_product(v, v, 2, 3, &Device::flex(), &|_, _| false).unwrap();
        assert_eq!(
            got[0].iter().map(|n| n.index).collect::<Vec<_>>(),
            vec![0, 1]
        );
        let w = Vectors {
            data: &data,
            dim: 4,
        };
        assert!(top_k_inner_product(v, w, 2, 3, &Device::flex(), &|_, _| false).is_err());
        let c = centroid(v, &[0, 3]);
        assert!((c[0] - c[1]).abs() < 1e-6 && (c[0] - 0.70710677).abs() < 1e-6);
    }
}
