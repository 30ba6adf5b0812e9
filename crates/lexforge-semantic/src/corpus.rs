//! Labelled word corpora: what they are, how they are saved, and how they are built.
//!
//! A [`WordCorpus`] is a set of words with explicit labels ([`CorpusLabels`]: `style`,
//! `complexity`, `era`, `variation`). Labels always come from metadata (a book catalogue, or
//! the plan a user gives a [`CorpusGenerator`]); nothing is derived from hashes.
//!
//! [`build_corpora`] asks a [`CorpusGenerator`] for the words of each planned corpus, cleans
//! them (lowercase ASCII letters, no stop words, no duplicates) and checks the result
//! ([`CorpusSet::validate`]). The built-in generator, [`BookWords`](crate::BookWords), lives in
//! `book_words.rs`; the stop words in `stop_words.txt`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SemanticError};

/// Format version of a corpora file.
pub const CORPORA_FORMAT: u32 = 1;

/// The names of the four ID components, in order.
pub const COMPONENTS: [&str; 4] = ["style", "complexity", "era", "variation"];

/// The labels of one corpus.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusLabels {
    /// Style (from the books' genre).
    pub style: String,
    /// Complexity level (from word frequency and length).
    pub complexity: String,
    /// Era (from the books' catalogue).
    pub era: String,
    /// Which distinct sample of the (style, complexity, era) combination this is.
    pub variation: u32,
}

impl CorpusLabels {
    /// The default corpus id: `style.era.complexity.variation`.
    pub fn default_id(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.style, self.era, self.complexity, self.variation
        )
    }

    /// The label of component `k` (0 style, 1 complexity, 2 era, 3 variation) as text.
    pub fn component(&self, k: usize) -> String {
        match k {
            0 => self.style.clone(),
            1 => self.complexity.clone(),
            2 => self.era.clone(),
            _ => self.variation.to_string(),
        }
    }
}

/// One labelled word corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WordCorpus {
    /// Unique id within its set.
    pub id: String,
    /// Its labels.
    pub labels: CorpusLabels,
    /// The words (cleaned, unique, in the generator's order of preference).
    pub words: Vec<String>,
    /// Where the words came from (book ids, generator name, ...).
    #[serde(default)]
    pub source: BTreeMap<String, String>,
}

/// A set of corpora with the settings that built them, saved as one JSON file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusSet {
    /// [`CORPORA_FORMAT`].
    pub format: u32,
    /// The generator's name.
    pub generator: String,
    /// The settings that built the set (free-form, recorded for reproducibility).
    #[serde(default)]
    pub config: serde_json::Value,
    /// The corpora.
    pub corpora: Vec<WordCorpus>,
    /// Corpora the generator could not fill, with the reason.
    #[serde(default)]
    pub skipped: Vec<(String, String)>,
}

impl CorpusSet {
    /// A set of `corpora` from `generator`.
    pub fn new(generator: impl Into<String>, corpora: Vec<WordCorpus>) -> Self {
        CorpusSet {
            format: CORPORA_FORMAT,
            generator: generator.into(),
            config: serde_json::Value::Null,
            corpora,
            skipped: Vec::new(),
        }
    }

    /// Checks the set: at least one corpus, unique ids, no empty corpus, no empty label.
    ///
    /// # Errors
    /// [`SemanticError::NoCorpora`], [`SemanticError::DuplicateCorpusId`],
    /// [`SemanticError::EmptyCorpus`], [`SemanticError::InvalidInput`].
    pub fn validate(&self) -> Result<()> {
        if self.corpora.is_empty() {
            return Err(SemanticError::NoCorpora {
                reason: "the set is empty".into(),
            });
        }
        let mut seen = BTreeSet::new();
        for c in &self.corpora {
            if !seen.insert(c.id.as_str()) {
                return Err(SemanticError::DuplicateCorpusId { id: c.id.clone() });
            }
            if c.words.iter().all(|w| w.trim().is_empty()) {
                return Err(SemanticError::EmptyCorpus { id: c.id.clone() });
            }
            let l = &c.labels;
            if [&l.style, &l.complexity, &l.era]
                .iter()
                .any(|s| s.trim().is_empty())
            {
                return Err(SemanticError::input(format!(
                    "corpus {:?} has an empty label (style, complexity and era are required)",
                    c.id
                )));
            }
        }
        Ok(())
    }

