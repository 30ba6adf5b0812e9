//! Corpora: where text comes from. The [`CorpusProvider`] contract and the two providers every
//! pipeline needs (files and directories of `.txt`, and in-memory texts).
//!
//! The contract lives in the bottom layer because both the tokenizer trainer and the data crate
//! read corpora; `lexforge-data` adds JSONL, standardization (boilerplate removal) and chunking on
//! top of it.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One document of a corpus: a book, an article, a file.
///
/// Invariant: `text` is valid UTF-8 with no leading byte-order mark. It is otherwise the text as
/// stored (line endings and Gutenberg boilerplate untouched); cleaning is a later, explicit step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// A stable id, unique within its corpus (for files: the path relative to the directory
    /// given, without the `.txt` extension, with `/` separators).
    pub id: String,
    /// The text.
    pub text: String,
    /// The file it was read from, when it came from a file.
    pub path: Option<PathBuf>,
    /// Free-form metadata (`author`, `title`, `year`, `genre`, ...), from a catalogue or the
    /// record the document came from. Empty when the source has none.
    pub metadata: BTreeMap<String, String>,
}

/// A source of documents.
///
/// # Design
/// Implemented by anything that yields text: [`TextFiles`], [`InMemoryCorpus`], and the data
/// crate's JSONL and standardizing providers. Called by trainers (tokenizers, dataset builders),
/// which may iterate several times, so [`CorpusProvider::documents`] starts a fresh pass on every
/// call, in the same order each time. Documents are plain Rust values, never tensors.
/// Providers are `Send + Sync` so a trainer can read on a worker thread while Python waits.
/// Errors name the file or parameter at fault ([`Error::NotUtf8`], [`Error::BinaryFile`],
/// [`Error::NoTextFiles`], [`Error::Io`] with a not-found source for a missing path).
pub trait CorpusProvider: Send + Sync {
    /// A short human description for logs, errors and manifests (the paths, or
    /// `"in-memory (3 documents)"`).
    fn describe(&self) -> String;

    /// Starts a pass over the documents, in a stable order.
    fn documents(&self) -> Result<Box<dyn Iterator<Item = Result<Document>> + Send + '_>>;

    /// Reads every document into memory, dropping empty or blank ones, and fails with
    /// [`Error::CorpusEmpty`] when nothing is left.
    fn read_all(&self) -> Result<Vec<Document>> {
        let mut docs = Vec::new();
        for doc in self.documents()? {
            let doc = doc?;
            if doc.text.trim().is_empty() {
                tracing::warn!(id = %doc.id, "skipping empty corpus document");
                continue;
            }
            docs.push(doc);
        }
        if docs.is_empty() {
            return Err(Error::CorpusEmpty {
                source_name: self.describe(),
            });
        }
        Ok(docs)
    }
}

/// Text files: each path is a file (read whatever its extension) or a directory (every `*.txt`
/// below it, recursively, in sorted order, e.g. the `{author}/{title}.txt` layout of the book
/// corpus).
///
/// Each file must be UTF-8 without NUL bytes; a leading byte-order mark is removed.
#[derive(Debug, Clone)]
pub struct TextFiles {
    paths: Vec<PathBuf>,
}

impl TextFiles {
    /// A provider over `paths` (files or directories).
    pub fn new<P: Into<PathBuf>>(paths: impl IntoIterator<Item = P>) -> Self {
        TextFiles {
            paths: paths.into_iter().map(Into::into).collect(),
        }
    }

    /// The paths as given.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Every file this provider will read, with its document id, in order. Fails on a missing
    /// path or a directory without `.txt` files.
    pub fn files(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        for root in &self.paths {
            let meta =
                fs::metadata(root).map_err(|e| Error::io("open corpus path", root.clone(), e))?;
            if meta.is_dir() {
                let mut found = Vec::new();
                collect_txt(root, &mut found)?;
                if found.is_empty() {
                    return Err(Error::NoTextFiles { dir: root.clone() });
                }
                found.sort();
                for path in found {
                    let rel = path.strip_prefix(root).unwrap_or(&path);
                    let id = rel
                        .with_extension("")
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    out.push((id, path));
                }
            } else {
                out.push((root.display().to_string(), root.clone()));
            }
        }
        Ok(out)
    }
}

