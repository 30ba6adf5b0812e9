//! The char tokenizer: one id per character.

use aho_corasick::{AhoCorasick, MatchKind};
use rayon::prelude::*;
use tokenizers::normalizer::Range;
use tokenizers::{NormalizedString, Normalizer, NormalizerWrapper};

use crate::backend::{Encoding, TextTokenizer, TokenClass};
use crate::error::{Result, TokenizerError};
use crate::method::TokenizerMethod;

/// A stretch of input: text between special tokens, or a special token.
enum Segment<'t> {
    /// Text starting at byte `.0`.
    Text(usize, &'t str),
    /// A special token spanning bytes `.0...1`, with its id.
    Special(usize, usize, u32),
}

/// A char-level tokenizer.
///
/// Invariants: ids `0..specials.len()` are the special tokens (the unknown token among them),
/// the rest are single characters; every character maps to its id or to `unk_id`. Special
/// tokens written in the input are recognised whole (leftmost-longest) before normalization,
/// exactly as the HF engine treats added special tokens, so the equivalent HF `WordLevel`
/// pipeline written by [`TextTokenizer::to_json`] gives the same ids.
#[derive(Debug, Clone)]
pub struct CharTokenizer {
    vocab: Vec<String>,
    n_specials: usize,
    unk_id: u32,
    ascii: [u32; 128],
    /// Non-ASCII characters, sorted by char, for binary search.
    others: Vec<(char, u32)>,
    specials: Option<(AhoCorasick, Vec<u32>)>,
    normalizer: Option<NormalizerWrapper>,
}

