//! Names that become paths: run ids and artifact paths, validated so they cannot escape the
//! directory they are meant for.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const MAX_COMPONENT: usize = 200;

/// Checks one path component; `what` names the kind of name in the error.
fn check_component(what: &'static str, full: &str, c: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            what,
            name: full.to_owned(),
            reason,
        })
    };
    if c.is_empty() {
        return bad("empty name or empty path component");
    }
    if c == "." || c == ".." {
        return bad("`.` and `..` are not allowed");
    }
    if c.starts_with('.') {
        return bad("names starting with `.` are reserved for temporary files");
    }
    if c.len() > MAX_COMPONENT {
        return bad("component longer than 200 bytes");
    }
    if c.contains(['/', '\\']) {
        return bad("path separators are not allowed here");
    }
    if c.chars().any(|ch| ch.is_control()) {
        return bad("control characters are not allowed");
    }
    if c.contains(':') {
        return bad("`:` is not allowed (drive letters and alternate streams)");
    }
    Ok(())
}

/// The id of a run: a single path component under the runs root.
///
/// Refused: empty, `.`/`..`, a leading `.`, `/` or `\`, `:`, control characters, more than 200
/// bytes. So `root.join(run_id)` is always a direct child of `root`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fresh id from the current UTC time and process id, e.g. `run-20261122T043320Z-1234`.
    pub fn generate(prefix: &str) -> Result<Self> {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let stamp: String = now.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        format!("{prefix}-{stamp}-{}", std::process::id()).parse()
    }
}

impl FromStr for RunId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        check_component("run id", s, s)?;
        Ok(RunId(s.to_owned()))
    }
}

impl TryFrom<String> for RunId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A relative path of an artifact inside a run directory, written with `/` between
/// components (`model.safetensors`, `eval/metrics.json`, `tokenizer/tokenizer.json`).
///
/// Every component obeys the [`RunId`] rules, so an artifact path can never be absolute, contain
/// `..`, start a component with `.`, or use `\`. It is stored and serialized in its `/` form on
/// every platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

impl RelPath {
    /// The `/`-separated form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path under `root`.
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        for c in self.0.split('/') {
            p.push(c);
        }
        p
    }
}

impl FromStr for RelPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s.starts_with('/') {
            return Err(Error::InvalidName {
                what: "artifact path",
                name: s.to_owned(),
                reason: "absolute paths are not allowed",
            });
        }
        for c in s.split('/') {
            check_component("artifact path", s, c)?;
        }
        Ok(RelPath(s.to_owned()))
    }
}

impl TryFrom<String> for RelPath {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<RelPath> for String {
    fn from(p: RelPath) -> String {
        p.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn run_ids_that_escape_are_refused() {
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", "/abs", ".hidden", "a\0b", "c:", "x\n",
        ] {
            let err = bad.parse::<RunId>().expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
            assert!(err.to_string().contains("run id"), "{err}");
        }
        let long = "a".repeat(201);
        assert!(long.parse::<RunId>().is_err());
    }

    #[test]
    fn good_run_ids_parse() {
        for good in ["run-1", "gpt2_tiny", "2026-11-22T04.33", "é-unicode"] {
            assert_eq!(good.parse::<RunId>().expect(good).as_str(), good);
        }
        let generated = RunId::generate("lm").expect("generated id is valid");
        assert!(generated.as_str().starts_with("lm-"));
    }

    #[test]
    fn artifact_paths_that_escape_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../model.safetensors",
            "eval/../../x",
            "a//b",
            "a/",
            "./a",
            "a\\..\\b",
            "eval/.tmp",
        ] {
            let err = bad.parse::<RelPath>().expect_err(bad);
            assert!(
                matches!(
                    err,
                    Error::InvalidName {
                        what: "artifact path",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn nested_artifact_paths_are_fine() {
        let p: RelPath = "tokenizer/tokenizer.json".parse().expect("valid");
        let under = p.under(Path::new("/runs/r1"));
        assert_eq!(under, Path::new("/runs/r1/tokenizer/tokenizer.json"));
    }

    #[test]
    fn serde_validates_too() {
        let err = serde_json::from_str::<RelPath>("\"../x\"");
        assert!(err.is_err());
        let ok: RunId = serde_json::from_str("\"r1\"").expect("valid");
        assert_eq!(ok.as_str(), "r1");
    }
}
