//! Topics: k-means over chunk embeddings, so pairs can say whether their two chunks share a
//! topic (the matcher's topic adversary and probe read these labels).
//!
//! Deterministic for a seed: k-means++ seeding from a seeded RNG, assignments computed in
//! parallel (each is independent), centroid sums accumulated sequentially in row order.

use rand::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use lexforge_core::Seed;

use crate::error::{DataError, Result};
use crate::mining::Vectors;

/// k-means parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicConfig {
    /// Number of clusters (fewer when there are fewer vectors).
    pub k: usize,
    /// Most Lloyd iterations (stops early when no assignment changes).
    pub max_iterations: usize,
    /// Most chunk vectors the clusters are fitted on (a seeded sample when there are more;
    /// every chunk is then assigned to its nearest cluster), so the merge's memory does not
    /// grow with the corpus.
    pub fit_sample: usize,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            k: 5,
            max_iterations: 50,
            fit_sample: 20_000,
        }
    }
}

/// The result of [`kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// Cluster of each row.
    pub assignments: Vec<u32>,
    /// `[k, dim]` centroids, row-major.
    pub centroids: Vec<f32>,
    /// Clusters used (`min(k, rows)`).
    pub k: usize,
    /// Iterations run.
    pub iterations: usize,
    /// Mean squared distance of rows to their centroid.
    pub inertia: f64,
}

fn dist2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The centroid (of `[k, d]` `centroids`) nearest to `row`, and the squared distance.
pub(crate) fn nearest(row: &[f32], centroids: &[f32], d: usize) -> (u32, f32) {
    let mut best = (0u32, f32::INFINITY);
    for (c, cen) in centroids.chunks(d).enumerate() {
        let s = dist2(row, cen);
        if s < best.1 {
            best = (c as u32, s);
        }
    }
    best
}

/// k-means (squared Euclidean) of the rows of `vectors`, seeded.
///
/// # Errors
/// [`DataError::InvalidParameter`] when `k` is 0 or there are no rows.
pub fn kmeans(vectors: Vectors<'_>, config: &TopicConfig, seed: Seed) -> Result<Clustering> {
    let n = vectors.rows();
    let d = vectors.dim;
    if config.k == 0 {
        return Err(DataError::InvalidParameter {
            parameter: "topics.k",
            reason: "must be at least 1".to_owned(),
        });
    }
    if n == 0 {
        return Err(DataError::InvalidParameter {
            parameter: "vectors",
            reason: "k-means needs at least one vector".to_owned(),
        });
    }
    let k = config.k.min(n);
    let row = |i: usize| &vectors.data[i * d..(i + 1) * d];
    let mut rng = seed.rng("kmeans");

    // k-means++ seeding.
    let mut centroids: Vec<f32> = row(rng.random_range(0..n)).to_vec();
    let mut d2: Vec<f32> = (0..n).map(|i| dist2(row(i), &centroids[..d])).collect();
    while centroids.len() < k * d {
        let total: f64 = d2.iter().map(|&v| f64::from(v)).sum();
        let pick = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut chosen = n - 1;
            for (i, &v) in d2.iter().enumerate() {
                target -= f64::from(v);
                if target <= 0.0 && v > 0.0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        } else {
            rng.random_range(0..n)
        };
        let start = centroids.len();
        centroids.extend_from_slice(row(pick));
        for (i, v) in d2.iter_mut().enumerate() {
            *v = v.min(dist2(row(i), &centroids[start..start + d]));
        }
    }

    let mut assignments = vec![u32::MAX; n];
    let mut iterations = 0;
    for _ in 0..config.max_iterations.max(1) {
        iterations += 1;
        let next: Vec<u32> = (0..n)
            .into_par_iter()
            .map(|i| nearest(row(i), &centroids, d).0)
            .collect();
        let changed = next != assignments;
        assignments = next;
        if !changed {
            break;
        }
        let mut sums = vec![0.0f64; k * d];
        let mut counts = vec![0usize; k];
        for (i, &a) in assignments.iter().enumerate() {
            counts[a as usize] += 1;
            for (s, &v) in sums[a as usize * d..(a as usize + 1) * d]
                .iter_mut()
                .zip(row(i))
            {
                *s += f64::from(v);
            }
        }
        for c in 0..k {
            if counts[c] == 0 {
                continue; // an empty cluster keeps its centroid
            }
            for j in 0..d {
                centroids[c * d + j] = (sums[c * d + j] / counts[c] as f64) as f32;
            }
        }
    }
    let inertia = (0..n)
        .map(|i| {
            f64::from(dist2(
                row(i),
                &centroids[assignments[i] as usize * d..][..d],
            ))
        })
        .sum::<f64>()
        / n as f64;
    Ok(Clustering {
        assignments,
        centroids,
        k,
        iterations,
        inertia,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separated_blobs_are_found_and_runs_repeat() {
        let mut data = Vec::new();
        for c in 0..3 {
            for i in 0..20 {
                let jitter = (i as f32 * 0.37).sin() * 0.05;
                data.extend_from_slice(&[c as f32 * 10.0 + jitter, -(c as f32) * 5.0 - jitter]);
            }
        }
        let v = Vectors {
            data: &data,
            dim: 2,
        };
        let config = TopicConfig {
            k: 3,
            max_iterations: 50,
            ..TopicConfig::default()
        };
        let a = kmeans(v, &config, Seed(1)).unwrap();
        assert_eq!(a, kmeans(v, &config, Seed(1)).unwrap());
        for blob in 0..3 {
            let ids = &a.assignments[blob * 20..(blob + 1) * 20];
            assert!(ids.iter().all(|&x| x == ids[0]), "blob {blob}: {ids:?}");
        }
        assert!(a.inertia < 0.01);
        let few = kmeans(
            Vectors {
                data: &data[..4],
                dim: 2,
            },
            &config,
            Seed(1),
        )
        .unwrap();
        assert_eq!(few.k, 2);
        assert!(kmeans(v, &TopicConfig { k: 0, ..config }, Seed(1)).is_err());
    }
}
