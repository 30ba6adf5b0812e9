//! The built-in [`CorpusGenerator`]: [`BookWords`], characteristic words of each (style, era)
//! group of books by log-odds against the other groups, bucketed by complexity (word frequency
//! and length), and its settings [`BookWordsConfig`].

use std::collections::{BTreeMap, HashMap};

use lexforge_core::CorpusProvider;
use lexforge_data::{StandardizeConfig, standardize};
use serde::{Deserialize, Serialize};

use crate::corpus::{CorpusGenerator, CorpusLabels, CorpusSet, build_corpora, clean_word};
use crate::error::{Result, SemanticError};
use crate::frequency::WordFrequencies;

/// Settings of [`BookWords`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BookWordsConfig {
    /// Catalogue field giving a book's style.
    pub style_field: String,
    /// Catalogue field giving a book's era.
    pub era_field: String,
    /// Complexity levels, easiest first, with the lowest complexity score of each after the
    /// first (`cuts.len() == levels.len() - 1`, increasing).
    pub levels: Vec<String>,
    /// Score cut points between levels (see the complexity score in [`BookWords`]).
    pub cuts: Vec<f64>,
    /// Distinct samples per (style, complexity, era).
    pub variations: u32,
    /// Minimum occurrences of a word in its group.
    pub min_count: u64,
    /// Minimum number of the group's books a word occurs in (capped at the group's size).
    pub min_books: usize,
    /// Minimum log-odds z-score against the other groups.
    pub min_z: f64,
    /// Prior mass of the informative Dirichlet prior of the log-odds.
    pub prior: f64,
    /// Highest share of mid-sentence occurrences that are capitalized (names are dropped).
    pub max_capitalized: f64,
}

impl Default for BookWordsConfig {
    fn default() -> Self {
        BookWordsConfig {
            style_field: "genre".into(),
            era_field: "era".into(),
            levels: vec!["basic".into(), "intermediate".into(), "advanced".into()],
            cuts: vec![2.0, 3.0],
            variations: 2,
            min_count: 3,
            min_books: 2,
            min_z: 1.96,
            prior: 500.0,
            max_capitalized: 0.3,
        }
    }
}

impl BookWordsConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// [`SemanticError::InvalidParameter`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.levels.is_empty() {
            return Err(SemanticError::param("levels", "needs at least one level"));
        }
        if self.cuts.len() + 1 != self.levels.len() {
            return Err(SemanticError::param(
                "cuts",
                format!(
                    "{} levels need {} cut points, got {}",
                    self.levels.len(),
                    self.levels.len() - 1,
                    self.cuts.len()
                ),
            ));
        }
        if self
            .cuts
            .windows(2)
            .any(|w| w[0].partial_cmp(&w[1]) != Some(std::cmp::Ordering::Less))
            || self.cuts.iter().any(|c| !c.is_finite())
        {
            return Err(SemanticError::param(
                "cuts",
                "must be finite and increasing",
            ));
        }
        if self.variations == 0 {
            return Err(SemanticError::param("variations", "must be at least 1"));
        }
        if !(self.prior.is_finite() && self.prior > 0.0) {
            return Err(SemanticError::param("prior", "must be positive"));
        }
        if !(0.0..=1.0).contains(&self.max_capitalized) {
            return Err(SemanticError::param("max_capitalized", "must be in [0, 1]"));
        }
        if self.style_field.is_empty() || self.era_field.is_empty() {
            return Err(SemanticError::param(
                "style_field",
                "catalogue field names cannot be empty",
            ));
        }
        Ok(())
    }
}

/// Complexity score of a word: how rare it is (6 minus its Zipf frequency: a word used once per
/// 100,000 words scores 2, once per million 3) plus a length term (0.15 per letter beyond 7).
/// Higher is harder. The default cuts 2 and 3 make "basic" the words more frequent than once
/// per 100,000 and "advanced" those rarer than once per million (for words of up to 7 letters).
fn complexity_score(zipf: f64, len: usize) -> f64 {
    (6.0 - zipf) + 0.15 * (len as f64 - 7.0).max(0.0)
}

