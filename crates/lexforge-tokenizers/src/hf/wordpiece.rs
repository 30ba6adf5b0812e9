//! WordPiece, BERT style.
//!
//! Pipeline: normalizer (NFC + lowercase by default) → BERT pre-tokenizer (whitespace and
//! punctuation) → WordPiece with `##` continuation pieces and `[UNK]` → WordPiece decoder →
//! `[CLS] $A [SEP]` template when both tokens are among the special tokens.

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::template::TemplateProcessing;

use crate::backend::TrainingText;
use crate::config::TokenizerConfig;
use crate::error::{Result, TokenizerError};

/// Trains a WordPiece tokenizer on `text`.
pub(super) fn train(
    config: &TokenizerConfig,
    text: TrainingText<'_>,
) -> Result<tokenizers::Tokenizer> {
    let unk = config.method.unk_token().unwrap_or("[UNK]");
    let model = WordPiece::builder()
        .unk_token(unk.to_owned())
        .build()
        .map_err(TokenizerError::engine("build the WordPiece model"))?;
    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer
        .with_normalizer(super::normalizer(config))
        .map_err(TokenizerError::engine("set the normalizer"))?;
    tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
    tokenizer.with_decoder(Some(WordPieceDecoder::new("##".to_owned(), true)));
    let trainer = WordPieceTrainer::builder()
        .vocab_size(config.vocab_size)
        .min_frequency(config.min_frequency)
        .special_tokens(super::added_specials(config))
        .show_progress(text.show_progress)
        .build();
    let mut trainer = TrainerWrapper::WordPieceTrainer(trainer);
    tokenizer
        .train(&mut trainer, text.lines())
        .map_err(TokenizerError::engine("train WordPiece"))?;
    if let (Some(cls), Some(sep)) = (
        tokenizer.token_to_id("[CLS]"),
        tokenizer.token_to_id("[SEP]"),
    ) {
        let template = TemplateProcessing::builder()
            .try_single("[CLS] $A [SEP]")
            .and_then(|b| b.try_pair("[CLS] $A [SEP] $B:1 [SEP]:1"))
            .map_err(|e| TokenizerError::Engine {
                op: "build the [CLS]/[SEP] template",
                source: e.into(),
            })?
            .special_tokens(vec![("[CLS]".to_owned(), cls), ("[SEP]".to_owned(), sep)])
            .build()
            .map_err(|e| TokenizerError::Engine {
                op: "build the [CLS]/[SEP] template",
                source: Box::new(e),
            })?;
        tokenizer.with_post_processor(Some(template));
    }
    Ok(tokenizer)
}
