//! Chunks: windows of consecutive sentences of one book, the unit the matcher compares.
//!
//! A book's standardized text is split into sentences ([`crate::sentences`]); windows of
//! `chunk_size` sentences advance by `chunk_size - overlap`; windows shorter than `min_chars`
//! or failing the English filter are dropped; at most `max_chunks_per_book` survive, drawn by a
//! seeded sample that depends only on the seed and the book id (so a book gives the same chunks
//! whichever shard or order it is processed in), then put back in text order.
//!
//! Every [`Chunk`] keeps its book id and its offsets into the standardized text, in Unicode
//! scalar values (Python `str` indices): `text == standardized[start..end]` in Python.

use rand::seq::index::sample;
use serde::{Deserialize, Serialize};

use lexforge_core::Seed;

use crate::error::{DataError, Result};
use crate::sentences::sentence_spans;

/// How books are cut into chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkConfig {
    /// Sentences per chunk (≥ 1).
    pub chunk_size: usize,
    /// Sentences shared by consecutive chunks (< `chunk_size`).
    pub overlap: usize,
    /// Shortest chunk kept, in characters.
    pub min_chars: usize,
    /// Drop chunks that do not look like English prose: fewer than 60% letters among the
    /// non-space characters, 90% ASCII among the letters or 15% common function words.
    pub english_filter: bool,
    /// Most chunks kept per book (seeded sample); `None` keeps all.
    pub max_chunks_per_book: Option<usize>,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            chunk_size: 5,
            overlap: 1,
            min_chars: 200,
            english_filter: true,
            max_chunks_per_book: Some(200),
        }
    }
}

impl ChunkConfig {
    /// Checks the parameters, naming the first bad one.
    ///
    /// # Errors
    /// [`DataError::InvalidParameter`].
    pub fn validate(&self) -> Result<()> {
        if self.chunk_size == 0 {
            return Err(invalid("chunk_size", "must be at least 1 sentence"));
        }
        if self.overlap >= self.chunk_size {
            return Err(invalid(
                "overlap",
                format!(
                    "{} must be smaller than chunk_size ({})",
                    self.overlap, self.chunk_size
                ),
            ));
        }
        if self.max_chunks_per_book == Some(0) {
            return Err(invalid(
                "max_chunks_per_book",
                "0 would keep nothing; use null for no limit",
            ));
        }
        Ok(())
    }
}

fn invalid(parameter: &'static str, reason: impl Into<String>) -> DataError {
    DataError::InvalidParameter {
        parameter,
        reason: reason.into(),
    }
}

/// A window of sentences of one book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The book's id (`author/title` for a book directory).
    pub book: String,
    /// Position of the window among the book's windows (before filtering and sampling), so
    /// `(book, index)` is unique and stable.
    pub index: u32,
    /// First character, in Unicode scalar values into the standardized text.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
    /// The text, exactly the standardized text between `start` and `end`.
    pub text: String,
}

/// What chunking did with one book or a whole corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkReport {
    /// Sentences found.
    pub sentences: u64,
    /// Windows formed.
    pub windows: u64,
    /// Dropped as shorter than `min_chars`.
    pub too_short: u64,
    /// Dropped by the English filter.
    pub not_english: u64,
    /// Dropped by the per-book limit.
    pub over_limit: u64,
    /// Kept.
    pub kept: u64,
}

impl ChunkReport {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &ChunkReport) {
        self.sentences += other.sentences;
        self.windows += other.windows;
        self.too_short += other.too_short;
        self.not_english += other.not_english;
        self.over_limit += other.over_limit;
        self.kept += other.kept;
    }
}

