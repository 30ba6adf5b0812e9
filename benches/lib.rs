//! Shared helpers of the lexforge benchmarks.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The `main` of a bench binary: prints the JSON result on stdout, or the error on stderr
/// with a failing exit status.
pub fn report(result: Result<serde_json::Value, Box<dyn std::error::Error>>) -> ExitCode {
    match result {
        Ok(mut v) => {
            // Every result says how many threads lexforge computed on (rayon's pool, set by
            // `RAYON_NUM_THREADS`), so the scripts can check it equals the peer's.
            if let Some(obj) = v.as_object_mut() {
                obj.entry("threads")
                    .or_insert_with(|| rayon::current_num_threads().into());
            }
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a run directory `root/run_id` with `files` artifacts of `bytes_each` pseudo-random
/// bytes (deterministic), the shape of a model directory, and returns its path.
pub fn make_run_dir(
    root: &Path,
    run_id: &str,
    files: usize,
    bytes_each: usize,
) -> lexforge::Result<PathBuf> {
    let mut run = lexforge::RunDir::create(root, run_id, "bench", lexforge::StageMode::Staged)?;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in 0..files {
        let data: Vec<u8> = (0..bytes_each)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        run.write_artifact(&format!("shard-{i:03}.bin"), &data)?;
    }
    run.finish(lexforge::RunStatus::Completed)
}
