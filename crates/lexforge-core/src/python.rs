//! Finding files that Python packages installed (model weights, data tables), for tests,
//! examples and defaults. Never downloads and never imports into this process: it asks the
//! interpreters that could have the package.

use std::path::PathBuf;

/// Runs `code` (a Python snippet printing one line) with each interpreter that could have a
/// package installed — `$VIRTUAL_ENV/bin/python`, a `.venv/bin/python` in the working directory
/// or one of its ancestors, then `python3` — and returns the first printed line, trimmed, that
/// `accept` turns into a path.
pub fn python_probe(code: &str, accept: impl Fn(PathBuf) -> Option<PathBuf>) -> Option<PathBuf> {
    let mut pythons: Vec<PathBuf> = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        pythons.push(PathBuf::from(venv).join("bin/python"));
    }
    if let Ok(cwd) = std::env::current_dir() {
        pythons.extend(cwd.ancestors().map(|d| d.join(".venv/bin/python")));
    }
    pythons.push(PathBuf::from("python3"));
    pythons.into_iter().find_map(|python| {
        let out = std::process::Command::new(&python)
            .args(["-c", code])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let line = String::from_utf8(out.stdout).ok()?;
        accept(PathBuf::from(line.trim()))
    })
}
