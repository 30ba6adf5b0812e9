//! Book corpora: the [`CorpusProvider`]s of the matcher pipeline.
//!
//! - [`BookDirectory`]: `{author}/{title}.txt` below a root (book id `author/title`), with an
//!   optional metadata CSV (a `path` column relative to the CSV's folder, or an `id` column;
//!   every other column becomes metadata: `author`, `title`, `year`, `genre`, ...).
//! - [`SingleFile`]: one file, one book (id = the file stem).
//! - [`JsonlCorpus`]: one JSON object per line with a text field (and optionally an id field);
//!   other scalar fields become metadata.
//! - In memory: [`lexforge_core::InMemoryCorpus`].
//!
//! Bytes that are not UTF-8 are an error naming the file and offset ([`Decoding::Strict`], the
//! default) unless a decoding is chosen explicitly: [`Decoding::Latin1`] (every byte is a code
//! point, lossless) or [`Decoding::Lossy`] (invalid sequences become U+FFFD). A file with NUL
//! bytes is binary and always an error. Nothing is ever silently mangled.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use lexforge_core::{CorpusProvider, Document, Error as CoreError, TextFiles};

/// How bytes that are not valid UTF-8 are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decoding {
    /// Invalid UTF-8 is an error ([`CoreError::NotUtf8`]).
    #[default]
    Strict,
    /// Invalid UTF-8 files are read as ISO-8859-1 (each byte one code point; lossless).
    Latin1,
    /// Invalid sequences become U+FFFD.
    Lossy,
}

/// Reads `path` as text with `decoding` (a leading byte-order mark is dropped). Returns the text
/// and whether the fallback decoding was used.
///
/// # Errors
/// [`CoreError::BinaryFile`] (NUL bytes), [`CoreError::NotUtf8`] (strict), [`CoreError::Io`].
pub(crate) fn read_book_file(path: &Path, decoding: Decoding) -> Result<(String, bool), CoreError> {
    let bytes = fs::read(path).map_err(|e| CoreError::io("read corpus file", path, e))?;
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(CoreError::BinaryFile {
            path: path.to_path_buf(),
            offset,
        });
    }
    let (mut text, fallback) = match String::from_utf8(bytes) {
        Ok(t) => (t, false),
        Err(e) => {
            let offset = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            match decoding {
                Decoding::Strict => {
                    return Err(CoreError::NotUtf8 {
                        path: path.to_path_buf(),
                        offset,
                    });
                }
                Decoding::Latin1 => (bytes.iter().map(|&b| char::from(b)).collect(), true),
                Decoding::Lossy => (String::from_utf8_lossy(&bytes).into_owned(), true),
            }
        }
    };
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    if fallback {
        tracing::warn!(path = %path.display(), ?decoding, "file is not UTF-8; decoded as asked");
    }
    Ok((text, fallback))
}

/// A directory of books laid out as `{author}/{title}.txt` (any depth; the id is the path
/// below the root without `.txt`), with optional metadata from a CSV.
#[derive(Debug, Clone)]
pub struct BookDirectory {
    root: PathBuf,
    metadata_csv: Option<PathBuf>,
    decoding: Decoding,
    shard: Option<(usize, usize)>,
}

