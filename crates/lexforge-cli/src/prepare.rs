//! `lexforge prepare`: books → deduplicated, split pair datasets with hard negatives; and its
//! two sharded stages, `lexforge prepare shard` and `lexforge prepare merge`.

use std::error::Error;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use lexforge::data::{
    BookDirectory, Decoding, PairFormat, PrepareConfig, PrepareSummary, ShardPart, merge_shards,
    prepare, prepare_shard,
};
use lexforge::nn::cache::{CachedEncoder, EmbeddingCache};
use lexforge::nn::encoder::{BertSentenceEncoder, EncoderOptions, SentenceEncoder, minilm_or};

use crate::common::cancel_on_signal;

/// Arguments of `lexforge prepare`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PrepareArgs {
    #[command(subcommand)]
    command: Option<PrepareCommand>,
    /// A directory of books laid out as {author}/{title}.txt.
    books_dir: Option<PathBuf>,
    /// The dataset directory to create (must not exist).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    read: ReadArgs,
    #[command(flatten)]
    encode: EncodeArgs,
    #[command(flatten)]
    params: ParamArgs,
}

#[derive(Debug, Subcommand)]
enum PrepareCommand {
    /// Stage A on a subset of the books: standardize, chunk, embed and sketch shard INDEX of
    /// COUNT of the files into a shard directory (chunk vectors, MinHash signatures, book
    /// centroids).
    Shard {
        /// A directory of books laid out as {author}/{title}.txt.
        books_dir: PathBuf,
        /// Which shard, 0-based.
        #[arg(long)]
        index: usize,
        /// How many shards the files are split into.
        #[arg(long)]
        count: usize,
        /// The shard directory to create.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        encode: EncodeArgs,
        #[command(flatten)]
        params: ParamArgs,
    },
    /// Stage B: verify the complete set of shard directories (same encoder and stage-A
    /// parameters, every part once), then dedup, mine, pair and write the dataset. Never loads
    /// the encoder: the shards carry the vectors.
    Merge {
        /// Shard directories written by `lexforge prepare shard`.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// The dataset directory to create.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        params: ParamArgs,
    },
}

#[derive(Debug, Args)]
struct ReadArgs {
    /// A metadata CSV (`path` relative to the CSV's folder, or `id`; columns such as author,
    /// title, year, genre).
    #[arg(long)]
    metadata: Option<PathBuf>,
    /// How files that are not UTF-8 are read: strict (skip and report them), latin1, lossy.
    #[arg(long, default_value = "strict", value_parser = parse_decoding)]
    decoding: Decoding,
}

