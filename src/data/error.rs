//! Errors of the data sets that are not about one file's contents (those are `Error::Format` with the
//! file's path): a set name that does not exist, preprocessing options, indices out of range.

/// What can go wrong when choosing or reading examples of a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("unknown data set `{0}`: use train, test, p1 or p2")]
    UnknownSet(String),
    #[error("image channels must be 1 or 3, not {0}")]
    Channels(i64),
    #[error("resize ({resize}) must be at least the crop size ({crop}), both positive, and at most 8192: set resize and the input size accordingly")]
    ResizeCrop { resize: u32, crop: u32 },
    #[error("data index {index} out of range for {data} (0..{len}): use an index of the data set")]
    IndexOutOfRange {
        data: String,
        index: i64,
        len: usize,
    },
    #[error("--data `{spec}`: expected mnist-test, mnist-train or an existing image folder")]
    UnknownSource { spec: String },
    #[error("an image decoding thread panicked while decoding a batch")]
    DecoderPanicked,
}
