//! Data sets: MNIST IDX files (paper §4.2), the P1/P2 split of Table 3, and image folders (§3, AlexNet).

pub mod error;
pub mod idx;
pub mod images;
pub mod mnist;
pub mod sets;
pub mod sources;
pub mod split;

pub use error::DataError;
pub use mnist::{Mnist, Split};
pub use sets::MnistData;
