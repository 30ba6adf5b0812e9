//! `lexforge semantic corpora|train|resume|encode|decode|similar|generate|pipeline`.

use std::error::Error;
use std::path::PathBuf;

use clap::Subcommand;
use lexforge::data::BookDirectory;
use lexforge::nn::generate::GenerateConfig;
use lexforge::semantic::{
    BookWords, BookWordsConfig, CorpusSet, GeneratorChoice, GeneratorStage, PipelineConfig,
    QuantizerConfig, SemanticEncoder, SemanticTrainConfig, TrainReport, WordFrequencies,
    WordGenerator, WordGeneratorKind,
};

use crate::common::{ResumeArgs, device, job, json, print_json, read_config};

/// Subcommands of `lexforge semantic`.
#[derive(Debug, Subcommand)]
pub enum SemanticCommand {
    /// Labelled word corpora from books with a catalogue (style from genre, era, complexity
    /// from word frequency, variations): characteristic words of each group by log-odds.
    Corpora(CorporaArgs),
    /// Train a semantic encoder (FSQ or residual VQ) on a corpora file into the new run
    /// directory --out (semantic_ids.json, eval/metrics.json). An existing run is refused:
    /// `semantic resume` continues it.
    Train {
        /// The corpora file (`lexforge semantic corpora`).
        corpora: PathBuf,
        /// The encoder directory to create.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        train: TrainArgs,
    },
    /// Continue an encoder training from its last checkpoint: a stopped one (killed, Ctrl-C,
    /// failed), or a finished one with a higher --max-steps.
    Resume(ResumeArgs),
    /// The ID of words, a text, or a known corpus, with the labels its heads read from it.
    Encode {
        /// The encoder directory.
        encoder: PathBuf,
        /// Words (several arguments) or a text (one argument with spaces).
        words: Vec<String>,
    },
    /// The vector an ID decodes to (the embedding space of the encoder's model), as JSON.
    Decode {
        /// The encoder directory.
        encoder: PathBuf,
        /// The ID, as four numbers.
        #[arg(long, num_args = 1.., required = true)]
        id: Vec<u32>,
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
        #[arg(short, default_value_t = SemanticEncoder::SIMILAR_K)]
        k: usize,
    },
    /// Words for an ID from the encoder's word generator (`generator/`).
    Generate {
        /// The encoder directory.
        encoder: PathBuf,
        /// The ID, as four numbers.
        #[arg(long, num_args = 1.., required = true)]
        id: Vec<u32>,
        /// Words to return.
        #[arg(short, default_value_t = WordGenerator::WORDS)]
        n: usize,
        /// Sampling seed.
        #[arg(long, default_value_t = GenerateConfig::default().seed)]
        seed: u64,
    },
    /// Books → corpora → semantic encoder → word generator in one command: OUT/corpora.json,
    /// OUT/encoder, OUT/encoder/generator (by default vocabulary-guided: wordfreq's most
    /// frequent words, embedded once, drawn so that their mean lands on decode(id); with
    /// --generator lora, LoRA adapters on --base-lm or on a small GPT-2 that the
    /// language-model pipeline trains on the corpora's words first, OUT/base-lm). Running it
    /// again reuses the stages that completed and resumes the one that stopped.
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
        /// A wordfreq table (large_en.msgpack.gz; default: the config's `wordfreq`, else
        /// $LEXFORGE_WORDFREQ or the active venv's wordfreq package, else the books' counts).
        #[arg(long)]
        wordfreq: Option<PathBuf>,
        /// A TOML file with words_per_corpus, word_generator ("guided" or "lora") and the
        /// tables corpora (BookWordsConfig), semantic (SemanticTrainConfig), guided
        /// (GuidedConfig), generator (WordGeneratorConfig, LoRA) and base_lm.
        #[arg(long)]
        config: Option<PathBuf>,
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
    #[arg(long, default_value_t = BookWords::WORDS_PER_CORPUS)]
    words_per_corpus: usize,
    /// Variations per (style, complexity, era).
    #[arg(long)]
    variations: Option<u32>,
    /// A wordfreq table (large_en.msgpack.gz; default: $LEXFORGE_WORDFREQ, else the active
    /// venv's wordfreq package).
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
    /// Quantizer preset: fsq, residual_fsq or residual_vq.
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

impl TrainArgs {
    fn config(&self) -> Result<SemanticTrainConfig, Box<dyn Error>> {
        let mut c: SemanticTrainConfig = match &self.config {
            Some(p) => read_config(p)?,
            None => SemanticTrainConfig::default(),
        };
        if let Some(q) = &self.quantizer {
            c.quantizer = QuantizerConfig::preset(q)?;
        }
        if let Some(m) = &self.embedding_model {
            c.embedding_model = Some(m.clone());
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

fn print_report(report: &TrainReport) -> Result<(), Box<dyn Error>> {
    if json() {
        return print_json(report);
    }
    println!(
        "semantic encoder {} ({}, {:?} after {} steps, {:.1} s)",
        report.run_dir.display(),
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
            let books = BookDirectory::new(&a.books_dir).with_metadata(&a.metadata);
            let set = BookWords::new(&books, freq.as_ref(), &config)?.build(a.words_per_corpus)?;
            set.save(&a.out)?;
            println!(
                "{} corpora of {} words -> {}",
                set.corpora.len(),
                a.words_per_corpus,
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
            let report = job(|d, s, c| lexforge::semantic::train(&config, &set, &out, d, s, c))?;
            print_report(&report)
        }
        SemanticCommand::Resume(ResumeArgs { run, max_steps }) => {
            let report = job(|d, s, c| lexforge::semantic::resume(&run, d, max_steps, s, c))?;
            print_report(&report)
        }
        SemanticCommand::Encode { encoder, words } => {
            let enc = SemanticEncoder::load(&encoder, &device()?)?;
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
            print_json(&serde_json::json!({ "id": id, "labels": enc.labels(&id)? }))
        }
        SemanticCommand::Decode { encoder, id } => {
            let enc = SemanticEncoder::load(&encoder, &device()?)?;
            print_json(&enc.decode(&id)?)
        }
        SemanticCommand::Similar {
            encoder,
            id,
            words,
            k,
        } => {
            let enc = SemanticEncoder::load(&encoder, &device()?)?;
            let hits = match (id, words) {
                (Some(id), _) => enc.similar(&id, k)?,
                (None, Some(words)) => {
                    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
                    enc.similar_words(&refs, k)?
                }
                (None, None) => return Err("give --id or --words".into()),
            };
            print_json(&hits)
        }
        SemanticCommand::Generate {
            encoder,
            id,
            n,
            seed,
        } => {
            let device = device()?;
            let enc = SemanticEncoder::load(&encoder, &device)?;
            // A typed error for an ID that does not fit the codebooks.
            enc.check_id(&id)?;
            let generator = WordGenerator::of_encoder(&enc, &device)?;
            print_json(&generator.generate_words(&enc, &id, n, seed)?)
        }
        SemanticCommand::Pipeline {
            books_dir,
            metadata,
            out,
            generator,
            base_lm,
            no_generator,
            wordfreq,
            config,
        } => {
            let mut config: PipelineConfig = match &config {
                Some(p) => read_config(p)?,
                None => PipelineConfig::default(),
            };
            if wordfreq.is_some() {
                config.wordfreq = wordfreq;
            }
            let choice = match (no_generator, generator, base_lm) {
                (true, _, _) => GeneratorChoice::None,
                (false, Some(WordGeneratorKind::Guided), Some(_)) => {
                    return Err("--base-lm is for --generator lora".into());
                }
                (false, Some(WordGeneratorKind::Guided), None) => GeneratorChoice::Guided,
                (false, Some(WordGeneratorKind::Lora), base) | (false, None, base @ Some(_)) => {
                    GeneratorChoice::Lora(base)
                }
                (false, None, None) => GeneratorChoice::FromConfig,
            };
            let report = job(|d, s, c| {
                lexforge::semantic::pipeline(&config, &books_dir, &metadata, &out, &choice, d, s, c)
            })?;
            if json() {
                return print_json(&report);
            }
            print_report(&report.encoder)?;
            match &report.generator {
                Some(GeneratorStage::Guided(r)) => println!(
                    "  word generator: guided, {} words ({}), embedded in {:.1} s",
                    r.vocabulary, r.frequencies, r.embed_seconds
                ),
                Some(GeneratorStage::Lora { report: r, .. }) => println!(
                    "  word generator: {} steps, validation loss {:.3}",
                    r.steps,
                    r.val_loss.unwrap_or(f64::NAN)
                ),
                None => {}
            }
            Ok(())
        }
    }
}
