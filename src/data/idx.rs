//! IDX files (the MNIST format), gzipped or plain, read with bounded memory and hashed on the way.
//!
//! The header is read first; it must be MNIST's (magic number, 28×28 images, 1 to [`MAX_EXAMPLES`]
//! examples), and then exactly the bytes it implies are read, plus one more to refuse trailing data. A
//! small gzip that expands to gigabytes therefore costs at most one MNIST file's worth of memory and time.
//! Every raw byte read from the disk goes through one SHA-256, so a file is hashed once, while it is
//! decompressed, and the hash is of the file as stored (the `.gz`, if gzipped).

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// The most examples one MNIST file may hold: 70,000, MNIST's 60,000 training and 10,000 test images
/// together. A header claiming more is refused before anything is allocated.
pub const MAX_EXAMPLES: usize = 70_000;
/// MNIST's image side.
const SIDE: usize = 28;

/// Images of an IDX3 file: `n` images of `rows`×`cols` unsigned bytes, row-major.
pub(crate) struct Images {
    pub n: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// A reader that passes every byte through a SHA-256 and counts them.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.hash.update(&buf[..k]);
        self.bytes += k as u64;
        Ok(k)
    }
}

type Raw = BufReader<Hashing<File>>;

/// The decompressed contents of a file on disk, hashing the raw bytes as they are read.
enum Body {
    Plain(Raw),
    Gzip(flate2::bufread::MultiGzDecoder<Raw>),
}

impl Body {
    /// Opens `path`, treating it as gzip when it starts with the gzip magic bytes.
    fn open(path: &Path) -> Result<Body> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut raw = BufReader::new(Hashing {
            inner: file,
            hash: Sha256::new(),
            bytes: 0,
        });
        let head = raw.fill_buf().map_err(|e| Error::io(path, e))?;
        Ok(if head.starts_with(&[0x1f, 0x8b]) {
            Body::Gzip(flate2::bufread::MultiGzDecoder::new(raw))
        } else {
            Body::Plain(raw)
        })
    }

    /// Reads the rest of the raw file through the hash (bounded memory); returns the hex SHA-256 of the
    /// whole file and its size on disk.
    fn finish(self, path: &Path) -> Result<(String, u64)> {
        let mut raw = match self {
            Body::Plain(r) => r,
            Body::Gzip(d) => d.into_inner(),
        };
        std::io::copy(&mut raw, &mut std::io::sink()).map_err(|e| Error::io(path, e))?;
        let h = raw.into_inner();
        Ok((format!("{:x}", h.hash.finalize()), h.bytes))
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Body::Plain(r) => r.read(buf),
            Body::Gzip(d) => d.read(buf).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("corrupt or truncated gzip stream ({e}); replace the file with the original MNIST file"),
                )
            }),
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns the number of bytes read.
fn fill<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn be_u32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Reads the `len` bytes of data a header of `header` bytes implies (`what` describes them), refusing a
/// shorter stream and, by reading at most one byte more, a longer one.
fn read_body<R: Read + ?Sized>(
    path: &Path,
    r: &mut R,
    header: usize,
    len: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let mut body = vec![0u8; len];
    let got = fill(r, &mut body).map_err(|e| Error::io(path, e))?;
    if got < len {
        return Err(Error::format(
            path,
            format!(
                "header says {what} ({} bytes in all) but the data has {} bytes: truncated; replace the file with the original MNIST file",
                header + len,
                header + got
            ),
        ));
    }
    let mut probe = [0u8; 1];
    if fill(r, &mut probe).map_err(|e| Error::io(path, e))? > 0 {
        return Err(Error::format(
            path,
            format!(
                "header says {what} ({} bytes in all) but the data goes on past them: trailing data (a wrong count in the header, or not an MNIST file); replace the file with the original MNIST file",
                header + len
            ),
        ));
    }
    Ok(body)
}

/// Checks an example count from a header: 1 to [`MAX_EXAMPLES`].
fn check_count(path: &Path, n: usize, what: &str) -> Result<()> {
    if n == 0 || n > MAX_EXAMPLES {
        return Err(Error::format(
            path,
            format!(
                "header says {n} {what}; an MNIST file holds 1 to {MAX_EXAMPLES}: the file is corrupt or not MNIST; replace it with the original MNIST file"
            ),
        ));
    }
    Ok(())
}

/// Reads an IDX3 image file of 28×28 images from `r` (the decompressed stream of `path`).
pub(crate) fn read_images<R: Read + ?Sized>(path: &Path, r: &mut R) -> Result<Images> {
    let mut h = [0u8; 16];
    let got = fill(r, &mut h).map_err(|e| Error::io(path, e))?;
    if got < h.len() {
        return Err(Error::format(
            path,
            format!("IDX image header needs 16 bytes, file has {got}; replace it with the original MNIST file"),
        ));
    }
    let magic = be_u32(&h, 0) as u32;
    if magic != IMAGES_MAGIC {
        return Err(Error::format(
            path,
            format!("bad magic number {magic:#010x}: expected {IMAGES_MAGIC:#010x} (unsigned-byte images, 3 dimensions); is this a label file or not IDX at all?"),
        ));
    }
    let (n, rows, cols) = (be_u32(&h, 4), be_u32(&h, 8), be_u32(&h, 12));
    if rows != SIDE || cols != SIDE {
        return Err(Error::format(
            path,
            format!(
                "images are {rows}x{cols}, MNIST images are 28x28; point the data folder at MNIST"
            ),
        ));
    }
    check_count(path, n, "images")?;
    let what = format!("{n} images of {rows}x{cols}");
    let pixels = read_body(path, r, h.len(), n * rows * cols, &what)?;
    Ok(Images {
        n,
        rows,
        cols,
        pixels,
    })
}

