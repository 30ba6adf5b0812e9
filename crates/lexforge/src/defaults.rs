//! The defaults the three faces share, declared once in the crates that own them and gathered
//! here: the CLI's clap arguments name the same constants, and Python reads this table
//! (`lexforge._native.api_defaults()`) for its signatures. `docs/api.md` lists them and a test
//! checks that all three agree.

use lexforge_matcher::{Matcher, SearchOptions};
use lexforge_nn::generate::GenerateConfig;
use lexforge_semantic::{BookWords, QuantizerConfig, SemanticEncoder, WordGenerator};

/// The default device of every command and function that computes.
pub const DEVICE: &str = "cpu";

/// The shared defaults, keyed by operation (`"lm.generate"`, `"matcher.search"`, ...), then by
/// argument name.
pub fn api_defaults() -> serde_json::Value {
    let g = GenerateConfig::default();
    let s = SearchOptions::default();
    let presets: serde_json::Map<String, serde_json::Value> = QuantizerConfig::PRESETS
        .iter()
        .filter_map(|name| {
            let q = QuantizerConfig::preset(name).ok()?;
            Some(((*name).to_owned(), serde_json::to_value(q).ok()?))
        })
        .collect();
    serde_json::json!({
        "device": DEVICE,
        "lm.generate": {
            "max_new_tokens": g.max_new_tokens,
            "temperature": g.temperature,
            "seed": g.seed,
            "num_return_sequences": g.num_return_sequences,
        },
        "lm.score": { "top_k": lexforge_lm::LanguageModel::SCORE_TOP_K },
        "encoder.encode": { "batch_size": lexforge_nn::encoder::BATCH_SIZE },
        "matcher.score_many": { "batch_size": Matcher::BATCH_SIZE },
        "matcher.evaluate": { "batch_size": Matcher::BATCH_SIZE },
        "matcher.calibrate": { "batch_size": Matcher::BATCH_SIZE },
        "matcher.library": { "batch_size": Matcher::BATCH_SIZE },
        "matcher.search": {
            "k": s.k,
            "prefilter": s.prefilter,
            "passages_per_book": s.passages_per_book,
        },
        "semantic.similar": { "k": SemanticEncoder::SIMILAR_K },
        "semantic.generate": { "n": WordGenerator::WORDS, "seed": g.seed },
        "semantic.corpora": { "words_per_corpus": BookWords::WORDS_PER_CORPUS },
        "semantic.quantizers": presets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quantizer_preset_is_served() {
        let d = api_defaults();
        let q = d["semantic.quantizers"].as_object().unwrap();
        assert_eq!(q.len(), QuantizerConfig::PRESETS.len());
        assert_eq!(d["matcher.search"]["k"], 5);
    }
}
