//! What every subcommand shares: the global flags (`--device`, `--precision`, `--json`), the
//! one event sink, the one Ctrl-C handler, config files and JSON output.

use std::error::Error;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::OnceLock;

use lexforge::{CancelToken, DeviceSpec, EventSink, NoopSink, Precision, ProgressBarSink};

/// The flags every subcommand takes, wherever they are written on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Device to compute on: cpu, flex, ndarray, wgpu, cuda:N, auto.
    #[arg(long, global = true, default_value = lexforge::DEVICE, value_name = "DEVICE")]
    pub device: DeviceSpec,
    /// Float precision on that device: f32, f16 or bf16 (default auto = f32). Reduced precision
    /// trains with f32 master weights.
    #[arg(long, global = true, value_name = "PRECISION")]
    pub precision: Option<Precision>,
    /// Print the result as JSON on stdout (and no progress bar).
    #[arg(long, global = true)]
    pub json: bool,
}

/// `RUN [--max-steps N]`: the arguments of every pipeline's `resume`.
#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// The run directory.
    pub run: std::path::PathBuf,
    /// Train up to this many steps in total (default: the run's own max_steps).
    #[arg(long)]
    pub max_steps: Option<u64>,
}

static GLOBALS: OnceLock<GlobalArgs> = OnceLock::new();

/// Records the global flags; called once by `main` before any subcommand runs.
pub fn set_globals(args: GlobalArgs) {
    let _ = GLOBALS.set(args);
}

fn globals() -> &'static GlobalArgs {
    GLOBALS.get_or_init(|| GlobalArgs {
        device: DeviceSpec::Cpu,
        precision: None,
        json: false,
    })
}

/// Whether `--json` was given.
pub fn json() -> bool {
    globals().json
}

/// The `--device`, computing in the `--precision` (if given). Call before anything else
/// touches the device: burn fixes a device's float type at first use.
pub fn device() -> Result<lexforge::Device, lexforge::Error> {
    let g = globals();
    let mut device = g.device.resolve()?;
    if let Some(p) = g.precision {
        p.apply(&mut device)?;
    }
    Ok(device)
}

/// Where a job's events go: a progress bar on a terminal; one line per evaluation on stderr
/// otherwise (logs, CI); nothing with `--json`. A run's own `events.jsonl` has every event
/// either way.
pub fn sink() -> Box<dyn EventSink> {
    if json() {
        Box::new(NoopSink)
    } else if std::io::stderr().is_terminal() {
        Box::new(ProgressBarSink::new())
    } else {
        Box::new(EvalLines)
    }
}

/// Prints `step N: val_loss ...` for each evaluation.
struct EvalLines;

impl EventSink for EvalLines {
    fn emit(&self, record: &lexforge::EventRecord) -> lexforge::Result<()> {
        match &record.event {
            lexforge::Event::Eval { step, metrics } => {
                if let Some(loss) = metrics.get("val_loss") {
                    eprintln!("step {step}: val_loss {loss:.4}");
                }
            }
            lexforge::Event::Cancelled { step } => eprintln!("cancelled at step {step:?}"),
            _ => {}
        }
        Ok(())
    }
}

/// Ctrl-C (SIGINT) or SIGTERM cancels the job between steps: it finishes the current step,
/// writes a checkpoint and exits normally with status `cancelled`. A second signal exits at
/// once (exit status 130); the checkpoints already written stay valid. Installed once per
/// process; every call returns the same token.
pub fn cancel_on_signal() -> CancelToken {
    static TOKEN: OnceLock<CancelToken> = OnceLock::new();
    TOKEN
        .get_or_init(|| {
            let token = CancelToken::new();
            let t = token.clone();
            match signal_hook::iterator::Signals::new([
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
            ]) {
                Ok(mut signals) => {
                    std::thread::spawn(move || {
                        let mut signals = signals.forever();
                        if signals.next().is_some() {
                            eprintln!(
                                "\ninterrupted: stopping after this step and writing a checkpoint \
                                 (again to quit at once; the last checkpoint stays)"
                            );
                            t.cancel();
                        }
                        if signals.next().is_some() {
                            std::process::exit(130);
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "cannot install the Ctrl-C handler"),
            }
            token
        })
        .clone()
}

/// Runs a long job (training, preparation, a pipeline) on the global `--device`, reporting to
/// the one sink and stopping on Ctrl-C.
pub fn job<T, E: Error + 'static>(
    f: impl FnOnce(&lexforge::Device, &dyn EventSink, &CancelToken) -> Result<T, E>,
) -> Result<T, Box<dyn Error>> {
    let device = device()?;
    Ok(f(&device, sink().as_ref(), &cancel_on_signal())?)
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<(), Box<dyn Error>> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Reads a config file as the matching serde type: JSON when the name ends in `.json` (what
/// Python's `Config.save("x.json")` writes, and the only form that keeps a `null`), TOML
/// otherwise. Errors name the file.
pub fn read_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        Ok(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?)
    } else {
        Ok(toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?)
    }
}