/// Per-word statistics of one group of books.
#[derive(Debug, Default, Clone)]
struct WordStats {
    count: u64,
    books: usize,
}

/// Word counts of one book, with capitalization evidence.
#[derive(Debug, Default)]
struct BookCounts {
    counts: HashMap<String, u64>,
    /// (capitalized, total) mid-sentence occurrences.
    case: HashMap<String, (u64, u64)>,
}

/// Counts the words of `text` (lowercased ASCII-letter runs; tokens with other letters are
/// skipped), noting mid-sentence capitalization.
fn count_words(text: &str) -> BookCounts {
    let mut out = BookCounts::default();
    // Sentence-initial: after . ! ? : ; or at a line start (verse capitalizes lines).
    let mut initial = true;
    let mut word = String::new();
    let mut foreign = false;
    let flush = |word: &mut String, foreign: &mut bool, initial: bool, out: &mut BookCounts| {
        if !word.is_empty() && !*foreign {
            let first_upper = word.as_bytes()[0].is_ascii_uppercase();
            let all_upper = word.bytes().all(|b| b.is_ascii_uppercase());
            let lower = word.to_ascii_lowercase();
            if !initial && !all_upper {
                let e = out.case.entry(lower.clone()).or_default();
                e.0 += u64::from(first_upper);
                e.1 += 1;
            }
            *out.counts.entry(lower).or_default() += 1;
        }
        word.clear();
        *foreign = false;
    };
    for ch in text.chars() {
        if ch.is_ascii_alphabetic() {
            word.push(ch);
        } else if ch.is_alphabetic() || (ch == '\'' && !word.is_empty()) {
            // Accented letters and contractions: not a clean English corpus word.
            foreign = true;
            word.push('x');
        } else {
            let had_word = !word.is_empty();
            flush(&mut word, &mut foreign, initial, &mut out);
            if had_word {
                initial = false;
            }
            match ch {
                '.' | '!' | '?' | ':' | ';' | '\n' => initial = true,
                _ => {}
            }
        }
    }
    flush(&mut word, &mut foreign, initial, &mut out);
    out
}

/// The built-in [`CorpusGenerator`]: characteristic words of each (style, era) group of books.
///
/// For each group, a word's log-odds ratio against all other groups, with an informative
/// Dirichlet prior from the whole collection (Monroe, Colaresi & Quinn 2008), gives a z-score;
/// words with `z >= min_z`, enough occurrences and books, not names (mostly capitalized
/// mid-sentence) and not stop words are ranked by z and bucketed by complexity level
/// (the complexity score from the frequency source: 6 minus the word's Zipf frequency, plus
/// 0.15 per letter beyond 7; higher is harder). Variation `v` of a bucket takes every
/// `variations`-th word starting at `v`, so variations are disjoint and of similar rank.
#[derive(Debug)]
pub struct BookWords {
    config: BookWordsConfig,
    /// (style, era) → complexity level → ranked words.
    buckets: BTreeMap<(String, String), Vec<Vec<String>>>,
    /// (style, era) → book ids.
    books: BTreeMap<(String, String), Vec<String>>,
    frequency_source: String,
    /// Books without a style or era in the catalogue.
    unlabelled: Vec<String>,
}

