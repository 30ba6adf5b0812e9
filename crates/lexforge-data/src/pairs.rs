//! Splits and pairs: books shuffled into train/validation/test (a book never spans two
//! splits), then labelled chunk pairs per split: positives (two chunks of one book) and
//! negatives (chunks of two books), a share of the negatives drawn from the book's mined
//! neighbours (hard) and the rest at random.
//!
//! Counts are exact: a split of `B` books gets `pairs_per_book × B` pairs, of which
//! `round(total × positive_fraction)` are positive and `round(negatives ×
//! hard_negative_fraction)` are hard negatives (a book without a neighbour in its split gives
//! a random negative instead, counted as `hard_fallbacks`).

use std::collections::{BTreeMap, HashSet};

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use lexforge_core::Seed;

use crate::error::{DataError, Result};

/// A dataset split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training books.
    Train,
    /// Validation books (calibration, early stopping).
    Validation,
    /// Test books.
    Test,
}

impl Split {
    /// All splits, in file order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    /// `"train"`, `"validation"`, `"test"`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

/// Shares of books in the validation and test splits; the rest train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// Share of books for validation.
    pub validation_fraction: f64,
    /// Share of books for test.
    pub test_fraction: f64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            validation_fraction: 0.1,
            test_fraction: 0.1,
        }
    }
}

/// Assigns each of `books` (ids) to a split: a seeded shuffle, then `round(f × n)` books to
/// validation and to test (at least two each when its fraction is positive: a split needs two
/// books for a negative pair), the rest (at least two) to train.
///
/// # Errors
/// [`DataError::InvalidParameter`] for fractions outside `[0, 1)` or summing to 1 or more;
/// [`DataError::EmptySplit`] when there are too few books to give every requested split one.
pub(crate) fn split_books(
    books: &[String],
    config: &SplitConfig,
    seed: Seed,
) -> Result<BTreeMap<String, Split>> {
    let (fv, ft) = (config.validation_fraction, config.test_fraction);
    for (name, f) in [("validation_fraction", fv), ("test_fraction", ft)] {
        if !(0.0..1.0).contains(&f) {
            return Err(DataError::InvalidParameter {
                parameter: name,
                reason: format!("{f} is outside [0, 1)"),
            });
        }
    }
    if fv + ft >= 1.0 {
        return Err(DataError::InvalidParameter {
            parameter: "validation_fraction",
            reason: format!("validation + test = {} leaves no training books", fv + ft),
        });
    }
    let n = books.len();
    let count = |f: f64| {
        if f > 0.0 {
            ((f * n as f64).round() as usize).max(2)
        } else {
            0
        }
    };
    let (nv, nt) = (count(fv), count(ft));
    if nv + nt + 2 > n {
        return Err(DataError::EmptySplit {
            split: "train",
            reason: format!(
                "{n} usable books cannot fill {nv} validation + {nt} test books and leave two \
                 to train (every split needs two books for negative pairs); add books or set \
                 a fraction to 0"
            ),
        });
    }
    let mut order: Vec<&String> = books.iter().collect();
    order.sort();
    order.shuffle(&mut seed.rng("splits"));
    Ok(order
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let s = if i < nv {
                Split::Validation
            } else if i < nv + nt {
                Split::Test
            } else {
                Split::Train
            };
            (b.clone(), s)
        })
        .collect())
}

/// How many pairs of which kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PairConfig {
    /// Pairs per book of a split.
    pub pairs_per_book: usize,
    /// Share of positive pairs.
    pub positive_fraction: f64,
    /// Share of the negatives drawn from the neighbour lists.
    pub hard_negative_fraction: f64,
}

impl Default for PairConfig {
    fn default() -> Self {
        PairConfig {
            pairs_per_book: 20,
            positive_fraction: 0.5,
            hard_negative_fraction: 0.5,
        }
    }
}

impl PairConfig {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`DataError::InvalidParameter`] naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.pairs_per_book == 0 {
            return Err(DataError::InvalidParameter {
                parameter: "pairs_per_book",
                reason: "must be at least 1".to_owned(),
            });
        }
        for (name, f) in [
            ("positive_fraction", self.positive_fraction),
            ("hard_negative_fraction", self.hard_negative_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err(DataError::InvalidParameter {
                    parameter: name,
                    reason: format!("{f} is outside [0, 1]"),
                });
            }
        }
        Ok(())
    }
}

/// Positive or negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PairType {
    /// Two chunks of one book.
    Positive,
    /// Chunks of two books.
    Negative,
}

