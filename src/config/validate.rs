//! Validation of a whole experiment file before any work starts: names (one pattern,
//! [`crate::results::paths`]), the device, the data folder, the models, the stages' references, and the
//! sizes a typo could make absurd ([`Limits`]). Errors name the file, the field path and the fix.

use super::{Experiment, TransferStage};
use crate::results::paths::is_valid_name;
use crate::{Error, Result};
use std::collections::HashSet;
use std::path::Path;

/// Bounds on the sizes of an experiment file: a batch, a count of directions or images beyond these is a
/// typo (or would exhaust memory), refused with the field and the bound.
pub struct Limits;

impl Limits {
    /// Examples per chunk, forward pass or minibatch.
    pub const BATCH: i64 = 1_000_000;
    /// Random directions of a units stage.
    pub const RANDOM_DIRECTIONS: usize = 100_000;
    /// Images kept per direction.
    pub const TOP: usize = 10_000;
    /// Test images shown in Fig 7 (the test set has 10,000).
    pub const FIG7_IMAGES: i64 = 10_000;
}

fn err(file: &str, field: impl Into<String>, msg: impl Into<String>) -> Error {
    Error::config(file, field, msg)
}

/// `name` must follow the name pattern.
fn check_name(file: &str, field: &str, what: &str, name: &str) -> Result<()> {
    if is_valid_name(name) {
        return Ok(());
    }
    Err(err(
        file,
        field,
        format!("{what} `{name}` is not a valid name: use a letter or digit first, then letters, digits and . _ ' + - (at most 128 characters)"),
    ))
}

/// A value must be in `1..=max`.
fn check_size<T: PartialOrd + std::fmt::Display + From<u8>>(
    file: &str,
    field: &str,
    v: T,
    max: T,
) -> Result<()> {
    if v < T::from(1) || v > max {
        return Err(err(
            file,
            field,
            format!("{v} is out of range: use 1..={max}"),
        ));
    }
    Ok(())
}

impl Experiment {
    /// Checks everything that can be checked without running anything.
    pub fn validate(&self, file: &str) -> Result<()> {
        check_name(file, "name", "the experiment name", &self.name)?;
        crate::device::parse_device(&self.device)
            .map_err(|e| Error::config(file, "device", e.to_string()))?;
        self.validate_data(file)?;
        self.validate_models(file)?;
        self.validate_attacks(file)?;
        for (i, t) in self.transfer.iter().enumerate() {
            self.validate_transfer(file, i, t)?;
        }
        let mut tables = HashSet::new();
        for (i, t) in self.transfer.iter().enumerate() {
            if !tables.insert(&t.name) {
                return Err(err(
                    file,
                    format!("transfer[{i}].name"),
                    format!(
                        "`{}` is used by two tables; give each table its own name",
                        t.name
                    ),
                ));
            }
        }
        self.validate_analyses(file)?;
        match &self.slurm {
            Some(s) => s.validate(file, "slurm"),
            None => Ok(()),
        }
    }

    fn validate_data(&self, file: &str) -> Result<()> {
        let dir = self.data.mnist_dir();
        for stem in [
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        ] {
            if !dir.join(format!("{stem}.gz")).exists() && !dir.join(stem).exists() {
                return Err(err(
                    file,
                    "data.mnist_dir",
                    format!(
                        "{} has no {stem}(.gz); point it at a folder with the four MNIST IDX files",
                        dir.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_models(&self, file: &str) -> Result<()> {
        let mut seen = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            check_name(
                file,
                &format!("models[{i}].name"),
                "the model name",
                &m.name,
            )?;
            m.validate(file, &format!("models[{i}]"))?;
            if !seen.insert(m.name.clone()) {
                return Err(err(
                    file,
                    format!("models[{i}].name"),
                    format!("`{}` is used twice", m.name),
                ));
            }
        }
        Ok(())
    }

    /// A model reference of a stage: a model of this experiment or an existing path.
    fn check_model_ref(&self, file: &str, field: &str, m: &str) -> Result<()> {
        if self.model(m).is_none() && !Path::new(m).exists() {
            return Err(err(
                file,
                field,
                format!("`{m}` is neither a model of this experiment nor an existing path"),
            ));
        }
        Ok(())
    }

    fn validate_attacks(&self, file: &str) -> Result<()> {
        for (i, a) in self.attacks.iter().enumerate() {
            let f = |k: &str| format!("attacks[{i}].{k}");
            if let Some(n) = &a.name {
                check_name(file, &f("name"), "the attack stage name", n)?;
            }
            a.spec
                .validate()
                .map_err(|e| err(file, f("spec"), e.to_string()))?;
            check_size(file, &f("spec.batch"), a.spec.batch, Limits::BATCH)?;
        }
        Ok(())
    }

    fn validate_transfer(&self, file: &str, i: usize, t: &TransferStage) -> Result<()> {
        let f = |k: &str| format!("transfer[{i}].{k}");
        check_name(file, &f("name"), "the table name", &t.name)?;
        if t.examples.is_empty() || t.models.is_empty() {
            return Err(err(
                file,
                f("examples"),
                "a table needs at least one row (`examples`) and one column (`models`)",
            ));
        }
        for (j, e) in t.examples.iter().enumerate() {
            if !self.attacks.iter().any(|a| &a.name() == e) {
                return Err(err(
                    file,
                    f(&format!("examples[{j}]")),
                    format!("`{e}` names no attack stage in `attacks:` (a stage's name is its `name`, else its model's); add one or remove it"),
                ));
            }
        }
        for (j, m) in t.models.iter().enumerate() {
            self.check_model_ref(file, &f(&format!("models[{j}]")), m)?;
        }
        t.spec
            .validate()
            .map_err(|e| err(file, format!("transfer[{i}]"), e.to_string()))?;
        check_size(file, &f("spec.batch"), t.spec.batch, Limits::BATCH)
    }

    /// Fig 7, units and spectral stages: their models and sizes.
    fn validate_analyses(&self, file: &str) -> Result<()> {
        if let Some(f7) = &self.fig7 {
            if f7.models.is_empty() {
                return Err(err(file, "fig7.models", "give at least one model"));
            }
            for (j, m) in f7.models.iter().enumerate() {
                if self.model(m).is_none() {
                    return Err(err(
                        file,
                        format!("fig7.models[{j}]"),
                        format!("`{m}` is not a model of this experiment (Fig 7 shows zoo models)"),
                    ));
                }
            }
            check_size(file, "fig7.images", f7.images, Limits::FIG7_IMAGES)?;
        }
        for (i, u) in self.units.iter().enumerate() {
            let f = |k: &str| format!("units[{i}].{k}");
            self.check_model_ref(file, &f("model"), &u.model)?;
            check_size(
                file,
                &f("random"),
                u.random.max(1),
                Limits::RANDOM_DIRECTIONS,
            )?;
            check_size(file, &f("top"), u.top, Limits::TOP)?;
        }
        for (i, sp) in self.spectral.iter().enumerate() {
            self.check_model_ref(file, &format!("spectral[{i}].model"), &sp.model)?;
        }
        Ok(())
    }
}
