//! `lexforge matcher train|resume|calibrate|evaluate|score|search|pipeline`.

use std::error::Error;
use std::path::PathBuf;

use clap::Subcommand;
use lexforge::data::Split;
use lexforge::matcher::{
    Matcher, MatcherTrainConfig, PipelineConfig, PreparedDataset, SearchOptions,
    StyleChannelConfig, ThresholdMetric, ViewsConfig,
};

use crate::common::{ResumeArgs, device, job, json, print_json, read_config};

/// Subcommands of `lexforge matcher`.
#[derive(Debug, Subcommand)]
pub enum MatcherCommand {
    /// Train a bi-encoder matcher on a prepared dataset (`lexforge prepare`) into the new run
    /// directory --out, then calibrate it on validation and evaluate it on test. An existing
    /// run is refused: `matcher resume` continues it.
    Train {
        /// The prepared dataset directory.
        dataset: PathBuf,
        /// The matcher directory to create.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Continue a matcher training from its last checkpoint: a stopped one (killed, Ctrl-C,
    /// failed), or a finished one with a higher --max-steps.
    Resume(ResumeArgs),
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
    /// Same book? Prints probability, decision, cosine, logit, style similarity and whether a
    /// passage was truncated, as JSON.
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
        #[arg(short, default_value_t = SearchOptions::default().k)]
        k: usize,
        /// Rerank with the matcher's cross-encoder teacher (default: when it has one).
        #[arg(long, conflicts_with = "no_rerank")]
        rerank: bool,
        /// Rank by the bi-encoder only.
        #[arg(long)]
        no_rerank: bool,
        /// Books the bi-encoder keeps for reranking.
        #[arg(long, default_value_t = SearchOptions::default().prefilter)]
        prefilter: usize,
    },
    /// Books → prepare → train → calibrate → evaluate in one command: OUT/dataset and
    /// OUT/matcher. Running it again reuses what completed and resumes a stopped matcher.
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
    /// Floor of the cosine schedule (at most the peak).
    #[arg(long)]
    min_lr: Option<f64>,
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

fn parse_split(s: &str) -> Result<Split, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("unknown split {s:?}: train, validation or test"))
}

fn parse_metric(s: &str) -> Result<ThresholdMetric, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("unknown metric {s:?}: accuracy or f1"))
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
        if let Some(v) = self.max_steps {
            c.train.max_steps = v;
        }
        if let Some(v) = self.batch_size {
            c.train.batch_size = v;
        }
        if let Some(v) = self.lr {
            c.train.lr = v;
        }
        if let Some(v) = self.min_lr {
            c.train.min_lr = v;
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
        report.run_dir.display(),
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
    match command {
        MatcherCommand::Train {
            dataset,
            out,
            train,
        } => {
            let config = train.config()?;
            let report = job(|d, s, c| lexforge::matcher::train(&config, &dataset, &out, d, s, c))?;
            print_report(&report)
        }
        MatcherCommand::Resume(ResumeArgs { run, max_steps }) => {
            let report = job(|d, s, c| lexforge::matcher::resume(&run, d, max_steps, s, c))?;
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
            let (c, _) = m.calibrate(&data, split, metric, Matcher::BATCH_SIZE)?;
            print_json(&c)
        }
        MatcherCommand::Evaluate {
            matcher,
            dataset,
            split,
        } => {
            let m = Matcher::load(&matcher, &device()?)?;
            let data = PreparedDataset::open(&dataset)?;
            print_json(&m.evaluate(&data, split, Matcher::BATCH_SIZE)?)
        }
        MatcherCommand::Score {
            matcher,
            text1,
            text2,
        } => {
            let m = Matcher::load(&matcher, &device()?)?;
            let s = m.score(&text1, &text2)?;
            let truncated = m.truncated(&text1)? || m.truncated(&text2)?;
            let mut v = serde_json::to_value(s)?;
            v["truncated"] = truncated.into();
            print_json(&v)
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
            let lib = m.library_of_dataset(&data, split, Matcher::BATCH_SIZE)?;
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
                ..SearchOptions::default()
            };
            print_json(&m.search_with(&passage, &lib, &options)?)
        }
        MatcherCommand::Pipeline {
            books_dir,
            out,
            config,
            metadata,
        } => {
            let cfg: PipelineConfig = match &config {
                Some(p) => read_config(p)?,
                None => PipelineConfig::default(),
            };
            let report = job(|d, s, c| {
                lexforge::matcher::pipeline(&cfg, &books_dir, metadata.as_deref(), &out, d, s, c)
            })?;
            if let Some(summary) = &report.dataset
                && !json()
            {
                println!(
                    "dataset {}: {} chunks, books {:?}",
                    summary.path.display(),
                    summary.chunks,
                    summary.books
                );
            }
            if json() {
                return print_json(&report);
            }
            print_report(&report.matcher)
        }
    }
}
