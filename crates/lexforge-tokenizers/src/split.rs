//! The deterministic holdout split.
//!
//! Units (documents when there are several, else lines) are ordered by a seeded 64-bit hash of
//! their text and the first `round(holdout * n)` go to the holdout. The split therefore depends
//! only on the text and the seed, not on file names or order, and identical units always land on
//! the same side.

use lexforge_core::Document;
use serde::{Deserialize, Serialize};

/// What the split divided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SplitUnit {
    /// Whole documents (the corpus had two or more).
    Document,
    /// Lines of the single document.
    Line,
}

/// A corpus divided into training and holdout lines.
///
/// Invariant: every line keeps its line ending; the concatenation of `train` (resp. `holdout`)
/// is the text of its documents in their original order.
#[derive(Debug, Clone)]
pub struct Split<'a> {
    /// What was divided.
    pub unit: SplitUnit,
    /// Lines to train on.
    pub train: Vec<&'a str>,
    /// Held-out lines.
    pub holdout: Vec<&'a str>,
    /// Documents on the training side (1 for a line split).
    pub train_documents: usize,
    /// Documents on the holdout side (0 for a line split).
    pub holdout_documents: usize,
    /// Indices (into the documents given) of the held-out documents, in order.
    pub holdout_document_indices: Vec<usize>,
}

/// Splits `text` into lines that keep their `\n` (a final line without one is kept as is).
pub fn lines_with_endings(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive('\n')
}

