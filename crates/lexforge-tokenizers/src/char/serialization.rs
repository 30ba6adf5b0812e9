//! The char tokenizer as an HF `tokenizer.json`.
//!
//! It is written as the equivalent HF pipeline: normalizer → `Split` pre-tokenizer isolating
//! every character (`[\s\S]`) → `WordLevel` model with the unknown token → `Fuse` decoder, with
//! the special tokens as added tokens. The Python `tokenizers` package therefore loads it and
//! produces the same ids (checked in `tests/python/test_tokenizers.py`); lexforge recognises
//! that exact shape on load and uses its own fast implementation.

use std::str::FromStr;

use serde_json::{Map, Value, json};

use super::model::CharTokenizer;
use crate::error::{Result, TokenizerError};

/// The pattern of the pre-tokenizer: any one character, newlines included, in both the
/// Oniguruma and the fancy-regex engines.
const ANY_CHAR: &str = r"[\s\S]";

fn bad_json(e: serde_json::Error) -> TokenizerError {
    TokenizerError::Engine {
        op: "build the char tokenizer.json",
        source: Box::new(e),
    }
}

/// The `tokenizer.json` text of `tok`.
pub(crate) fn to_json(tok: &CharTokenizer) -> Result<String> {
    let specials = tok.special_tokens();
    let added: Vec<Value> = specials
        .iter()
        .enumerate()
        .map(|(id, s)| {
            json!({"id": id, "content": s, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let mut vocab = Map::new();
    for (id, s) in specials.iter().enumerate() {
        vocab.insert(s.clone(), json!(id));
    }
    for (i, c) in tok.chars().enumerate() {
        vocab.insert(c.to_string(), json!(specials.len() + i));
    }
    let normalizer = match tok.normalizer() {
        Some(n) => serde_json::to_value(n).map_err(bad_json)?,
        None => Value::Null,
    };
    let value = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "Split", "pattern": {"Regex": ANY_CHAR},
                          "behavior": "Isolated", "invert": false},
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": tok.unk_token()},
    });
    // Round through the HF engine so the file is exactly what it reads and writes.
    let hf = tokenizers::Tokenizer::from_str(&value.to_string())
        .map_err(TokenizerError::engine("parse the char tokenizer.json"))?;
    hf.to_string(true)
        .map_err(TokenizerError::engine("serialize the char tokenizer"))
}

/// Reads a `tokenizer.json` written by [`to_json`]; `Ok(None)` when the file has another shape.
pub(crate) fn from_json(text: &str) -> Result<Option<CharTokenizer>> {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return Ok(None);
    };
    let is_char = value["model"]["type"] == "WordLevel"
        && value["pre_tokenizer"]["type"] == "Split"
        && value["pre_tokenizer"]["pattern"]["Regex"] == ANY_CHAR
        && value["pre_tokenizer"]["behavior"] == "Isolated"
        && value["pre_tokenizer"]["invert"] == false
        && value["decoder"]["type"] == "Fuse"
        && value["post_processor"].is_null();
    if !is_char {
        return Ok(None);
    }
    let Some(unk) = value["model"]["unk_token"].as_str() else {
        return Ok(None);
    };
    let Some(vocab) = value["model"]["vocab"].as_object() else {
        return Ok(None);
    };
    let mut by_id: Vec<Option<&str>> = vec![None; vocab.len()];
    for (tok, id) in vocab {
        match id.as_u64().map(|i| i as usize) {
            Some(i) if i < by_id.len() && by_id[i].is_none() => by_id[i] = Some(tok),
            _ => return Ok(None),
        }
    }
    let mut specials = Vec::new();
    if let Some(added) = value["added_tokens"].as_array() {
        for (i, t) in added.iter().enumerate() {
            let (Some(id), Some(content)) = (t["id"].as_u64(), t["content"].as_str()) else {
                return Ok(None);
            };
            if id as usize != i || t["special"] != true || by_id.get(i) != Some(&Some(content)) {
                return Ok(None);
            }
            specials.push(content.to_owned());
        }
    }
    let mut chars = Vec::with_capacity(by_id.len().saturating_sub(specials.len()));
    for tok in &by_id[specials.len()..] {
        let Some(tok) = tok else { return Ok(None) };
        let mut it = tok.chars();
        match (it.next(), it.next()) {
            (Some(c), None) => chars.push(c),
            _ => return Ok(None),
        }
    }
    let hf = tokenizers::Tokenizer::from_str(text)
        .map_err(TokenizerError::engine("parse tokenizer.json"))?;
    let normalizer = hf.get_normalizer().cloned();
    CharTokenizer::new(specials, unk, chars, normalizer).map(Some)
}
