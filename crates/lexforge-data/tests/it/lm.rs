//! LM data on real books: tokenize, split by document, window, batch.

use std::path::PathBuf;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::Device;
use lexforge_core::{InMemoryCorpus, NoopSink, TextFiles};
use lexforge_data::{
    DataError, LmBatcher, LmWindows, SplitPlan, TokenFile, TokenizeOptions, TrainDocuments,
    tokenize_corpus,
};
use lexforge_tokenizers::{Tokenizer, TokenizerConfig, TokenizerMethod, TokenizerTrainRequest};

fn books() -> Vec<PathBuf> {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/gutenberg/books");
    [
        "william_blake/poems_of_william_blake.txt",
        "william_shakespeare/julius_caesar.txt",
        "thomas_paine/common_sense.txt",
        "lewis_carroll/alices_adventures_in_wonderland.txt",
        "william_shakespeare/hamlet.txt",
        "h_g_wells/the_time_machine.txt",
    ]
    .iter()
    .map(|p| root.join(p))
    .collect()
}

fn char_tokenizer() -> Tokenizer {
    let req = TokenizerTrainRequest::from_paths(books()).with_holdout(0.0);
    Tokenizer::train(
        &TokenizerConfig::new(TokenizerMethod::Char, 300),
        &req,
        &NoopSink,
    )
    .unwrap()
}

#[test]
fn books_are_tokenized_split_by_document_and_windowed() {
    let tok = char_tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let options = TokenizeOptions {
        validation_fraction: 0.34,
        seed: 0,
        separator: Some(0),
        batch_documents: 2,
    };
    let out = tokenize_corpus(&TextFiles::new(books()), &tok, dir.path(), &options).unwrap();
    assert_eq!(out.train_documents + out.validation_documents, 6);
    assert_eq!(
        out.validation_documents, 2,
        "round(0.34 * 6) documents, exactly"
    );
    // Char tokenizer: one id per character plus one separator per document.
    assert_eq!(
        out.validation_tokens,
        out.validation_chars + out.validation_documents as u64
    );
    let again = tokenize_corpus(
        &TextFiles::new(books()),
        &tok,
        &dir.path().join("b"),
        &options,
    )
    .unwrap();
    assert_eq!(again.train_tokens, out.train_tokens, "deterministic");
    assert_eq!(
        std::fs::read(&again.train).unwrap(),
        std::fs::read(&out.train).unwrap()
    );

    let file = TokenFile::open(&out.train).unwrap();
    assert_eq!(file.len() as u64, out.train_tokens);
    let windows = LmWindows::new(file, 64, 32).unwrap();
    assert_eq!(windows.len(), (out.train_tokens as usize - 65) / 32 + 1);
    let item = windows.get(3).unwrap();
    assert_eq!(item.input.len(), 64);
    assert_eq!(item.input[1..], item.target[..63]);
    let next = windows.get(4).unwrap();
    assert_eq!(
        item.input[32..],
        next.input[..32],
        "stride 32 overlaps half a window"
    );
    assert!(windows.get(windows.len()).is_err());

    let batch = LmBatcher.batch(vec![item, next], &Device::flex());
    assert_eq!(batch.inputs.dims(), [2, 64]);
    assert_eq!(batch.targets.dims(), [2, 64]);
}

#[test]
fn empty_validation_and_bad_files_are_typed_errors() {
    let tok = char_tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let one_doc = InMemoryCorpus::from_texts(["a single short document"]);
    let e = tokenize_corpus(&one_doc, &tok, dir.path(), &TokenizeOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::EmptySplit { .. }), "{e}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "no partial token files are left");
    let e = tokenize_corpus(
        &one_doc,
        &tok,
        dir.path(),
        &TokenizeOptions {
            validation_fraction: 0.0,
            ..TokenizeOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(
        e,
        DataError::InvalidParameter {
            parameter: "validation_fraction",
            ..
        }
    ));
    let odd = dir.path().join("odd.tokens");
    std::fs::write(&odd, [1u8, 2, 3]).unwrap();
    assert!(matches!(
        TokenFile::open(&odd).unwrap_err(),
        DataError::TokenFile { .. }
    ));
}

#[test]
fn few_documents_always_leave_both_sides_and_one_document_is_cut_at_its_tail() {
    let three = TextFiles::new(books()[..3].to_vec());
    for seed in 0..20 {
        let options = TokenizeOptions {
            validation_fraction: 0.5,
            seed,
            ..TokenizeOptions::default()
        };
        let plan = SplitPlan::plan(&three, &options).unwrap();
        let SplitPlan::Documents {
            validation_documents,
            documents,
            ..
        } = plan
        else {
            panic!("{plan:?}")
        };
        assert_eq!(
            (validation_documents, documents),
            (2, 3),
            "round(1.5) = 2 of 3"
        );
        let train = TrainDocuments::new(
            std::sync::Arc::new(TextFiles::new(books()[..3].to_vec())),
            plan,
        );
        assert_eq!(
            lexforge_core::CorpusProvider::read_all(&train)
                .unwrap()
                .len(),
            1
        );
    }
    let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
    let one = InMemoryCorpus::from_texts([text.clone()]);
    let plan = SplitPlan::plan(&one, &TokenizeOptions::default()).unwrap();
    let (train, val) = plan.parts(&text);
    assert_eq!(format!("{train}{val}"), text);
    assert!(
        val.starts_with("line ") && train.ends_with('\n'),
        "cut at a line start"
    );
    assert!(
        (val.len() as f64 / text.len() as f64 - 0.1).abs() < 0.02,
        "{}",
        val.len()
    );
    let tok = char_tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let out = tokenize_corpus(&one, &tok, dir.path(), &TokenizeOptions::default()).unwrap();
    assert_eq!(out.validation_chars, val.chars().count() as u64);
}
