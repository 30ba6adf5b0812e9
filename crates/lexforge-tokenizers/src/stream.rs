//! The holdout split of a corpus streamed in passes, so that training a tokenizer holds one
//! document (per reader) and the held-out text in memory, never the whole corpus.
//!
//! 1. **Plan**: read every document once for its holdout keys and sizes, then choose the
//!    held-out documents exactly as [`crate::holdout_split`] does.
//! 2. **Holdout**: read again, keeping the held-out documents' lines (the text coverage is
//!    measured on, `holdout` of the corpus).
//! 3. **Train**: each pass a backend asks for streams the training documents' lines.
//!
//! A corpus of one document is split by line, in memory: that document is read whole anyway.
//! The passes must see the same documents; a corpus that changes between them is an error.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use lexforge_core::{CorpusProvider, Document, Error as CoreError};

use crate::backend::LinePass;
use crate::error::Result;
use crate::split::{Split, SplitUnit, choose_keyed, holdout_split, lines_with_endings, split_keys};
use crate::stats::{CorpusSizes, ratio};

/// Sizes of one document.
#[derive(Default, Clone, Copy)]
struct DocSizes {
    lines: usize,
    bytes: u64,
    chars: u64,
}

fn sizes(text: &str) -> DocSizes {
    DocSizes {
        lines: lines_with_endings(text).count(),
        bytes: text.len() as u64,
        chars: text.chars().count() as u64,
    }
}

/// Non-blank documents, in the provider's order (blank ones are skipped, as
/// [`CorpusProvider::read_all`] does).
fn documents<'a>(
    corpus: &'a dyn CorpusProvider,
) -> std::result::Result<
    impl Iterator<Item = std::result::Result<Document, CoreError>> + 'a,
    CoreError,
> {
    Ok(corpus.documents()?.filter(|d| match d {
        Ok(doc) => !doc.text.trim().is_empty(),
        Err(_) => true,
    }))
}

/// The split of a corpus, decided; the training lines are streamed from it.
pub(crate) struct StreamedSplit<'a> {
    corpus: &'a dyn CorpusProvider,
    unit: SplitUnit,
    /// Document split: whether each non-blank document is held out.
    held: Vec<bool>,
    /// Line split (one document): the training lines.
    single_train: Vec<String>,
    /// The held-out lines.
    pub holdout: Vec<String>,
    /// Ids of the held-out documents, in order.
    pub holdout_ids: Vec<String>,
    train_documents: usize,
    holdout_documents: usize,
    train: DocSizes,
    held_sizes: DocSizes,
    /// Non-blank held-out lines (`trim_end`), with how often each occurs.
    holdout_counts: HashMap<String, u64>,
    /// Which of those a training pass has seen (indexed like `holdout_index`).
    seen: Vec<AtomicBool>,
    holdout_index: HashMap<String, usize>,
    /// The first error a training pass met (reported by [`StreamedSplit::finish`]).
    error: Mutex<Option<CoreError>>,
    /// Documents the last training pass read.
    passed: AtomicU64,
}

