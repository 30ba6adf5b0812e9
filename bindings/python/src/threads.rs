//! How many threads one native call computes on (`lexforge.set_num_threads`, like
//! `torch.set_num_threads`).
//!
//! The CPU kernels (gemm, reductions, tokenization) split work over rayon's *current* pool. By
//! default that is rayon's global pool, one thread per core. With a limit `n`, each Python
//! thread gets its own `n`-thread pool, so two Python threads that each encode with `n = 1`
//! run side by side on two cores instead of contending for one shared pool.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// The limit; 0 means "rayon's global pool" (all cores, or `RAYON_NUM_THREADS`).
static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This Python thread's pool, with its size.
    static POOL: RefCell<Option<(usize, Arc<rayon::ThreadPool>)>> = const { RefCell::new(None) };
}

/// The pool the calling thread's native work runs on, or `None` for rayon's global pool.
pub(crate) fn current_pool() -> PyResult<Option<Arc<rayon::ThreadPool>>> {
    let n = NUM_THREADS.load(Ordering::Acquire);
    if n == 0 {
        return Ok(None);
    }
    POOL.with(|slot| {
        let mut slot = slot.borrow_mut();
        if let Some((size, pool)) = slot.as_ref()
            && *size == n
        {
            return Ok(Some(Arc::clone(pool)));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("lexforge-compute-{i}"))
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start {n} threads: {e}")))?;
        let pool = Arc::new(pool);
        *slot = Some((n, Arc::clone(&pool)));
        Ok(Some(pool))
    })
}

/// Runs `f` on `pool` (or on the current thread when `None`).
pub(crate) fn within<R: Send>(pool: Option<&rayon::ThreadPool>, f: impl FnOnce() -> R + Send) -> R {
    match pool {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// `py.detach(f)` on the calling thread's compute pool: the GIL is released and the kernels
/// inside use at most [`get_num_threads`] threads. If the pool's threads cannot be started,
/// `f` runs on rayon's global pool instead (with a warning): the limit is a tuning knob, not a
/// reason to fail the call.
pub(crate) fn compute<R: Send>(py: Python<'_>, f: impl FnOnce() -> R + Send) -> R {
    let pool = current_pool().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "computing on the default thread pool");
        None
    });
    py.detach(|| within(pool.as_deref(), f))
}

/// Limits each later native call to `n` compute threads (`n >= 1`); `0` restores the default
/// (one per core).
#[pyfunction]
pub(crate) fn set_num_threads(n: i64) -> PyResult<()> {
    let n = usize::try_from(n).map_err(|_| {
        PyValueError::new_err(format!(
            "num_threads must be >= 0 (0 = one per core), got {n}"
        ))
    })?;
    NUM_THREADS.store(n, Ordering::Release);
    Ok(())
}

/// The number of threads a native call computes on.
#[pyfunction]
pub(crate) fn get_num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Acquire) {
        0 => rayon::current_num_threads(),
        n => n,
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    Ok(())
}