/// Cuts one book's standardized `text` into chunks (see the module docs).
///
/// # Errors
/// [`DataError::InvalidParameter`] for a bad config.
pub fn chunk_book(
    book: &str,
    text: &str,
    config: &ChunkConfig,
    seed: Seed,
) -> Result<(Vec<Chunk>, ChunkReport)> {
    config.validate()?;
    let spans = sentence_spans(text);
    let mut report = ChunkReport {
        sentences: spans.len() as u64,
        ..ChunkReport::default()
    };
    // Byte → char offsets for every span boundary, in one pass (spans are in order).
    let mut char_at = Vec::with_capacity(spans.len() * 2);
    {
        let mut chars = 0usize;
        let mut byte = 0usize;
        for s in &spans {
            for b in [s.start, s.end] {
                chars += text[byte..b].chars().count();
                byte = b;
                char_at.push(chars);
            }
        }
    }
    let step = config.chunk_size - config.overlap;
    let mut kept = Vec::new();
    let mut first = 0usize;
    let mut index = 0u32;
    while first < spans.len() {
        let last = (first + config.chunk_size).min(spans.len()) - 1;
        report.windows += 1;
        let (bs, be) = (spans[first].start, spans[last].end);
        let chunk_text = &text[bs..be];
        let chars = char_at[2 * last + 1] - char_at[2 * first];
        if chars < config.min_chars {
            report.too_short += 1;
        } else if config.english_filter && !looks_english(chunk_text) {
            report.not_english += 1;
        } else {
            kept.push(Chunk {
                book: book.to_owned(),
                index,
                start: char_at[2 * first],
                end: char_at[2 * last + 1],
                text: chunk_text.to_owned(),
            });
        }
        index += 1;
        if last + 1 >= spans.len() {
            break;
        }
        first += step;
    }
    if let Some(max) = config.max_chunks_per_book
        && kept.len() > max
    {
        let mut rng = seed.derive("chunks").rng(book);
        let mut picked = sample(&mut rng, kept.len(), max).into_vec();
        picked.sort_unstable();
        report.over_limit = (kept.len() - max) as u64;
        let mut all: Vec<Option<Chunk>> = kept.into_iter().map(Some).collect();
        kept = picked.into_iter().filter_map(|i| all[i].take()).collect();
    }
    report.kept = kept.len() as u64;
    Ok((kept, report))
}

/// Common English function words, for [`looks_english`].
const FUNCTION_WORDS: &[&str] = &[
    "a", "about", "after", "all", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by",
    "can", "could", "did", "do", "for", "from", "had", "has", "have", "he", "her", "him", "his",
    "i", "if", "in", "into", "is", "it", "its", "may", "me", "more", "my", "no", "not", "now",
    "of", "on", "one", "only", "or", "our", "out", "she", "should", "so", "some", "than", "that",
    "the", "thee", "their", "them", "then", "there", "these", "they", "this", "those", "thou",
    "thy", "to", "up", "upon", "us", "very", "was", "we", "were", "what", "when", "which", "who",
    "will", "with", "would", "you", "your",
];