/// How a negative's second book was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NegType {
    /// From the first book's mined neighbours.
    Hard,
    /// Uniformly among the other books of the split.
    Random,
}

/// One labelled pair, as written to the split files (field order is the column order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// First text.
    pub text1: String,
    /// Second text.
    pub text2: String,
    /// 1 for the same book, 0 otherwise.
    pub label: u8,
    /// Book of `text1`.
    pub book1: String,
    /// Book of `text2`.
    pub book2: String,
    /// Positive or negative.
    pub pair_type: PairType,
    /// For negatives, hard or random; `null` for positives.
    pub neg_type: Option<NegType>,
    /// Topic cluster of `text1`'s chunk.
    pub topic1: u32,
    /// Topic cluster of `text2`'s chunk.
    pub topic2: u32,
    /// `topic1 == topic2`.
    pub same_topic: bool,
    /// Index of `text1`'s chunk within its book.
    pub chunk1: u32,
    /// Index of `text2`'s chunk within its book.
    pub chunk2: u32,
}

/// A book as pairing sees it.
#[derive(Debug, Clone)]
pub(crate) struct PairBook<'a> {
    /// Its id.
    pub id: &'a str,
    /// Its chunks (after dedup).
    pub chunks: usize,
    /// Positions (in the same slice of books) of its neighbour books, best first.
    pub neighbours: Vec<usize>,
}

/// Counts of the pairs made for one split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairCounts {
    /// Positive pairs.
    pub positive: u64,
    /// Hard negatives.
    pub hard: u64,
    /// Random negatives (including hard fallbacks).
    pub random: u64,
    /// Hard negatives that fell back to random (no neighbour in the split).
    pub hard_fallbacks: u64,
    /// Pairs with both chunks in one topic.
    pub same_topic: u64,
}

/// One planned pair: `(book, chunk)` positions into the split's books and each book's chunks,
/// and for negatives how the second book was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PairRef {
    pub first: (usize, usize),
    pub second: (usize, usize),
    pub neg: Option<NegType>,
}

