//! `lexforge lm train | resume | eval | generate | score`.

use std::error::Error;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use lexforge::lm::{LanguageModel, LmRunConfig, LmRunReport, evaluate_run, resume_run, train_run};
use lexforge::nn::generate::GenerateConfig;
use lexforge::{CancelToken, DeviceSpec, EventSink, NoopSink, ProgressBarSink};

/// The language-model subcommands.
#[derive(Debug, Subcommand)]
pub enum LmCommand {
    /// Train a tokenizer (or use one) and a GPT-2 or char-LSTM model as CONFIG.toml says, in
    /// OUT_DIR/NAME. Ctrl-C stops after the current step and keeps a checkpoint.
    Train {
        /// The run config (TOML, or JSON when it ends in .json; see docs/lm.md).
        config: PathBuf,
        /// Override the config's `name`.
        #[arg(long)]
        name: Option<String>,
        /// Override the config's `out_dir`.
        #[arg(long)]
        out_dir: Option<PathBuf>,
        /// Override `train.max_steps`.
        #[arg(long)]
        max_steps: Option<u64>,
        /// Print the final report as JSON (and no progress bar).
        #[arg(long)]
        json: bool,
    },
    /// Continue an interrupted, cancelled or failed run from its latest checkpoint.
    Resume {
        /// The run directory.
        run: PathBuf,
        /// Train up to this many steps in total (default: the run's own max_steps).
        #[arg(long)]
        max_steps: Option<u64>,
        /// Print the final report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Recompute a run's validation metrics (loss, perplexity, bits per token and per
    /// character), or evaluate it on other text files.
    Eval {
        /// The run or model directory.
        run: PathBuf,
        /// Evaluate on these text files instead of the run's validation split.
        #[arg(long = "text-file")]
        text_files: Vec<PathBuf>,
        /// Device (cpu, flex, ndarray, cuda:0, wgpu...).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Device.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
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
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Sequences to generate (1-10, in one batch).
    #[arg(long, default_value_t = 1)]
    num_return_sequences: usize,
    /// Device.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn device(spec: &str) -> Result<lexforge::Device, lexforge::Error> {
    crate::resolve_device(&spec.parse::<DeviceSpec>()?)
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Box<dyn Error>> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A progress bar on a terminal; one line per evaluation on stderr otherwise (logs, CI); nothing
/// with `--json` (the run's events.jsonl has everything either way).
fn sink(json: bool) -> Box<dyn EventSink> {
    if json {
        Box::new(NoopSink)
    } else if std::io::stderr().is_terminal() {
        Box::new(ProgressBarSink::new())
    } else {
        Box::new(EvalLines)
    }
}

/// Prints `step N: val_loss ...` for each evaluation.
struct EvalLines;

impl EventSink for EvalLines {
    fn emit(&self, record: &lexforge::EventRecord) -> lexforge::Result<()> {
        match &record.event {
            lexforge::Event::Eval { step, metrics } => {
                let loss = metrics.get("val_loss").copied().unwrap_or(f64::NAN);
                eprintln!("step {step}: val_loss {loss:.4}");
            }
            lexforge::Event::Cancelled { step } => eprintln!("cancelled at step {step:?}"),
            _ => {}
        }
        Ok(())
    }
}

/// Ctrl-C (SIGINT) or SIGTERM cancels the run between steps: it finishes the current step,
/// writes a checkpoint and exits normally with status `cancelled`. A second signal exits at
/// once (exit status 130); the checkpoints already written stay valid.
pub(crate) fn cancel_on_signal() -> CancelToken {
    let token = CancelToken::new();
    let t = token.clone();
    match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(mut signals) => {
            std::thread::spawn(move || {
                let mut signals = signals.forever();
                if signals.next().is_some() {
                    eprintln!(
                        "\ninterrupted: stopping after this step and writing a checkpoint \
                         (again to quit at once; the last checkpoint stays)"
                    );
                    t.cancel();
                }
                if signals.next().is_some() {
                    std::process::exit(130);
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot install the Ctrl-C handler"),
    }
    token
}

fn report(r: &LmRunReport, json: bool) -> Result<(), Box<dyn Error>> {
    if json {
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
            name,
            out_dir,
            max_steps,
            json,
        } => {
            let mut cfg: LmRunConfig = crate::read_config(&config)?;
            if let Some(n) = name {
                cfg.name = n;
            }
            if let Some(o) = out_dir {
                cfg.out_dir = o;
            }
            if let Some(s) = max_steps {
                cfg.train.max_steps = s;
            }
            let r = train_run(&cfg, sink(json).as_ref(), &cancel_on_signal())?;
            report(&r, json)
        }
        LmCommand::Resume {
            run,
            max_steps,
            json,
        } => {
            let r = resume_run(&run, max_steps, sink(json).as_ref(), &cancel_on_signal())?;
            report(&r, json)
        }
        LmCommand::Eval {
            run,
            text_files,
            device: spec,
            json,
        } => {
            let device = device(&spec)?;
            if text_files.is_empty() {
                let m = evaluate_run(&run, &device)?;
                if json {
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
            if json {
                return print_json(&e);
            }
            println!(
                "loss {:.4}  perplexity {:.2}  bits/token {:.4}  bits/char {:.4}  ({} tokens, {} chars)",
                e.loss, e.perplexity, e.bits_per_token, e.bits_per_char, e.tokens, e.chars
            );
            Ok(())
        }
        LmCommand::Generate(a) => {
            let lm = LanguageModel::load(&a.run, &device(&a.device)?)?;
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
            if a.json {
                return print_json(&out);
            }
            for g in out {
                println!("{}{}", a.prompt, g.text);
                eprintln!("[{} tokens, {:?}]", g.tokens_generated, g.finish);
            }
            Ok(())
        }
        LmCommand::Score {
            run,
            text,
            top_k,
            device: spec,
            json,
        } => {
            let lm = LanguageModel::load(&run, &device(&spec)?)?;
            let s = lm.score(&text, top_k)?;
            if json {
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