impl BookWords {
    /// Reads every book of `provider` (standardized: Gutenberg boilerplate removed), groups
    /// them by the catalogue's style and era fields, and ranks each group's words. Words
    /// missing from a wordfreq table are dropped (names, archaic spellings, OCR noise); with
    /// corpus-count frequencies every word has one.
    ///
    /// # Errors
    /// A bad config, unreadable books, [`SemanticError::NoCorpora`] when fewer than two
    /// groups have labelled books.
    pub fn new(
        provider: &dyn CorpusProvider,
        frequencies: Option<&WordFrequencies>,
        config: &BookWordsConfig,
    ) -> Result<Self> {
        config.validate()?;
        let mut groups: BTreeMap<(String, String), Vec<(String, BookCounts)>> = BTreeMap::new();
        let mut unlabelled = Vec::new();
        let std_config = StandardizeConfig::default();
        for doc in provider.documents()? {
            let doc = doc?;
            let style = doc.metadata.get(&config.style_field).map(|s| s.trim());
            let era = doc.metadata.get(&config.era_field).map(|s| s.trim());
            let (Some(style), Some(era)) = (style, era) else {
                unlabelled.push(doc.id);
                continue;
            };
            // A label without a letter or digit ("", "..", "—") names no group.
            let (style, era) = (slug(style), slug(era));
            if style.is_empty() || era.is_empty() {
                unlabelled.push(doc.id);
                continue;
            }
            let text = standardize(&doc.text, &std_config).text;
            let counts = count_words(&text);
            groups
                .entry((style, era))
                .or_default()
                .push((doc.id, counts));
        }
        if groups.len() < 2 {
            return Err(SemanticError::NoCorpora {
                reason: format!(
                    "{} labelled group(s) of books (fields {:?} and {:?}); characteristic words \
                     need at least two groups to contrast",
                    groups.len(),
                    config.style_field,
                    config.era_field
                ),
            });
        }
        // Group statistics and collection totals.
        let mut group_stats: BTreeMap<&(String, String), HashMap<String, WordStats>> =
            BTreeMap::new();
        let mut total: HashMap<String, u64> = HashMap::new();
        let mut case: HashMap<String, (u64, u64)> = HashMap::new();
        for (key, books) in &groups {
            let stats = group_stats.entry(key).or_default();
            for (_, b) in books {
                for (w, &c) in &b.counts {
                    let s = stats.entry(w.clone()).or_default();
                    s.count += c;
                    s.books += 1;
                    *total.entry(w.clone()).or_default() += c;
                }
                for (w, &(u, t)) in &b.case {
                    let e = case.entry(w.clone()).or_default();
                    e.0 += u;
                    e.1 += t;
                }
            }
        }
        let n_total: u64 = total.values().sum();
        let corpus_freq;
        let freqs = match frequencies {
            Some(f) => f,
            None => {
                corpus_freq = WordFrequencies::from_counts(&total);
                &corpus_freq
            }
        };
        let a0 = config.prior;
        let mut buckets = BTreeMap::new();
        let mut books_by_group = BTreeMap::new();
        for (key, stats) in &group_stats {
            let n_i: u64 = stats.values().map(|s| s.count).sum();
            let n_j = n_total - n_i;
            let group_books = groups[*key].len();
            let min_books = config.min_books.min(group_books).max(1);
            let mut scored: Vec<(f64, &str)> = Vec::new();
            for (w, s) in stats {
                if s.count < config.min_count || s.books < min_books {
                    continue;
                }
                if clean_word(w).is_none() {
                    continue;
                }
                let (upper, mid) = case.get(w).copied().unwrap_or((0, 0));
                if mid == 0 || upper as f64 > config.max_capitalized * mid as f64 {
                    continue;
                }
                if freqs.zipf(w).is_none() {
                    continue;
                }
                let y_w = total[w];
                let alpha = a0 * y_w as f64 / n_total as f64;
                let yi = s.count as f64;
                let yj = (y_w - s.count) as f64;
                let delta = ((yi + alpha) / (n_i as f64 + a0 - yi - alpha)).ln()
                    - ((yj + alpha) / (n_j as f64 + a0 - yj - alpha)).ln();
                let var = 1.0 / (yi + alpha) + 1.0 / (yj + alpha);
                let z = delta / var.sqrt();
                if z >= config.min_z {
                    scored.push((z, w.as_str()));
                }
            }
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
            let mut levels = vec![Vec::new(); config.levels.len()];
            for (_, w) in scored {
                let zipf = freqs.zipf(w).unwrap_or(0.0);
                let score = complexity_score(zipf, w.len());
                let level = config.cuts.iter().filter(|&&c| score >= c).count();
                levels[level].push(w.to_owned());
            }
            buckets.insert((*key).clone(), levels);
            books_by_group.insert(
                (*key).clone(),
                groups[*key].iter().map(|(id, _)| id.clone()).collect(),
            );
        }
        Ok(BookWords {
            config: config.clone(),
            buckets,
            books: books_by_group,
            frequency_source: freqs.source().to_owned(),
            unlabelled,
        })
    }