impl CharTokenizer {
    /// Builds a tokenizer from its special tokens (in id order; `unk` among them) and
    /// characters (ids follow the specials in the given order).
    pub fn new(
        specials: Vec<String>,
        unk: &str,
        chars: Vec<char>,
        normalizer: Option<NormalizerWrapper>,
    ) -> Result<Self> {
        let unk_id =
            specials.iter().position(|s| s == unk).ok_or_else(|| {
                TokenizerError::invalid("special_tokens", format!("{unk} is missing"))
            })? as u32;
        let n_specials = specials.len();
        let mut vocab = specials;
        let mut ascii = [unk_id; 128];
        let mut others = Vec::new();
        for (i, c) in chars.into_iter().enumerate() {
            let id = (n_specials + i) as u32;
            if (c as u32) < 128 {
                ascii[c as usize] = id;
            } else {
                others.push((c, id));
            }
            vocab.push(c.to_string());
        }
        others.sort_unstable();
        if others.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(TokenizerError::invalid(
                "vocab",
                "a character is listed twice",
            ));
        }
        let matchable: Vec<(usize, &String)> = vocab[..n_specials]
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u32 != unk_id)
            .collect();
        let specials = if matchable.is_empty() {
            None
        } else {
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(matchable.iter().map(|(_, s)| s.as_str()))
                .map_err(|e| TokenizerError::invalid("special_tokens", e.to_string()))?;
            Some((ac, matchable.iter().map(|(i, _)| *i as u32).collect()))
        };
        Ok(CharTokenizer {
            vocab,
            n_specials,
            unk_id,
            ascii,
            others,
            specials,
            normalizer,
        })
    }

    /// The special tokens, in id order.
    pub fn special_tokens(&self) -> &[String] {
        &self.vocab[..self.n_specials]
    }

    /// The characters, in id order (ids start after the special tokens).
    pub fn chars(&self) -> impl Iterator<Item = char> + '_ {
        self.vocab[self.n_specials..]
            .iter()
            .filter_map(|s| s.chars().next())
    }

    /// The unknown token.
    pub fn unk_token(&self) -> &str {
        &self.vocab[self.unk_id as usize]
    }

    /// The normalizer applied before lookup.
    pub fn normalizer(&self) -> Option<&NormalizerWrapper> {
        self.normalizer.as_ref()
    }

    #[inline]
    fn char_id(&self, c: char) -> u32 {
        let u = c as u32;
        if u < 128 {
            self.ascii[u as usize]
        } else {
            match self.others.binary_search_by_key(&c, |&(ch, _)| ch) {
                Ok(i) => self.others[i].1,
                Err(_) => self.unk_id,
            }
        }
    }

    /// Calls `f` on each stretch of text between special tokens and on each special token,
    /// in order.
    fn segments<'t>(
        &self,
        text: &'t str,
        mut f: impl FnMut(Segment<'t>) -> Result<()>,
    ) -> Result<()> {
        let Some((ac, ids)) = &self.specials else {
            return f(Segment::Text(0, text));
        };
        let mut pos = 0;
        for m in ac.find_iter(text) {
            if m.start() > pos {
                f(Segment::Text(pos, &text[pos..m.start()]))?;
            }
            f(Segment::Special(
                m.start(),
                m.end(),
                ids[m.pattern().as_usize()],
            ))?;
            pos = m.end();
        }
        if pos < text.len() {
            f(Segment::Text(pos, &text[pos..]))?;
        }
        Ok(())
    }

    /// Calls `f` on each stretch of text between special tokens.
    pub(crate) fn for_each_text_piece(
        &self,
        text: &str,
        mut f: impl FnMut(&str) -> Result<()>,
    ) -> Result<()> {
        self.segments(text, |seg| match seg {
            Segment::Text(_, piece) => f(piece),
            Segment::Special(..) => Ok(()),
        })
    }

    /// Encodes `piece` (no special tokens inside), pushing ids and, when `offsets` is given,
    /// byte offsets shifted by `base`.
    fn encode_piece(
        &self,
        base: usize,
        piece: &str,
        ids: &mut Vec<u32>,
        offsets: Option<&mut Vec<(usize, usize)>>,
    ) -> Result<()> {
        match (&self.normalizer, offsets) {
            (None, None) => {
                // Runs of ASCII bytes straight through the table (an exact-size extend, no
                // per-byte capacity check); other characters decoded one by one.
                let bytes = piece.as_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    let run = bytes[i..]
                        .iter()
                        .position(|&b| b >= 128)
                        .unwrap_or(bytes.len() - i);
                    ids.extend(bytes[i..i + run].iter().map(|&b| self.ascii[b as usize]));
                    i += run;
                    if let Some(c) = piece.get(i..).and_then(|rest| rest.chars().next()) {
                        ids.push(self.char_id(c));
                        i += c.len_utf8();
                    }
                }
            }
            (None, Some(offsets)) => {
                for (i, c) in piece.char_indices() {
                    ids.push(self.char_id(c));
                    offsets.push((base + i, base + i + c.len_utf8()));
                }
            }
            (Some(norm), offsets) => {
                let mut ns = NormalizedString::from(piece);
                norm.normalize(&mut ns)
                    .map_err(TokenizerError::engine("normalize"))?;
                let normalized = ns.get();
                match offsets {
                    None => ids.extend(normalized.chars().map(|c| self.char_id(c))),
                    Some(offsets) => {
                        for (i, c) in normalized.char_indices() {
                            ids.push(self.char_id(c));
                            let span = ns
                                .convert_offsets(Range::Normalized(i..i + c.len_utf8()))
                                .unwrap_or(0..piece.len());
                            offsets.push((base + span.start, base + span.end));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl TextTokenizer for CharTokenizer {
    fn encode(&self, text: &str, _add_special_tokens: bool) -> Result<Encoding> {
        let mut ids = Vec::with_capacity(text.len());
        let mut offsets = Vec::with_capacity(text.len());
        self.segments(text, |seg| match seg {
            Segment::Text(base, piece) => {
                self.encode_piece(base, piece, &mut ids, Some(&mut offsets))
            }
            Segment::Special(start, end, id) => {
                ids.push(id);
                offsets.push((start, end));
                Ok(())
            }
        })?;
        Ok(Encoding { ids, offsets })
    }

    fn encode_ids(&self, text: &str, _add_special_tokens: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len());
        self.segments(text, |seg| match seg {
            Segment::Text(base, piece) => self.encode_piece(base, piece, &mut ids, None),
            Segment::Special(_, _, id) => {
                ids.push(id);
                Ok(())
            }
        })?;
        Ok(ids)
    }

    fn encode_batch_ids(&self, texts: &[&str], add_special_tokens: bool) -> Result<Vec<Vec<u32>>> {
        // Lines are short: hand rayon chunks, not single texts.
        let chunks: Vec<Vec<Vec<u32>>> = texts
            .par_chunks(128)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|t| self.encode_ids(t, add_special_tokens))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        Ok(chunks.into_iter().flatten().collect())
    }

    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let mut out = String::with_capacity(ids.len());
        for &id in ids {
            let Some(tok) = self.vocab.get(id as usize) else {
                return Err(TokenizerError::UnknownId {
                    id,
                    vocab_size: self.vocab.len(),
                });
            };
            if skip_special_tokens && (id as usize) < self.n_specials {
                continue;
            }
            out.push_str(tok);
        }
        Ok(out)
    }

    fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        if let Some(i) = self.vocab[..self.n_specials]
            .iter()
            .position(|s| s == token)
        {
            return Some(i as u32);
        }
        let mut chars = token.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Some(self.char_id(c)).filter(|&id| id != self.unk_id),
            _ => None,
        }
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.vocab.get(id as usize).cloned()
    }

    fn token_class(&self, id: u32) -> TokenClass {
        if id == self.unk_id {
            TokenClass::Unknown
        } else if (id as usize) < self.n_specials {
            TokenClass::Special
        } else {
            TokenClass::Normal
        }
    }

    fn method(&self) -> Option<TokenizerMethod> {
        Some(TokenizerMethod::Char)
    }

    fn to_json(&self) -> Result<String> {
        super::serialization::to_json(self)
    }
}