impl<'a> StreamedSplit<'a> {
    /// Plans the split of `corpus` and reads the held-out text.
    ///
    /// # Errors
    /// [`CoreError::CorpusEmpty`] when every document is blank, and the provider's errors.
    pub(crate) fn new(corpus: &'a dyn CorpusProvider, fraction: f64, seed: u64) -> Result<Self> {
        // Pass 1: keys and sizes; the first document is kept until a second one shows up.
        let mut doc_keys: Vec<(u64, u64)> = Vec::new();
        let mut doc_sizes: Vec<DocSizes> = Vec::new();
        let mut first: Option<Document> = None;
        for doc in documents(corpus)? {
            let doc = doc?;
            doc_keys.push(split_keys(seed, &doc.text));
            doc_sizes.push(sizes(&doc.text));
            if doc_keys.len() == 1 {
                first = Some(doc);
            } else {
                first = None;
            }
        }
        let mut split = StreamedSplit {
            corpus,
            unit: SplitUnit::Document,
            held: Vec::new(),
            single_train: Vec::new(),
            holdout: Vec::new(),
            holdout_ids: Vec::new(),
            train_documents: 0,
            holdout_documents: 0,
            train: DocSizes::default(),
            held_sizes: DocSizes::default(),
            holdout_counts: HashMap::new(),
            seen: Vec::new(),
            holdout_index: HashMap::new(),
            error: Mutex::new(None),
            passed: AtomicU64::new(0),
        };
        match doc_keys.len() {
            0 => {
                return Err(CoreError::CorpusEmpty {
                    source_name: corpus.describe(),
                }
                .into());
            }
            1 => {
                let doc = first.ok_or_else(|| CoreError::CorpusEmpty {
                    source_name: corpus.describe(),
                })?;
                let docs = [doc];
                let s: Split<'_> = holdout_split(&docs, fraction, seed);
                split.unit = s.unit;
                split.train_documents = s.train_documents;
                split.single_train = s.train.iter().map(|l| (*l).to_owned()).collect();
                split.holdout = s.holdout.iter().map(|l| (*l).to_owned()).collect();
                for l in &split.single_train {
                    split.train = add(split.train, sizes(l), 0);
                }
                for l in &split.holdout {
                    split.held_sizes = add(split.held_sizes, sizes(l), 0);
                }
                split.train.lines = split.single_train.len();
                split.held_sizes.lines = split.holdout.len();
            }
            _ => {
                split.held = choose_keyed(&doc_keys, fraction);
                for (h, s) in split.held.iter().zip(&doc_sizes) {
                    if *h {
                        split.holdout_documents += 1;
                        split.held_sizes = add(split.held_sizes, *s, s.lines);
                    } else {
                        split.train_documents += 1;
                        split.train = add(split.train, *s, s.lines);
                    }
                }
                // Pass 2: the held-out text.
                let mut count = 0;
                for (i, doc) in documents(corpus)?.enumerate() {
                    let doc = doc?;
                    count += 1;
                    if doc_keys.get(i) != Some(&split_keys(seed, &doc.text)) {
                        return Err(changed(corpus));
                    }
                    if split.held[i] {
                        split
                            .holdout
                            .extend(lines_with_endings(&doc.text).map(str::to_owned));
                        split.holdout_ids.push(doc.id);
                    }
                }
                if count != doc_keys.len() {
                    return Err(changed(corpus));
                }
            }
        }
        for line in &split.holdout {
            let line = line.trim_end();
            if !line.trim().is_empty() {
                *split.holdout_counts.entry(line.to_owned()).or_default() += 1;
            }
        }
        for (i, line) in split.holdout_counts.keys().enumerate() {
            split.holdout_index.insert(line.clone(), i);
        }
        split.seen = (0..split.holdout_index.len())
            .map(|_| AtomicBool::new(false))
            .collect();
        Ok(split)
    }

    /// Whether the training side holds no text but blank lines (known before any pass: a
    /// document is non-blank, so only a line split can leave it blank).
    pub(crate) fn training_is_blank(&self) -> bool {
        match self.unit {
            SplitUnit::Line => self.single_train.iter().all(|l| l.trim().is_empty()),
            SplitUnit::Document => self.train_documents == 0,
        }
    }

