//! The bad-input matrix through the CLI (docs/reliability.md): each input class (empty,
//! huge, non-UTF-8, binary, NaN/inf, out of range, escaping names) against each command that
//! takes it. Every refusal exits 1 with a message that says what is wrong; nothing panics.

use std::path::{Path, PathBuf};

use crate::{books, lexforge, stderr, stdout};

/// Input files of each class.
struct Inputs {
    empty: PathBuf,
    latin1: PathBuf,
    binary: PathBuf,
    huge_line: PathBuf,
}

fn inputs(dir: &Path) -> Inputs {
    let i = Inputs {
        empty: dir.join("empty.txt"),
        latin1: dir.join("latin1.txt"),
        binary: dir.join("binary.txt"),
        huge_line: dir.join("huge.txt"),
    };
    std::fs::write(&i.empty, b"").unwrap();
    std::fs::write(&i.latin1, b"caf\xe9 au lait\n").unwrap();
    std::fs::write(&i.binary, b"abc\x00\x01\x02def\n").unwrap();
    // 4 MB in one line, no newline at all.
    std::fs::write(&i.huge_line, "word ".repeat(800_000)).unwrap();
    i
}

/// Runs `args` and requires exit 1 with `needle` in the message.
fn refused(what: &str, args: &[&str], needle: &str) {
    let o = lexforge(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{what}: {err}");
    assert!(
        err.contains(needle),
        "{what}: expected {needle:?} in: {err}"
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn lm_config(dir: &Path, name: &str, corpus: &Path, extra: &str, train_extra: &str) -> PathBuf {
    let path = dir.join(format!("{}.toml", name.replace(['/', '.'], "_")));
    std::fs::write(
        &path,
        format!(
            "name = \"{name}\"\nout_dir = \"{}\"\ncontext = 16\n[corpus]\npaths = [\"{}\"]\n{extra}\n\
             [tokenizer.train]\nmethod = \"char\"\nvocab_size = 200\n[model]\ntype = \"gpt2\"\n\
             n_layer = 1\nn_head = 2\nn_embd = 16\n[train]\nmax_steps = 2\nbatch_size = 2\n\
             warmup_steps = 1\neval_every = 2\ncheckpoint_every = 2\n{train_extra}\n\
             [samples]\nprompts = []\n",
            dir.join("runs").display(),
            corpus.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn tokenizer_training_refuses_each_bad_corpus_and_takes_a_huge_line() {
    let tmp = tempfile::tempdir().unwrap();
    let i = inputs(tmp.path());
    let out = tmp.path().join("tok");
    let train = |corpus: &Path| {
        vec![
            "tokenizer",
            "train",
            s(corpus),
            "--out",
            s(&out),
            "--vocab-size",
            "300",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    for (what, corpus, needle) in [
        ("empty", &i.empty, "has no text"),
        (
            "non-UTF-8",
            &i.latin1,
            "not UTF-8 text: invalid byte sequence at byte offset 3",
        ),
        (
            "binary",
            &i.binary,
            "looks binary, not text: NUL byte at byte offset 3",
        ),
    ] {
        let args = train(corpus);
        refused(
            what,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            needle,
        );
        assert!(!out.exists(), "{what}: output left behind");
    }
    let mut args = train(&i.huge_line);
    args.extend(["--holdout".to_owned(), "nan".to_owned()]);
    refused(
        "NaN holdout",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
        "holdout",
    );
    let args = train(&i.huge_line);
    let mut zero = args.clone();
    zero[6] = "0".into();
    refused(
        "vocab 0",
        &zero.iter().map(String::as_str).collect::<Vec<_>>(),
        "vocab_size",
    );
    // A 4 MB line is text like any other.
    let o = lexforge(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "huge line: {}", stderr(&o));
}

#[test]
fn lm_commands_refuse_bad_corpora_names_numbers_and_prompts() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let i = inputs(t);
    let alice = books().join("lewis_carroll/alices_adventures_in_wonderland.txt");
    for (what, config, needle) in [
        (
            "empty corpus",
            lm_config(t, "a", &i.empty, "", ""),
            "has no text",
        ),
        (
            "non-UTF-8 corpus",
            lm_config(t, "b", &i.latin1, "", ""),
            "not UTF-8",
        ),
        (
            "binary corpus",
            lm_config(t, "c", &i.binary, "", ""),
            "looks binary",
        ),
        (
            "escaping name",
            lm_config(t, "../escape", &alice, "", ""),
            "invalid run id",
        ),
        (
            "absolute name",
            lm_config(t, "/abs", &alice, "", ""),
            "invalid run id",
        ),
        (
            "NaN fraction",
            lm_config(t, "d", &alice, "validation_fraction = nan", ""),
            "validation_fraction",
        ),
        (
            "infinite lr",
            lm_config(t, "e", &alice, "", "lr = inf"),
            "lr",
        ),
        (
            "zero batch",
            lm_config(t, "f", &alice, "", "batch_size = 0"),
            "batch_size",
        ),
    ] {
        refused(what, &["lm", "train", s(&config)], needle);
    }
    assert!(!t.join("escape").exists() && !Path::new("/abs").exists());
    let runs: Vec<_> = std::fs::read_dir(t.join("runs"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(runs.is_empty(), "refused runs left directories: {runs:?}");

    let config = lm_config(t, "ok", &alice, "", "");
    let o = lexforge(&["lm", "train", s(&config)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let run = t.join("runs/ok");
    let run = s(&run);
    refused(
        "empty text",
        &["lm", "score", run, "--text", ""],
        "at least 2 tokens",
    );
    refused(
        "empty prompt",
        &["lm", "generate", run, "--prompt", ""],
        "prompt is empty",
    );
    for (what, extra, needle) in [
        ("top_p 2", ["--top-p", "2"], "top_p"),
        ("NaN temperature", ["--temperature", "nan"], "temperature"),
        ("0 new tokens", ["--max-new-tokens", "0"], "max_new_tokens"),
        (
            "huge new tokens",
            ["--max-new-tokens", "100000000"],
            "max_new_tokens",
        ),
    ] {
        let mut args = vec!["lm", "generate", run, "--prompt", "Alice"];
        args.extend(extra);
        refused(what, &args, needle);
    }
}

#[test]
fn embed_refuses_non_text_input_and_takes_a_huge_line() {
    let tmp = tempfile::tempdir().unwrap();
    let i = inputs(tmp.path());
    let model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/roberta_tiny/roberta");
    let out = tmp.path().join("out.npy");
    for (what, input, needle) in [
        ("non-UTF-8", &i.latin1, "not UTF-8"),
        ("binary", &i.binary, "looks binary"),
    ] {
        refused(
            what,
            &["embed", s(&model), "--input", s(input), "--out", s(&out)],
            needle,
        );
        assert!(!out.exists(), "{what}: output written");
    }
    refused(
        "batch 0",
        &[
            "embed",
            s(&model),
            "--input",
            s(&i.huge_line),
            "--out",
            s(&out),
            "--batch-size",
            "0",
        ],
        "batch",
    );
    // An empty file is zero texts: a valid `[0, dim]` array.
    let o = lexforge(&["embed", s(&model), "--input", s(&i.empty), "--out", s(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("0 x 32"), "{}", stdout(&o));
    // A 4 MB line is truncated to the model's length, like in sentence-transformers.
    let o = lexforge(&[
        "embed",
        s(&model),
        "--input",
        s(&i.huge_line),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("1 x 32"), "{}", stdout(&o));
}

#[test]
fn prepare_refuses_bad_numbers_and_counts_unreadable_books() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let library = crate::library(t);
    let encoder =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/roberta_tiny/roberta");
    let out = t.join("ds");
    let base = |extra: &[&str]| {
        let mut a = vec![
            "prepare".to_owned(),
            s(&library).to_owned(),
            "--out".to_owned(),
            s(&out).to_owned(),
            "--encoder".to_owned(),
            s(&encoder).to_owned(),
            "--max-chunks-per-book".to_owned(),
            "6".to_owned(),
            "--json".to_owned(),
        ];
        a.extend(extra.iter().map(|x| (*x).to_owned()));
        a
    };
    for (what, extra, needle) in [
        (
            "NaN fraction",
            ["--validation-fraction", "nan"],
            "validation_fraction",
        ),
        ("chunk size 0", ["--chunk-size", "0"], "chunk_size"),
    ] {
        let args = base(&extra);
        refused(
            what,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            needle,
        );
        assert!(!out.exists(), "{what}: output written");
    }
    // Unreadable books are skipped and counted, not fatal.
    let author = library.join("someone");
    std::fs::create_dir_all(&author).unwrap();
    std::fs::write(author.join("latin1.txt"), b"caf\xe9 au lait\n").unwrap();
    std::fs::write(author.join("binary.txt"), b"abc\x00def\n").unwrap();
    let args = base(&[]);
    let o = lexforge(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let text = report.to_string();
    assert!(
        text.contains("latin1.txt") && text.contains("binary.txt"),
        "the skipped books are reported: {text}"
    );
}
