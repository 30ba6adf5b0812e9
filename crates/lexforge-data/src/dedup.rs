//! Cross-book deduplication of chunks: exact repeats (a normalized fingerprint) and near
//! duplicates (MinHash signatures + locality-sensitive hashing with a Jaccard threshold).
//!
//! Order matters and is fixed: chunks are considered in the order given (the pipeline sorts
//! them by book id, then index), the first of a group is kept, and every removal is reported
//! with the chunk it duplicates.

use std::collections::HashMap;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use lexforge_core::Seed;

use crate::chunk::Chunk;
use crate::error::{DataError, Result};

/// What [`dedup`] removes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// Remove exact repeats (same text after lowercasing and keeping only letters and digits).
    pub exact: bool,
    /// An exact repeat is removed (every copy) once it occurs in this many different books;
    /// repeats inside one book keep their first copy.
    pub exact_min_books: usize,
    /// Remove near duplicates across books.
    pub near: bool,
    /// Estimated Jaccard similarity of word shingles at or above which two chunks of
    /// different books are near duplicates.
    pub jaccard_threshold: f64,
    /// MinHash permutations (signature length).
    pub num_perm: usize,
    /// Words per shingle.
    pub shingle_words: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            exact: true,
            exact_min_books: 2,
            near: true,
            jaccard_threshold: 0.8,
            num_perm: 128,
            shingle_words: 5,
        }
    }
}

impl DedupConfig {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`DataError::InvalidParameter`] naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |parameter, reason: &str| {
            Err(DataError::InvalidParameter {
                parameter,
                reason: reason.to_owned(),
            })
        };
        if self.exact_min_books < 2 {
            return bad("exact_min_books", "must be at least 2 (books)");
        }
        if !(self.jaccard_threshold > 0.0 && self.jaccard_threshold <= 1.0) {
            return bad("jaccard_threshold", "must be in (0, 1]");
        }
        if !(2..=1024).contains(&self.num_perm) {
            return bad("num_perm", "must be in 2..=1024");
        }
        if self.shingle_words == 0 {
            return bad("shingle_words", "must be at least 1");
        }
        Ok(())
    }
}

/// A removed chunk and the kept chunk it duplicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Removal {
    /// `"exact"`, `"exact_in_book"` or `"near"`.
    pub kind: String,
    /// The removed chunk's book.
    pub book: String,
    /// The removed chunk's index.
    pub index: u32,
    /// The book of the chunk it repeats.
    pub of_book: String,
    /// The index of the chunk it repeats.
    pub of_index: u32,
    /// Estimated Jaccard similarity (near duplicates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jaccard: Option<f64>,
}

/// What [`dedup`] removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DedupReport {
    /// Chunks in.
    pub input: u64,
    /// Fingerprints found in at least `exact_min_books` books.
    pub exact_groups: u64,
    /// Chunks removed as exact repeats across books (every copy).
    pub exact_removed: u64,
    /// Chunks removed as exact repeats of an earlier chunk of the same book.
    pub exact_in_book_removed: u64,
    /// Chunks removed as near duplicates of a chunk of another book.
    pub near_removed: u64,
    /// LSH bands and rows per band used.
    pub lsh_bands: usize,
    /// Rows per band.
    pub lsh_rows: usize,
    /// Chunks out.
    pub output: u64,
    /// The first removals (at most 50), for inspection.
    pub examples: Vec<Removal>,
}

const MAX_EXAMPLES: usize = 50;

