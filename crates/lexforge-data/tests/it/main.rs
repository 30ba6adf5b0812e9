//! Integration tests of lexforge-data, one binary.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod books;
mod lm;
mod prepare;
