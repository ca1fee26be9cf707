//! `blindspot._blindspot`: the extension module behind `import blindspot` (python/blindspot/ wraps it in a
//! typed, documented API; docs/python.md).
//!
//! - [`model`]: the model a Python call names (a path, a TorchScript module's bytes, a zoo module's
//!   record and parameters) loaded as a [`blindspot::models::Classifier`].
//! - [`work`]: every long call runs on a worker thread while the calling thread waits without the GIL
//!   and checks for Ctrl-C; errors become Python exceptions with the CLI's one-line messages.
//! - [`calls`]: `attack`, `spectral` and `units`.

mod calls;
mod model;
mod work;

use pyo3::prelude::*;

#[pymodule]
fn _blindspot(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The libtorch this extension was built against (torch/version.py of the build's torch).
    m.add("LIBTORCH_VERSION", env!("BLINDSPOT_PY_LIBTORCH"))?;
    m.add("BlindspotError", m.py().get_type::<work::BlindspotError>())?;
    m.add_function(wrap_pyfunction!(calls::attack, m)?)?;
    m.add_function(wrap_pyfunction!(calls::spectral, m)?)?;
    m.add_function(wrap_pyfunction!(calls::units, m)?)?;
    m.add_function(wrap_pyfunction!(model::read_zoo, m)?)?;
    m.add_function(wrap_pyfunction!(model::attack_defaults, m)?)?;
    m.add("DEFAULT_BATCH", blindspot::attack::DEFAULT_BATCH)?;
    Ok(())
}
