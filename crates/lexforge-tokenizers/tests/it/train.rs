use lexforge_core::{ChannelSink, CorpusProvider, Event, NoopSink, verify_run_dir};
use lexforge_tokenizers::{
    SplitUnit, TokenClass, Tokenizer, TokenizerConfig, TokenizerMethod, TokenizerTrainRequest,
    holdout_split,
};

use crate::small_books;

fn request() -> TokenizerTrainRequest {
    TokenizerTrainRequest::from_paths(small_books())
        .with_holdout(0.25)
        .with_seed(0)
}

#[test]
fn every_method_trains_measures_saves_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    for method in TokenizerMethod::ALL {
        let vocab = if method == TokenizerMethod::Char {
            500
        } else {
            1000
        };
        let config = TokenizerConfig::new(method, vocab);
        let tok = Tokenizer::train(&config, &request(), &NoopSink).unwrap();
        assert!(tok.vocab_size() <= vocab, "{method}: {}", tok.vocab_size());
        let stats = tok.stats().unwrap().clone();
        assert_eq!(stats.corpus.split_unit, SplitUnit::Document);
        assert_eq!(stats.corpus.holdout_documents, 1, "round(0.25 * 4)");
        assert_eq!(stats.corpus.train_documents, 3);
        let h = stats.holdout.clone().unwrap();
        assert!(h.tokens > 0 && h.chars > 0 && h.words > 0);
        assert!(h.vocab_used > 0.0 && h.vocab_used <= 1.0);
        match method {
            TokenizerMethod::Bpe => {
                assert_eq!(h.unk_rate, 0.0);
                assert_eq!(h.char_coverage, 1.0);
                assert!(h.tokens_per_char < 0.5, "{h:?}");
            }
            TokenizerMethod::WordPiece => {
                assert!(h.unk_rate < 0.02, "{h:?}");
                assert!(h.tokens_per_word > 1.0, "{h:?}");
            }
            TokenizerMethod::Unigram => {
                assert_eq!(h.unk_rate, 0.0, "byte fallback replaces <unk>: {h:?}");
                assert!(h.byte_fallback_rate < 0.01, "{h:?}");
            }
            TokenizerMethod::Char => {
                assert!(h.char_coverage > 0.99, "{h:?}");
                assert!((h.tokens_per_char - 1.0).abs() < 0.01, "{h:?}");
            }
        }
        // Save, verify, load: same ids, same stats.
        let out = tok.save(dir.path().join(method.as_str())).unwrap();
        let manifest = verify_run_dir(&out).unwrap();
        assert_eq!(manifest.kind, "tokenizer");
        assert!(manifest.metrics.contains_key("holdout.char_coverage"));
        assert_eq!(manifest.versions.extra["tokenizers"], "0.23.2");
        let loaded = Tokenizer::load(&out).unwrap();
        assert_eq!(loaded.stats(), Some(&stats));
        assert_eq!(loaded.method(), Some(method));
        assert_eq!(loaded.config(), Some(&config));
        let text = "“Curiouser and curiouser!” cried Alice (she was so much surprised).\r\n";
        assert_eq!(
            loaded.encode(text).unwrap(),
            tok.encode(text).unwrap(),
            "{method}"
        );
        // A bare tokenizer.json loads too (no manifest: no stats).
        let bare = Tokenizer::load(out.join("tokenizer.json")).unwrap();
        assert_eq!(bare.encode(text).unwrap(), tok.encode(text).unwrap());
        assert!(bare.stats().is_none());
        assert_eq!(bare.method(), Some(method), "recognised from the pipeline");
    }
}

#[test]
fn the_holdout_never_overlaps_training_documents_and_is_deterministic() {
    let docs: Vec<_> = lexforge_core::TextFiles::new(small_books())
        .read_all()
        .unwrap();
    let a = holdout_split(&docs, 0.25, 3);
    let b = holdout_split(&docs, 0.25, 3);
    assert_eq!(a.holdout, b.holdout);
    let train_text = a.train.concat();
    let held_text = a.holdout.concat();
    assert!(!held_text.is_empty());
    assert!(docs.iter().all(|d| {
        let in_train = train_text.contains(d.text.as_str());
        let in_holdout = held_text.contains(d.text.as_str());
        in_train ^ in_holdout
    }));
}

#[test]
fn events_report_progress_and_completion() {
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = ChannelSink::new(tx);
    let config = TokenizerConfig::new(TokenizerMethod::Char, 500);
    Tokenizer::train(&config, &request(), &sink).unwrap();
    let events: Vec<Event> = rx.try_iter().map(|r| r.event).collect();
    assert!(matches!(events.first(), Some(Event::Started { .. })));
    let steps = events
        .iter()
        .filter(|e| matches!(e, Event::Progress { .. }))
        .count();
    assert_eq!(steps, 3);
    match events.last() {
        Some(Event::Completed { metrics }) => assert!(metrics["holdout.char_coverage"] > 0.99),
        other => panic!("{other:?}"),
    }
}

#[test]
fn char_tokenizer_maps_unseen_characters_to_unk_and_specials_whole() {
    let mut config = TokenizerConfig::new(TokenizerMethod::Char, 100);
    config.special_tokens = vec!["<unk>".into(), "<|eot|>".into()];
    let req = TokenizerTrainRequest::from_texts(["abc abc\n"; 3]).with_holdout(0.0);
    let tok = Tokenizer::train(&config, &req, &NoopSink).unwrap();
    // specials 0,1; then by frequency: a b c (6 each, ties by code point), ' ' 3, '\n' 3.
    assert_eq!(tok.vocab_size(), 7);
    let ids = tok.encode("ab<|eot|>z").unwrap();
    assert_eq!(ids, [2, 3, 1, 0]);
    let model = tok.model();
    assert_eq!(model.token_class(0), TokenClass::Unknown);
    assert_eq!(model.token_class(1), TokenClass::Special);
    assert_eq!(tok.decode(&ids, false).unwrap(), "ab<|eot|><unk>");
    assert_eq!(tok.decode(&ids, true).unwrap(), "ab");
    let enc = tok.encode_with_offsets("ab<|eot|>é", false).unwrap();
    assert_eq!(enc.offsets, [(0, 1), (1, 2), (2, 9), (9, 11)]);
    assert!(tok.decode(&[99], false).is_err());
}

#[test]
fn wordpiece_adds_cls_sep_on_request() {
    let config = TokenizerConfig::new(TokenizerMethod::WordPiece, 200);
    let req =
        TokenizerTrainRequest::from_texts(["Hello there, general Kenobi!\n"; 10]).with_holdout(0.0);
    let tok = Tokenizer::train(&config, &req, &NoopSink).unwrap();
    let plain = tok.encode("hello there").unwrap();
    let with = tok.encode_with_offsets("hello there", true).unwrap().ids;
    assert_eq!(with.len(), plain.len() + 2);
    assert_eq!(with[0], tok.token_to_id("[CLS]").unwrap());
    assert_eq!(*with.last().unwrap(), tok.token_to_id("[SEP]").unwrap());
    let unk = tok.encode("zzzq").unwrap();
    assert_eq!(unk, [tok.token_to_id("[UNK]").unwrap()]);
}

#[test]
fn threads_option_is_honoured_and_results_do_not_depend_on_it() {
    let config = TokenizerConfig::new(TokenizerMethod::Bpe, 600);
    let one = Tokenizer::train(&config, &request().with_threads(Some(1)), &NoopSink).unwrap();
    let two = Tokenizer::train(&config, &request().with_threads(Some(2)), &NoopSink).unwrap();
    assert_eq!(one.to_json().unwrap(), two.to_json().unwrap());
}
