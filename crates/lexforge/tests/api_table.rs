//! Walks the table of `docs/api.md`: every Rust item it names is referenced below, so this
//! file compiles only while each one exists, and the test checks that the table and this
//! list name the same items.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeSet;

/// One reference per Rust item of the table. A renamed or removed item breaks the build.
#[allow(dead_code, reason = "compiled for its references, never called")]
fn items() {
    let _ = lexforge::tokenizers::Tokenizer::train;
    let _: fn(std::path::PathBuf) -> _ = lexforge::tokenizers::Tokenizer::load;
    let _ = lexforge::tokenizers::Tokenizer::encode;
    let _ = lexforge::tokenizers::Tokenizer::decode;
    let _ = lexforge::lm::train;
    let _ = lexforge::lm::resume;
    let _ = lexforge::lm::evaluate;
    let _: fn(std::path::PathBuf, &_) -> _ = lexforge::lm::LanguageModel::load;
    let _ = lexforge::lm::LanguageModel::generate;
    let _ = lexforge::lm::LanguageModel::score;
    let _: fn(std::path::PathBuf, &_, &_) -> _ = lexforge::nn::encoder::BertSentenceEncoder::load;
    let _ = lexforge::nn::encoder::BertSentenceEncoder::encode_with_progress;
    let _ = lexforge::data::prepare;
    let _ = lexforge::data::prepare_shard;
    let _ = lexforge::data::read_shard;
    let _ = lexforge::data::merge_shards;
    let _ = lexforge::data::read_pairs;
    let _ = lexforge::matcher::train;
    let _ = lexforge::matcher::resume;
    let _ = lexforge::matcher::pipeline;
    let _: fn(std::path::PathBuf, &_) -> _ = lexforge::matcher::Matcher::load;
    let _ = lexforge::matcher::Matcher::score;
    let _ = lexforge::matcher::Matcher::search_with;
    let _ = lexforge::matcher::Matcher::evaluate;
    let _ = lexforge::matcher::Matcher::calibrate;
    let _ = lexforge::semantic::BookWords::build;
    let _ = lexforge::semantic::train;
    let _ = lexforge::semantic::resume;
    let _ = lexforge::semantic::pipeline;
    let _: fn(std::path::PathBuf, &_) -> _ = lexforge::semantic::SemanticEncoder::load;
    let _ = lexforge::semantic::SemanticEncoder::encode_words;
    let _ = lexforge::semantic::SemanticEncoder::decode;
    let _ = lexforge::semantic::SemanticEncoder::similar;
    let _ = lexforge::semantic::WordGenerator::generate_words;
}

/// The backticked paths of a table column (`lexforge::...`).
fn rust_column(doc: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in doc
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("|---"))
    {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if let Some(cell) = cells.get(2)
            && let Some(path) = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`'))
            && path.starts_with("lexforge::")
        {
            out.insert(path.to_owned());
        }
    }
    out
}

#[test]
fn every_rust_item_of_the_api_table_is_compiled_here() {
    let doc = include_str!("../../../docs/api.md");
    let table = rust_column(doc);
    assert!(
        table.len() >= 30,
        "the table lists {} Rust items",
        table.len()
    );
    let source = include_str!("api_table.rs");
    let listed: BTreeSet<String> = source
        .lines()
        .filter(|l| l.trim().starts_with("let _"))
        .filter_map(|l| l.split_once("= lexforge::"))
        .map(|(_, rest)| format!("lexforge::{}", rest.trim_end_matches(';')))
        .collect();
    let missing: Vec<_> = table.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&table).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/api.md and this test disagree: in the table only {missing:?}, here only {extra:?}"
    );
}

#[test]
fn the_defaults_named_in_the_table_exist() {
    let doc = include_str!("../../../docs/api.md");
    let defaults = lexforge::api_defaults();
    let mut named = 0;
    for line in doc.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some((section, args)) = cells.get(5).and_then(|c| c.split_once(": ")) else {
            continue;
        };
        for arg in args.split(", ") {
            assert!(
                !defaults[section][arg].is_null(),
                "{section}.{arg} is not in lexforge::api_defaults()"
            );
            named += 1;
        }
    }
    assert!(named >= 10, "{named} defaults named");
}
