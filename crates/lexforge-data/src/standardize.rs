//! Standardization: raw book text → the clean text every later stage (sentences, chunks,
//! offsets) refers to.
//!
//! Steps, in order: byte-order mark removed; CRLF and lone CR → LF; Project Gutenberg header,
//! footer, licence and credit paragraphs removed ([`strip_boilerplate`]); Unicode normalization
//! (NFKC by default); whitespace cleanup (tabs and other spaces → one space, zero-width and soft
//! hyphen characters dropped, lines trimmed, runs of blank lines → one blank line, text trimmed).
//!
//! Invariant: the result is a pure function of the input and the [`StandardizeConfig`]; chunk
//! offsets index into it.

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

/// Unicode normalization form applied after boilerplate removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// Leave code points as they are.
    None,
    /// Canonical composition.
    Nfc,
    /// Compatibility composition: ligatures split, full-width forms folded (the default).
    #[default]
    Nfkc,
}

/// What [`standardize`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandardizeConfig {
    /// Unicode normalization form.
    pub normalization: Normalization,
    /// Remove Project Gutenberg header, footer, licence and credit paragraphs.
    pub strip_boilerplate: bool,
    /// Collapse spaces, trim lines, keep at most one blank line between paragraphs.
    pub clean_whitespace: bool,
}

impl Default for StandardizeConfig {
    fn default() -> Self {
        StandardizeConfig {
            normalization: Normalization::Nfkc,
            strip_boilerplate: true,
            clean_whitespace: true,
        }
    }
}

/// What boilerplate removal found, for manifests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoilerplateReport {
    /// The start marker line, when there was one.
    pub start_marker: Option<String>,
    /// The line where the footer began, when there was one.
    pub end_marker: Option<String>,
    /// Bytes removed before the body (header).
    pub header_bytes: usize,
    /// Bytes removed after the body (footer and licence).
    pub footer_bytes: usize,
    /// Paragraphs or lines removed inside the body (credits, notes naming Project Gutenberg).
    pub notes_removed: usize,
}

impl BoilerplateReport {
    /// Whether anything was removed.
    pub fn found(&self) -> bool {
        self.header_bytes + self.footer_bytes + self.notes_removed > 0
    }
}

/// A standardized text with its boilerplate report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standardized {
    /// The clean text.
    pub text: String,
    /// What was removed.
    pub boilerplate: BoilerplateReport,
}

/// Standardizes `raw` (see the module docs for the steps).
pub fn standardize(raw: &str, config: &StandardizeConfig) -> Standardized {
    let raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
    let text = if raw.contains('\r') {
        raw.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        raw.to_owned()
    };
    let (text, boilerplate) = if config.strip_boilerplate {
        strip_boilerplate(&text)
    } else {
        (text, BoilerplateReport::default())
    };
    let text = match config.normalization {
        Normalization::None => text,
        Normalization::Nfc => text.nfc().collect(),
        Normalization::Nfkc => text.nfkc().collect(),
    };
    let text = if config.clean_whitespace {
        clean_whitespace(&text)
    } else {
        text
    };
    Standardized { text, boilerplate }
}

/// Header start markers; the body begins after the line holding one. Matched ASCII
/// case-insensitively, after collapsing spaces, anywhere in a line of the first half.
const START_MARKERS: &[&str] = &[
    "*** start of this project gutenberg",
    "*** start of the project gutenberg",
    "***start of this project gutenberg",
    "***start of the project gutenberg",
    "*end*the small print",
    "*end the small print",
    "* end the small print",
    "*** start of this etext",
];

/// Footer markers; the body ends where one begins (the text before it on its line is kept).
const END_MARKERS: &[&str] = &[
    "*** end of this project gutenberg",
    "*** end of the project gutenberg",
    "***end of this project gutenberg",
    "***end of the project gutenberg",
    "end of the project gutenberg",
    "end of this project gutenberg",
    "end of project gutenberg",
    "*** start: full license",
    "start: full license",
    "*** end of this etext",
];

/// Phrases that mark a paragraph inside the body as boilerplate.
const NOTE_PHRASES: &[&str] = &[
    "project gutenberg",
    "gutenberg.org",
    "gutenberg.net",
    "gutenberg literary archive",
];