/// The pairs of one split as positions (see the module docs; texts and topics are filled in
/// by [`pair`]). Every book must have at least two chunks. `same_topic` is left at 0.
///
/// # Errors
/// [`DataError::InvalidParameter`] for a bad config or a book with fewer than two chunks.
pub(crate) fn plan_pairs(
    books: &[PairBook<'_>],
    config: &PairConfig,
    seed: Seed,
) -> Result<(Vec<PairRef>, PairCounts)> {
    config.validate()?;
    if let Some(b) = books.iter().find(|b| b.chunks < 2) {
        return Err(DataError::InvalidParameter {
            parameter: "books",
            reason: format!("book {} has {} chunk(s); pairs need 2", b.id, b.chunks),
        });
    }
    let n = books.len();
    let mut counts = PairCounts::default();
    if n == 0 {
        return Ok((Vec::new(), counts));
    }
    let total = config.pairs_per_book * n;
    let n_pos = (total as f64 * config.positive_fraction).round() as usize;
    let n_neg = total - n_pos;
    let n_hard = (n_neg as f64 * config.hard_negative_fraction).round() as usize;
    let mut rng = seed.rng("pairs");
    let mut pairs = Vec::with_capacity(total);
    let mut seen: HashSet<(usize, usize, usize, usize)> = HashSet::new();

    for i in 0..n_pos {
        let b = i % n;
        let len = books[b].chunks;
        let mut pick = (0, 1);
        for _ in 0..16 {
            let x = rng.random_range(0..len);
            let mut y = rng.random_range(0..len - 1);
            if y >= x {
                y += 1;
            }
            pick = (x, y);
            if seen.insert((b, x, b, y)) {
                break;
            }
        }
        pairs.push(PairRef {
            first: (b, pick.0),
            second: (b, pick.1),
            neg: None,
        });
    }
    for i in 0..n_neg {
        let a = i % n;
        if n < 2 {
            break;
        }
        let want_hard = i < n_hard;
        let (other, kind) = if want_hard && !books[a].neighbours.is_empty() {
            let nb = &books[a].neighbours;
            (nb[rng.random_range(0..nb.len())], NegType::Hard)
        } else {
            if want_hard {
                counts.hard_fallbacks += 1;
            }
            let mut o = rng.random_range(0..n - 1);
            if o >= a {
                o += 1;
            }
            (o, NegType::Random)
        };
        let mut pick = (0, 0);
        for _ in 0..16 {
            pick = (
                rng.random_range(0..books[a].chunks),
                rng.random_range(0..books[other].chunks),
            );
            if seen.insert((a, pick.0, other, pick.1)) {
                break;
            }
        }
        let (x, y) = ((a, pick.0), (other, pick.1));
        pairs.push(if rng.random_bool(0.5) {
            PairRef {
                first: x,
                second: y,
                neg: Some(kind),
            }
        } else {
            PairRef {
                first: y,
                second: x,
                neg: Some(kind),
            }
        });
    }
    pairs.shuffle(&mut rng);
    for p in &pairs {
        match p.neg {
            None => counts.positive += 1,
            Some(NegType::Hard) => counts.hard += 1,
            Some(NegType::Random) => counts.random += 1,
        }
    }
    Ok((pairs, counts))
}

/// A chunk as a pair shows it: `(book id, text, index within the book, topic)`.
pub(crate) type PairChunk<'a> = (&'a str, &'a str, u32, u32);

/// The pair of two chunks.
pub(crate) fn pair(a: PairChunk<'_>, b: PairChunk<'_>, neg: Option<NegType>) -> Pair {
    let (book1, t1, c1, topic1) = a;
    let (book2, t2, c2, topic2) = b;
    Pair {
        text1: t1.to_owned(),
        text2: t2.to_owned(),
        label: u8::from(neg.is_none()),
        book1: book1.to_owned(),
        book2: book2.to_owned(),
        pair_type: if neg.is_none() {
            PairType::Positive
        } else {
            PairType::Negative
        },
        neg_type: neg,
        topic1,
        topic2,
        same_topic: topic1 == topic2,
        chunk1: c1,
        chunk2: c2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_by_book_exact_and_seeded() {
        let books: Vec<String> = (0..20).map(|i| format!("a{i}/b")).collect();
        let s = split_books(&books, &SplitConfig::default(), Seed(1)).unwrap();
        assert_eq!(s.len(), 20);
        let count = |x| s.values().filter(|&&v| v == x).count();
        assert_eq!((count(Split::Validation), count(Split::Test)), (2, 2));
        assert_eq!(
            s,
            split_books(&books, &SplitConfig::default(), Seed(1)).unwrap()
        );
        assert_ne!(
            s,
            split_books(&books, &SplitConfig::default(), Seed(2)).unwrap()
        );
        assert!(matches!(
            split_books(&books[..5], &SplitConfig::default(), Seed(1)),
            Err(DataError::EmptySplit { .. })
        ));
        let six = split_books(&books[..6], &SplitConfig::default(), Seed(1)).unwrap();
        assert!(six.values().filter(|&&v| v == Split::Test).count() == 2);
    }

    #[test]
    fn pair_counts_are_exact_and_labels_consistent() {
        let ids = ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"];
        let books: Vec<PairBook<'_>> = (0..8)
            .map(|b| PairBook {
                id: ids[b],
                chunks: 5,
                neighbours: if b == 7 { vec![] } else { vec![(b + 1) % 8] },
            })
            .collect();
        let config = PairConfig {
            pairs_per_book: 10,
            positive_fraction: 0.3,
            hard_negative_fraction: 0.5,
        };
        let (refs, counts) = plan_pairs(&books, &config, Seed(4)).unwrap();
        assert_eq!(refs.len(), 80);
        assert_eq!(counts.positive, 24);
        assert_eq!(counts.hard + counts.random, 56);
        assert_eq!(counts.hard + counts.hard_fallbacks, 28);
        let texts: Vec<String> = (0..40).map(|i| format!("chunk {i}")).collect();
        let chunk =
            |(b, c): (usize, usize)| (ids[b], texts[b * 5 + c].as_str(), c as u32, (c % 2) as u32);
        for r in &refs {
            let p = pair(chunk(r.first), chunk(r.second), r.neg);
            assert_eq!(p.label == 1, p.book1 == p.book2);
            assert_eq!(p.same_topic, p.topic1 == p.topic2);
            assert_ne!((p.book1.as_str(), p.chunk1), (p.book2.as_str(), p.chunk2));
            if p.neg_type == Some(NegType::Hard) {
                let (a, b) = (&p.book1[1..], &p.book2[1..]);
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                assert!((a + 1) % 8 == b || (b + 1) % 8 == a, "{p:?}");
            }
        }
        let (again, _) = plan_pairs(&books, &config, Seed(4)).unwrap();
        assert_eq!(refs, again);
        let one = PairBook {
            id: "short",
            chunks: 1,
            neighbours: vec![],
        };
        assert!(plan_pairs(&[one], &config, Seed(4)).is_err());
    }
}