/// Reads an IDX1 label file with labels in 0..10 from `r` (the decompressed stream of `path`).
pub(crate) fn read_labels<R: Read + ?Sized>(path: &Path, r: &mut R) -> Result<Vec<u8>> {
    let mut h = [0u8; 8];
    let got = fill(r, &mut h).map_err(|e| Error::io(path, e))?;
    if got < h.len() {
        return Err(Error::format(
            path,
            format!("IDX label header needs 8 bytes, file has {got}; replace it with the original MNIST file"),
        ));
    }
    let magic = be_u32(&h, 0) as u32;
    if magic != LABELS_MAGIC {
        return Err(Error::format(
            path,
            format!("bad magic number {magic:#010x}: expected {LABELS_MAGIC:#010x} (unsigned-byte labels, 1 dimension); is this an image file?"),
        ));
    }
    let n = be_u32(&h, 4);
    check_count(path, n, "labels")?;
    let labels = read_body(path, r, h.len(), n, &format!("{n} labels"))?;
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| l > 9) {
        return Err(Error::format(
            path,
            format!("label {l} at index {i} is outside 0..=9; replace the file with the original MNIST file"),
        ));
    }
    Ok(labels)
}

/// Reads the IDX file `path` with `parse`, hashing the file on disk once on the way; returns the parsed
/// contents and the file's SHA-256. When `expected` is given (from `SHA256SUMS`) a different hash is an
/// [`Error::Checksum`], also when the contents did not parse (the mismatch says more than the symptom).
pub(crate) fn read_file<T>(
    path: &Path,
    expected: Option<&str>,
    parse: impl FnOnce(&Path, &mut dyn Read) -> Result<T>,
) -> Result<(T, String)> {
    let mut body = Body::open(path)?;
    let parsed = parse(path, &mut body);
    let hashed = match (&parsed, expected) {
        (Ok(_), _) => Some(body.finish(path)?.0),
        // After a failure the rest is hashed only to tell a replaced file from a bad one.
        (Err(_), Some(_)) => body.finish(path).ok().map(|(sha, _)| sha),
        (Err(_), None) => None,
    };
    if let (Some(found), Some(want)) = (&hashed, expected) {
        if !found.eq_ignore_ascii_case(want) {
            return Err(Error::Checksum {
                path: path.to_path_buf(),
                expected: want.to_string(),
                found: found.clone(),
                hint: "the file is corrupt or was replaced; restore it from the repository (git checkout assets/mnist) or the original MNIST distribution".into(),
            });
        }
    }
    Ok((parsed?, hashed.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that counts the bytes taken from it.
    struct Counting<R> {
        inner: R,
        taken: u64,
    }
    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let k = self.inner.read(buf)?;
            self.taken += k as u64;
            Ok(k)
        }
    }

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        let mut h = magic.to_be_bytes().to_vec();
        for d in dims {
            h.extend(d.to_be_bytes());
        }
        h
    }

    #[test]
    fn an_endless_stream_after_a_valid_header_is_refused_after_one_byte_more() {
        let p = Path::new("bomb");
        let h = header(IMAGES_MAGIC, &[60_000, 28, 28]);
        let mut r = Counting {
            inner: std::io::Cursor::new(h).chain(std::io::repeat(0)),
            taken: 0,
        };
        let e = read_images(p, &mut r).err().expect("refused").to_string();
        assert!(e.contains("trailing data"), "{e}");
        assert_eq!(
            r.taken,
            16 + 60_000 * 784 + 1,
            "reads stop one byte past the header's size"
        );

        let h = header(LABELS_MAGIC, &[10]);
        let mut r = Counting {
            inner: std::io::Cursor::new(h).chain(std::io::repeat(3)),
            taken: 0,
        };
        let e = read_labels(p, &mut r).expect_err("refused").to_string();
        assert!(e.contains("trailing data"), "{e}");
        assert_eq!(r.taken, 8 + 10 + 1);
    }

    #[test]
    fn absurd_headers_are_refused_before_reading_on() {
        let p = Path::new("f");
        for (dims, want) in [
            (vec![70_001, 28, 28], "70001 images"),
            (vec![u32::MAX, 28, 28], "4294967295 images"),
            (vec![0, 28, 28], "0 images"),
            (vec![10, 28, 0], "28x0"),
            (vec![10, 1 << 20, 1 << 20], "1048576x1048576"),
        ] {
            let mut r = Counting {
                inner: std::io::Cursor::new(header(IMAGES_MAGIC, &dims)).chain(std::io::repeat(0)),
                taken: 0,
            };
            let e = read_images(p, &mut r).err().expect("refused").to_string();
            assert!(e.contains(want), "{e}");
            assert_eq!(r.taken, 16, "nothing read past the header");
        }
        let mut r = std::io::Cursor::new(header(LABELS_MAGIC, &[u32::MAX]));
        let e = read_labels(p, &mut r).expect_err("refused").to_string();
        assert!(
            e.contains("4294967295 labels") && e.contains("1 to 70000"),
            "{e}"
        );
    }
}