/// Leading words of the metadata and credit lines that follow a header.
const CREDIT_PREFIXES: &[&str] = &[
    "produced by",
    "e-text prepared by",
    "etext prepared by",
    "this etext was produced by",
    "this ebook was produced by",
    "transcribed from",
    "title:",
    "author:",
    "release date:",
    "posting date:",
    "last updated:",
    "language:",
    "character set encoding:",
    "[ebook #",
    "[etext #",
];

/// Paragraphs longer than this are inspected line by line (files with one sentence per line
/// and no blank lines would otherwise be one huge paragraph).
const MAX_NOTE_PARAGRAPH: usize = 2_000;

/// How many non-empty paragraphs after the start count as the header zone for credits.
const HEADER_ZONE_PARAGRAPHS: usize = 6;

/// Removes the Project Gutenberg header, footer and licence, and credit/notes paragraphs that
/// name Project Gutenberg. Works on LF text. Handles the old ("START OF THIS PROJECT GUTENBERG
/// EBOOK") and new ("START OF THE PROJECT GUTENBERG EBOOK") markers, the old "*END*THE SMALL
/// PRINT" header, a footer without a header, and a licence tail on a pre-cleaned file.
pub(crate) fn strip_boilerplate(text: &str) -> (String, BoilerplateReport) {
    let mut report = BoilerplateReport::default();
    let lines = line_spans(text);
    let half = text.len() / 2;

    // Header: the last start marker in the first half (an old header can carry both the small
    // print's end and a START line; the body follows the later one).
    let mut body_start = 0;
    for &(s, e) in &lines {
        if s > half {
            break;
        }
        let line = &text[s..e];
        if find_any(line, START_MARKERS).is_some() {
            let mut end = e;
            // A marker whose closing asterisks wrap onto the next line.
            if !line.trim_end().ends_with('*') {
                let next = text[end..].trim_start_matches('\n');
                if let Some(nl) = next.find('\n') {
                    let candidate = next[..nl].trim_end();
                    if candidate.ends_with("***") && candidate.len() < 120 {
                        end = text.len() - next.len() + nl;
                    }
                }
            }
            body_start = end;
            report.start_marker = Some(line.trim().to_owned());
        }
    }

    // Footer: the first end marker after the body start.
    let mut body_end = text.len();
    for &(s, e) in &lines {
        if s < body_start {
            continue;
        }
        if let Some(at) = find_any(&text[s..e], END_MARKERS) {
            body_end = s + at;
            report.end_marker = Some(text[s + at..e].trim().to_owned());
            break;
        }
    }
    report.header_bytes = body_start;
    report.footer_bytes = text.len() - body_end;

    // Inside the body: paragraphs naming Project Gutenberg, and credits in the header zone.
    let body = &text[body_start..body_end];
    let mut out = String::with_capacity(body.len());
    let mut seen_paragraphs = 0;
    for para in paragraphs(body) {
        let trimmed = para.trim();
        if trimmed.is_empty() {
            out.push_str(para);
            continue;
        }
        seen_paragraphs += 1;
        // Credit lines count only right after a start marker: unmarked text is never guessed at.
        let in_header_zone =
            report.start_marker.is_some() && seen_paragraphs <= HEADER_ZONE_PARAGRAPHS;
        let is_note = |s: &str| {
            find_any(s, NOTE_PHRASES).is_some()
                || (in_header_zone && starts_with_any(s.trim_start(), CREDIT_PREFIXES))
        };
        if trimmed.len() <= MAX_NOTE_PARAGRAPH {
            if is_note(trimmed) {
                report.notes_removed += 1;
                // Keep the paragraph's separators so offsets of the rest stay readable.
                out.extend(para.chars().filter(|&c| c == '\n'));
                continue;
            }
            out.push_str(para);
        } else {
            for line in para.split_inclusive('\n') {
                if is_note(line) {
                    report.notes_removed += 1;
                    if line.ends_with('\n') {
                        out.push('\n');
                    }
                } else {
                    out.push_str(line);
                }
            }
        }
    }
    (out, report)
}