/// Removes exact and near duplicates (see the module docs). `seed` fixes the MinHash
/// permutations.
///
/// # Errors
/// [`DataError::InvalidParameter`] for a bad config.
pub fn dedup(
    chunks: Vec<Chunk>,
    config: &DedupConfig,
    seed: Seed,
) -> Result<(Vec<Chunk>, DedupReport)> {
    config.validate()?;
    let mut report = DedupReport {
        input: chunks.len() as u64,
        ..DedupReport::default()
    };
    let mut keep = vec![true; chunks.len()];
    let mut removals = Vec::new();

    if config.exact {
        let prints: Vec<[u8; 16]> = chunks.par_iter().map(|c| fingerprint(&c.text)).collect();
        let mut groups: HashMap<[u8; 16], Vec<usize>> = HashMap::new();
        for (i, p) in prints.iter().enumerate() {
            groups.entry(*p).or_default().push(i);
        }
        let mut ordered: Vec<&Vec<usize>> = groups.values().filter(|g| g.len() > 1).collect();
        ordered.sort_unstable_by_key(|g| g[0]);
        for group in ordered {
            let first = group[0];
            let mut books: Vec<&str> = group.iter().map(|&i| chunks[i].book.as_str()).collect();
            books.sort_unstable();
            books.dedup();
            if books.len() >= config.exact_min_books {
                report.exact_groups += 1;
                for &i in group {
                    keep[i] = false;
                    report.exact_removed += 1;
                    removals.push(removal("exact", &chunks[i], &chunks[first], None));
                }
            } else {
                // All copies in one book: keep the first.
                for &i in &group[1..] {
                    keep[i] = false;
                    report.exact_in_book_removed += 1;
                    removals.push(removal("exact_in_book", &chunks[i], &chunks[first], None));
                }
            }
        }
    }

    if config.near {
        let hasher = MinHasher::new(config.num_perm, config.shingle_words, seed);
        let (bands, rows) = optimal_lsh_params(config.jaccard_threshold, config.num_perm);
        report.lsh_bands = bands;
        report.lsh_rows = rows;
        let alive: Vec<usize> = (0..chunks.len()).filter(|&i| keep[i]).collect();
        let sigs: Vec<Vec<u32>> = alive
            .par_iter()
            .map(|&i| hasher.signature(&chunks[i].text))
            .collect();
        let mut lsh = MinHashLsh::new(bands, rows);
        // In order: a chunk is compared with the kept chunks before it (only kept chunks
        // enter the index).
        for (a, &i) in alive.iter().enumerate() {
            let mut dup: Option<(usize, f64)> = None;
            let mut candidates = lsh.query(&sigs[a]);
            candidates.sort_unstable();
            for b in candidates {
                let j = alive[b];
                if chunks[j].book == chunks[i].book {
                    continue;
                }
                let jac = jaccard(&sigs[a], &sigs[b]);
                if jac >= config.jaccard_threshold {
                    dup = Some((j, jac));
                    break;
                }
            }
            if let Some((j, jac)) = dup {
                keep[i] = false;
                report.near_removed += 1;
                removals.push(removal("near", &chunks[i], &chunks[j], Some(jac)));
            } else {
                lsh.insert(a, &sigs[a]);
            }
        }
    }

    report.examples = removals.into_iter().take(MAX_EXAMPLES).collect();
    let out: Vec<Chunk> = chunks
        .into_iter()
        .zip(keep)
        .filter_map(|(c, k)| k.then_some(c))
        .collect();
    report.output = out.len() as u64;
    Ok((out, report))
}

fn removal(kind: &str, gone: &Chunk, of: &Chunk, jaccard: Option<f64>) -> Removal {
    Removal {
        kind: kind.to_owned(),
        book: gone.book.clone(),
        index: gone.index,
        of_book: of.book.clone(),
        of_index: of.index,
        jaccard,
    }
}

/// The exact-repeat fingerprint: sha256 (first 16 bytes) of the lowercased letters and digits,
/// words separated by one space.
pub(crate) fn fingerprint(text: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    let (mut pending, mut started) = (false, false);
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c.is_alphanumeric() {
            if pending && started {
                h.update(b" ");
            }
            pending = false;
            started = true;
            for l in c.to_lowercase() {
                h.update(l.encode_utf8(&mut buf).as_bytes());
            }
        } else if c.is_whitespace() {
            pending = true;
        }
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

const MERSENNE_61: u64 = (1 << 61) - 1;

/// MinHash signatures over word shingles, with the universal hash family
/// `h_i(x) = (a_i x + b_i) mod (2^61 - 1)` truncated to 32 bits (the scheme of datasketch).
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: Vec<u64>,
    b: Vec<u64>,
    shingle_words: usize,
}

impl MinHasher {
    /// `num_perm` permutations drawn from `seed`, shingles of `shingle_words` words.
    pub fn new(num_perm: usize, shingle_words: usize, seed: Seed) -> Self {
        let mut state = seed.derive("minhash").0;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let a = (0..num_perm)
            .map(|_| next() % (MERSENNE_61 - 1) + 1)
            .collect();
        let b = (0..num_perm).map(|_| next() % MERSENNE_61).collect();
        MinHasher {
            a,
            b,
            shingle_words: shingle_words.max(1),
        }
    }

