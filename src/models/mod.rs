//! Models: the `Classifier` interface, the paper's MNIST zoo (§4.2, Tables 1 and 3) and TorchScript models.
//!
//! Rule: `models` never imports `attack`.

pub mod classifier;
mod error;
pub mod torchscript;
pub mod zoo;

pub use classifier::{Classifier, Wrapper};
pub use error::ModelError;