/// `(start, end)` byte spans of the lines of `text`, without their `\n`.
fn line_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == b'\n' {
            spans.push((start, i));
            start = i + 1;
        }
    }
    if start < text.len() {
        spans.push((start, text.len()));
    }
    spans
}

/// Splits `text` into paragraphs, each with its trailing blank-line separator, so that
/// concatenating them gives `text` back.
fn paragraphs(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            // Is the next line blank (only spaces/tabs)?
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j] == b' ' || bytes[j] == b'\t') {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b'\n' {
                // Consume the whole run of blank lines.
                let mut k = j;
                loop {
                    let mut m = k + 1;
                    while m < bytes.len() && (bytes[m] == b' ' || bytes[m] == b'\t') {
                        m += 1;
                    }
                    if m < bytes.len() && bytes[m] == b'\n' {
                        k = m;
                    } else {
                        break;
                    }
                }
                out.push(&text[start..=k]);
                start = k + 1;
                i = k + 1;
                continue;
            }
        }
        i += 1;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

/// Position of the first of `needles` (lowercase ASCII) in `hay`, ASCII case-insensitively,
/// with runs of spaces in `hay` matching one space in a needle.
fn find_any(hay: &str, needles: &[&str]) -> Option<usize> {
    let h = hay.as_bytes();
    let mut best: Option<usize> = None;
    for needle in needles {
        let n = needle.as_bytes();
        if n.is_empty() {
            continue;
        }
        let mut i = 0;
        while i < h.len() {
            if best.is_some_and(|b| i >= b) {
                break;
            }
            if h[i].eq_ignore_ascii_case(&n[0]) && matches_at(h, i, n) {
                best = Some(best.map_or(i, |b| b.min(i)));
                break;
            }
            i += 1;
        }
    }
    best
}

fn matches_at(h: &[u8], mut i: usize, n: &[u8]) -> bool {
    let mut j = 0;
    while j < n.len() {
        if i >= h.len() {
            return false;
        }
        if n[j] == b' ' {
            if h[i] != b' ' {
                return false;
            }
            while i < h.len() && h[i] == b' ' {
                i += 1;
            }
            j += 1;
            continue;
        }
        if !h[i].eq_ignore_ascii_case(&n[j]) {
            return false;
        }
        i += 1;
        j += 1;
    }
    true
}

fn starts_with_any(s: &str, prefixes: &[&str]) -> bool {
    prefixes
        .iter()
        .any(|p| s.len() >= p.len() && s.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes()))
}

