//! The bad-input matrix through the CLI (docs/reliability.md): each input class (empty,
//! huge, non-UTF-8, binary, NaN/inf, out of range, escaping names) against each command that
//! takes it. Every refusal exits 1 with a message that says what is wrong; nothing panics.

use std::path::{Path, PathBuf};

use crate::{books, cli, copy_dir, lexforge, lm_run_dir, ok_json, repo, stderr, stdout};

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
            "context = 16\n[corpus]\npaths = [\"{}\"]\n{extra}\n\
             [tokenizer.train]\nmethod = \"char\"\nvocab_size = 200\n[model]\ntype = \"gpt2\"\n\
             n_layer = 1\nn_head = 2\nn_embd = 16\n[train]\nmax_steps = 2\nbatch_size = 2\n\
             warmup_steps = 1\neval_every = 2\ncheckpoint_every = 2\n{train_extra}\n\
             [samples]\nprompts = []\n",
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
        refused(
            what,
            &["lm", "train", s(&config), "--out", s(&lm_run_dir(&config))],
            needle,
        );
    }
    let runs: Vec<_> = std::fs::read_dir(t.join("runs"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(runs.is_empty(), "refused runs left directories: {runs:?}");

    let config = lm_config(t, "ok", &alice, "", "");
    let o = lexforge(&["lm", "train", s(&config), "--out", s(&lm_run_dir(&config))]);
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
    let o = cli(&format!(
        "embed {} --input {} --out {}",
        model.display(),
        i.huge_line.display(),
        out.display()
    ));
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

/// Copies the tiny RoBERTa fixture into `dir` with every value of one LayerNorm weight set to
/// NaN: a well-formed file (header, size and shapes all right) holding damaged numbers.
fn nan_weights_encoder(dir: &Path) -> PathBuf {
    copy_dir(&repo().join("tests/fixtures/roberta_tiny/roberta"), dir);
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let (begin, end) = header
        .as_object()
        .unwrap()
        .iter()
        .find(|(name, t)| name.contains("LayerNorm.weight") && t["dtype"] == "F32")
        .map(|(_, t)| {
            let o = &t["data_offsets"];
            (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            )
        })
        .expect("an f32 LayerNorm weight");
    for v in bytes[8 + n + begin..8 + n + end].chunks_exact_mut(4) {
        v.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
    dir.to_path_buf()
}

/// The entries directly in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn non_finite_numbers_are_refused_where_they_arise() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // Weights holding NaN: the encoder refuses to hand out NaN vectors, so neither `embed` nor
    // `prepare` (which mines hard negatives with them) writes anything.
    let model = nan_weights_encoder(&t.join("nan-model"));
    let lines = t.join("lines.txt");
    std::fs::write(&lines, "a line\nanother line\n").unwrap();
    let out = t.join("x.npy");
    refused(
        "embed, NaN weights",
        &["embed", s(&model), "--input", s(&lines), "--out", s(&out)],
        "is not finite",
    );
    assert!(!out.exists(), "embed wrote NaN vectors");
    let library = crate::library(t);
    let ds = t.join("ds");
    refused(
        "prepare, NaN weights",
        &[
            "prepare",
            s(&library),
            "--out",
            s(&ds),
            "--encoder",
            s(&model),
            "--max-chunks-per-book",
            "4",
        ],
        "is not finite",
    );
    assert!(!ds.exists(), "prepare left a dataset");

    // A learning rate that makes the loss overflow: training stops naming the step.
    let alice = books().join("lewis_carroll/alices_adventures_in_wonderland.txt");
    let config = lm_config(t, "diverge", &alice, "", "lr = 1e30");
    refused(
        "lm train, diverging loss",
        &["lm", "train", s(&config), "--out", s(&lm_run_dir(&config))],
        "the training loss became",
    );
    let (corpora, _) = crate::disk::semantic_inputs(t, 2);
    let config = t.join("semantic-diverge.toml");
    std::fs::write(
        &config,
        "hidden_dim = 32\n[train]\nmax_steps = 6\nbatch_size = 8\nwarmup_steps = 1\n\
         lr = 1e30\neval_every = 0\ncheckpoint_every = 2\n",
    )
    .unwrap();
    refused(
        "semantic train, diverging loss",
        &[
            "semantic",
            "train",
            s(&corpora),
            "--out",
            s(&t.join("sem")),
            "--config",
            s(&config),
        ],
        "the training loss became",
    );
}

/// Copies `dir` to `to` with `edit` applied to the bytes of `file`, the manifest resealed: the
/// dataset another tool might have written, well-formed on the outside.
fn edited_copy(dir: &Path, to: &Path, file: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    copy_dir(dir, to);
    let mut bytes = std::fs::read(to.join(file)).unwrap();
    edit(&mut bytes);
    std::fs::write(to.join(file), bytes).unwrap();
    crate::corrupt::reseal(to, file);
    to.to_path_buf()
}

/// Replaces the first `e` of `bytes` with the Latin-1 byte of `é` (not UTF-8).
#[allow(
    clippy::ptr_arg,
    reason = "one signature with nul_bytes, which grows the buffer"
)]
fn latin1_e(bytes: &mut Vec<u8>) {
    let at = bytes.iter().position(|&b| b == b'e').unwrap();
    bytes[at] = 0xe9;
}

