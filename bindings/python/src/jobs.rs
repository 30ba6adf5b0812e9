//! Running a long native job for Python (a worker thread, events to a callback, Ctrl-C
//! cancels) and the conversions every pipeline's bindings share: devices and JSON results.

use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use lexforge::{CancelToken, ChannelSink, DeviceSpec, EventRecord, EventSink, Precision};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;

use crate::errors::to_py;

pub(crate) fn json<T: serde::Serialize>(
    py: Python<'_>,
    value: &T,
    what: &'static str,
) -> PyResult<String> {
    serde_json::to_string(value)
        .map_err(|source| to_py(py, lexforge::Error::Serialize { what, source }))
}

/// A long job for [`drive`]: it reports through the sink and stops when the token is cancelled.
pub(crate) type Job<T, E> = Box<dyn FnOnce(&dyn EventSink, &CancelToken) -> Result<T, E> + Send>;

/// Runs `job` on a worker thread. Meanwhile, on the calling thread: each event goes to
/// `callback` as a dict, and a pending KeyboardInterrupt (Ctrl-C, a notebook's interrupt)
/// cancels the job, which stops at its next check (training: after the current step, with a
/// checkpoint). Returns the report as JSON and whether an interrupt happened.
pub(crate) fn drive<T, E>(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
    job: Job<T, E>,
) -> PyResult<(String, bool)>
where
    T: serde::Serialize + Send + 'static,
    E: crate::errors::Classified + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<EventRecord>();
    let cancel = CancelToken::new();
    let worker_cancel = cancel.clone();
    // The job computes on the calling thread's pool (`lexforge.set_num_threads`).
    let pool = crate::threads::current_pool()?;
    let handle = std::thread::Builder::new()
        .name("lexforge-job".into())
        .spawn(move || {
            let sink = ChannelSink::new(tx);
            crate::threads::within(pool.as_deref(), || job(&sink, &worker_cancel))
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the training thread: {e}")))?;
    // `Receiver` is not `Sync`; the mutex lets the GIL-free wait borrow it.
    let rx = Mutex::new(rx);
    let loads = py.import("json")?.getattr("loads")?;
    let mut interrupted = false;
    loop {
        let next = py.detach(|| {
            rx.lock()
                .unwrap_or_else(|p| p.into_inner())
                .recv_timeout(Duration::from_millis(100))
        });
        match next {
            Ok(record) => {
                if let Some(cb) = &callback {
                    let text = json(py, &record, "event")?;
                    // Ctrl-C lands in whatever Python code runs: decoding the event or the
                    // callback itself. Either way it is the same clean stop.
                    match loads
                        .call1((text,))
                        .and_then(|event| cb.call1(py, (event,)))
                    {
                        Ok(_) => {}
                        Err(e) if e.is_instance_of::<PyKeyboardInterrupt>(py) => {
                            if !interrupted {
                                interrupted = true;
                                cancel.cancel();
                            }
                        }
                        // A failing progress callback must not lose the run.
                        Err(e) => {
                            tracing::warn!(error = %e, "the progress callback raised; ignoring it")
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if !interrupted && py.check_signals().is_err() {
            interrupted = true;
            cancel.cancel();
        }
    }
    let result = py
        .detach(|| handle.join())
        .map_err(|_| PyRuntimeError::new_err("the training thread panicked"))?;
    let report = result.map_err(|e| to_py(py, e))?;
    Ok((json(py, &report, "run report")?, interrupted))
}

/// [`drive`] on the device `device` names, computing in `precision`: the one shape of every
/// pipeline's `train`, `resume` and `pipeline` binding.
pub(crate) fn drive_on<T, E>(
    py: Python<'_>,
    device: &str,
    precision: Option<&str>,
    callback: Option<Py<PyAny>>,
    job: impl FnOnce(&lexforge::Device, &dyn EventSink, &CancelToken) -> Result<T, E> + Send + 'static,
) -> PyResult<(String, bool)>
where
    T: serde::Serialize + Send + 'static,
    E: crate::errors::Classified + Send + 'static,
{
    let device = resolve(py, device, precision)?;
    drive::<T, E>(
        py,
        callback,
        Box::new(move |sink, cancel| job(&device, sink, cancel)),
    )
}

/// The device `spec` names (`cpu`, `flex`, `ndarray`, `cuda:0`, `wgpu`, `auto`), computing in
/// `precision` (`auto`, `f32`, `f16`, `bf16`; `None` leaves the device's own): how every
/// Python function that computes takes its `device` and `precision` arguments.
pub(crate) fn resolve(
    py: Python<'_>,
    spec: &str,
    precision: Option<&str>,
) -> PyResult<lexforge::Device> {
    (|| {
        let mut device = spec.parse::<DeviceSpec>()?.resolve()?;
        if let Some(p) = precision {
            p.parse::<Precision>()?.apply(&mut device)?;
        }
        Ok::<_, lexforge::Error>(device)
    })()
    .map_err(|e| to_py(py, e))
}
