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
            block_size: 2048,
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
            // One gemm call on the pool, the transposed keys read in place (flex; burn's
            // matmul elsewhere).
            let data = lexforge_nn::linear::matmul_bias(q.clone(), kt.transpose(), None)
                .into_data()
                .convert::<f32>();
            let scores = data
                .as_slice::<f32>()
                .map_err(|e| bad("vectors", format!("cannot read scores back: {e:?}")))?;
            scan_rows(&mut best[q0..q1], q0, scores, k0, k1 - k0, k, exclude);
        }
    }
    Ok(best)
}

/// For each row `r` of the `[heaps.len(), width]` score block (rows `row0 + r`, columns
/// `col0 + c`), offers every column to the row's top-K list, in parallel over rows.
fn scan_rows(
    heaps: &mut [Vec<Neighbour>],
    row0: usize,
    scores: &[f32],
    col0: usize,
    width: usize,
    k: usize,
    exclude: &(dyn Fn(usize, usize) -> bool + Sync),
) {
    const LANES: usize = 16;
    heaps.par_iter_mut().enumerate().for_each(|(r, heap)| {
        let qi = row0 + r;
        let row = &scores[r * width..(r + 1) * width];
        let mut floor = if heap.len() == k {
            heap[k - 1].score
        } else {
            f32::NEG_INFINITY
        };
        for (g, group) in row.chunks(LANES).enumerate() {
            // Most groups hold nothing above the current K-th score: one vectorized test.
            if !group.iter().fold(false, |any, &s| any | (s > floor)) {
                continue;
            }
            for (j, &s) in group.iter().enumerate() {
                if s <= floor || s.is_nan() {
                    continue;
                }
                let ki = col0 + g * LANES + j;
                if exclude(qi, ki) {
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
                if heap.len() == k {
                    floor = heap[k - 1].score;
                }
            }
        }
    });
}

/// For each column `c` of the `[rows, heaps.len()]` score block (key rows `row0 + r`, query
/// `col0 + c`), offers every row to column `c`'s top-K list: the transposed view of a block,
/// read row by row (sequential memory), with columns split across the pool.
fn scan_columns(
    heaps: &mut [Vec<Neighbour>],
    col0: usize,
    scores: &[f32],
    row0: usize,
    rows: usize,
    k: usize,
    exclude: &(dyn Fn(usize, usize) -> bool + Sync),
) {
    let width = heaps.len();
    let parts = rayon::current_num_threads().max(1) * 4;
    let span = width.div_ceil(parts).max(1);
    heaps
        .par_chunks_mut(span)
        .enumerate()
        .for_each(|(p, chunk)| {
            let c_start = p * span;
            let mut floor: Vec<f32> = chunk
                .iter()
                .map(|h| {
                    if h.len() == k {
                        h[k - 1].score
                    } else {
                        f32::NEG_INFINITY
                    }
                })
                .collect();
            for r in 0..rows {
                let row = &scores[r * width + c_start..r * width + c_start + chunk.len()];
                for (g, group) in row.chunks(16).enumerate() {
                    let base = g * 16;
                    let floors = &floor[base..base + group.len()];
                    // One vectorized test per 16 columns; most hold nothing new.
                    if !group
                        .iter()
                        .zip(floors)
                        .fold(false, |any, (&s, &f)| any | (s > f))
                    {
                        continue;
                    }
                    for (jj, &s) in group.iter().enumerate() {
                        let j = base + jj;
                        if s <= floor[j] || s.is_nan() {
                            continue;
                        }
                        let (qi, ki) = (col0 + c_start + j, row0 + r);
                        if exclude(qi, ki) {
                            continue;
                        }
                        let heap = &mut chunk[j];
                        push_top_k(
                            heap,
                            k,
                            Neighbour {
                                index: ki,
                                score: s,
                            },
                        );
                        if heap.len() == k {
                            floor[j] = heap[k - 1].score;
                        }
                    }
                }
            }
        });
}

/// [`top_k_inner_product`] of a set against itself (each row's `k` nearest *other* rows, when
/// `exclude` rejects `q == key`), computing each pair of blocks once: the score matrix is
/// symmetric, so block `(b, c)` also serves, read by columns, as block `(c, b)`. Half the matrix
/// products of the general search; same results, same tie-breaking (lower index first).
///
/// # Errors
/// As [`top_k_inner_product`].
pub fn top_k_self(
    vectors: Vectors<'_>,
    k: usize,
    block: usize,
    device: &Device,
    exclude: &(dyn Fn(usize, usize) -> bool + Sync),
) -> Result<Vec<Vec<Neighbour>>> {
    let bad = |parameter, reason: String| DataError::InvalidParameter { parameter, reason };
    if vectors.dim == 0 || !vectors.data.len().is_multiple_of(vectors.dim) {
        return Err(bad(
            "vectors",
            "data length is not a multiple of a non-zero width".to_owned(),
        ));
    }
    if k == 0 || block == 0 {
        return Err(bad("top_k", "k and block must be at least 1".to_owned()));
    }
    let (n, d) = (vectors.rows(), vectors.dim);
    let tensor = |r0: usize, r1: usize| {
        Tensor::<2>::from_data(
            TensorData::new(vectors.data[r0 * d..r1 * d].to_vec(), [r1 - r0, d]),
            device,
        )
    };
    let mut best: Vec<Vec<Neighbour>> = vec![Vec::with_capacity(k + 1); n];
    // Row block b meets column blocks c >= b; for a row in block c, candidates from blocks
    // b < c arrive (transposed) before its own pass, so keys always arrive in index order.
    for b0 in (0..n).step_by(block) {
        let b1 = (b0 + block).min(n);
        let q = tensor(b0, b1);
        for c0 in (b0..n).step_by(block) {
            let c1 = (c0 + block).min(n);
            let data =
                lexforge_nn::linear::matmul_bias(q.clone(), tensor(c0, c1).transpose(), None)
                    .into_data()
                    .convert::<f32>();
            let scores = data
                .as_slice::<f32>()
                .map_err(|e| bad("vectors", format!("cannot read scores back: {e:?}")))?;
            let (bw, cw) = (b1 - b0, c1 - c0);
            if c0 == b0 {
                scan_rows(&mut best[b0..b1], b0, scores, c0, cw, k, exclude);
            } else {
                let (head, tail) = best.split_at_mut(c0);
                scan_rows(&mut head[b0..b1], b0, scores, c0, cw, k, exclude);
                scan_columns(&mut tail[..cw], c0, scores, b0, bw, k, exclude);
            }
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
pub(crate) fn centroid(vectors: Vectors<'_>, rows: &[usize]) -> Vec<f32> {
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
    fn self_search_equals_the_general_search() {
        let (n, d) = (53, 6);
        let data: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let v = Vectors {
            data: &data,
            dim: d,
        };
        let device = Device::flex();
        let odd = |q: usize, k: usize| q == k || (q + k).is_multiple_of(7);
        for block in [1, 4, 10, 53, 64] {
            for exclude in [&odd as &(dyn Fn(usize, usize) -> bool + Sync), &|q, k| {
                q == k
            }] {
                let sym = top_k_self(v, 5, block, &device, exclude).unwrap();
                let general = top_k_inner_product(v, v, 5, block, &device, exclude).unwrap();
                for (a, b) in sym.iter().zip(&general) {
                    let ia: Vec<usize> = a.iter().map(|x| x.index).collect();
                    let ib: Vec<usize> = b.iter().map(|x| x.index).collect();
                    assert_eq!(ia, ib, "block {block}");
                }
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
        let e = top_k_inner_product(v, w, 2, 3, &Device::flex(), &|_, _| false).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::InvalidParameter {
                    parameter: "vectors",
                    ..
                }
            ) && e.to_string().contains("query width 2 vs key width 4"),
            "{e}"
        );
        // A NaN vector (a damaged encoder) is never anyone's neighbour and has none itself.
        let nan = [1.0f32, 0.0, f32::NAN, 0.0, 0.0, 1.0];
        let x = Vectors { data: &nan, dim: 2 };
        let got = top_k_inner_product(x, x, 3, 3, &Device::flex(), &|q, k| q == k).unwrap();
        assert_eq!(
            got.iter()
                .map(|r| r.iter().map(|n| n.index).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            vec![vec![2], vec![], vec![0]]
        );
        let c = centroid(v, &[0, 3]);
        assert!((c[0] - c[1]).abs() < 1e-6 && (c[0] - 0.70710677).abs() < 1e-6);
    }
}
