//! Atomic file writing: write to a temporary sibling, fsync, rename. A crash never leaves a half file.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to `path` atomically, creating parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
    }
    let tmp = tmp_path(path);
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Calls `write` on a temporary path, then renames it to `path`. For writers that want a path (libtorch).
pub(crate) fn with_atomic_path(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
    }
    let tmp = tmp_path(path);
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Serialises `value` as pretty JSON, atomically.
pub fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(value)
        .map_err(|e| Error::format(path, format!("serialising JSON: {e}")))?;
    write_atomic(path, s.as_bytes())
}

/// Reads and parses a JSON file, naming the file in errors.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&s).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

/// Writes tensors as a safetensors file (PyTorch-readable), atomically.
pub fn write_safetensors(path: &Path, tensors: &[(&str, &tch::Tensor)]) -> Result<()> {
    with_atomic_path(path, |tmp| {
        let cpu: Vec<(&str, tch::Tensor)> = tensors
            .iter()
            .map(|(n, t)| (*n, t.to_device(tch::Device::Cpu).contiguous()))
            .collect();
        tch::Tensor::write_safetensors(&cpu, tmp).map_err(Error::from)
    })
}

/// Reads all tensors of a safetensors file, naming the file in errors.
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, tch::Tensor)>> {
    if !path.exists() {
        return Err(Error::format(path, "file not found"));
    }
    tch::Tensor::read_safetensors(path)
        .map_err(|e| Error::format(path, format!("not a readable safetensors file: {e}")))
}
