//! Word frequencies on the Zipf scale (log10 of occurrences per billion words): read offline
//! from the data files of the PyPI package `wordfreq`, or estimated from corpus counts.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Result, SemanticError};

/// Environment variable naming a wordfreq data file (`large_en.msgpack.gz`), overriding the
/// search of [`find_wordfreq`].
pub(crate) const WORDFREQ_ENV: &str = "LEXFORGE_WORDFREQ";

/// Zipf frequencies of words.
#[derive(Debug, Clone)]
pub struct WordFrequencies {
    zipf: HashMap<String, f32>,
    source: String,
}

impl WordFrequencies {
    /// Reads a wordfreq `cB` table (`*_en.msgpack.gz`): a gzipped msgpack array whose first
    /// element is the header `{"format": "cB", "version": 1}` and whose element `i + 1` lists
    /// the words with frequency `10^(-i/100)` (i centibels below 1). Zipf = 9 + log10(freq).
    ///
    /// # Errors
    /// I/O, and [`SemanticError::Frequencies`] for anything that is not such a table.
    pub fn load_wordfreq(path: &Path) -> Result<Self> {
        let bad = |reason: String| SemanticError::Frequencies {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(path)
            .map_err(|e| lexforge_core::Error::io("open word frequencies", path, e))?;
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("not a gzip file: {e}")))?;
        let value: serde_json::Value =
            rmp_serde::from_slice(&bytes).map_err(|e| bad(format!("not msgpack: {e}")))?;
        let items = value
            .as_array()
            .ok_or_else(|| bad("the table is not an array".into()))?;
        let header = items
            .first()
            .and_then(|h| h.get("format"))
            .and_then(|f| f.as_str());
        if header != Some("cB") {
            return Err(bad(format!(
                "header format {header:?}, expected \"cB\" (a wordfreq table)"
            )));
        }
        let mut zipf = HashMap::new();
        for (i, bin) in items[1..].iter().enumerate() {
            let words = bin
                .as_array()
                .ok_or_else(|| bad(format!("bin {i} is not a list")))?;
            let z = 9.0 - i as f32 / 100.0;
            for w in words {
                let w = w
                    .as_str()
                    .ok_or_else(|| bad(format!("bin {i} holds a non-string")))?;
                zipf.entry(w.to_owned()).or_insert(z);
            }
        }
        if zipf.is_empty() {
            return Err(bad("the table holds no words".into()));
        }
        Ok(WordFrequencies {
            zipf,
            source: format!("wordfreq:{}", path.display()),
        })
    }

    /// The wordfreq table at `path`, or the installed one ([`find_wordfreq`]) without a path.
    /// `hint` ends the error message when none is installed (how to give one from the
    /// caller's face: a flag, a keyword).
    ///
    /// # Errors
    /// [`SemanticError::InvalidInput`] when no path is given and wordfreq is not installed;
    /// errors of [`WordFrequencies::load_wordfreq`].
    pub fn open(path: Option<&Path>, hint: &str) -> Result<Self> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => find_wordfreq().ok_or_else(|| {
                SemanticError::input(format!("wordfreq is not installed ({hint})"))
            })?,
        };
        Self::load_wordfreq(&path)
    }

    /// Frequencies estimated from `counts` (word → occurrences), for when no wordfreq table is
    /// installed: Zipf = log10(count / total · 10⁹).
    pub fn from_counts(counts: &HashMap<String, u64>) -> Self {
        let total: u64 = counts.values().sum::<u64>().max(1);
        let zipf = counts
            .iter()
            .filter(|(_, c)| **c > 0)
            .map(|(w, &c)| (w.clone(), (c as f64 / total as f64 * 1e9).log10() as f32))
            .collect();
        WordFrequencies {
            zipf,
            source: "corpus counts".into(),
        }
    }

    /// The Zipf frequency of `word` (lowercase), if known.
    pub fn zipf(&self, word: &str) -> Option<f64> {
        self.zipf.get(word).map(|&z| f64::from(z))
    }

    /// Up to `n` words passing `keep`, most frequent first (ties by word).
    pub fn most_frequent(&self, n: usize, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut all: Vec<(&String, f32)> = self
            .zipf
            .iter()
            .filter(|(w, _)| keep(w))
            .map(|(w, &z)| (w, z))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        all.into_iter().take(n).map(|(w, _)| w.clone()).collect()
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.zipf.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.zipf.is_empty()
    }

    /// Where they came from (`wordfreq:<path>` or `corpus counts`).
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Finds wordfreq's English table (`large_en.msgpack.gz`; its data is all that is needed):
/// `$LEXFORGE_WORDFREQ`, else the `wordfreq` package of the active virtual environment
/// (`$VIRTUAL_ENV`, read as files: no interpreter is run). Never downloads. Python finds the
/// package with `importlib` and passes the path down.
pub fn find_wordfreq() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(WORDFREQ_ENV) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    lexforge_core::venv_package_file(Path::new("wordfreq/data/large_en.msgpack.gz"))
        .filter(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_frequent_orders_by_zipf_then_word_and_filters() {
        let counts: HashMap<String, u64> = [("tide", 5), ("anchor", 5), ("the", 50), ("x", 9)]
            .into_iter()
            .map(|(w, c)| (w.to_owned(), c))
            .collect();
        let f = WordFrequencies::from_counts(&counts);
        assert_eq!(
            f.most_frequent(3, |w| w.len() > 1),
            vec!["the", "anchor", "tide"]
        );
        assert_eq!(f.most_frequent(1, |w| w != "the"), vec!["x"]);
    }

    #[test]
    fn corpus_counts_give_zipf() {
        let counts = HashMap::from([("the".to_owned(), 999u64), ("rare".to_owned(), 1)]);
        let f = WordFrequencies::from_counts(&counts);
        assert!((f.zipf("rare").unwrap() - 6.0).abs() < 1e-4);
        assert!(f.zipf("missing").is_none());
    }

    #[test]
    fn foreign_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.msgpack.gz");
        std::fs::write(&p, b"plain text").unwrap();
        assert!(matches!(
            WordFrequencies::load_wordfreq(&p).unwrap_err(),
            SemanticError::Frequencies { .. }
        ));
    }

    #[test]
    fn reads_the_installed_wordfreq_table() {
        // requirements-models.txt installs wordfreq (data only) into .venv.
        let p = find_wordfreq()
            .expect("wordfreq: set LEXFORGE_WORDFREQ (scripts/test.sh does, from .venv)");
        let f = WordFrequencies::load_wordfreq(&p).unwrap();
        let the = f.zipf("the").unwrap();
        let rare = f.zipf("perspicacious").unwrap();
        assert!(the > 7.0 && the < 8.0, "{the}");
        assert!(rare < 3.0, "{rare}");
    }
}
