//! End-to-end tests of lexforge-tokenizers on real books from `../shared/corpora/gutenberg`.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

mod errors;
mod roundtrip;
mod train;

use std::path::PathBuf;

/// The book corpus shipped beside the repository.
pub fn books_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/gutenberg/books")
}

/// A few small books (about 450 KB together), enough for several held-out documents.
pub fn small_books() -> Vec<PathBuf> {
    [
        "william_blake/poems_of_william_blake.txt",
        "william_shakespeare/julius_caesar.txt",
        "thomas_paine/common_sense.txt",
        "lewis_carroll/alices_adventures_in_wonderland.txt",
    ]
    .iter()
    .map(|p| books_dir().join(p))
    .collect()
}
