//! The `lexforge` command line. One subcommand family per pipeline; this file only parses
//! arguments, calls the library and prints.

mod alloc;
mod common;
mod embed;
mod lm;
mod matcher;
mod prepare;
mod semantic;
mod tokenizer;

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lexforge::{BackendReport, Manifest, RunStatus};

/// Train and serve text models on burn.
#[derive(Debug, Parser)]
#[command(name = "lexforge", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    globals: common::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the backends compiled into this build and whether each has a usable device here.
    Devices,
    /// Inspect and check run directories.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Train, inspect and use tokenizers (BPE, WordPiece, Unigram, char).
    Tokenizer {
        #[command(subcommand)]
        command: tokenizer::TokenizerCommand,
    },
    /// Train, resume, evaluate, generate from and score language models (GPT-2, char-LSTM).
    Lm {
        #[command(subcommand)]
        command: lm::LmCommand,
    },
    /// Sentence vectors of a file of lines with a BERT-family model, as a .npy array.
    Embed(embed::EmbedArgs),
    /// Books to a deduplicated, split pair dataset with hard negatives (the matcher's data);
    /// `prepare shard` and `prepare merge` run the two stages separately.
    Prepare(Box<prepare::PrepareArgs>),
    /// Same book? How close in style? Which book? Train, calibrate, evaluate and use the
    /// bi-encoder book matcher; `matcher pipeline` runs books → dataset → matcher.
    Matcher {
        #[command(subcommand)]
        command: Box<matcher::MatcherCommand>,
    },
    /// Semantic IDs: labelled word corpora → FSQ / residual-VQ encoder → (style, complexity,
    /// era, variation); encode, decode, similar and ID-conditioned word generation.
    Semantic {
        #[command(subcommand)]
        command: Box<semantic::SemanticCommand>,
    },
}

#[derive(Debug, Subcommand)]
enum ManifestCommand {
    /// Check that every file listed in RUN_DIR/manifest.json is present with its recorded size
    /// and sha256. Exit status 0 if so, 1 otherwise.
    Verify {
        /// The run directory.
        run_dir: PathBuf,
    },
}

fn init_logging() {
    // Libraries only emit; the binary decides where logs go. LEXFORGE_LOG=debug for more.
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEXFORGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn print_devices(reports: &[BackendReport], json: bool) -> Result<(), lexforge::Error> {
    if json {
        let text =
            serde_json::to_string_pretty(reports).map_err(|source| lexforge::Error::Serialize {
                what: "device report",
                source,
            })?;
        println!("{text}");
        return Ok(());
    }
    println!(
        "{:<8} {:<9} {:<7} {:<5} {:<14} detail",
        "backend", "compiled", "usable", "auto", "precisions"
    );
    for r in reports {
        let precisions = r
            .precisions
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "{:<8} {:<9} {:<7} {:<5} {:<14} {}",
            r.name,
            yes_no(r.compiled),
            yes_no(r.usable),
            if r.auto { "*" } else { "" },
            if precisions.is_empty() {
                "-"
            } else {
                &precisions
            },
            r.detail
        );
        println!("{:<8} {}", "", r.auto_reason);
    }
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn print_manifest(m: &Manifest, json: bool) -> Result<(), lexforge::Error> {
    if json {
        let text =
            serde_json::to_string_pretty(m).map_err(|source| lexforge::Error::Serialize {
                what: "manifest",
                source,
            })?;
        println!("{text}");
        return Ok(());
    }
    let status = match m.status {
        RunStatus::Running => "running (or interrupted)",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    };
    println!(
        "ok: run {} ({}, {status}), {} artifact(s) verified",
        m.run_id,
        m.kind,
        m.artifacts.len()
    );
    for (path, entry) in &m.artifacts {
        println!("  {:>12} B  {}  {}", entry.bytes, &entry.sha256[..12], path);
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), Box<dyn Error>> {
    match cli.command {
        Command::Devices => Ok(print_devices(&lexforge::backend_reports(), common::json())?),
        Command::Manifest {
            command: ManifestCommand::Verify { run_dir },
        } => {
            let manifest = lexforge::verify_run_dir(&run_dir)?;
            Ok(print_manifest(&manifest, common::json())?)
        }
        Command::Tokenizer { command } => tokenizer::run(command),
        Command::Lm { command } => lm::run(command),
        Command::Embed(args) => embed::run(args),
        Command::Prepare(args) => prepare::run(*args),
        Command::Matcher { command } => matcher::run(*command),
        Command::Semantic { command } => semantic::run(*command),
    }
}

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    init_logging();
    let cli = Cli::parse();
    common::set_globals(cli.globals.clone());
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
