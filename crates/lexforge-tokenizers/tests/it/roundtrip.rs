//! Round trips: `decode(encode(x)) == x` for byte-level BPE on any UTF-8 input; for the others
//! up to their normalization.

use std::sync::OnceLock;

use lexforge_core::NoopSink;
use lexforge_tokenizers::{
    Normalization, Tokenizer, TokenizerConfig, TokenizerMethod, TokenizerTrainRequest,
};
use proptest::prelude::*;

use crate::small_books;

fn trained(method: TokenizerMethod, tweak: impl FnOnce(&mut TokenizerConfig)) -> Tokenizer {
    let mut config = TokenizerConfig::new(method, 800);
    tweak(&mut config);
    let req = TokenizerTrainRequest::from_paths(&small_books()[..2]).with_holdout(0.0);
    Tokenizer::train(&config, &req, &NoopSink).unwrap()
}

fn bpe() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| trained(TokenizerMethod::Bpe, |_| {}))
}

fn unigram() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        trained(TokenizerMethod::Unigram, |c| {
            c.normalization = Normalization::None;
        })
    })
}

fn wordpiece() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| trained(TokenizerMethod::WordPiece, |_| {}))
}

fn char_nfc() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        trained(TokenizerMethod::Char, |c| {
            c.normalization = Normalization::Nfc;
        })
    })
}

/// What the char tokenizer must give back: each character it knows, `<unk>` for the others.
fn char_expected(tok: &Tokenizer, s: &str) -> String {
    s.chars()
        .map(|c| match tok.token_to_id(&c.to_string()) {
            Some(_) => c.to_string(),
            None => "<unk>".to_owned(),
        })
        .collect()
}

/// Metaspace (SentencePiece) turns one leading space into the word-boundary marker it would
/// prepend anyway, so that space does not come back; everything else does.
fn unigram_expected(s: &str) -> &str {
    s.strip_prefix(' ').unwrap_or(s)
}

const HARD: &[&str] = &[
    "",
    " ",
    "  leading and trailing  ",
    "line one\r\nline two\r\n",
    "tabs\tand\u{b}vertical\u{c}feeds",
    "emoji 👩‍👩‍👧‍👦 and 🇫🇷 flags 🎉",
    "combining e\u{301} vs é, a\u{308}\u{304}",
    "中文字符和日本語のテキスト",
    "null-ish \u{1} \u{7f} control",
    "<|endoftext|> inside text <|endoftext|>",
    "ﬁ ligature and ½ fraction",
];

#[test]
fn bpe_round_trips_hard_strings() {
    for s in HARD {
        let ids = bpe().encode(s).unwrap();
        assert_eq!(bpe().decode(&ids, false).unwrap(), *s, "{s:?}");
    }
}

#[test]
fn unigram_with_byte_fallback_round_trips_hard_strings() {
    for s in HARD {
        let ids = unigram().encode(s).unwrap();
        assert_eq!(
            unigram().decode(&ids, false).unwrap(),
            unigram_expected(s),
            "{s:?} -> {ids:?}"
        );
    }
}

#[test]
fn char_round_trips_up_to_nfc() {
    let mut config = TokenizerConfig::new(TokenizerMethod::Char, 100);
    config.normalization = Normalization::Nfc;
    let req = TokenizerTrainRequest::from_texts(["Alice said: “éh?”\r\n"]).with_holdout(0.0);
    let tok = Tokenizer::train(&config, &req, &NoopSink).unwrap();
    let ids = tok.encode("Alice said: “e\u{301}h?”\r\n").unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), "Alice said: “éh?”\r\n");
    let unknown = tok.encode("Zoë").unwrap();
    assert_eq!(tok.decode(&unknown, false).unwrap(), "<unk><unk><unk>");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn bpe_round_trips_any_utf8(s in any::<String>()) {
        let ids = bpe().encode(&s).unwrap();
        prop_assert_eq!(bpe().decode(&ids, false).unwrap(), s);
    }

    #[test]
    fn bpe_round_trips_mixed_text(s in "([a-zA-Z]{1,8}|[ \\t\\r\\n]{1,3}|[.,;:!?'\"-]|\\PC){0,40}") {
        let ids = bpe().encode(&s).unwrap();
        prop_assert_eq!(bpe().decode(&ids, false).unwrap(), s);
    }

    /// Unigram uses `▁` as its space marker, so a literal `▁` in the input comes back as a
    /// space; everything else survives exactly (byte fallback covers unseen characters).
    #[test]
    fn unigram_round_trips_text_without_the_space_marker(s in "[^▁]{0,60}") {
        let ids = unigram().encode(&s).unwrap();
        prop_assert_eq!(unigram().decode(&ids, false).unwrap(), unigram_expected(&s));
    }

    /// WordPiece forgets spacing and case; its round trip holds in token space.
    #[test]
    fn wordpiece_is_stable_in_token_space(s in "([a-zA-Z]{1,10}|[ ]{1,2}|[.,;!?]){0,30}") {
        let ids = wordpiece().encode(&s).unwrap();
        let again = wordpiece().encode(&wordpiece().decode(&ids, true).unwrap()).unwrap();
        prop_assert_eq!(again, ids);
    }

    /// Char round-trips every character it knows and spells the rest `<unk>` (the strategy's
    /// characters are NFC already).
    #[test]
    fn char_round_trips_known_characters(s in "[a-zA-Z0-9 .,;:!?'\\n<>|]{0,80}") {
        let ids = char_nfc().encode(&s).unwrap();
        prop_assert_eq!(char_nfc().decode(&ids, false).unwrap(), char_expected(char_nfc(), &s));
    }
}
