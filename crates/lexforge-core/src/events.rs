//! Run events and the sinks that receive them.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::Sender;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What happened in a run. Serialized with a `"type"` tag (`{"type":"progress", ...}`).
///
/// Metric values are `f64`; a non-finite value (a NaN loss) is written as `null` in JSON, and
/// the run reports the failure itself through [`Event::Failed`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The run started.
    Started {
        /// The run id.
        run_id: String,
        /// What kind of job (`"lm"`, `"tokenizer"`, ...).
        kind: String,
        /// Total steps, when known.
        total: Option<u64>,
    },
    /// A unit of work finished (a step, a file, a batch).
    Progress {
        /// Steps done so far.
        step: u64,
        /// Total steps, when known.
        total: Option<u64>,
        /// Named values at this step (`loss`, `lr`, `tokens_per_s`, ...).
        #[serde(default)]
        metrics: BTreeMap<String, f64>,
    },
    /// An evaluation finished.
    Eval {
        /// Step at which it ran.
        step: u64,
        /// Its metrics (`val_loss`, `perplexity`, ...).
        metrics: BTreeMap<String, f64>,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Step it captures.
        step: u64,
        /// Its path relative to the run directory.
        path: String,
    },
    /// The run finished normally.
    Completed {
        /// Final metrics.
        #[serde(default)]
        metrics: BTreeMap<String, f64>,
    },
    /// The run stopped on an error.
    Failed {
        /// Step at which it failed, when known.
        step: Option<u64>,
        /// The error message.
        error: String,
    },
    /// The run stopped on a cancel request.
    Cancelled {
        /// Step at which it stopped, when known.
        step: Option<u64>,
    },
}

/// An [`Event`] with the time it happened (seconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Seconds since 1970-01-01T00:00:00Z.
    pub time: f64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

impl EventRecord {
    /// Stamps `event` with the current time.
    pub fn now(event: Event) -> Self {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        EventRecord { time, event }
    }
}

/// Receives the events of a run.
///
/// # Design
/// Implemented by every place events go: a JSON-lines file ([`JsonlSink`]), a terminal progress
/// bar ([`ProgressBarSink`]), a channel to another thread ([`ChannelSink`]), nothing
/// ([`NoopSink`]), several at once ([`MultiSink`]), and, in the Python binding, a Python
/// callback. Called by the pipelines from their worker thread, in order; implementations must
/// be `Send + Sync` and cheap (no blocking on slow consumers). An error from a sink is returned
/// to the pipeline, which decides whether it is fatal (an events file on a full disk is).
pub trait EventSink: Send + Sync {
    /// Handles one event.
    fn emit(&self, record: &EventRecord) -> Result<()>;

    /// Makes everything emitted so far durable or visible. Default: nothing to do.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Stamps `event` with the current time and emits it.
    fn send(&self, event: Event) -> Result<()> {
        self.emit(&EventRecord::now(event))
    }
}

/// Discards every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopSink;

impl EventSink for NoopSink {
    fn emit(&self, _record: &EventRecord) -> Result<()> {
        Ok(())
    }
}

/// Appends one JSON object per line to a file (`events.jsonl`). Each line is written with a
/// single `write` on a file opened for appending, so a killed process leaves whole lines; a
/// reader should ignore a last line that does not parse.
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: Mutex<File>,
}