    /// The sorted distinct values of component `k` (see [`CorpusLabels::component`]).
    pub fn label_values(&self, k: usize) -> Vec<String> {
        let set: BTreeSet<String> = self.corpora.iter().map(|c| c.labels.component(k)).collect();
        set.into_iter().collect()
    }

    /// Writes the set as pretty JSON, atomically.
    ///
    /// # Errors
    /// I/O and serialization errors.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| lexforge_core::Error::io("create directory", parent, e))?;
        }
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|source| lexforge_core::Error::Serialize {
                what: "corpora",
                source,
            })?;
        Ok(lexforge_core::atomic_write(path, &bytes)?)
    }

    /// Reads and validates a set written by [`CorpusSet::save`] (or by hand).
    ///
    /// # Errors
    /// I/O, [`SemanticError::Artifact`] for malformed JSON or another format version, and the
    /// errors of [`CorpusSet::validate`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| lexforge_core::Error::io("read corpora", path, e))?;
        let set: CorpusSet = serde_json::from_str(&text).map_err(|e| SemanticError::Artifact {
            path: path.to_path_buf(),
            reason: format!("not a corpora file: {e}"),
        })?;
        if set.format != CORPORA_FORMAT {
            return Err(SemanticError::Artifact {
                path: path.to_path_buf(),
                reason: format!(
                    "corpora format {} is not supported (this build reads {CORPORA_FORMAT})",
                    set.format
                ),
            });
        }
        set.validate()?;
        Ok(set)
    }
}
/// A source of words for labelled corpora (the book statistics of [`BookWords`](crate::BookWords), or a user's
/// callable such as an LLM client, from Python).
///
/// The labels are the request; the generator only supplies words. [`build_corpora`] cleans
/// what it returns.
pub trait CorpusGenerator: Send + Sync {
    /// A short name recorded in the corpora file.
    fn name(&self) -> String;

    /// Words for a corpus with `labels`, best first; ideally at least `n` of them (more are
    /// allowed: cleaning may drop some).
    ///
    /// # Errors
    /// Whatever the source reports; [`build_corpora`] wraps it with the corpus it was for.
    fn words(&self, labels: &CorpusLabels, n: usize) -> Result<Vec<String>>;
}

/// Common English function words, never kept in a corpus: `stop_words.txt`, one per line.
static STOP_WORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("stop_words.txt").lines().collect());

/// `word` lowercased if it is a usable corpus word: 3 to 24 ASCII letters, not a stop word.
pub(crate) fn clean_word(word: &str) -> Option<String> {
    let w = word.trim().to_ascii_lowercase();
    let ok = (3..=24).contains(&w.len())
        && w.bytes().all(|b| b.is_ascii_lowercase())
        && !STOP_WORDS.contains(w.as_str());
    ok.then_some(w)
}