fn collect_txt(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list corpus directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list corpus directory", dir, e))?;
        let path = entry.path();
        let meta = fs::metadata(&path).map_err(|e| Error::io("open corpus path", &path, e))?;
        if meta.is_dir() {
            collect_txt(&path, out)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("txt"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads `path` as a UTF-8 text document: NUL bytes mean binary ([`Error::BinaryFile`]), invalid
/// UTF-8 is [`Error::NotUtf8`] with the offset, a leading BOM is dropped.
pub fn read_text_file(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| Error::io("read corpus file", path, e))?;
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(Error::BinaryFile {
            path: path.to_path_buf(),
            offset,
        });
    }
    let mut text = String::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

impl CorpusProvider for TextFiles {
    fn describe(&self) -> String {
        self.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn documents(&self) -> Result<Box<dyn Iterator<Item = Result<Document>> + Send + '_>> {
        if self.paths.is_empty() {
            return Err(Error::CorpusEmpty {
                source_name: "no corpus paths given".to_owned(),
            });
        }
        let files = self.files()?;
        Ok(Box::new(files.into_iter().map(|(id, path)| {
            let text = read_text_file(&path)?;
            Ok(Document {
                id,
                text,
                path: Some(path),
                metadata: BTreeMap::new(),
            })
        })))
    }
}

/// Documents already in memory (what Python's `train_from_texts` and tests use).
#[derive(Debug, Clone, Default)]
pub struct InMemoryCorpus {
    docs: Vec<Document>,
}

impl InMemoryCorpus {
    /// One document per text, with ids `"0"`, `"1"`, ...
    pub fn from_texts<S: Into<String>>(texts: impl IntoIterator<Item = S>) -> Self {
        InMemoryCorpus {
            docs: texts
                .into_iter()
                .enumerate()
                .map(|(i, t)| Document {
                    id: i.to_string(),
                    text: t.into(),
                    path: None,
                    metadata: BTreeMap::new(),
                })
                .collect(),
        }
    }

    /// From documents with their own ids.
    pub fn new(docs: Vec<Document>) -> Self {
        InMemoryCorpus { docs }
    }
}

impl CorpusProvider for InMemoryCorpus {
    fn describe(&self) -> String {
        format!("in-memory ({} documents)", self.docs.len())
    }

    fn documents(&self) -> Result<Box<dyn Iterator<Item = Result<Document>> + Send + '_>> {
        Ok(Box::new(self.docs.iter().cloned().map(Ok)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn directory_is_read_recursively_in_sorted_order_with_ids() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("b_author")).unwrap();
        fs::create_dir_all(dir.path().join("a_author")).unwrap();
        fs::write(dir.path().join("b_author/x.txt"), "bee").unwrap();
        fs::write(dir.path().join("a_author/y.TXT"), "\u{feff}ay").unwrap();
        fs::write(dir.path().join("a_author/notes.md"), "ignored").unwrap();
        let docs = TextFiles::new([dir.path()]).read_all().unwrap();
        let ids: Vec<_> = docs.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["a_author/y", "b_author/x"]);
        assert_eq!(docs[0].text, "ay", "BOM removed");
    }

    #[test]
    fn bad_inputs_are_typed_and_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.txt");
        let e = TextFiles::new([&missing]).read_all().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("nope.txt"), "{e}");

        let empty_dir = dir.path().join("empty");
        fs::create_dir(&empty_dir).unwrap();
        fs::write(empty_dir.join("data.bin"), [1u8, 2]).unwrap();
        let e = TextFiles::new([&empty_dir]).read_all().unwrap_err();
        assert!(
            matches!(e, Error::NoTextFiles { ref dir } if dir == &empty_dir),
            "{e}"
        );

        let latin1 = dir.path().join("latin1.txt");
        fs::write(&latin1, b"caf\xe9 au lait").unwrap();
        let e = TextFiles::new([&latin1]).read_all().unwrap_err();
        assert!(matches!(e, Error::NotUtf8 { offset: 3, .. }), "{e}");
        assert!(e.to_string().contains("latin1.txt"));

        let binary = dir.path().join("image.txt");
        fs::write(&binary, b"PK\x03\x04\x00\x00abc").unwrap();
        let e = TextFiles::new([&binary]).read_all().unwrap_err();
        assert!(matches!(e, Error::BinaryFile { offset: 4, .. }), "{e}");

        let blank = dir.path().join("blank.txt");
        fs::write(&blank, "  \n\r\n").unwrap();
        let e = TextFiles::new([&blank]).read_all().unwrap_err();
        assert!(matches!(e, Error::CorpusEmpty { .. }), "{e}");
        assert!(e.to_string().contains("blank.txt"));
        assert_eq!(e.kind(), ErrorKind::InvalidInput);

        let e = TextFiles::new(Vec::<PathBuf>::new())
            .read_all()
            .unwrap_err();
        assert!(matches!(e, Error::CorpusEmpty { .. }), "{e}");
    }

    #[test]
    fn in_memory_skips_blank_documents() {
        let c = InMemoryCorpus::from_texts(["one", " ", "two"]);
        let docs = c.read_all().unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].id, "2");
        assert!(InMemoryCorpus::from_texts([""]).read_all().is_err());
    }
}
