//! `lexforge lm train | resume | evaluate | generate | score`.

use std::error::Error;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use lexforge::lm::{LanguageModel, LmRunConfig, TrainReport};
use lexforge::nn::generate::GenerateConfig;

use crate::common::{ResumeArgs, device, job, json, print_json, read_config};

/// The language-model subcommands.
#[derive(Debug, Subcommand)]
pub enum LmCommand {
    /// Train a tokenizer (or use one) and a GPT-2 or char-LSTM model as CONFIG says, into the
    /// new run directory --out. An existing run is refused: `lm resume` continues it. Ctrl-C
    /// stops after the current step and keeps a checkpoint.
    Train {
        /// The run config (TOML, or JSON when it ends in .json; see docs/lm.md).
        config: PathBuf,
        /// The run directory to create.
        #[arg(long)]
        out: PathBuf,
        /// Override `train.max_steps`.
        #[arg(long)]
        max_steps: Option<u64>,
    },
    /// Continue a run from its last checkpoint: a stopped one (killed, Ctrl-C, failed), or a
    /// finished one with a higher --max-steps.
    Resume(ResumeArgs),
    /// Recompute a run's validation metrics (loss, perplexity, bits per token and per
    /// character), or evaluate it on other text files.
    Evaluate {
        /// The run or model directory.
        run: PathBuf,
        /// Evaluate on these text files instead of the run's validation split.
        #[arg(long = "text-file")]
        text_files: Vec<PathBuf>,
    },
    /// Continue a prompt.
    Generate(GenerateArgs),
    /// Loss, perplexity and per-token surprisal of a text.
    Score {
        /// The run or model directory.
        run: PathBuf,
        /// The text.
        #[arg(long)]
        text: String,
        /// Also show the k most likely tokens at each position.
        #[arg(long, default_value_t = LanguageModel::SCORE_TOP_K)]
        top_k: usize,
    },
}

/// `lexforge lm generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The run or model directory.
    run: PathBuf,
    /// The prompt (may be empty: starts from the end-of-text token).
    #[arg(long, default_value = "")]
    prompt: String,
    /// Tokens to generate (1-512).
    #[arg(long, default_value_t = GenerateConfig::default().max_new_tokens)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = GenerateConfig::default().temperature)]
    temperature: f32,
    /// Keep the k most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Keep the smallest set of tokens with this total probability.
    #[arg(long)]
    top_p: Option<f32>,
    /// Stop when this text appears (repeat for several).
    #[arg(long = "stop")]
    stop_sequences: Vec<String>,
    /// Do not stop on the end-of-text token.
    #[arg(long)]
    no_stop_on_eos: bool,
    /// Seed: the same seed gives the same outputs.
    #[arg(long, default_value_t = GenerateConfig::default().seed)]
    seed: u64,
    /// Sequences to generate (1-10, in one batch).
    #[arg(long, default_value_t = GenerateConfig::default().num_return_sequences)]
    num_return_sequences: usize,
}

fn report(r: &TrainReport) -> Result<(), Box<dyn Error>> {
    if json() {
        return print_json(r);
    }
    println!(
        "{:?} after {} steps ({:?}): {}",
        r.status,
        r.steps,
        r.stop,
        r.run_dir.display()
    );
    print_metrics(&r.metrics);
    if r.status == lexforge::RunStatus::Cancelled {
        println!("resume with: lexforge lm resume {}", r.run_dir.display());
    }
    Ok(())
}

fn print_metrics(m: &std::collections::BTreeMap<String, f64>) {
    for (k, v) in m {
        println!("  {k:<24} {v:.4}");
    }
}

/// Runs one `lexforge lm` subcommand.
pub fn run(command: LmCommand) -> Result<(), Box<dyn Error>> {
    match command {
        LmCommand::Train {
            config,
            out,
            max_steps,
        } => {
            let mut cfg: LmRunConfig = read_config(&config)?;
            if let Some(s) = max_steps {
                cfg.train.max_steps = s;
            }
            let r = job(|d, s, c| lexforge::lm::train(&cfg, &out, d, s, c))?;
            report(&r)
        }
        LmCommand::Resume(ResumeArgs { run, max_steps }) => {
            let r = job(|d, s, c| lexforge::lm::resume(&run, d, max_steps, s, c))?;
            report(&r)
        }
        LmCommand::Evaluate { run, text_files } => {
            let device = device()?;
            if text_files.is_empty() {
                let m = lexforge::lm::evaluate(&run, &device)?;
                if json() {
                    return print_json(&m);
                }
                print_metrics(&m);
                return Ok(());
            }
            let lm = LanguageModel::load(&run, &device)?;
            let texts = text_files
                .iter()
                .map(|p| std::fs::read_to_string(p).map_err(|e| lexforge::Error::io("read", p, e)))
                .collect::<Result<Vec<_>, _>>()?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let e = lm.evaluate(&refs)?;
            if json() {
                return print_json(&e);
            }
            println!(
                "loss {:.4}  perplexity {:.2}  bits/token {:.4}  bits/char {:.4}  ({} tokens, {} chars)",
                e.loss, e.perplexity, e.bits_per_token, e.bits_per_char, e.tokens, e.chars
            );
            Ok(())
        }
        LmCommand::Generate(a) => {
            let lm = LanguageModel::load(&a.run, &device()?)?;
            let config = GenerateConfig {
                max_new_tokens: a.max_new_tokens,
                temperature: a.temperature,
                top_k: a.top_k,
                top_p: a.top_p,
                stop_on_eos: !a.no_stop_on_eos,
                stop_sequences: a.stop_sequences,
                seed: a.seed,
                num_return_sequences: a.num_return_sequences,
                ..GenerateConfig::default()
            };
            let out = lm.generate(&a.prompt, &config)?;
            if json() {
                return print_json(&out);
            }
            for g in out {
                println!("{}{}", a.prompt, g.text);
                eprintln!("[{} tokens, {:?}]", g.tokens_generated, g.finish);
            }
            Ok(())
        }
        LmCommand::Score { run, text, top_k } => {
            let lm = LanguageModel::load(&run, &device()?)?;
            let s = lm.score(&text, top_k)?;
            if json() {
                return print_json(&s);
            }
            println!(
                "loss {:.4}  perplexity {:.2}  bits/char {:.4}",
                s.loss, s.perplexity, s.bits_per_char
            );
            for t in &s.tokens {
                let top = t
                    .top_k
                    .iter()
                    .map(|(tok, _, p)| format!("{tok:?}:{p:.3}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                println!(
                    "  {:>4}..{:<4} {:<16} {:>7.2} bits  {top}",
                    t.start,
                    t.end,
                    format!("{:?}", &text[t.start..t.end]),
                    t.surprisal_bits
                );
            }
            Ok(())
        }
    }
}