/// Puts NUL bytes in the middle of `bytes`.
fn nul_bytes(bytes: &mut Vec<u8>) {
    let at = bytes.len() / 2;
    bytes.splice(at..at, [0u8, 0, 1, 2]);
}

#[test]
fn matcher_and_semantic_inputs_that_are_not_text_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (dataset, config) = crate::disk::matcher_inputs(t, 2);
    let matcher = t.join("m");
    let o = cli(&format!(
        "matcher train {} --out {} --config {}",
        dataset.display(),
        matcher.display(),
        config.display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    for (what, edit) in [
        ("non-UTF-8", latin1_e as fn(&mut Vec<u8>)),
        ("binary", nul_bytes),
    ] {
        let ds = edited_copy(&dataset, &t.join(format!("ds-{what}")), "train.jsonl", edit);
        refused(
            &format!("matcher train, {what} train.jsonl"),
            &[
                "matcher",
                "train",
                s(&ds),
                "--out",
                s(&t.join(format!("m-{what}"))),
                "--config",
                s(&config),
            ],
            "train.jsonl",
        );
        let ds = edited_copy(
            &dataset,
            &t.join(format!("lib-{what}")),
            "chunks.jsonl",
            edit,
        );
        refused(
            &format!("matcher search, {what} chunks.jsonl"),
            &[
                "matcher",
                "search",
                s(&matcher),
                "a passage",
                "--library",
                s(&ds),
            ],
            "chunks.jsonl",
        );
    }

    let (corpora, config) = crate::disk::semantic_inputs(t, 2);
    let csv = books().join("../books.csv");
    for (what, edit) in [
        ("non-UTF-8", latin1_e as fn(&mut Vec<u8>)),
        ("binary", nul_bytes),
    ] {
        let bad = t.join(format!("corpora-{what}.json"));
        let mut bytes = std::fs::read(&corpora).unwrap();
        edit(&mut bytes);
        std::fs::write(&bad, bytes).unwrap();
        refused(
            &format!("semantic train, {what} corpora"),
            &[
                "semantic",
                "train",
                s(&bad),
                "--out",
                s(&t.join(format!("s-{what}"))),
                "--config",
                s(&config),
            ],
            &format!("corpora-{what}.json"),
        );
        assert!(!t.join(format!("s-{what}")).exists());
        let bad_csv = t.join(format!("books-{what}.csv"));
        let mut bytes = std::fs::read(&csv).unwrap();
        edit(&mut bytes);
        std::fs::write(&bad_csv, bytes).unwrap();
        let out = t.join(format!("c-{what}.json"));
        refused(
            &format!("semantic corpora, {what} catalogue"),
            &[
                "semantic",
                "corpora",
                s(&books()),
                "--metadata",
                s(&bad_csv),
                "--out",
                s(&out),
            ],
            &format!("books-{what}.csv"),
        );
        assert!(!out.exists());
    }
}

#[test]
fn semantic_commands_take_huge_counts_and_texts() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (corpora, config) = crate::disk::semantic_inputs(t, 2);
    let enc = t.join("enc");
    let o = cli(&format!(
        "semantic train {} --out {} --config {}",
        corpora.display(),
        enc.display(),
        config.display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let set: serde_json::Value = serde_json::from_slice(&std::fs::read(&corpora).unwrap()).unwrap();
    let known = set["corpora"].as_array().unwrap().len();
    // More neighbours than corpora: all of them, each once.
    let hits: Vec<serde_json::Value> = ok_json(&[
        "semantic",
        "similar",
        s(&enc),
        "--words",
        "sea",
        "ship",
        "-k",
        "4000000000",
    ]);
    let mut names: Vec<&str> = hits.iter().map(|h| h["corpus"].as_str().unwrap()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!((hits.len(), names.len()), (known, known), "{}", stdout(&o));
    // A text of 100 KB (about the most one argument can carry) is encoded like a short one.
    let text = "the sea and the ship ".repeat(5000);
    let o = lexforge(&["semantic", "encode", s(&enc), &text]);
    assert!(o.status.success(), "{}", stderr(&o));
    // More words per corpus than any group of books has: refused, saying which knob to turn.
    let out = t.join("big.json");
    refused(
        "semantic corpora --words 100000000",
        &[
            "semantic",
            "corpora",
            s(&books()),
            "--metadata",
            s(&books().join("../books.csv")),
            "--out",
            s(&out),
            "--words-per-corpus",
            "100000000",
        ],
        "lower words_per_corpus",
    );
    assert!(!out.exists());
}

#[test]
fn names_in_inputs_stay_data_and_never_become_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("a/b");
    std::fs::create_dir_all(&root).unwrap();
    let t = root.as_path();
    let library = crate::library(t);
    // A catalogue whose labels look like paths out of the output directory.
    let csv = t.join("books.csv");
    let mut rows = String::from("path,author,title,year,era,genre\n");
    // An absolute label points into this test's own directory, never at a fixed path.
    let absolute = tmp.path().join("escape-abs");
    let absolute = absolute.to_str().unwrap();
    for (i, book) in crate::LIBRARY_BOOKS.iter().enumerate() {
        let evil = ["../../../escape", absolute, "..", "a/../../b"][i % 4];
        rows.push_str(&format!(
            "books/{book},{evil},{evil},{},{evil},{evil}\n",
            1800 + i * 20
        ));
    }
    std::fs::write(&csv, rows).unwrap();
    let roberta = repo().join("tests/fixtures/roberta_tiny/roberta");
    let ds = t.join("ds");
    let o = cli(&format!(
        "prepare {} --metadata {} --out {} --encoder {} --max-chunks-per-book 6",
        library.display(),
        csv.display(),
        ds.display(),
        roberta.display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let books_jsonl = std::fs::read_to_string(ds.join("books.jsonl")).unwrap();
    assert!(
        books_jsonl.contains("../../../escape"),
        "labels kept as data"
    );
    let corpora = t.join("corpora.json");
    let o = cli(&format!(
        "semantic corpora {} --metadata {} --out {} --words-per-corpus 20 --corpus-frequencies",
        library.display(),
        csv.display(),
        corpora.display()
    ));
    // Labels are slugs ("../../../escape" groups as "escape"); ".." has no letter and leaves
    // its books unlabelled.
    assert!(o.status.success(), "{}", stderr(&o));
    let set = std::fs::read_to_string(&corpora).unwrap();
    assert!(set.contains("\"escape\""), "{set}");
    assert!(!Path::new(absolute).exists(), "a label became a path");
    assert_eq!(entries(tmp.path()), vec!["a"]);
    assert_eq!(entries(&tmp.path().join("a")), vec!["b"]);
    // The matcher and the semantic encoder trained on them write only their own files.
    let config = t.join("train.toml");
    std::fs::write(
        &config,
        format!(
            "base_model = \"{}\"\nmax_seq_length = 32\n[head]\nprojection_dim = 32\n\
             [train]\nmax_steps = 2\nbatch_size = 4\nwarmup_steps = 1\neval_every = 2\n\
             checkpoint_every = 2\n",
            roberta.display()
        ),
    )
    .unwrap();
    let o = cli(&format!(
        "matcher train {} --out {} --config {}",
        ds.display(),
        t.join("m").display(),
        config.display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(
        &config,
        "hidden_dim = 32\n[train]\nmax_steps = 2\nbatch_size = 8\nwarmup_steps = 1\n\
         eval_every = 2\ncheckpoint_every = 2\n",
    )
    .unwrap();
    let o = cli(&format!(
        "semantic train {} --out {} --config {}",
        corpora.display(),
        t.join("s").display(),
        config.display()
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!Path::new(absolute).exists(), "a label became a path");
    assert_eq!(entries(tmp.path()), vec!["a"]);
    assert_eq!(entries(&tmp.path().join("a")), vec!["b"]);
    assert_eq!(
        entries(t),
        vec![
            "books",
            "books.csv",
            "corpora.json",
            "ds",
            "m",
            "s",
            "train.toml"
        ]
    );
}