    /// Signature length.
    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// The signature of `text`: for each permutation, the minimum over the text's shingles.
    /// Words are maximal runs of letters and digits, lowercased; a text with fewer words than
    /// a shingle is one shingle; an empty text has the all-`u32::MAX` signature.
    pub fn signature(&self, text: &str) -> Vec<u32> {
        self.signature_of_hashes(&shingle_hashes(text, self.shingle_words))
    }

    /// The signature of pre-hashed shingles (64-bit).
    pub fn signature_of_hashes(&self, hashes: &[u64]) -> Vec<u32> {
        let mut sig = vec![u32::MAX; self.a.len()];
        for &x in hashes {
            let x = x % MERSENNE_61;
            for ((s, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                let v = mod_mersenne(u128::from(a) * u128::from(x) + u128::from(b)) as u32;
                if v < *s {
                    *s = v;
                }
            }
        }
        sig
    }
}

fn mod_mersenne(x: u128) -> u64 {
    let lo = (x as u64) & MERSENNE_61;
    let hi = (x >> 61) as u64;
    let mut r = lo + (hi & MERSENNE_61) + (hi >> 61);
    while r >= MERSENNE_61 {
        r -= MERSENNE_61;
    }
    r
}

/// 64-bit hashes (FNV-1a, then a SplitMix finalizer) of the `k`-word shingles of `text`.
pub(crate) fn shingle_hashes(text: &str, k: usize) -> Vec<u64> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        return Vec::new();
    }
    let word_hashes: Vec<u64> = words.iter().map(|w| fnv1a(w.as_bytes())).collect();
    let k = k.min(word_hashes.len());
    let mut out: Vec<u64> = word_hashes
        .windows(k)
        .map(|w| {
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            for &x in w {
                h = (h ^ x).wrapping_mul(0x0100_0000_01b3);
                h = finalize(h);
            }
            h
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Estimated Jaccard similarity: the share of equal signature positions.
pub fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() {
        return 0.0;
    }
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len() as f64
}

/// The key of band `band` (of `rows` rows) of signature `sig`.
pub(crate) fn band_key(sig: &[u32], rows: usize, band: usize) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &v in &sig[band * rows..(band + 1) * rows] {
        h = (h ^ u64::from(v)).wrapping_mul(0x0100_0000_01b3);
    }
    finalize(h)
}

/// LSH over MinHash signatures: `bands` bands of `rows` rows; two signatures are candidates
/// when one band is equal.
#[derive(Debug, Clone)]
pub struct MinHashLsh {
    rows: usize,
    tables: Vec<HashMap<u64, Vec<usize>>>,
}

impl MinHashLsh {
    /// An empty index.
    pub fn new(bands: usize, rows: usize) -> Self {
        MinHashLsh {
            rows,
            tables: vec![HashMap::new(); bands],
        }
    }

    fn band_key(&self, sig: &[u32], band: usize) -> u64 {
        band_key(sig, self.rows, band)
    }

    /// Adds signature `sig` under `id`.
    pub fn insert(&mut self, id: usize, sig: &[u32]) {
        for band in 0..self.tables.len() {
            let key = self.band_key(sig, band);
            self.tables[band].entry(key).or_default().push(id);
        }
    }

