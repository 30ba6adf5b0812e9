//! Bad input: typed errors that name the file or parameter; nothing written.

use std::fs;

use lexforge_core::{Error as CoreError, ErrorKind, NoopSink};
use lexforge_tokenizers::{
    Tokenizer, TokenizerConfig, TokenizerError, TokenizerMethod, TokenizerTrainRequest,
};

use crate::small_books;

fn train(method: TokenizerMethod, vocab: usize, req: TokenizerTrainRequest) -> TokenizerError {
    Tokenizer::train(&TokenizerConfig::new(method, vocab), &req, &NoopSink).unwrap_err()
}

#[test]
fn corpus_problems_are_typed_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    fs::write(p("empty.txt"), "").unwrap();
    fs::write(p("latin1.txt"), b"na\xefve").unwrap();
    fs::write(p("blob.txt"), [0x89, b'P', b'N', b'G', 0, 0, 0, 13]).unwrap();
    fs::create_dir(p("no_text")).unwrap();
    fs::write(p("no_text/readme.md"), "# not a .txt").unwrap();

    let e = train(
        TokenizerMethod::Bpe,
        1000,
        TokenizerTrainRequest::from_paths([p("empty.txt")]),
    );
    assert!(
        matches!(e, TokenizerError::Core(CoreError::CorpusEmpty { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("empty.txt"), "{e}");

    let e = train(
        TokenizerMethod::Bpe,
        1000,
        TokenizerTrainRequest::from_paths([p("latin1.txt")]),
    );
    assert!(
        matches!(
            e,
            TokenizerError::Core(CoreError::NotUtf8 { offset: 2, .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("latin1.txt"), "{e}");

    let e = train(
        TokenizerMethod::Char,
        1000,
        TokenizerTrainRequest::from_paths([p("blob.txt")]),
    );
    assert!(
        matches!(e, TokenizerError::Core(CoreError::BinaryFile { .. })),
        "{e}"
    );

    let e = train(
        TokenizerMethod::Unigram,
        1000,
        TokenizerTrainRequest::from_paths([p("no_text")]),
    );
    assert!(
        matches!(e, TokenizerError::Core(CoreError::NoTextFiles { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("no_text"), "{e}");

    let e = train(
        TokenizerMethod::WordPiece,
        1000,
        TokenizerTrainRequest::from_paths([p("missing.txt")]),
    );
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("missing.txt"), "{e}");

    let e = train(
        TokenizerMethod::Bpe,
        1000,
        TokenizerTrainRequest::from_texts(Vec::<String>::new()),
    );
    assert!(
        matches!(e, TokenizerError::Core(CoreError::CorpusEmpty { .. })),
        "{e}"
    );
}

#[test]
fn vocab_smaller_than_the_alphabet_is_refused_for_every_method() {
    let req = || TokenizerTrainRequest::from_paths(&small_books()[..1]).with_holdout(0.0);
    for (method, vocab) in [
        (TokenizerMethod::Bpe, 200),
        (TokenizerMethod::WordPiece, 30),
        (TokenizerMethod::Unigram, 300),
        (TokenizerMethod::Char, 20),
    ] {
        let e = train(method, vocab, req());
        match &e {
            TokenizerError::VocabTooSmall {
                vocab_size,
                required,
                ..
            } => {
                assert_eq!(*vocab_size, vocab);
                assert!(*required > vocab, "{e}");
            }
            other => panic!("{method}: {other}"),
        }
        assert!(e.to_string().contains("vocab_size"), "{e}");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}

#[test]
fn nothing_is_left_behind_when_saving_fails_or_loading_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let tok = Tokenizer::train(
        &TokenizerConfig::new(TokenizerMethod::Char, 200),
        &TokenizerTrainRequest::from_texts(["hello world\n"]).with_holdout(0.0),
        &NoopSink,
    )
    .unwrap();
    let out = tok.save(dir.path().join("tok")).unwrap();
    // Saving over an existing directory is refused and leaves no staging directory.
    let e = tok.save(&out).unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["tok"]);

    // A truncated tokenizer.json fails the manifest check; a foreign or truncated bare file
    // is a Load error naming it.
    let file = out.join("tokenizer.json");
    let text = fs::read_to_string(&file).unwrap();
    fs::write(&file, &text[..text.len() / 2]).unwrap();
    let e = Tokenizer::load(&out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Artifact, "{e}");
    let e = Tokenizer::load(&file).unwrap_err();
    assert!(matches!(e, TokenizerError::Load { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    let foreign = dir.path().join("weights.json");
    fs::write(&foreign, r#"{"model": {"type": "Nonsense"}}"#).unwrap();
    assert!(matches!(
        Tokenizer::load(&foreign).unwrap_err(),
        TokenizerError::Load { .. }
    ));
    let e = Tokenizer::load(dir.path().join("absent")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}