/// Whitespace cleanup: every Unicode space and tab → one space, zero-width characters, soft
/// hyphens and other control characters dropped, lines trimmed, at most one blank line in a
/// row, no blank lines at either end.
pub(crate) fn clean_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0usize;
    let mut started = false;
    for line in text.split('\n') {
        let mut cleaned = String::with_capacity(line.len());
        let mut pending_space = false;
        for c in line.chars() {
            if c.is_whitespace() {
                pending_space = true;
                continue;
            }
            if matches!(
                c,
                '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{ad}'
            ) || c.is_control()
            {
                continue;
            }
            if pending_space && !cleaned.is_empty() {
                cleaned.push(' ');
            }
            pending_space = false;
            cleaned.push(c);
        }
        if cleaned.is_empty() {
            blank_run += 1;
            continue;
        }
        if started {
            out.push('\n');
            if blank_run > 0 {
                out.push('\n');
            }
        }
        started = true;
        blank_run = 0;
        out.push_str(&cleaned);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std(text: &str) -> String {
        standardize(text, &StandardizeConfig::default()).text
    }

    #[test]
    fn bom_crlf_and_whitespace() {
        assert_eq!(
            std("\u{feff}  One\ttwo  \r\nthree\r\n\r\n\r\n\r\nfour\rfive\n\n"),
            "One two\nthree\n\nfour\nfive"
        );
        assert_eq!(std("a\u{00a0}b\u{200b}c\u{ad}d"), "a bcd");
    }

    #[test]
    fn nfkc_by_default_and_configurable() {
        assert_eq!(std("ﬁne ｆｕｌｌ"), "fine full");
        let none = StandardizeConfig {
            normalization: Normalization::None,
            ..StandardizeConfig::default()
        };
        assert_eq!(standardize("ﬁne", &none).text, "ﬁne");
        let nfc = StandardizeConfig {
            normalization: Normalization::Nfc,
            ..StandardizeConfig::default()
        };
        assert_eq!(standardize("e\u{301}ﬁ", &nfc).text, "\u{e9}ﬁ");
    }

    #[test]
    fn old_and_new_markers() {
        for (start, end) in [
            (
                "*** START OF THIS PROJECT GUTENBERG EBOOK MY BOOK ***",
                "*** END OF THIS PROJECT GUTENBERG EBOOK MY BOOK ***",
            ),
            (
                "*** START OF THE PROJECT GUTENBERG EBOOK MY BOOK ***",
                "*** END OF THE PROJECT GUTENBERG EBOOK MY BOOK ***",
            ),
            (
                "***START OF THE PROJECT GUTENBERG EBOOK MY BOOK***",
                "***END OF THE PROJECT GUTENBERG EBOOK MY BOOK***",
            ),
        ] {
            let raw = format!(
                "The Project Gutenberg EBook of My Book\n\nTitle: My Book\n\n{start}\n\n\n\
                 Produced by Someone\n\n\nCHAPTER I\n\nIt began. It ended.\n\n\
                 End of the Project Gutenberg EBook of My Book\n\n{end}\n\n\
                 Section 1. General Terms of Use and Redistributing Project Gutenberg-tm\n"
            );
            let s = standardize(&raw, &StandardizeConfig::default());
            assert_eq!(s.text, "CHAPTER I\n\nIt began. It ended.", "{start}");
            assert!(s.boilerplate.found());
            assert_eq!(s.boilerplate.notes_removed, 1, "the credit line");
        }
    }

    #[test]
    fn old_small_print_headers() {
        for marker in [
            "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*",
            "*END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.02/11/02*END*",
        ] {
            let raw = format!(
                "The Project Gutenberg Etext of Old Book\n\nPlease read the legal small \
                 print.\n\n{marker}\n\nReal text here. And more.\n\n\
                 End of The Project Gutenberg Etext of Old Book\n"
            );
            let s = standardize(&raw, &StandardizeConfig::default());
            assert_eq!(s.text, "Real text here. And more.", "{marker}");
        }
    }

    #[test]
    fn footer_without_header_and_licence_tail_mid_line() {
        let raw = "Real text one .\nReal text two . End of Project Gutenberg 's Book , by A *** \
                   END OF THE PROJECT GUTENBERG EBOOK ***\nMore licence .\n";
        let s = standardize(raw, &StandardizeConfig::default());
        assert_eq!(s.text, "Real text one .\nReal text two .");
        assert_eq!(s.boilerplate.header_bytes, 0);
        assert!(s.boilerplate.footer_bytes > 0);
    }

    #[test]
    fn plain_text_is_untouched_except_whitespace() {
        let raw = "He said, \"The end of the project is near.\"\n\nProduced by the sun, light.";
        // No marker: a paragraph that merely looks like a credit line stays.
        let s = standardize(raw, &StandardizeConfig::default());
        assert_eq!(s.text, raw);
        assert!(!s.boilerplate.found());
        let off = StandardizeConfig {
            strip_boilerplate: false,
            ..StandardizeConfig::default()
        };
        assert_eq!(standardize(raw, &off).text, raw);
    }

    #[test]
    fn huge_paragraph_is_cleaned_line_by_line() {
        let mut raw = String::new();
        for i in 0..200 {
            raw.push_str(&format!("Sentence number {i} is here .\n"));
        }
        raw.push_str("Donations to the Project Gutenberg Literary Archive Foundation .\n");
        raw.push_str("The last real line .\n");
        let s = standardize(&raw, &StandardizeConfig::default());
        assert!(s.text.contains("Sentence number 0 is here"));
        assert!(s.text.ends_with("The last real line ."));
        assert!(!s.text.contains("Gutenberg"));
        assert_eq!(s.boilerplate.notes_removed, 1);
    }
}