    /// The corpora this generator can fill with `words_per_corpus` words each: every (style,
    /// era, complexity) bucket holding enough ranked words for a variation, up to
    /// `variations` per bucket, in label order; and the buckets it cannot fill, with why.
    pub fn plan(&self, words_per_corpus: usize) -> (Vec<CorpusLabels>, Vec<(String, String)>) {
        let mut plan = Vec::new();
        let mut skipped = Vec::new();
        let v_max = self.config.variations as usize;
        for ((style, era), levels) in &self.buckets {
            for (li, words) in levels.iter().enumerate() {
                let complexity = self.config.levels[li].clone();
                // Variation v gets words v, v + V, ...: ceil((len - v) / V) of them.
                let fill = (0..v_max)
                    .filter(|&v| words.len().saturating_sub(v).div_ceil(v_max) >= words_per_corpus)
                    .count();
                for v in 0..fill {
                    plan.push(CorpusLabels {
                        style: style.clone(),
                        complexity: complexity.clone(),
                        era: era.clone(),
                        variation: v as u32,
                    });
                }
                if fill < v_max {
                    skipped.push((
                        format!("{style}.{era}.{complexity}"),
                        format!(
                            "{} characteristic words fill {fill} of {v_max} variations of \
                             {words_per_corpus}",
                            words.len()
                        ),
                    ));
                }
            }
        }
        (plan, skipped)
    }

    /// The book ids of a (style, era) group.
    pub fn group_books(&self, style: &str, era: &str) -> Option<&[String]> {
        self.books
            .get(&(style.to_owned(), era.to_owned()))
            .map(Vec::as_slice)
    }

    /// Ids of books skipped for lack of a style or era.
    pub fn unlabelled(&self) -> &[String] {
        &self.unlabelled
    }

    /// Words per corpus unless told otherwise.
    pub const WORDS_PER_CORPUS: usize = 50;

    /// Builds the planned corpora ([`BookWords::plan`] + [`build_corpora`]) with the settings,
    /// the frequency source and each corpus's books recorded.
    ///
    /// # Errors
    /// As [`build_corpora`]; [`SemanticError::NoCorpora`] when no bucket is full enough.
    pub fn build(&self, words_per_corpus: usize) -> Result<CorpusSet> {
        let (plan, skipped) = self.plan(words_per_corpus);
        if plan.is_empty() {
            return Err(SemanticError::NoCorpora {
                reason: format!(
                    "no (style, era, complexity) bucket has {words_per_corpus} characteristic \
                     words; lower words_per_corpus or min_z, or add books"
                ),
            });
        }
        let mut set = build_corpora(self, &plan, words_per_corpus)?;
        for c in &mut set.corpora {
            if let Some(books) = self.group_books(&c.labels.style, &c.labels.era) {
                c.source.insert("books".into(), books.join(","));
            }
        }
        set.skipped.extend(skipped);
        set.config = serde_json::json!({
            "words_per_corpus": words_per_corpus,
            "book_words": self.config,
            "frequencies": self.frequency_source,
            "unlabelled_books": self.unlabelled,
        });
        Ok(set)
    }
}

impl CorpusGenerator for BookWords {
    fn name(&self) -> String {
        "books".into()
    }