    /// Ids sharing at least one band with `sig` (each once, unordered).
    pub fn query(&self, sig: &[u32]) -> Vec<usize> {
        let mut out = Vec::new();
        for band in 0..self.tables.len() {
            if let Some(ids) = self.tables[band].get(&self.band_key(sig, band)) {
                out.extend_from_slice(ids);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The bands × rows (`bands * rows <= num_perm`) that minimize the sum of the false-positive
/// and false-negative probability areas around `threshold` (datasketch's criterion, equal
/// weights).
pub fn optimal_lsh_params(threshold: f64, num_perm: usize) -> (usize, usize) {
    let integrate = |f: &dyn Fn(f64) -> f64, lo: f64, hi: f64| {
        let steps = 200;
        let h = (hi - lo) / steps as f64;
        (0..steps)
            .map(|i| {
                let x = lo + (i as f64 + 0.5) * h;
                f(x) * h
            })
            .sum::<f64>()
    };
    let mut best = (1, num_perm);
    let mut best_err = f64::INFINITY;
    for b in 1..=num_perm {
        let max_r = num_perm / b;
        for r in 1..=max_r {
            let (bf, rf) = (b as f64, r as i32);
            let p = |s: f64| 1.0 - (1.0 - s.powi(rf)).powf(bf);
            let fp = integrate(&|s| p(s), 0.0, threshold);
            let fneg = integrate(&|s| 1.0 - p(s), threshold, 1.0);
            let err = fp + fneg;
            if err < best_err {
                best_err = err;
                best = (b, r);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(book: &str, index: u32, text: &str) -> Chunk {
        Chunk {
            book: book.into(),
            index,
            start: 0,
            end: text.chars().count(),
            text: text.into(),
        }
    }

    const BASE: &str = "the quick brown fox jumps over the lazy dog while the farmer \
        watches from the porch and the children laugh at the little dog that runs in circles \
        around the old oak tree near the river bank on a warm summer afternoon";

    #[test]
    fn minhash_estimates_jaccard() {
        let h = MinHasher::new(256, 3, Seed(1));
        let a = h.signature(BASE);
        assert_eq!(jaccard(&a, &h.signature(BASE)), 1.0);
        let other = h.signature("completely different words about ships and the sea and sailors");
        assert!(jaccard(&a, &other) < 0.1);
        // Change one word of ~45: three 3-shingles differ.
        let edited = BASE.replace("porch", "garden");
        let sa: std::collections::HashSet<u64> = shingle_hashes(BASE, 3).into_iter().collect();
        let sb: std::collections::HashSet<u64> = shingle_hashes(&edited, 3).into_iter().collect();
        let truth = sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64;
        let est = jaccard(&a, &h.signature(&edited));
        assert!((est - truth).abs() < 0.1, "est {est} truth {truth}");
    }

    #[test]
    fn lsh_params_match_the_threshold() {
        let (b, r) = optimal_lsh_params(0.8, 128);
        assert!(b * r <= 128);
        // The S-curve's midpoint (1/b)^(1/r) sits near the threshold.
        let mid = (1.0 / b as f64).powf(1.0 / r as f64);
        assert!((mid - 0.8).abs() < 0.1, "b {b} r {r} mid {mid}");
    }

    #[test]
    fn exact_and_near_duplicates_are_removed_and_reported() {
        let licence = "This eBook is for the use of anyone anywhere at no cost and with \
                       almost no restrictions whatsoever.";
        let chunks = vec![
            chunk("a/one", 0, BASE),
            chunk("a/one", 1, licence),
            chunk(
                "a/one",
                2,
                "A line that repeats inside one book only, twice.",
            ),
            chunk("a/one", 3, "a line that REPEATS inside one book only twice"),
            chunk("b/two", 0, &BASE.replace("afternoon", "evening")),
            chunk("b/two", 1, &format!("  {licence} ")),
            chunk("c/three", 0, licence),
            chunk(
                "c/three",
                1,
                "Something else entirely, about whales and ships at sea.",
            ),
        ];
        let (kept, report) = dedup(chunks, &DedupConfig::default(), Seed(0)).unwrap();
        let ids: Vec<(String, u32)> = kept.iter().map(|c| (c.book.clone(), c.index)).collect();
        assert_eq!(
            ids,
            vec![
                ("a/one".into(), 0),
                ("a/one".into(), 2),
                ("c/three".into(), 1)
            ]
        );
        assert_eq!(report.exact_groups, 1);
        assert_eq!(
            report.exact_removed, 3,
            "every copy of the cross-book repeat"
        );
        assert_eq!(report.exact_in_book_removed, 1);
        assert_eq!(report.near_removed, 1);
        assert_eq!(report.output, 3);
        let near = report.examples.iter().find(|r| r.kind == "near").unwrap();
        assert_eq!(
            (near.book.as_str(), near.of_book.as_str()),
            ("b/two", "a/one")
        );
        assert!(near.jaccard.unwrap() >= 0.8);
    }

    #[test]
    fn same_book_near_duplicates_stay_and_config_is_checked() {
        let chunks = vec![
            chunk("a/one", 0, BASE),
            chunk("a/one", 1, &BASE.replace("afternoon", "evening")),
        ];
        let (kept, _) = dedup(chunks, &DedupConfig::default(), Seed(0)).unwrap();
        assert_eq!(kept.len(), 2);
        let bad = DedupConfig {
            jaccard_threshold: 1.5,
            ..DedupConfig::default()
        };
        assert!(matches!(
            dedup(vec![], &bad, Seed(0)),
            Err(DataError::InvalidParameter {
                parameter: "jaccard_threshold",
                ..
            })
        ));
    }
}
