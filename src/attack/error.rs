//! Errors of the attack, the transfer tables and Fig 7: each names the field or value involved and the fix.

use std::path::PathBuf;

/// What can go wrong before or during an attack (§4.1), a transfer table (§4.2) or Fig 7.
#[derive(Debug, thiserror::Error)]
pub enum AttackError {
    #[error("attack setting `{field}` {why}")]
    Setting {
        field: &'static str,
        why: &'static str,
    },
    #[error("batch (--batch) must be >= 1, got {0}")]
    Batch(i64),
    #[error("index {index} (entry {entry}) is out of range: split `{split}` has {len} examples")]
    IndexOutOfRange {
        index: i64,
        entry: usize,
        split: String,
        len: i64,
    },
    #[error("--first {first} but split `{split}` has only {len} examples")]
    FirstTooLarge {
        first: usize,
        split: String,
        len: i64,
    },
    #[error("nothing to attack (0 examples)")]
    Empty,
    #[error("label {label} is outside the model's {classes} classes")]
    LabelOutOfRange { label: i64, classes: i64 },
    #[error("targets given for an untargeted attack")]
    TargetsWhenUntargeted,
    #[error("{given} targets for {examples} attacked examples (one target per example)")]
    TargetCount { given: usize, examples: usize },
    #[error("target {target} (entry {entry}) is out of range: the model has {classes} classes")]
    TargetOutOfRange {
        target: i64,
        entry: usize,
        classes: i64,
    },
    #[error("target {target} (entry {entry}, example {example}) equals the label: a targeted attack needs target ≠ label")]
    TargetIsLabel {
        target: i64,
        entry: usize,
        example: i64,
    },
    #[error("some images lie outside the model's input box [{lo}, {hi}] (or are NaN)")]
    OutsideBox { lo: f64, hi: f64 },
    #[error("labels/targets must be [{batch}], got {labels:?} / {targets:?}")]
    LabelShape {
        batch: i64,
        labels: Vec<i64>,
        targets: Option<Vec<i64>>,
    },
    #[error("original {original:?} and adversarial {adversarial:?} differ")]
    PairShape {
        original: Vec<i64>,
        adversarial: Vec<i64>,
    },
    #[error("{} holds a different attack run (model, its weights, examples, targets, batch or settings differ); use another --out or delete it", dir.display())]
    OtherRun { dir: PathBuf },
    #[error("--first {first}: {} holds {len} images", dir.display())]
    FolderFirst {
        first: usize,
        dir: PathBuf,
        len: usize,
    },
    #[error("noise stddev must be finite and >= 0, got {0}")]
    NoiseStddev(f64),
    #[error("transfer setting `{field}`: {why}")]
    TransferSetting { field: &'static str, why: String },
    #[error("a transfer table needs at least one source of adversarials and one model")]
    TransferEmpty,
    #[error(
        "model `{model}` has input box {got:?}, `{first}` has {want:?}: one table needs one box"
    )]
    TransferBoxes {
        model: String,
        got: (f64, f64),
        first: String,
        want: (f64, f64),
    },
    #[error("{}: its examples do not fit model `{model}`: {why}", file.display())]
    TransferShape {
        file: PathBuf,
        model: String,
        why: String,
    },
    #[error("{}: no adversarial.safetensors here; give an attack's output folder (blindspot attack --out)", path.display())]
    NoAdversarials { path: PathBuf },
    #[error("{}: made for model weights {recorded}, but {model} has weights {got}; give the model the adversarials were made for (or re-run the attack)", file.display())]
    SourceWeights {
        file: PathBuf,
        model: String,
        recorded: String,
        got: String,
    },
    #[error("{}: cannot re-verify its adversarials: {why}", file.display())]
    SourceUnknown { file: PathBuf, why: String },
    #[error("--precision f64 needs a zoo model folder (model.json + weights.safetensors); {} is not one", path.display())]
    DoubleNeedsZoo { path: PathBuf },
    #[error("Fig 7 needs at least one model")]
    Fig7NoModels,
    #[error("Fig 7 shows {shown} test images but the test set has {len}: use fig7.images between 1 and {len}")]
    Fig7Images { shown: i64, len: i64 },
    #[error("autograd returned no gradient for the attack's objective")]
    NoGradient,
}