    fn words(&self, labels: &CorpusLabels, n: usize) -> Result<Vec<String>> {
        let levels = self
            .buckets
            .get(&(labels.style.clone(), labels.era.clone()))
            .ok_or_else(|| {
                SemanticError::input(format!(
                    "no books with style {:?} and era {:?}",
                    labels.style, labels.era
                ))
            })?;
        let li = self
            .config
            .levels
            .iter()
            .position(|l| *l == labels.complexity)
            .ok_or_else(|| {
                SemanticError::input(format!(
                    "complexity {:?} is not one of {:?}",
                    labels.complexity, self.config.levels
                ))
            })?;
        let v = labels.variation as usize;
        let step = self.config.variations as usize;
        if v >= step {
            return Err(SemanticError::input(format!(
                "variation {v} is beyond the configured {step} variations"
            )));
        }
        Ok(levels[li]
            .iter()
            .skip(v)
            .step_by(step)
            .take(n)
            .cloned()
            .collect())
    }
}

/// Lowercase, `-` for runs of anything but letters and digits (any script: `Роман` →
/// `роман`). Empty when `s` has no letter or digit.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for ch in s.trim().chars() {
        if ch.is_alphanumeric() {
            out.extend(ch.to_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lexforge_core::{Document, InMemoryCorpus};

    #[test]
    fn labels_slug_in_any_script_and_punctuation_alone_is_no_label() {
        assert_eq!(slug(" Gothic  Novel "), "gothic-novel");
        assert_eq!(slug("Роман"), "роман");
        assert_eq!(slug("Roman à clef"), "roman-à-clef");
        assert_eq!(slug("../../../escape"), "escape");
        assert_eq!(slug(".."), "");
        assert_eq!(slug("—"), "");
    }

    fn doc(id: &str, text: &str, genre: &str, era: &str) -> Document {
        Document {
            id: id.into(),
            text: text.into(),
            path: None,
            metadata: BTreeMap::from([
                ("genre".to_owned(), genre.to_owned()),
                ("era".to_owned(), era.to_owned()),
            ]),
        }
    }

    #[test]
    fn counts_skip_names_and_foreign_words() {
        let c = count_words("Alice saw the river. Then alice... No: Alice went to Café rivers.");
        assert_eq!(c.counts["alice"], 3);
        // Mid-sentence "Alice" twice capitalized of three mid-sentence... "went" etc.
        assert_eq!(c.case["river"], (0, 1));
        assert!(!c.counts.contains_key("caf"));
        assert!(
            !c.counts
                .keys()
                .any(|k| k.contains('x') && k.starts_with("caf"))
        );
    }

    #[test]
    fn characteristic_words_are_labelled_from_metadata() {
        let sea = "The sailor hauled the anchor and the mast creaked while the harbour slept. \
                   A sailor mended the sail by the anchor near the harbour and the mast. ";
        let farm = "The farmer ploughed the meadow and the barn smelled of hay and cattle. \
                    A farmer fed the cattle in the barn beside the meadow with fresh hay. ";
        let corpus = InMemoryCorpus::new(vec![
            doc("a/sea1", &sea.repeat(5), "Sea Tales", "victorian"),
            doc("b/sea2", &sea.repeat(4), "Sea Tales", "victorian"),
            doc("c/farm1", &farm.repeat(5), "pastoral", "romantic"),
            doc("d/farm2", &farm.repeat(3), "pastoral", "romantic"),
        ]);
        let config = BookWordsConfig {
            levels: vec!["all".into()],
            cuts: vec![],
            variations: 1,
            min_z: 1.0,
            ..BookWordsConfig::default()
        };
        let bw = BookWords::new(&corpus, None, &config).unwrap();
        let (plan, _) = bw.plan(3);
        assert_eq!(plan.len(), 2);
        let set = bw.build(3).unwrap();
        let sea_c = set
            .corpora
            .iter()
            .find(|c| c.labels.style == "sea-tales")
            .unwrap();
        assert_eq!(sea_c.labels.era, "victorian");
        for w in &sea_c.words {
            assert!(
                sea.contains(w.as_str()) && !farm.contains(w.as_str()),
                "{w}"
            );
        }
        assert_eq!(sea_c.id, "sea-tales.victorian.all.0");
        assert!(sea_c.source["books"].contains("a/sea1"));
    }
}