impl JsonlSink {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: &Path) -> Result<Self> {
        drop_torn_tail(path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        Ok(JsonlSink {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Reads every complete event of a JSON-lines file, skipping a torn last line.
    pub fn read_all(path: &Path) -> Result<Vec<EventRecord>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut out = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str(line) {
                Ok(r) => out.push(r),
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
                Err(source) => {
                    return Err(Error::Json {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// A process killed mid-write leaves a last line without its newline; cut it off before
/// appending, so the log stays one valid event per line.
fn drop_torn_tail(path: &Path) -> Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    f.set_len(keep as u64)
        .map_err(|e| Error::io("truncate", path, e))?;
    tracing::warn!(path = %path.display(), dropped = bytes.len() - keep, "dropped a torn last event line");
    Ok(())
}

impl EventSink for JsonlSink {
    fn emit(&self, record: &EventRecord) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(|source| Error::Serialize {
            what: "event",
            source,
        })?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line)
            .map_err(|e| Error::io("write", &self.path, e))
    }

    fn flush(&self) -> Result<()> {
        let f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.sync_data().map_err(|e| Error::io("fsync", &self.path, e))
    }
}

/// Sends every event to a channel (a UI thread, a Python pump, a test). A receiver that has
/// gone away is not an error: the run goes on.
#[derive(Debug)]
pub struct ChannelSink(Mutex<Sender<EventRecord>>);

impl ChannelSink {
    /// Wraps the sending half of a channel.
    pub fn new(tx: Sender<EventRecord>) -> Self {
        ChannelSink(Mutex::new(tx))
    }
}

impl EventSink for ChannelSink {
    fn emit(&self, record: &EventRecord) -> Result<()> {
        let tx = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tx.send(record.clone());
        Ok(())
    }
}

/// Shows a terminal progress bar (on stderr, hidden when stderr is not a terminal) driven by
/// `started`, `progress`, `eval` and the final events.
#[derive(Debug)]
pub struct ProgressBarSink {
    bar: indicatif::ProgressBar,
}

impl Default for ProgressBarSink {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressBarSink {
    /// A bar drawn on stderr.
    pub fn new() -> Self {
        Self::with_bar(indicatif::ProgressBar::new(0))
    }

    /// A sink that drives `bar` (e.g. a hidden bar in tests).
    pub fn with_bar(bar: indicatif::ProgressBar) -> Self {
        let style = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {per_sec} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        ProgressBarSink { bar }
    }

    /// The bar, for inspection.
    pub fn bar(&self) -> &indicatif::ProgressBar {
        &self.bar
    }
}

fn format_metrics(metrics: &BTreeMap<String, f64>) -> String {
    metrics
        .iter()
        .map(|(k, v)| format!("{k}={v:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl EventSink for ProgressBarSink {
    fn emit(&self, record: &EventRecord) -> Result<()> {
        match &record.event {
            Event::Started { total, .. } => {
                if let Some(t) = total {
                    self.bar.set_length(*t);
                }
                self.bar.reset();
            }
            Event::Progress {
                step,
                total,
                metrics,
            } => {
                if let Some(t) = total {
                    self.bar.set_length(*t);
                }
                self.bar.set_position(*step);
                self.bar.set_message(format_metrics(metrics));
            }
            Event::Eval { metrics, .. } => {
                self.bar
                    .println(format!("eval: {}", format_metrics(metrics)));
            }
            Event::Completed { metrics } => {
                self.bar.finish_with_message(format_metrics(metrics));
            }
            Event::Failed { error, .. } => {
                self.bar.abandon_with_message(format!("failed: {error}"))
            }
            Event::Cancelled { .. } => self.bar.abandon_with_message("cancelled"),
            Event::Checkpoint { .. } => {}
        }
        Ok(())
    }
}

/// Forwards every event to two borrowed sinks (a run's `events.jsonl` and the caller's sink),
/// in order; stops at the first error.
pub struct Tee<'a>(pub &'a dyn EventSink, pub &'a dyn EventSink);

impl std::fmt::Debug for Tee<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tee")
    }
}

impl EventSink for Tee<'_> {
    fn emit(&self, record: &EventRecord) -> Result<()> {
        self.0.emit(record)?;
        self.1.emit(record)
    }

    fn flush(&self) -> Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// Forwards every event to several sinks, in order; the first error is returned after all
/// sinks have been tried.
#[derive(Default)]
pub struct MultiSink(Vec<Box<dyn EventSink>>);

impl std::fmt::Debug for MultiSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MultiSink({} sinks)", self.0.len())
    }
}

impl MultiSink {
    /// No sinks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink.
    pub fn with(mut self, sink: impl EventSink + 'static) -> Self {
        self.0.push(Box::new(sink));
        self
    }

    /// Adds a boxed sink.
    pub fn push(&mut self, sink: Box<dyn EventSink>) {
        self.0.push(sink);
    }
}

impl EventSink for MultiSink {
    fn emit(&self, record: &EventRecord) -> Result<()> {
        let mut first = Ok(());
        for s in &self.0 {
            if let Err(e) = s.emit(record)
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    fn flush(&self) -> Result<()> {
        let mut first = Ok(());
        for s in &self.0 {
            if let Err(e) = s.flush()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(step: u64, loss: f64) -> Event {
        Event::Progress {
            step,
            total: Some(10),
            metrics: BTreeMap::from([("loss".to_owned(), loss)]),
        }
    }

    #[test]
    fn jsonl_round_trips_and_survives_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let sink = JsonlSink::open(&path).unwrap();
        sink.send(Event::Started {
            run_id: "r".into(),
            kind: "lm".into(),
            total: Some(10),
        })
        .unwrap();
        sink.send(progress(1, 2.5)).unwrap();
        sink.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().all(|l| l.contains("\"type\":")), "{text}");
        // A kill mid-line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"time\":1.0,\"ty")
            .unwrap();
        let events = JsonlSink::read_all(&path).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].event, progress(1, 2.5));
        // Reopened (a resumed run), the torn fragment is cut off and appending works.
        let sink = JsonlSink::open(&path).unwrap();
        sink.send(progress(2, 2.0)).unwrap();
        let events = JsonlSink::read_all(&path).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].event, progress(2, 2.0));
    }

    #[test]
    fn nan_metrics_do_not_break_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let sink = JsonlSink::open(&path).unwrap();
        sink.send(progress(3, f64::NAN)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"loss\":null"), "{text}");
    }

    #[test]
    fn channel_and_multi_sink_deliver_in_order() {
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = MultiSink::new()
            .with(NoopSink)
            .with(ChannelSink::new(tx))
            .with(ProgressBarSink::with_bar(indicatif::ProgressBar::hidden()));
        for i in 0..3 {
            sink.send(progress(i, 1.0)).unwrap();
        }
        sink.send(Event::Completed {
            metrics: BTreeMap::new(),
        })
        .unwrap();
        let got: Vec<_> = rx.try_iter().map(|r| r.event).collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[2], progress(2, 1.0));
        drop(rx);
        // A gone receiver is not an error.
        sink.send(progress(9, 1.0)).unwrap();
    }

    #[test]
    fn progress_bar_tracks_steps() {
        let sink = ProgressBarSink::with_bar(indicatif::ProgressBar::hidden());
        sink.send(Event::Started {
            run_id: "r".into(),
            kind: "lm".into(),
            total: Some(10),
        })
        .unwrap();
        sink.send(progress(4, 1.0)).unwrap();
        assert_eq!(sink.bar().position(), 4);
        assert_eq!(sink.bar().length(), Some(10));
    }

    #[test]
    fn event_json_has_the_documented_shape() {
        let r = EventRecord {
            time: 1.5,
            event: Event::Checkpoint {
                step: 7,
                path: "checkpoints/last".into(),
            },
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": 1.5, "type": "checkpoint", "step": 7, "path": "checkpoints/last"})
        );
    }
}
