//! `lexforge tokenizer train | inspect | encode | decode`.

use std::error::Error;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use lexforge::tokenizers::{
    Normalization, Tokenizer, TokenizerConfig, TokenizerInfo, TokenizerMethod, TokenizerOptions,
    TokenizerTrainRequest,
};
use lexforge::{JsonlSink, MultiSink, ProgressBarSink};

/// The tokenizer subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Train a tokenizer on text files or directories of .txt files and write DIR with
    /// tokenizer.json and manifest.json (holdout statistics included).
    Train(TrainArgs),
    /// Show a tokenizer's method, vocabulary size, special tokens, config and holdout stats.
    Inspect {
        /// An artifact directory, an HF model folder or a tokenizer.json file.
        path: PathBuf,
    },
    /// Encode TEXT and print the ids (and tokens).
    Encode {
        /// An artifact directory, an HF model folder or a tokenizer.json file.
        path: PathBuf,
        /// The text.
        text: String,
        /// Run the post-processor (e.g. add `[CLS]` and `[SEP]`).
        #[arg(long)]
        add_special_tokens: bool,
    },
    /// Decode ids to text.
    Decode {
        /// An artifact directory, an HF model folder or a tokenizer.json file.
        path: PathBuf,
        /// The ids.
        #[arg(required = true, num_args = 1..)]
        ids: Vec<u32>,
        /// Keep special tokens in the output.
        #[arg(long)]
        keep_special_tokens: bool,
    },
}

/// `lexforge tokenizer train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// bpe, wordpiece, unigram or char.
    #[arg(long, default_value = "bpe")]
    method: TokenizerMethod,
    /// Target vocabulary size, special tokens included (an upper bound for char).
    #[arg(long, default_value_t = 8000)]
    vocab_size: usize,
    /// Share of the corpus held out for the statistics (by document, else by line).
    #[arg(long, default_value_t = 0.05)]
    holdout: f64,
    /// Seed of the holdout split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Minimum pair (bpe, wordpiece) or character (char) count [default: per method].
    #[arg(long)]
    min_frequency: Option<u64>,
    /// none, nfc or nfkc [default: per method].
    #[arg(long)]
    normalization: Option<Normalization>,
    /// Lowercase the text: true or false [default: per method].
    #[arg(long)]
    lowercase: Option<bool>,
    /// A special token; repeat for several. Replaces the method's defaults.
    #[arg(long = "special-token")]
    special_tokens: Vec<String>,
    /// Unigram byte fallback: true or false [default: true for unigram].
    #[arg(long)]
    byte_fallback: Option<bool>,
    /// Worker threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Also write every event as JSON lines to this file.
    #[arg(long)]
    events: Option<PathBuf>,
    /// No progress bars.
    #[arg(long, short)]
    quiet: bool,
    /// The directory to create (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// Text files and directories (every .txt below them).
    #[arg(required = true)]
    corpus: Vec<PathBuf>,
}