/// Builds one corpus per entry of `plan` from `generator`: its words cleaned (lowercased;
/// only words of 3 to 24 ASCII letters that are not stop words; duplicates dropped), the first
/// `words_per_corpus` kept, ids from [`CorpusLabels::default_id`]. A corpus left with fewer words is kept and listed in
/// `skipped` with its count; one left with none is an error.
///
/// # Errors
/// [`SemanticError::InvalidParameter`] for `words_per_corpus == 0`,
/// [`SemanticError::NoCorpora`] for an empty plan, [`SemanticError::DuplicateCorpusId`] for a
/// repeated label set, [`SemanticError::Generator`] when the generator fails,
/// [`SemanticError::EmptyCorpus`] when nothing usable is left of a corpus.
pub fn build_corpora(
    generator: &dyn CorpusGenerator,
    plan: &[CorpusLabels],
    words_per_corpus: usize,
) -> Result<CorpusSet> {
    if words_per_corpus == 0 {
        return Err(SemanticError::param(
            "words_per_corpus",
            "must be at least 1",
        ));
    }
    if plan.is_empty() {
        return Err(SemanticError::NoCorpora {
            reason: "the plan lists no corpus".into(),
        });
    }
    let mut corpora = Vec::with_capacity(plan.len());
    let mut skipped = Vec::new();
    let name = generator.name();
    for labels in plan {
        let id = labels.default_id();
        let raw =
            generator
                .words(labels, words_per_corpus)
                .map_err(|e| SemanticError::Generator {
                    generator: name.clone(),
                    corpus: id.clone(),
                    reason: e.to_string(),
                })?;
        let mut seen = BTreeSet::new();
        let words: Vec<String> = raw
            .iter()
            .filter_map(|w| clean_word(w))
            .filter(|w| seen.insert(w.clone()))
            .take(words_per_corpus)
            .collect();
        if words.is_empty() {
            return Err(SemanticError::EmptyCorpus { id });
        }
        if words.len() < words_per_corpus {
            skipped.push((
                id.clone(),
                format!("only {} of {words_per_corpus} words", words.len()),
            ));
        }
        corpora.push(WordCorpus {
            id,
            labels: labels.clone(),
            words,
            source: BTreeMap::from([("generator".to_owned(), name.clone())]),
        });
    }
    let mut set = CorpusSet::new(name, corpora);
    set.skipped = skipped;
    set.validate()?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_are_one_clean_word_a_line() {
        let text = include_str!("stop_words.txt");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), STOP_WORDS.len(), "a stop word is listed twice");
        for w in lines {
            assert!(
                !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()),
                "{w:?}"
            );
        }
        for w in ["the", "and", "thou", "whilst", "said", "last"] {
            assert_eq!(clean_word(w), None, "{w}");
        }
        assert_eq!(clean_word(" Harbour "), Some("harbour".to_owned()));
    }

    #[test]
    fn variations_are_disjoint() {
        struct Fixed;
        impl CorpusGenerator for Fixed {
            fn name(&self) -> String {
                "fixed".into()
            }
            fn words(&self, l: &CorpusLabels, n: usize) -> Result<Vec<String>> {
                Ok((0..n)
                    .map(|i| format!("w{}x{}", l.variation, "abcdefghij".as_bytes()[i] as char))
                    .map(|w| w.replace(|c: char| c.is_ascii_digit(), "q"))
                    .collect())
            }
        }
        let labels = |v| CorpusLabels {
            style: "s".into(),
            complexity: "c".into(),
            era: "e".into(),
            variation: v,
        };
        let set = build_corpora(&Fixed, &[labels(0), labels(1)], 4).unwrap();
        assert_eq!(set.corpora.len(), 2);
        assert_eq!(set.corpora[0].words.len(), 4);
        let err = build_corpora(&Fixed, &[labels(0), labels(0)], 4).unwrap_err();
        assert!(
            matches!(err, SemanticError::DuplicateCorpusId { .. }),
            "{err}"
        );
        let err = build_corpora(&Fixed, &[], 4).unwrap_err();
        assert!(matches!(err, SemanticError::NoCorpora { .. }), "{err}");
    }

    #[test]
    fn empty_corpus_and_bad_files_are_typed_errors() {
        struct Stop;
        impl CorpusGenerator for Stop {
            fn name(&self) -> String {
                "stop".into()
            }
            fn words(&self, _: &CorpusLabels, _: usize) -> Result<Vec<String>> {
                Ok(vec!["the".into(), "and".into(), "x1".into()])
            }
        }
        let l = CorpusLabels {
            style: "s".into(),
            complexity: "c".into(),
            era: "e".into(),
            variation: 0,
        };
        let err = build_corpora(&Stop, &[l], 4).unwrap_err();
        assert!(matches!(err, SemanticError::EmptyCorpus { .. }), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(&p, "{not json").unwrap();
        assert!(matches!(
            CorpusSet::load(&p).unwrap_err(),
            SemanticError::Artifact { .. }
        ));
        let set = CorpusSet::new("t", vec![]);
        set.save(&p).unwrap();
        assert!(matches!(
            CorpusSet::load(&p).unwrap_err(),
            SemanticError::NoCorpora { .. }
        ));
    }
}