impl BookDirectory {
    /// Books below `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        BookDirectory {
            root: root.into(),
            metadata_csv: None,
            decoding: Decoding::Strict,
            shard: None,
        }
    }

    /// Only the files of shard `index` of `count`: the files at positions `index`,
    /// `index + count`, ... of the sorted file list. The shards of one `count` are disjoint
    /// and cover the directory.
    ///
    /// # Errors
    /// [`DataError::InvalidParameter`](crate::DataError::InvalidParameter) when `index >=
    /// count`.
    pub fn with_shard(mut self, index: usize, count: usize) -> crate::Result<Self> {
        if count == 0 || index >= count {
            return Err(crate::DataError::InvalidParameter {
                parameter: "shard",
                reason: format!("shard {index} of {count} does not exist (0 <= index < count)"),
            });
        }
        self.shard = Some((index, count));
        Ok(self)
    }

    /// Reads metadata from `csv` (header row; a `path` column relative to the CSV's folder or
    /// an `id` column identifies the book).
    pub fn with_metadata(mut self, csv: impl Into<PathBuf>) -> Self {
        self.metadata_csv = Some(csv.into());
        self
    }

    /// How non-UTF-8 files are read.
    pub fn with_decoding(mut self, decoding: Decoding) -> Self {
        self.decoding = decoding;
        self
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every book file with its id, sorted by id.
    ///
    /// # Errors
    /// A missing root, or one without `.txt` files ([`CoreError::NoTextFiles`]).
    pub fn files(&self) -> Result<Vec<(String, PathBuf)>, CoreError> {
        if !self.root.is_dir() {
            // A missing path gives the not-found error; a file is not a book directory.
            fs::metadata(&self.root)
                .map_err(|e| CoreError::io("open book directory", &self.root, e))?;
            return Err(CoreError::NoTextFiles {
                dir: self.root.clone(),
            });
        }
        let mut files = TextFiles::new([self.root.clone()]).files()?;
        files.sort();
        if let Some((index, count)) = self.shard {
            files = files
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % count == index)
                .map(|(_, f)| f)
                .collect();
        }
        Ok(files)
    }

    /// The metadata of every book listed in the CSV, by book id.
    ///
    /// # Errors
    /// An unreadable CSV, or a row without a usable `path`/`id` ([`CoreError::CorpusRecord`]).
    pub fn catalogue(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>, CoreError> {
        let Some(csv_path) = &self.metadata_csv else {
            return Ok(BTreeMap::new());
        };
        read_catalogue(csv_path, &self.root)
    }

    /// Reads one book.
    ///
    /// # Errors
    /// [`CoreError::BinaryFile`] (NUL bytes), [`CoreError::NotUtf8`] (strict decoding),
    /// [`CoreError::Io`].
    pub fn read(
        &self,
        id: &str,
        path: &Path,
        catalogue: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<(Document, bool), CoreError> {
        let (text, fallback) = read_book_file(path, self.decoding)?;
        let mut metadata = layout_metadata(id);
        if let Some(row) = catalogue.get(id) {
            metadata.extend(row.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if fallback {
            metadata.insert("decoding".to_owned(), format!("{:?}", self.decoding));
        }
        Ok((
            Document {
                id: id.to_owned(),
                text,
                path: Some(path.to_path_buf()),
                metadata,
            },
            fallback,
        ))
    }
}

/// `author` and `title` from an `author/title` id (slugs, as the layout gives them).
fn layout_metadata(id: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Some((author, title)) = id.split_once('/') {
        m.insert("author".to_owned(), author.to_owned());
        m.insert("title".to_owned(), title.to_owned());
    }
    m
}

fn read_catalogue(
    csv_path: &Path,
    root: &Path,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, CoreError> {
    let record_error = |line: u64, reason: String| CoreError::CorpusRecord {
        path: csv_path.to_path_buf(),
        line,
        reason,
    };
    // Read like any text input: a binary or non-UTF-8 catalogue is refused with its offset.
    let text = lexforge_core::read_text_file(csv_path)?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| record_error(1, e.to_string()))?
        .clone();
    let path_col = headers.iter().position(|h| h == "path");
    let id_col = headers.iter().position(|h| h == "id");
    if path_col.is_none() && id_col.is_none() {
        return Err(record_error(
            1,
            "the header has neither a `path` nor an `id` column".to_owned(),
        ));
    }
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let root_abs = fs::canonicalize(root).ok();
    let mut out = BTreeMap::new();
    for (row_no, row) in reader.records().enumerate() {
        let line = row_no as u64 + 2;
        let row = row.map_err(|e| record_error(line, e.to_string()))?;
        let id = if let Some(c) = id_col.and_then(|c| row.get(c)).filter(|s| !s.is_empty()) {
            c.to_owned()
        } else if let Some(p) = path_col.and_then(|c| row.get(c)).filter(|s| !s.is_empty()) {
            let file = fs::canonicalize(base.join(p)).ok();
            match (file, &root_abs) {
                (Some(f), Some(r)) if f.starts_with(r) => {
                    let rel = f.strip_prefix(r).unwrap_or(&f).with_extension("");
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/")
                }
                // A row for a file outside the root (or missing) describes no book here.
                _ => continue,
            }
        } else {
            return Err(record_error(line, "empty `path` and `id`".to_owned()));
        };
        let meta: BTreeMap<String, String> = headers
            .iter()
            .zip(row.iter())
            .filter(|(h, _)| *h != "path" && *h != "id")
            .map(|(h, v)| (h.to_owned(), v.to_owned()))
            .collect();
        out.insert(id, meta);
    }
    Ok(out)
}

impl CorpusProvider for BookDirectory {
    fn describe(&self) -> String {
        format!("book directory {}", self.root.display())
    }

    fn documents(
        &self,
    ) -> Result<Box<dyn Iterator<Item = Result<Document, CoreError>> + Send + '_>, CoreError> {
        let files = self.files()?;
        let catalogue = self.catalogue()?;
        Ok(Box::new(files.into_iter().map(move |(id, path)| {
            self.read(&id, &path, &catalogue).map(|(d, _)| d)
        })))
    }
}

/// One file, one book; the id is the file stem.
#[derive(Debug, Clone)]
pub struct SingleFile {
    path: PathBuf,
    decoding: Decoding,
}

impl SingleFile {
    /// The book in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SingleFile {
            path: path.into(),
            decoding: Decoding::Strict,
        }
    }

    /// How a non-UTF-8 file is read.
    pub fn with_decoding(mut self, decoding: Decoding) -> Self {
        self.decoding = decoding;
        self
    }
}

