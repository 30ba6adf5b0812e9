//! Routes the crates' `tracing` events to Python's `logging`.
//!
//! An event becomes one record on the logger named after its target (`lexforge_train::engine`
//! → `lexforge.train.engine`; other crates → `lexforge.ext.<target>`), at the matching level,
//! with its fields appended to the message and also given as `record.lexforge_fields`.
//!
//! Events are emitted on any thread, often one that must not wait for the GIL (a worker the
//! GIL holder is joining). So the layer only queues them; one forwarder thread attaches to the
//! interpreter and hands them to `logging`. [`flush`] waits until the queue is drained, which
//! makes "everything logged so far is in Python" a guarantee at the end of each call.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// One event, ready for `logging.Logger.log`.
struct Record {
    logger: String,
    level: u8,
    message: String,
    fields: Vec<(String, String)>,
}

/// The forwarder's state: the queue's sending side, and how many records are not yet handed
/// to Python.
struct Bridge {
    tx: Mutex<Sender<Record>>,
    pending: AtomicUsize,
    closed: AtomicBool,
}

static BRIDGE: OnceLock<Bridge> = OnceLock::new();

/// Python `logging` level numbers.
fn py_level(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG | Level::TRACE => 10,
    }
}

/// `lexforge_train::engine` → `lexforge.train.engine`; `burn_core::x` → `lexforge.ext.burn_core.x`.
fn logger_name(target: &str) -> String {
    let dotted = target.replace("::", ".");
    if dotted == "lexforge" || dotted.starts_with("lexforge.") {
        dotted
    } else if let Some(rest) = dotted.strip_prefix("lexforge_") {
        format!("lexforge.{rest}")
    } else {
        format!("lexforge.ext.{dotted}")
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields
                .push((field.name().to_owned(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields
                .push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

/// The `tracing` layer: formats an event and queues it for the forwarder.
struct PythonLogging;

impl<S: Subscriber> Layer<S> for PythonLogging {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let Some(bridge) = BRIDGE.get() else { return };
        if bridge.closed.load(Ordering::Acquire) {
            return;
        }
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        let mut message = visitor.message;
        for (key, value) in &visitor.fields {
            let _ = write!(message, " {key}={value}");
        }
        let meta = event.metadata();
        let record = Record {
            logger: logger_name(meta.target()),
            level: py_level(meta.level()),
            message,
            fields: visitor.fields,
        };
        bridge.pending.fetch_add(1, Ordering::AcqRel);
        let sent = bridge
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(record);
        if sent.is_err() {
            bridge.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Hands one record to `logging`; a failure inside Python's logging is reported there.
fn deliver(py: Python<'_>, record: &Record) -> PyResult<()> {
    let logger = py
        .import("logging")?
        .getattr("getLogger")?
        .call1((&record.logger,))?;
    if !logger
        .call_method1("isEnabledFor", (record.level,))?
        .extract::<bool>()?
    {
        return Ok(());
    }
    let fields = PyDict::new(py);
    for (key, value) in &record.fields {
        fields.set_item(key, value)?;
    }
    let extra = PyDict::new(py);
    extra.set_item("lexforge_fields", fields)?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("extra", extra)?;
    logger.call_method("log", (record.level, &record.message), Some(&kwargs))?;
    Ok(())
}

/// Installs the layer (filtered by `LEXFORGE_LOG`, default `warn,lexforge=debug`: every
/// lexforge event reaches Python, whose logger levels then decide) and starts the forwarder.
/// Idempotent; a host that installed its own global subscriber keeps it.
pub(crate) fn init() {
    use tracing_subscriber::prelude::*;
    if BRIDGE.get().is_some() {
        return;
    }
    let (tx, rx) = mpsc::channel::<Record>();
    let bridge = Bridge {
        tx: Mutex::new(tx),
        pending: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
    };
    if BRIDGE.set(bridge).is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("lexforge-log".into())
        .spawn(move || {
            while let Ok(record) = rx.recv() {
                if let Some(bridge) = BRIDGE.get()
                    && !bridge.closed.load(Ordering::Acquire)
                {
                    // `None` once the interpreter is finalizing: the record is dropped.
                    let _ = Python::try_attach(|py| {
                        if let Err(e) = deliver(py, &record) {
                            e.print(py);
                        }
                    });
                }
                if let Some(bridge) = BRIDGE.get() {
                    bridge.pending.fetch_sub(1, Ordering::AcqRel);
                }
            }
        });
    if spawned.is_err() {
        // No forwarder: stay silent rather than queue forever.
        if let Some(bridge) = BRIDGE.get() {
            bridge.closed.store(true, Ordering::Release);
        }
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEXFORGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,lexforge=debug"));
    let _ = tracing_subscriber::registry()
        .with(PythonLogging.with_filter(filter))
        .try_init();
}

/// Waits (without the GIL) until every event emitted so far has reached Python's `logging`,
/// or `timeout_s` passed; returns whether the queue was drained.
#[pyfunction]
#[pyo3(signature = (timeout_s=1.0))]
pub(crate) fn flush_logs(py: Python<'_>, timeout_s: f64) -> bool {
    let Some(bridge) = BRIDGE.get() else {
        return true;
    };
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_s.clamp(0.0, 3600.0));
    py.detach(|| {
        while bridge.pending.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    })
}

/// Stops forwarding (called at interpreter exit, after a last flush): later events are dropped.
#[pyfunction]
pub(crate) fn close_logs(py: Python<'_>) {
    let _ = flush_logs(py, 1.0);
    if let Some(bridge) = BRIDGE.get() {
        bridge.closed.store(true, Ordering::Release);
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(flush_logs, m)?)?;
    m.add_function(wrap_pyfunction!(close_logs, m)?)?;
    Ok(())
}
