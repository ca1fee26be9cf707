//! Durable, atomic file writing: write a temporary sibling with a unique name (host, process, random), fsync
//! it, rename it over the target, fsync the folder. A crash leaves either the old file or the new one, never
//! a half file; two processes (or two hosts on shared storage) never write the same temporary file.

use crate::{Error, Result};
use rand::Rng;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `<host>-<pid>-<random>`: unique across processes and hosts sharing a file system.
pub(crate) fn unique_suffix() -> String {
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let r: u64 = rand::thread_rng().gen();
    format!("{host}-{}-{r:016x}", std::process::id())
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", unique_suffix()))
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
    }
    Ok(())
}

/// Makes a rename or creation in `path`'s folder durable (fsync of the folder; a no-op where folders
/// cannot be opened).
fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(parent) {
        d.sync_all().map_err(|e| Error::io(parent, e))?;
    }
    Ok(())
}

/// Renames `tmp` over `path` and makes it durable; removes `tmp` if the rename fails.
fn commit(tmp: &Path, path: &Path) -> Result<()> {
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(Error::io(path, e));
    }
    sync_parent(path)
}

/// Writes `bytes` to `path` atomically and durably, creating parent folders.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    create_parent(path)?;
    let tmp = tmp_path(path);
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    commit(&tmp, path)
}

/// Calls `write` on a temporary path, fsyncs what it wrote, then renames it to `path`. For writers that
/// want a path (libtorch).
pub(crate) fn with_atomic_path(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    create_parent(path)?;
    let tmp = tmp_path(path);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    commit(&tmp, path)
}

/// Creates `path` with `value` as JSON only if it does not exist (exclusive creation, durable): true when
/// this call created it.
pub(crate) fn create_new_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<bool> {
    create_parent(path)?;
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::format(path, format!("serialising JSON: {e}")))?;
    // Write the content to a temporary file, then link it into place: the link fails if `path` exists,
    // and a reader never sees a half-written lock.
    let tmp = tmp_path(path);
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    let made = match std::fs::hard_link(&tmp, path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(path, e));
        }
    };
    let _ = std::fs::remove_file(&tmp);
    sync_parent(path)?;
    Ok(made)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_no_temporary_files_and_exclusive_create_refuses_a_second() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a/b.json");
        write_json(&p, &serde_json::json!({"x": 1})).unwrap();
        write_json(&p, &serde_json::json!({"x": 2})).unwrap();
        assert_eq!(read_json::<serde_json::Value>(&p).unwrap()["x"], 2);
        let q = t.path().join("a/lock");
        assert!(create_new_json(&q, &1).unwrap());
        assert!(!create_new_json(&q, &2).unwrap());
        assert_eq!(read_json::<i32>(&q).unwrap(), 1);
        let names: Vec<String> = std::fs::read_dir(t.path().join("a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
        assert_ne!(unique_suffix(), unique_suffix());
    }
}
