//! Finding files a Python package installed into the active virtual environment (model
//! weights, data tables) without running Python: the lookup reads `$VIRTUAL_ENV`'s
//! `lib/python*/site-packages` and nothing else. Python callers pass such paths down
//! themselves (found with `importlib`); this is the command line's convenience.

use std::path::{Path, PathBuf};

/// `<site-packages>/<relative>` of the virtual environment at `$VIRTUAL_ENV`, when that file
/// or directory exists. `None` without an active environment or when the package is absent.
pub fn venv_package_file(relative: &Path) -> Option<PathBuf> {
    let venv = std::env::var_os("VIRTUAL_ENV")?;
    site_packages_file(Path::new(&venv), relative)
}

/// `<venv>/lib/python*/site-packages/<relative>`, the first that exists (versions sorted).
fn site_packages_file(venv: &Path, relative: &Path) -> Option<PathBuf> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python"))
        })
        .collect();
    libs.sort();
    libs.into_iter()
        .map(|lib| lib.join("site-packages").join(relative))
        .find(|p| p.exists())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn finds_a_package_file_in_site_packages_and_nothing_elsewhere() {
        let venv = tempfile::tempdir().unwrap();
        let data = venv
            .path()
            .join("lib/python3.12/site-packages/wordfreq/data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("large_en.msgpack.gz"), b"x").unwrap();
        let rel = Path::new("wordfreq/data/large_en.msgpack.gz");
        assert_eq!(
            site_packages_file(venv.path(), rel),
            Some(data.join("large_en.msgpack.gz"))
        );
        assert_eq!(site_packages_file(venv.path(), Path::new("other")), None);
        assert_eq!(site_packages_file(&venv.path().join("missing"), rel), None);
    }
}
