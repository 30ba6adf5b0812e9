//! Quality gates: training must make a better matcher than the encoder it starts from, on
//! books (and authors) it never saw, and calibration must make its probabilities honest. The
//! same run with training switched off (learning rate ~0) must fail the gate, so a matcher
//! that does not learn cannot pass.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lexforge_core::{CancelToken, NoopSink};
use lexforge_data::{ChunkConfig, PairConfig, PrepareConfig, SplitConfig, TopicConfig};
use lexforge_matcher::{
    HeadConfig, LossConfig, MatcherTrainConfig, StyleChannelConfig, TrainReport, ViewsConfig,
};
use lexforge_train::TrainConfig;

/// Margin by which training must raise test ROC-AUC over the untrained encoder's cosine.
const GATE_MARGIN: f64 = 0.04;

/// Twenty-four books of twenty-four authors (every split holds authors no other split has).
const BOOKS: [&str; 24] = [
    "jane_austen/emma.txt",
    "g_k_chesterton/the_wisdom_of_father_brown.txt",
    "h_g_wells/the_time_machine.txt",
    "thomas_paine/common_sense.txt",
    "lewis_carroll/alices_adventures_in_wonderland.txt",
    "arthur_conan_doyle/a_study_in_scarlet.txt",
    "bram_stoker/dracula.txt",
    "mark_twain/adventures_of_huckleberry_finn.txt",
    "joseph_conrad/heart_of_darkness.txt",
    "oscar_wilde/the_picture_of_dorian_gray.txt",
    "robert_louis_stevenson/treasure_island.txt",
    "louisa_may_alcott/little_women.txt",
    "jonathan_swift/gullivers_travels.txt",
    "nathaniel_hawthorne/the_scarlet_letter.txt",
    "herman_melville/moby_dick.txt",
    "rudyard_kipling/the_jungle_book.txt",
    "ambrose_bierce/the_devils_dictionary.txt",
    "benjamin_franklin/autobiography_of_benjamin_franklin.txt",
    "charles_dickens/great_expectations.txt",
    "frederick_douglass/narrative_of_the_life_of_frederick_douglass.txt",
    "j_m_barrie/peter_pan.txt",
    "maria_edgeworth/the_parents_assistant.txt",
    "william_morris/news_from_nowhere.txt",
    "thomas_hobbes/leviathan.txt",
];

const SEQ: usize = 64;

fn dataset(dir: &Path) -> (PathBuf, PathBuf) {
    let config = PrepareConfig {
        seed: 3,
        chunk: ChunkConfig {
            chunk_size: 3,
            overlap: 0,
            min_chars: 200,
            english_filter: true,
            max_chunks_per_book: Some(16),
        },
        topics: TopicConfig {
            k: 3,
            max_iterations: 30,
            ..TopicConfig::default()
        },
        splits: SplitConfig {
            validation_fraction: 0.2,
            test_fraction: 0.25,
        },
        pairs: PairConfig {
            pairs_per_book: 32,
            positive_fraction: 0.5,
            hard_negative_fraction: 0.5,
        },
        ..PrepareConfig::default()
    };
    crate::prepare_books(dir, &BOOKS, SEQ, &config)
}

/// The documented recipe's shape at test size: frozen body, style channel, views from every
/// training chunk (re-chunked from the books).
fn config(books: &Path, lr: f64) -> MatcherTrainConfig {
    MatcherTrainConfig {
        base_model: crate::minilm(),
        head: HeadConfig {
            projection_dim: Some(384),
            style_features: true,
            pair_features: true,
            style_channel: Some(StyleChannelConfig {
                buckets: 1 << 15,
                dim: 64,
                table_lr_scale: 3.0,
                ..StyleChannelConfig::default()
            }),
            ..HeadConfig::default()
        },
        loss: LossConfig {
            pairwise: 1.0,
            supcon: 1.0,
            info_nce: 0.0,
            temperature: 0.1,
            ..LossConfig::default()
        },
        views: Some(ViewsConfig {
            views: 8,
            neighbours: true,
            books: Some(books.to_path_buf()),
            chunks_per_book: Some(96),
        }),
        train: TrainConfig {
            max_steps: 100,
            batch_size: 4,
            lr,
            min_lr: lr / 10.0,
            warmup_steps: 5,
            eval_every: 20,
            eval_batches: None,
            checkpoint_every: 40,
            log_every: 20,
            seed: 3,
            ..TrainConfig::default()
        },
        max_seq_length: SEQ,
        frozen_layers: 7,
        eval_batch_size: 32,
        ..MatcherTrainConfig::default()
    }
}

fn gain(report: &TrainReport) -> (f64, f64, f64) {
    let base = report.baseline.as_ref().unwrap().roc_auc.unwrap();
    let test = report.test.as_ref().unwrap();
    (test.roc_auc.unwrap(), base, test.roc_auc.unwrap() - base)
}

#[test]
fn training_beats_the_untrained_encoder_on_unseen_books_and_a_matcher_that_does_not_learn_fails() {
    let _lock = crate::training_lock();
    let dir = tempfile::tempdir().unwrap();
    let (ds, books) = dataset(dir.path());
    let device = Device::flex();
    let run = |name: &str, lr: f64| {
        lexforge_matcher::train(
            &config(&books, lr),
            &ds,
            &dir.path().join(name),
            &device,
            &NoopSink,
            &CancelToken::new(),
        )
        .unwrap()
    };
    let trained = run("trained", 1e-3);
    let (auc, base, delta) = gain(&trained);
    eprintln!("trained: test ROC-AUC {auc:.4}, untrained encoder {base:.4}, gain {delta:+.4}");
    assert!(
        delta >= GATE_MARGIN,
        "training raised test ROC-AUC by {delta:+.4} ({base:.4} -> {auc:.4}), the gate asks \
         {GATE_MARGIN}"
    );
    let test = trained.test.as_ref().unwrap();
    let (before, after) = (test.ece_before, test.ece_after.unwrap());
    eprintln!("trained: test ECE {before:.4} -> {after:.4} after calibration");
    assert!(
        after < before,
        "calibration raised ECE: {before} -> {after}"
    );

    // Training switched off: the learning rate is so small that nothing moves.
    let frozen = run("not-learning", 1e-12);
    let (auc0, base0, delta0) = gain(&frozen);
    eprintln!(
        "not learning: test ROC-AUC {auc0:.4}, untrained encoder {base0:.4}, gain {delta0:+.4}"
    );
    assert!(
        delta0 < GATE_MARGIN,
        "a matcher that does not learn passed the gate ({delta0:+.4})"
    );
}