/// The seeded 64-bit key of a text that orders holdout candidates (also used by the data
/// crate to assign streamed documents). FNV-1a over the bytes, then a splitmix64 finalizer
/// keyed by the seed: stable across
/// platforms and Rust versions (unlike `DefaultHasher`).
pub fn holdout_key(seed: u64, text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in text.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Keys a unit's text for the split: the ordering key and a second, independent one that
/// stands in for the text when grouping identical texts.
pub(crate) fn split_keys(seed: u64, text: &str) -> (u64, u64) {
    (
        holdout_key(seed, text),
        holdout_key(seed ^ 0x5bd1_e995_1234_5678, text),
    )
}

/// Indices of `units` chosen for the holdout: `round(fraction * n)` of them (at least one when
/// `fraction > 0`, never all), widened or narrowed so that identical texts stay together.
fn choose(units: &[&str], fraction: f64, seed: u64) -> Vec<bool> {
    let keys: Vec<(u64, u64)> = units.iter().map(|u| split_keys(seed, u)).collect();
    choose_keyed(&keys, fraction)
}

/// The holdout choice for units known by their [`split_keys`]: units with equal keys count as
/// identical texts (barring a 128-bit collision). [`choose`] keys texts in memory; a corpus
/// streamed in passes keys its documents once, so both split the same way.
pub(crate) fn choose_keyed(keys: &[(u64, u64)], fraction: f64) -> Vec<bool> {
    let n = keys.len();
    let mut held = vec![false; n];
    if fraction <= 0.0 || n < 2 {
        return held;
    }
    let mut keyed: Vec<(u64, u64, usize)> = keys
        .iter()
        .enumerate()
        .map(|(i, &(a, b))| (a, b, i))
        .collect();
    keyed.sort_unstable();
    let target = ((fraction * n as f64).round() as usize).clamp(1, n - 1);
    let same = |a: usize, b: usize| keyed[a].0 == keyed[b].0 && keyed[a].1 == keyed[b].1;
    let mut k = target;
    while k < n && same(k - 1, k) {
        k += 1;
    }
    if k == n {
        k = target;
        while k > 0 && same(k - 1, k) {
            k -= 1;
        }
    }
    for &(_, _, i) in &keyed[..k] {
        held[i] = true;
    }
    held
}

/// Splits `docs` into training and holdout text.
///
/// With two or more documents whole documents are held out; with one, its non-blank lines are
/// (blank lines always train). `fraction` must be in `[0, 1)`.
pub fn holdout_split(docs: &[Document], fraction: f64, seed: u64) -> Split<'_> {
    if docs.len() >= 2 {
        let units: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
        let held = choose(&units, fraction, seed);
        let mut split = Split {
            unit: SplitUnit::Document,
            train: Vec::new(),
            holdout: Vec::new(),
            train_documents: 0,
            holdout_documents: 0,
            holdout_document_indices: Vec::new(),
        };
        for (i, (doc, h)) in docs.iter().zip(held).enumerate() {
            if h {
                split.holdout_documents += 1;
                split.holdout_document_indices.push(i);
                split.holdout.extend(lines_with_endings(&doc.text));
            } else {
                split.train_documents += 1;
                split.train.extend(lines_with_endings(&doc.text));
            }
        }
        split
    } else {
        let lines: Vec<&str> = docs
            .iter()
            .flat_map(|d| lines_with_endings(&d.text))
            .collect();
        let candidates: Vec<usize> = (0..lines.len())
            .filter(|&i| !lines[i].trim().is_empty())
            .collect();
        let cand_text: Vec<&str> = candidates.iter().map(|&i| lines[i].trim_end()).collect();
        let held_c = choose(&cand_text, fraction, seed);
        let mut held = vec![false; lines.len()];
        for (&i, h) in candidates.iter().zip(held_c) {
            held[i] = h;
        }
        let mut split = Split {
            unit: SplitUnit::Line,
            train: Vec::new(),
            holdout: Vec::new(),
            train_documents: docs.len(),
            holdout_documents: 0,
            holdout_document_indices: Vec::new(),
        };
        for (line, h) in lines.into_iter().zip(held) {
            if h {
                split.holdout.push(line);
            } else {
                split.train.push(line);
            }
        }
        split
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn doc(id: &str, text: &str) -> Document {
        Document {
            id: id.into(),
            text: text.into(),
            path: None,
            metadata: Default::default(),
        }
    }

    #[test]
    fn document_split_is_deterministic_disjoint_and_sized() {
        let docs: Vec<_> = (0..40)
            .map(|i| doc(&i.to_string(), &format!("document {i}\nline two of {i}\n")))
            .collect();
        let a = holdout_split(&docs, 0.1, 7);
        let b = holdout_split(&docs, 0.1, 7);
        assert_eq!(a.unit, SplitUnit::Document);
        assert_eq!(a.holdout, b.holdout);
        assert_eq!(a.holdout_documents, 4);
        assert_eq!(a.train_documents, 36);
        let train: HashSet<_> = a.train.iter().collect();
        assert!(a.holdout.iter().all(|l| !train.contains(l)));
        let c = holdout_split(&docs, 0.1, 8);
        assert_ne!(a.holdout, c.holdout, "the seed matters");
        // Order of documents does not change which texts are held out.
        let mut rev = docs.clone();
        rev.reverse();
        let r = holdout_split(&rev, 0.1, 7);
        let set = |s: &Split<'_>| {
            s.holdout
                .iter()
                .map(|l| l.to_string())
                .collect::<HashSet<_>>()
        };
        assert_eq!(set(&a), set(&r));
    }

    #[test]
    fn identical_documents_stay_together() {
        let mut docs: Vec<_> = (0..10)
            .map(|i| doc(&i.to_string(), &format!("d{i}")))
            .collect();
        for i in 0..10 {
            docs.push(doc(&format!("copy{i}"), "the same text"));
        }
        for seed in 0..20 {
            let s = holdout_split(&docs, 0.2, seed);
            let held = s.holdout.contains(&"the same text");
            let trained = s.train.contains(&"the same text");
            assert!(!(held && trained), "seed {seed}");
            assert!(s.train_documents > 0);
        }
    }

    #[test]
    fn single_document_is_split_by_line_and_keeps_blank_lines_in_training() {
        let text: String = (0..100).map(|i| format!("line {i}\n\n")).collect();
        let docs = [doc("only", &text)];
        let s = holdout_split(&docs, 0.05, 0);
        assert_eq!(s.unit, SplitUnit::Line);
        assert_eq!(s.holdout.len(), 5);
        assert!(s.holdout.iter().all(|l| l.ends_with('\n') && l.len() > 1));
        assert_eq!(s.train.len() + s.holdout.len(), 200);
        let none = holdout_split(&docs, 0.0, 0);
        assert!(none.holdout.is_empty());
        assert_eq!(none.train.concat(), text);
    }
}