fn config_of(a: &TrainArgs) -> TokenizerConfig {
    TokenizerConfig::new(a.method, a.vocab_size).with_options(&TokenizerOptions {
        min_frequency: a.min_frequency,
        normalization: a.normalization,
        lowercase: a.lowercase,
        special_tokens: (!a.special_tokens.is_empty()).then(|| a.special_tokens.clone()),
        byte_fallback: a.byte_fallback,
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Box<dyn Error>> {
    Ok(serde_json::to_string_pretty(value)?)
}

fn print_info(info: &TokenizerInfo) {
    let method = info.method.map_or("unknown".to_owned(), |m| m.to_string());
    println!("method:          {method}");
    println!("vocab size:      {}", info.vocab_size);
    if let Some(unk) = &info.unk_token {
        println!("unknown token:   {unk}");
    }
    let specials: Vec<String> = info
        .special_tokens
        .iter()
        .map(|(t, id)| format!("{t}={id}"))
        .collect();
    println!("special tokens:  {}", specials.join(" "));
    if let Some(c) = &info.config {
        println!(
            "config:          min_frequency={} normalization={} lowercase={} byte_fallback={}",
            c.min_frequency, c.normalization, c.lowercase, c.byte_fallback
        );
    }
    if let Some(t) = &info.training {
        println!(
            "trained on:      {} (holdout {}, seed {}, {:.2} s in the trainer)",
            t.corpus, t.holdout, t.seed, t.train_seconds
        );
    }
    if let Some(s) = &info.stats {
        let c = &s.corpus;
        println!(
            "split:           by {}: train {} docs / {} lines / {} bytes; holdout {} docs / {} \
             lines / {} bytes; {:.2}% of holdout lines also occur in training",
            match c.split_unit {
                lexforge::tokenizers::SplitUnit::Document => "document",
                lexforge::tokenizers::SplitUnit::Line => "line",
            },
            c.train_documents,
            c.train_lines,
            c.train_bytes,
            c.holdout_documents,
            c.holdout_lines,
            c.holdout_bytes,
            100.0 * c.holdout_line_overlap
        );
        if let Some(h) = &s.holdout {
            println!(
                "holdout:         char coverage {:.4}%, unk rate {:.4}%, byte fallback {:.4}%, \
                 {:.4} tokens/char, {:.3} tokens/word, {:.1}% of vocab used",
                100.0 * h.char_coverage,
                100.0 * h.unk_rate,
                100.0 * h.byte_fallback_rate,
                h.tokens_per_char,
                h.tokens_per_word,
                100.0 * h.vocab_used
            );
        }
    }
}

/// Runs one tokenizer subcommand.
pub fn run(cmd: TokenizerCommand) -> Result<(), Box<dyn Error>> {
    match cmd {
        TokenizerCommand::Train(args) => {
            let config = config_of(&args);
            let mut request = TokenizerTrainRequest::from_paths(args.corpus.clone())
                .with_holdout(args.holdout)
                .with_seed(args.seed)
                .with_threads(args.threads);
            request.show_progress = !args.quiet;
            let mut sink = MultiSink::new();
            if !args.quiet {
                sink.push(Box::new(ProgressBarSink::new()));
            }
            if let Some(path) = &args.events {
                sink.push(Box::new(JsonlSink::open(path)?));
            }
            let tok = Tokenizer::train(&config, &request, &sink)?;
            let out = tok.save(&args.out)?;
            if crate::common::json() {
                println!("{}", to_json(&tok.info())?);
            } else {
                println!("wrote {}", out.display());
                print_info(&tok.info());
            }
            Ok(())
        }
        TokenizerCommand::Inspect { path } => {
            let info = Tokenizer::load(&path)?.info();
            if crate::common::json() {
                println!("{}", to_json(&info)?);
            } else {
                print_info(&info);
            }
            Ok(())
        }
        TokenizerCommand::Encode {
            path,
            text,
            add_special_tokens,
        } => {
            let tok = Tokenizer::load(&path)?;
            let enc = tok.encode_with_offsets(&text, add_special_tokens)?;
            let tokens: Vec<String> = enc
                .ids
                .iter()
                .map(|&id| tok.id_to_token(id).unwrap_or_default())
                .collect();
            if crate::common::json() {
                let v =
                    serde_json::json!({"ids": enc.ids, "tokens": tokens, "offsets": enc.offsets});
                println!("{}", to_json(&v)?);
            } else {
                let ids: Vec<String> = enc.ids.iter().map(u32::to_string).collect();
                println!("{}", ids.join(" "));
                println!("{}", serde_json::to_string(&tokens)?);
            }
            Ok(())
        }
        TokenizerCommand::Decode {
            path,
            ids,
            keep_special_tokens,
        } => {
            let tok = Tokenizer::load(&path)?;
            println!("{}", tok.decode(&ids, !keep_special_tokens)?);
            Ok(())
        }
    }
}
