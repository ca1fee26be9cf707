//! Long calls off the GIL, interruptible: [`run`] does the work on a worker thread while the calling
//! thread waits with the GIL released (other Python threads keep running), waking every 50 ms to let
//! Python handle signals. On Ctrl-C (KeyboardInterrupt) it raises the flag the model checks before every
//! forward pass ([`Interruptible`]), so an attack stops within one pass and the exception reaches the
//! caller; an analysis that makes no forward pass of the model (`spectral`) is left to finish in the
//! background after a short wait.
//!
//! Library errors become [`BlindspotError`] (or `ValueError` for bad inputs: shapes, labels, targets, the
//! box, the device) whose message is the CLI's `error:` line without the prefix.

use blindspot::models::{Classifier, Wrapper};
use blindspot::Error;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tch::{Device, Tensor};

pyo3::create_exception!(
    _blindspot,
    BlindspotError,
    pyo3::exceptions::PyException,
    "An error of the blindspot engine; the message is the CLI's one-line message."
);

/// How long an interrupted call waits for its worker before leaving it to finish in the background.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// The Python exception of a library error, with the message the CLI prints after `error: ` (anyhow's
/// `{:#}`: the error and its sources, `: `-joined): `ValueError` for what the caller passed, else
/// [`BlindspotError`].
pub fn to_py(e: Error) -> PyErr {
    let bad_input = matches!(
        e,
        Error::Shape { .. } | Error::Device { .. } | Error::Config { .. } | Error::Attack(_)
    );
    let msg = format!("{:#}", anyhow::Error::from(e));
    if bad_input {
        PyValueError::new_err(msg)
    } else {
        BlindspotError::new_err(msg)
    }
}

/// Runs `f` on a worker thread; see the module doc. `f` gets the interruption flag to hand to
/// [`Interruptible`].
pub fn run<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce(Arc<AtomicBool>) -> blindspot::Result<T> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = stop.clone();
    let worker = std::thread::Builder::new()
        .name("blindspot".into())
        .spawn(move || {
            let _ = tx.send(f(flag));
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start a worker thread: {e}")))?;
    // `wait` moves the receiver (Send, not Sync) in and out of each GIL-free wait.
    let wait = |rx: mpsc::Receiver<_>, d| py.allow_threads(move || (rx.recv_timeout(d), rx));
    let mut rx = rx;
    loop {
        let (got, back) = wait(rx, Duration::from_millis(50));
        rx = back;
        match got {
            Ok(r) => {
                let _ = worker.join();
                return r.map_err(to_py);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(interrupt) = py.check_signals() {
                    stop.store(true, Ordering::SeqCst);
                    // Wait for the worker to stop at its next forward pass (briefly: never hang Ctrl-C).
                    let _ = wait(rx, INTERRUPT_GRACE);
                    return Err(interrupt);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = worker.join();
                return Err(PyRuntimeError::new_err(
                    "internal error: the blindspot worker thread panicked",
                ));
            }
        }
    }
}

/// A classifier that refuses every forward pass once `stop` is set (Ctrl-C in the caller).
pub struct Interruptible {
    pub inner: Box<dyn Classifier>,
    pub stop: Arc<AtomicBool>,
}

impl Interruptible {
    fn check(&self) -> blindspot::Result<()> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(Error::format("<python>", "interrupted (KeyboardInterrupt)"));
        }
        Ok(())
    }
}

impl Wrapper for Interruptible {
    fn inner(&self) -> &dyn Classifier {
        self.inner.as_ref()
    }
    fn logits(&self, x: &Tensor) -> blindspot::Result<Tensor> {
        self.check()?;
        self.inner.logits(x)
    }
    fn layer(&self, x: &Tensor, name: &str) -> blindspot::Result<Tensor> {
        self.check()?;
        self.inner.layer(x, name)
    }
}