/// A lightweight English-prose test: at least 60% of the non-space characters are letters, at
/// least 90% of the letters are ASCII, and at least 15% of the words are common English
/// function words (running English prose and verse have 30–55%; tables of contents, indexes,
/// number lists and other languages fall below).
pub(crate) fn looks_english(text: &str) -> bool {
    let (mut non_space, mut letters, mut ascii_letters) = (0usize, 0usize, 0usize);
    for c in text.chars() {
        if c.is_whitespace() {
            continue;
        }
        non_space += 1;
        if c.is_alphabetic() {
            letters += 1;
            if c.is_ascii_alphabetic() {
                ascii_letters += 1;
            }
        }
    }
    if non_space == 0 || letters * 10 < non_space * 6 || ascii_letters * 10 < letters * 9 {
        return false;
    }
    let (mut words, mut function) = (0usize, 0usize);
    for w in text
        .split(|c: char| !(c.is_alphabetic() || c == '\''))
        .filter(|w| !w.is_empty())
    {
        words += 1;
        let lower = w.trim_matches('\'').to_ascii_lowercase();
        if FUNCTION_WORDS.binary_search(&lower.as_str()).is_ok() {
            function += 1;
        }
    }
    words > 0 && function * 100 >= words * 15
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_words_are_sorted_for_binary_search() {
        let mut sorted = FUNCTION_WORDS.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, FUNCTION_WORDS);
    }

    #[test]
    fn english_filter() {
        assert!(looks_english(
            "It was the best of times, it was the worst of times, it was the age of wisdom."
        ));
        assert!(!looks_english("I. 1 II. 17 III. 34 IV. 51 V. 68 VI. 85"));
        assert!(!looks_english(
            "Longtemps, je me suis couché de bonne heure. Parfois, à peine ma bougie éteinte."
        ));
        assert!(!looks_english(
            "Ἐν ἀρχῇ ἦν ὁ λόγος, καὶ ὁ λόγος ἦν πρὸς τὸν θεόν."
        ));
        assert!(!looks_english("12 34 56 78 90 12 34 56"));
    }

    fn text(n: usize) -> String {
        (0..n)
            .map(|i| format!("This is the sentence number {i} of the book and it is long enough."))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn windows_overlap_and_offsets_are_char_offsets() {
        let t = format!("Ünïcödé prélude. {}", text(12));
        let config = ChunkConfig {
            chunk_size: 4,
            overlap: 1,
            min_chars: 10,
            english_filter: true,
            max_chunks_per_book: None,
        };
        let (chunks, report) = chunk_book("a/b", &t, &config, Seed(1)).unwrap();
        assert_eq!(report.sentences, 13);
        // starts 0, 3, 6, 9; the window at 9 reaches the last sentence.
        assert_eq!(report.windows, 4);
        assert_eq!(chunks.len() as u64, report.kept);
        for c in &chunks {
            let by_chars: String = t.chars().skip(c.start).take(c.end - c.start).collect();
            assert_eq!(by_chars, c.text);
            assert_eq!(c.book, "a/b");
        }
        assert!(chunks[0].text.starts_with("Ünïcödé prélude."));
        assert!(chunks[1].text.starts_with("This is the sentence number 2 "));
    }

    #[test]
    fn short_and_limited_chunks_are_dropped_and_sampling_is_seeded_per_book() {
        let t = text(60);
        let config = ChunkConfig {
            chunk_size: 2,
            overlap: 0,
            min_chars: 10,
            english_filter: false,
            max_chunks_per_book: Some(7),
        };
        let (a, ra) = chunk_book("x/y", &t, &config, Seed(3)).unwrap();
        let (b, _) = chunk_book("x/y", &t, &config, Seed(3)).unwrap();
        let (c, _) = chunk_book("x/z", &t, &config, Seed(3)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 7);
        assert_eq!(ra.over_limit, 23);
        assert!(a.windows(2).all(|w| w[0].index < w[1].index), "text order");
        let ia: Vec<u32> = a.iter().map(|c| c.index).collect();
        let ic: Vec<u32> = c.iter().map(|c| c.index).collect();
        assert_ne!(ia, ic, "another book draws another sample");
        let long = ChunkConfig {
            min_chars: 10_000,
            ..config.clone()
        };
        let (none, r) = chunk_book("x/y", &t, &long, Seed(3)).unwrap();
        assert!(none.is_empty());
        assert_eq!(r.too_short, 30);
    }

    #[test]
    fn bad_parameters_are_named() {
        for (config, name) in [
            (
                ChunkConfig {
                    chunk_size: 0,
                    ..ChunkConfig::default()
                },
                "chunk_size",
            ),
            (
                ChunkConfig {
                    overlap: 5,
                    ..ChunkConfig::default()
                },
                "overlap",
            ),
            (
                ChunkConfig {
                    max_chunks_per_book: Some(0),
                    ..ChunkConfig::default()
                },
                "max_chunks_per_book",
            ),
        ] {
            match chunk_book("a", "b.", &config, Seed(0)) {
                Err(DataError::InvalidParameter { parameter, .. }) => assert_eq!(parameter, name),
                other => panic!("{other:?}"),
            }
        }
    }
}