impl CorpusProvider for SingleFile {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn documents(
        &self,
    ) -> Result<Box<dyn Iterator<Item = Result<Document, CoreError>> + Send + '_>, CoreError> {
        let (text, _) = read_book_file(&self.path, self.decoding)?;
        let id = self
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "book".to_owned());
        Ok(Box::new(std::iter::once(Ok(Document {
            id,
            text,
            path: Some(self.path.clone()),
            metadata: BTreeMap::new(),
        }))))
    }
}

/// JSON Lines: one object per line with a string text field; an optional id field (else the
/// line number); other string, number and boolean fields become metadata. Blank lines are
/// skipped.
#[derive(Debug, Clone)]
pub struct JsonlCorpus {
    path: PathBuf,
    text_field: String,
    id_field: Option<String>,
}

impl JsonlCorpus {
    /// Records of `path`, text in `text_field`.
    pub fn new(path: impl Into<PathBuf>, text_field: impl Into<String>) -> Self {
        JsonlCorpus {
            path: path.into(),
            text_field: text_field.into(),
            id_field: None,
        }
    }

    /// Take document ids from `field` (strings or integers), not line numbers.
    pub fn with_id_field(mut self, field: impl Into<String>) -> Self {
        self.id_field = Some(field.into());
        self
    }
}

impl CorpusProvider for JsonlCorpus {
    fn describe(&self) -> String {
        format!(
            "JSONL {} (text field {:?})",
            self.path.display(),
            self.text_field
        )
    }

