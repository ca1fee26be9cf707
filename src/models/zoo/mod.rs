//! The paper's MNIST model zoo (§4.2, Tables 1 and 3) as sequential architectures over one flat parameter
//! vector, so that full-batch L-BFGS optimises the model directly; saved as `weights.safetensors` with
//! PyTorch names and layouts (`fc1.weight` [out, in], `fc1.bias` [out], `conv1.weight` [out, in, kh, kw])
//! plus `model.json` (architecture, training record, errors, data checksums).
//!
//! - `arch.rs`: [`Layer`], [`Architecture`], the parameter layout ([`ParamEntry`]), output names, shapes.
//! - `forward.rs`: [`forward_all`] on θ [P], [`param_views`], PyTorch's initialisation ([`init_params`]).
//! - `model.rs`: [`ZooModel`]: load/save of a model folder and the [`crate::models::Classifier`] impl.
//! - [`presets`]: the paper's architectures.

mod arch;
mod forward;
mod model;
pub mod presets;

pub use arch::{Architecture, Layer, ParamEntry, MAX_SIZE};
pub use forward::{forward_all, init_params, param_views};
pub use model::{ZooModel, MODEL_FORMAT};