    /// Bytes on each side: `(train, holdout)`.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (self.train.bytes, self.held_sizes.bytes)
    }

    /// One pass over the training lines, each with its `\n`, streamed from the corpus.
    pub(crate) fn pass(&self) -> LinePass<'_> {
        match self.unit {
            SplitUnit::Line => Box::new(self.single_train.iter().map(move |l| {
                self.mark(l);
                l.clone()
            })),
            SplitUnit::Document => {
                self.passed.store(0, Ordering::Release);
                let docs = match documents(self.corpus) {
                    Ok(d) => d,
                    Err(e) => {
                        self.fail(e);
                        return Box::new(std::iter::empty());
                    }
                };
                Box::new(
                    docs.enumerate()
                        .map_while(move |(i, doc)| match doc {
                            Ok(doc) => {
                                self.passed.fetch_add(1, Ordering::AcqRel);
                                Some((i, doc))
                            }
                            Err(e) => {
                                self.fail(e);
                                None
                            }
                        })
                        .filter(move |(i, _)| !self.held.get(*i).copied().unwrap_or(true))
                        .flat_map(|(_, doc)| {
                            lines_with_endings(&doc.text)
                                .map(str::to_owned)
                                .collect::<Vec<_>>()
                        })
                        .inspect(move |l| self.mark(l)),
                )
            }
        }
    }

    fn mark(&self, line: &str) {
        if let Some(&i) = self.holdout_index.get(line.trim_end())
            && let Some(flag) = self.seen.get(i)
        {
            flag.store(true, Ordering::Release);
        }
    }

    fn fail(&self, e: CoreError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    /// The error a training pass met, if any (a full pass must also have read every
    /// document), and then the split's sizes.
    pub(crate) fn finish(&self) -> Result<CorpusSizes> {
        if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e.into());
        }
        if self.unit == SplitUnit::Document
            && self.passed.load(Ordering::Acquire) as usize != self.held.len()
        {
            return Err(changed(self.corpus));
        }
        let non_blank: u64 = self.holdout_counts.values().sum();
        let seen: u64 = self
            .holdout_counts
            .iter()
            .filter(|(line, _)| {
                self.holdout_index
                    .get(*line)
                    .and_then(|&i| self.seen.get(i))
                    .is_some_and(|f| f.load(Ordering::Acquire))
            })
            .map(|(_, n)| n)
            .sum();
        Ok(CorpusSizes {
            split_unit: self.unit,
            train_documents: self.train_documents,
            holdout_documents: self.holdout_documents,
            train_lines: self.train.lines,
            holdout_lines: self.held_sizes.lines,
            train_bytes: self.train.bytes,
            holdout_bytes: self.held_sizes.bytes,
            train_chars: self.train.chars,
            holdout_chars: self.held_sizes.chars,
            // A line split keeps identical lines on one side: no overlap by construction.
            holdout_line_overlap: if self.unit == SplitUnit::Line {
                0.0
            } else {
                ratio(seen, non_blank)
            },
        })
    }
}

fn add(a: DocSizes, b: DocSizes, lines: usize) -> DocSizes {
    DocSizes {
        lines: a.lines + lines,
        bytes: a.bytes + b.bytes,
        chars: a.chars + b.chars,
    }
}

fn changed(corpus: &dyn CorpusProvider) -> crate::error::TokenizerError {
    crate::error::TokenizerError::NoTrainingText {
        reason: format!(
            "the corpus {} changed while it was being read (it is read in passes); keep it \
             unchanged during training",
            corpus.describe()
        ),
    }
}

#[cfg(test)]
mod tests {
    use lexforge_core::InMemoryCorpus;

    use super::*;
    use crate::split::holdout_split;

    fn corpus() -> Vec<String> {
        (0..40)
            .map(|i| {
                // Some identical documents, and a line every document shares.
                let body = if i % 7 == 0 { 0 } else { i };
                format!("Chapter I\ndocument {body}\nline two of {body}\n")
            })
            .collect()
    }

    #[test]
    fn streamed_split_equals_the_in_memory_split() {
        let texts = corpus();
        let provider = InMemoryCorpus::from_texts(texts.clone());
        let docs = provider.read_all().unwrap();
        for fraction in [0.0, 0.1, 0.3] {
            let memory = holdout_split(&docs, fraction, 9);
            let want = CorpusSizes::of(&memory);
            let streamed = StreamedSplit::new(&provider, fraction, 9).unwrap();
            let train: Vec<String> = streamed.pass().collect();
            let got = streamed.finish().unwrap();
            assert_eq!(got, want, "fraction {fraction}");
            assert_eq!(train, memory.train);
            assert_eq!(streamed.holdout, memory.holdout);
            // A second pass gives the same lines.
            assert_eq!(streamed.pass().collect::<Vec<_>>(), train);
        }
    }

    #[test]
    fn one_document_is_split_by_line_and_an_empty_corpus_is_an_error() {
        let text = (0..50).map(|i| format!("line {i}\n")).collect::<String>();
        let provider = InMemoryCorpus::from_texts([text]);
        let docs = provider.read_all().unwrap();
        let memory = holdout_split(&docs, 0.2, 1);
        let streamed = StreamedSplit::new(&provider, 0.2, 1).unwrap();
        assert_eq!(streamed.pass().collect::<Vec<_>>(), memory.train);
        assert_eq!(streamed.finish().unwrap(), CorpusSizes::of(&memory));
        let empty = InMemoryCorpus::from_texts(["  \n", ""]);
        assert!(StreamedSplit::new(&empty, 0.2, 1).is_err());
    }
}