    fn documents(
        &self,
    ) -> Result<Box<dyn Iterator<Item = Result<Document, CoreError>> + Send + '_>, CoreError> {
        let (text, _) = read_book_file(&self.path, Decoding::Strict)?;
        let mut docs = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            let err = |reason: String| CoreError::CorpusRecord {
                path: self.path.clone(),
                line: line_no,
                reason,
            };
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| err(e.to_string()))?;
            let serde_json::Value::Object(obj) = value else {
                return Err(err("not a JSON object".to_owned()));
            };
            let text = match obj.get(&self.text_field) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(_) => return Err(err(format!("field {:?} is not a string", self.text_field))),
                None => return Err(err(format!("no field {:?}", self.text_field))),
            };
            let id = match &self.id_field {
                None => line_no.to_string(),
                Some(f) => match obj.get(f) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    _ => return Err(err(format!("no string or integer id field {f:?}"))),
                },
            };
            let metadata = obj
                .iter()
                .filter(|(k, _)| **k != self.text_field && Some(*k) != self.id_field.as_ref())
                .filter_map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Number(n) => n.to_string(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((k.clone(), v))
                })
                .collect();
            docs.push(Ok(Document {
                id,
                text,
                path: Some(self.path.clone()),
                metadata,
            }));
        }
        Ok(Box::new(docs.into_iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_ids_metadata_and_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("books");
        fs::create_dir_all(root.join("ann_author")).unwrap();
        fs::create_dir_all(root.join("bob_writer")).unwrap();
        fs::write(root.join("ann_author/first_book.txt"), "\u{feff}Hello.").unwrap();
        fs::write(root.join("bob_writer/other.txt"), b"caf\xe9 au lait").unwrap();
        fs::write(
            dir.path().join("books.csv"),
            "path,author,title,year\nbooks/ann_author/first_book.txt,Ann Author,First Book,1850\n\
             books/missing/none.txt,X,Y,1\n",
        )
        .unwrap();
        let books = BookDirectory::new(&root).with_metadata(dir.path().join("books.csv"));
        let ids: Vec<String> = books.files().unwrap().into_iter().map(|f| f.0).collect();
        assert_eq!(ids, ["ann_author/first_book", "bob_writer/other"]);
        match books.read_all() {
            Err(CoreError::NotUtf8 { path, offset }) => {
                assert!(path.ends_with("bob_writer/other.txt"));
                assert_eq!(offset, 3);
            }
            other => panic!("{other:?}"),
        }
        let latin = books.clone().with_decoding(Decoding::Latin1);
        let docs = latin.read_all().unwrap();
        assert_eq!(docs[0].text, "Hello.");
        assert_eq!(docs[0].metadata["author"], "Ann Author");
        assert_eq!(docs[0].metadata["year"], "1850");
        assert_eq!(docs[1].text, "café au lait");
        assert_eq!(docs[1].metadata["author"], "bob_writer", "from the layout");
        assert_eq!(docs[1].metadata["decoding"], "Latin1");
        let lossy = books.with_decoding(Decoding::Lossy).read_all().unwrap();
        assert_eq!(lossy[1].text, "caf\u{fffd} au lait");
    }

    #[test]
    fn empty_and_binary_inputs_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            BookDirectory::new(dir.path()).read_all(),
            Err(CoreError::NoTextFiles { .. })
        ));
        assert_eq!(
            BookDirectory::new(dir.path().join("nope"))
                .read_all()
                .unwrap_err()
                .kind(),
            lexforge_core::ErrorKind::NotFound
        );
        fs::create_dir(dir.path().join("a")).unwrap();
        fs::write(dir.path().join("a/zeros.txt"), vec![0u8; 1000]).unwrap();
        assert!(matches!(
            BookDirectory::new(dir.path())
                .with_decoding(Decoding::Lossy)
                .read_all(),
            Err(CoreError::BinaryFile { offset: 0, .. })
        ));
    }

    #[test]
    fn jsonl_and_single_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.jsonl");
        fs::write(
            &p,
            "{\"id\": \"x\", \"body\": \"Some text.\", \"year\": 1900, \"tags\": [1]}\n\n\
             {\"id\": 7, \"body\": \"More.\"}\n",
        )
        .unwrap();
        let docs = JsonlCorpus::new(&p, "body")
            .with_id_field("id")
            .read_all()
            .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].id.as_str(), docs[1].id.as_str()), ("x", "7"));
        assert_eq!(docs[0].metadata["year"], "1900");
        assert!(!docs[0].metadata.contains_key("tags"));
        fs::write(&p, "{\"body\": \"ok\"}\n{\"text\": 3}\n").unwrap();
        match JsonlCorpus::new(&p, "body").read_all() {
            Err(CoreError::CorpusRecord { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
        fs::write(dir.path().join("lone.txt"), "One book.").unwrap();
        let one = SingleFile::new(dir.path().join("lone.txt"))
            .read_all()
            .unwrap();
        assert_eq!(one[0].id, "lone");
    }
}