#[derive(Debug, Args)]
struct EncodeArgs {
    /// The sentence encoder's model directory (default: the installed all-MiniLM-L6-v2).
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Token limit per chunk for the encoder (default: the model's).
    #[arg(long)]
    max_seq_length: Option<usize>,
    /// Cache chunk vectors in this directory (reruns skip the encoder).
    #[arg(long)]
    cache: Option<PathBuf>,
}

/// The parameters; a TOML file first, then each flag given overrides it.
#[derive(Debug, Args)]
struct ParamArgs {
    /// A TOML (or .json) file with the parameters (the fields of PrepareConfig: `seed`, tables `chunk`,
    /// `dedup`, `mining`, `topics`, `splits`, `pairs`, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of every random choice.
    #[arg(long)]
    seed: Option<u64>,
    /// Sentences per chunk.
    #[arg(long)]
    chunk_size: Option<usize>,
    /// Sentences shared by consecutive chunks.
    #[arg(long)]
    overlap: Option<usize>,
    /// Shortest chunk, in characters.
    #[arg(long)]
    min_chars: Option<usize>,
    /// Most chunks per book.
    #[arg(long)]
    max_chunks_per_book: Option<usize>,
    /// Chunks per book averaged into its centroid for mining.
    #[arg(long)]
    num_chunks_for_embed: Option<usize>,
    /// Neighbour books per book.
    #[arg(long)]
    top_k: Option<usize>,
    /// Allow neighbours by the same author.
    #[arg(long)]
    keep_same_author: bool,
    /// Topic clusters.
    #[arg(long)]
    topics: Option<usize>,
    /// Pairs per book.
    #[arg(long)]
    pairs_per_book: Option<usize>,
    /// Share of positive pairs.
    #[arg(long)]
    positive_fraction: Option<f64>,
    /// Share of negatives drawn from the neighbour lists.
    #[arg(long)]
    hard_negative_fraction: Option<f64>,
    /// Share of books for validation.
    #[arg(long)]
    validation_fraction: Option<f64>,
    /// Share of books for test.
    #[arg(long)]
    test_fraction: Option<f64>,
    /// Texts per encoder batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// The pair files' format: jsonl (default) or parquet (typed columns, for pandas, polars
    /// and Hugging Face datasets).
    #[arg(long, value_parser = parse_format)]
    format: Option<PairFormat>,
}

fn parse_format(s: &str) -> Result<PairFormat, String> {
    PairFormat::ALL
        .into_iter()
        .find(|f| f.extension() == s)
        .ok_or_else(|| format!("unknown format {s:?}: jsonl or parquet"))
}

fn parse_decoding(s: &str) -> Result<Decoding, String> {
    match s {
        "strict" => Ok(Decoding::Strict),
        "latin1" => Ok(Decoding::Latin1),
        "lossy" => Ok(Decoding::Lossy),
        other => Err(format!(
            "unknown decoding {other:?}: strict, latin1 or lossy"
        )),
    }
}

impl ParamArgs {
    fn config(&self) -> Result<PrepareConfig, Box<dyn Error>> {
        let mut c: PrepareConfig = match &self.config {
            Some(path) => crate::common::read_config(path)?,
            None => PrepareConfig::default(),
        };
        let set = |dst: &mut usize, v: Option<usize>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        let setf = |dst: &mut f64, v: Option<f64>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        if let Some(s) = self.seed {
            c.seed = s;
        }
        set(&mut c.chunk.chunk_size, self.chunk_size);
        set(&mut c.chunk.overlap, self.overlap);
        set(&mut c.chunk.min_chars, self.min_chars);
        if let Some(m) = self.max_chunks_per_book {
            c.chunk.max_chunks_per_book = Some(m);
        }
        set(
            &mut c.mining.num_chunks_for_embed,
            self.num_chunks_for_embed,
        );
        set(&mut c.mining.top_k, self.top_k);
        if self.keep_same_author {
            c.mining.exclude_same_author = false;
        }
        set(&mut c.topics.k, self.topics);
        set(&mut c.pairs.pairs_per_book, self.pairs_per_book);
        setf(&mut c.pairs.positive_fraction, self.positive_fraction);
        setf(
            &mut c.pairs.hard_negative_fraction,
            self.hard_negative_fraction,
        );
        setf(&mut c.splits.validation_fraction, self.validation_fraction);
        setf(&mut c.splits.test_fraction, self.test_fraction);
        set(&mut c.encode_batch_size, self.batch_size);
        if let Some(f) = self.format {
            c.format = f;
        }
        c.validate()?;
        Ok(c)
    }
}

fn books(dir: &Path, read: &ReadArgs) -> BookDirectory {
    let mut b = BookDirectory::new(dir).with_decoding(read.decoding);
    if let Some(csv) = &read.metadata {
        b = b.with_metadata(csv);
    }
    b
}

/// The encoder, optionally behind the embedding cache, and the device for the search.
fn encoder(
    args: &EncodeArgs,
) -> Result<(Box<dyn SentenceEncoder>, lexforge::Device), Box<dyn Error>> {
    let device = crate::common::device()?;
    let dir = minilm_or(args.encoder.as_deref(), "--encoder")?;
    let options = EncoderOptions {
        max_seq_length: args.max_seq_length,
        ..EncoderOptions::default()
    };
    let enc = BertSentenceEncoder::load(&dir, &device, &options)?;
    let boxed: Box<dyn SentenceEncoder> = match &args.cache {
        Some(c) => Box::new(CachedEncoder::new(enc, EmbeddingCache::open(c)?)),
        None => Box::new(enc),
    };
    Ok((boxed, device))
}

fn print_summary(s: &PrepareSummary) -> Result<(), Box<dyn Error>> {
    if crate::common::json() {
        return crate::common::print_json(s);
    }
    println!("dataset {}", s.path.display());
    for (split, n) in &s.books {
        let p = &s.pairs[split];
        println!(
            "  {split:<10} {n:>4} books  {:>6} pairs ({} positive, {} hard, {} random negatives)",
            p.positive + p.hard + p.random,
            p.positive,
            p.hard,
            p.random
        );
    }
    println!(
        "  {} chunks; dedup removed {} exact, {} in-book repeats, {} near; {} books skipped",
        s.chunks,
        s.dedup.exact_removed,
        s.dedup.exact_in_book_removed,
        s.dedup.near_removed,
        s.skipped.len()
    );
    for k in &s.skipped {
        println!("    skipped {}: {}", k.book, k.reason);
    }
    Ok(())
}

/// Runs `lexforge prepare ...`.
pub fn run(args: PrepareArgs) -> Result<(), Box<dyn Error>> {
    let cancel = cancel_on_signal();
    match args.command {
        None => {
            let dir = args
                .books_dir
                .ok_or("give BOOKS_DIR (or a shard/merge subcommand)")?;
            let out = args.out.ok_or("give --out DIR")?;
            let config = args.params.config()?;
            let (enc, device) = encoder(&args.encode)?;
            let summary = prepare(
                &books(&dir, &args.read),
                enc.as_ref(),
                &device,
                &config,
                &out,
                crate::common::sink().as_ref(),
                &cancel,
            )?;
            print_summary(&summary)
        }
        Some(PrepareCommand::Shard {
            books_dir,
            index,
            count,
            out,
            read,
            encode,
            params,
        }) => {
            let config = params.config()?;
            let provider = books(&books_dir, &read).with_shard(index, count)?;
            let (enc, _device) = encoder(&encode)?;
            let s = prepare_shard(
                &provider,
                enc.as_ref(),
                &config,
                ShardPart { index, count },
                &out,
                crate::common::sink().as_ref(),
                &cancel,
            )?;
            if crate::common::json() {
                return crate::common::print_json(&s);
            }
            println!(
                "shard {index}/{count}: {} books, {} chunks, {} skipped -> {}",
                s.books,
                s.chunks,
                s.skipped,
                s.path.display()
            );
            Ok(())
        }
        Some(PrepareCommand::Merge {
            shards,
            out,
            params,
        }) => {
            let config = params.config()?;
            let device = crate::common::device()?;
            let summary = merge_shards(
                &shards,
                &device,
                &config,
                &out,
                crate::common::sink().as_ref(),
                &cancel,
            )?;
            print_summary(&summary)
        }
    }
}
