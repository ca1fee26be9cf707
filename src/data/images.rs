//! Image folders (paper §3 Figs 3-4: the ImageNet validation set through AlexNet): JPEG/PNG decoding,
//! torchvision-style preprocessing (resize the shorter side, centre crop, pixels in [0, 1]), batching with
//! bounded memory, parallel decoding and a background prefetch thread so the model never waits for data.
//!
//! Layouts:
//! - **class folders** (`root/<class>/<image>`, torchvision `ImageFolder`): classes are the sub-folder
//!   names in sorted order, label = position; images are found recursively below each class folder.
//! - **flat folder** (`root/<image>`, e.g. the ImageNet validation set): unlabelled, unless a label file is
//!   given (or `root/labels.txt` exists) with lines `<file name> <label>` (space, tab or comma separated),
//!   or one label per line for the images in sorted file-name order.
//!
//! Image files are those ending in `.jpg`, `.jpeg`, `.png` (any case); other files are ignored and counted.
//! Symbolic links to images and folders are followed; a link back to a folder above it (a symlink loop)
//! is an error naming the link, found while listing, before any image is decoded.
//! A file that cannot be decoded is skipped with a warning (and counted), or stops the run, as chosen by
//! [`OnBadImage`]. Indices refer to the sorted file list, so they stay stable when images are skipped.

use crate::data::DataError;
use crate::{Error, Result};
use image::imageops::FilterType;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use tch::Tensor;

/// The largest `resize` (shorter side after resizing): a square image then has [`MAX_PIXELS`] pixels.
pub const MAX_RESIZE: u32 = 8192;
/// The most pixels an image may have once resized (before the crop): 2²⁶, 192 MiB in RGB per decoding
/// thread. An image whose aspect ratio would need more (say 1×100,000 pixels) is a bad image, not an
/// allocation that could exhaust memory.
pub const MAX_PIXELS: u64 = 1 << 26;

/// What to do with an image file that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnBadImage {
    /// Warn, count it, and go on without it.
    #[default]
    Skip,
    /// Stop with an error naming the file.
    Fail,
}

impl std::str::FromStr for OnBadImage {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "skip" => Ok(OnBadImage::Skip),
            "fail" => Ok(OnBadImage::Fail),
            _ => Err(format!("`{s}`: expected skip or fail")),
        }
    }
}

/// Preprocessing and loading options.
#[derive(Debug, Clone)]
pub struct ImageFolderOptions {
    /// 3 (RGB) or 1 (grey, ITU-R 601 luma as in Pillow's `convert("L")`).
    pub channels: i64,
    /// The shorter side is resized to this (bilinear, antialiased when shrinking), like torchvision `Resize(n)`.
    pub resize: u32,
    /// Then a centred `crop`×`crop` square is cut out, like torchvision `CenterCrop(n)`.
    pub crop: u32,
    pub on_bad: OnBadImage,
    /// A label file for a flat folder (default: `root/labels.txt` if it exists).
    pub labels_file: Option<PathBuf>,
    /// Decoding threads (0 = all cores).
    pub threads: usize,
}

impl ImageFolderOptions {
    /// Options for a model input [C, S, S]: crop S, resize S·256/224 (ImageNet's 256 → 224 convention).
    pub fn for_input(shape: &[i64]) -> Result<Self> {
        if shape.len() != 3
            || !(shape[0] == 1 || shape[0] == 3)
            || shape[1] != shape[2]
            || shape[1] < 1
        {
            return Err(Error::Shape {
                what: "image folders feed models with square inputs".into(),
                expected: "[1 or 3, S, S]".into(),
                got: shape.to_vec(),
            });
        }
        let s = shape[1] as u32;
        Ok(ImageFolderOptions {
            channels: shape[0],
            resize: ((s as f64) * 256.0 / 224.0).round() as u32,
            crop: s,
            on_bad: OnBadImage::Skip,
            labels_file: None,
            threads: 0,
        })
    }
}

/// One image file and its label (if the folder is labelled).
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub label: Option<i64>,
}

/// A batch of decoded images: `images` [b, C, crop, crop] f32 in [0, 1] on the CPU, `indices` [b] into the
/// folder's file list, and the files of this batch that could not be decoded (index, message).
#[derive(Debug)]
pub struct ImageBatch {
    pub images: Tensor,
    pub indices: Vec<usize>,
    pub bad: Vec<(usize, String)>,
}

/// An image folder, listed and checked, ready to be decoded batch by batch.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    root: PathBuf,
    entries: Arc<Vec<Entry>>,
    classes: Vec<String>,
    ignored: usize,
    opts: ImageFolderOptions,
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        .unwrap_or(false)
}

fn hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.starts_with('.'))
        .unwrap_or(false)
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut v = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let p = e.path();
        if !hidden(&p) {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

/// Image files below `dir`, recursively, sorted; counts other files in `ignored`. Symbolic links are
/// followed (a linked image or folder is read like any other), but a folder that is, through a link, one
/// of the folders above it (`above`: their canonical paths, the image folder's root first) is a symlink
/// loop and an error, never an endless walk.
fn walk(
    dir: &Path,
    above: &mut Vec<PathBuf>,
    out: &mut Vec<PathBuf>,
    ignored: &mut usize,
) -> Result<()> {
    let real = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if let Some(ancestor) = above.iter().find(|a| **a == real) {
        return Err(Error::format(
            dir,
            format!(
                "symlink loop: this folder is {} again, a folder above it; remove the link (links to images and \
                 to folders outside the image folder are fine)",
                ancestor.display()
            ),
        ));
    }
    above.push(real);
    for p in list_dir(dir)? {
        if p.is_dir() {
            walk(&p, above, out, ignored)?;
        } else if is_image(&p) {
            out.push(p);
        } else {
            *ignored += 1;
        }
    }
    above.pop();
    Ok(())
}

fn parse_labels(file: &Path, names: &[PathBuf]) -> Result<Vec<i64>> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let split = |l: &str| -> Vec<String> {
        l.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
            .collect()
    };
    let parse_label = |s: &str, line: usize| -> Result<i64> {
        s.parse::<i64>().ok().filter(|&v| v >= 0).ok_or_else(|| {
            Error::format(
                file,
                format!("line {line}: label `{s}` is not a non-negative integer"),
            )
        })
    };
    let one_column = lines.iter().all(|(_, l)| split(l).len() == 1);
    if one_column {
        if lines.len() != names.len() {
            return Err(Error::format(
                file,
                format!(
                    "{} labels for {} images: a one-column label file needs one line per image, in sorted \
                     file-name order",
                    lines.len(),
                    names.len()
                ),
            ));
        }
        return lines.iter().map(|(n, l)| parse_label(l, *n)).collect();
    }
    let mut map = std::collections::HashMap::new();
    for (n, l) in &lines {
        let f = split(l);
        if f.len() != 2 {
            return Err(Error::format(
                file,
                format!("line {n}: expected `<file name> <label>`, got `{l}`"),
            ));
        }
        map.insert(f[0].clone(), parse_label(&f[1], *n)?);
    }
    names
        .iter()
        .map(|p| {
            let name = p
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            map.get(&name)
                .copied()
                .ok_or_else(|| Error::format(file, format!("no label for image `{name}`")))
        })
        .collect()
}

impl ImageFolder {
    /// Lists `root` (class folders or a flat folder), checks that it holds images and that labels fit.
    pub fn open(root: &Path, opts: ImageFolderOptions) -> Result<Self> {
        if !(opts.channels == 1 || opts.channels == 3) {
            return Err(DataError::Channels(opts.channels).into());
        }
        if opts.crop == 0 || opts.resize < opts.crop || opts.resize > MAX_RESIZE {
            return Err(DataError::ResizeCrop {
                resize: opts.resize,
                crop: opts.crop,
            }
            .into());
        }
        if !root.is_dir() {
            return Err(Error::format(
                root,
                "image folder not found (or not a folder)",
            ));
        }
        let top = list_dir(root)?;
        let real_root = std::fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
        let class_dirs: Vec<&PathBuf> = top.iter().filter(|p| p.is_dir()).collect();
        let mut entries = Vec::new();
        let mut classes = Vec::new();
        let mut ignored = 0usize;
        if !class_dirs.is_empty() {
            for (ci, d) in class_dirs.iter().enumerate() {
                let mut files = Vec::new();
                walk(d, &mut vec![real_root.clone()], &mut files, &mut ignored)?;
                classes.push(
                    d.file_name()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
                entries.extend(files.into_iter().map(|path| Entry {
                    path,
                    label: Some(ci as i64),
                }));
            }
            let loose = top.iter().filter(|p| p.is_file()).count();
            if loose > 0 {
                log::warn!(
                    "{}: {loose} file(s) beside the class folders are ignored",
                    root.display()
                );
                ignored += loose;
            }
        } else {
            let mut files = Vec::new();
            walk(root, &mut Vec::new(), &mut files, &mut ignored)?;
            let labels_file = opts.labels_file.clone().or_else(|| {
                let p = root.join("labels.txt");
                p.is_file().then_some(p)
            });
            let labels = match &labels_file {
                Some(f) => Some(parse_labels(f, &files)?),
                None => None,
            };
            if let Some(l) = &labels {
                let max = l.iter().copied().max().unwrap_or(0);
                classes = (0..=max).map(|i| i.to_string()).collect();
            }
            entries = files
                .into_iter()
                .enumerate()
                .map(|(i, path)| Entry {
                    path,
                    label: labels.as_ref().map(|l| l[i]),
                })
                .collect();
        }
        if entries.is_empty() {
            return Err(Error::format(
                root,
                format!(
                    "no images found (looked for .jpg, .jpeg, .png in the folder or in class sub-folders; \
                     {ignored} other file(s))"
                ),
            ));
        }
        if ignored > 0 {
            log::warn!("{}: ignored {ignored} non-image file(s)", root.display());
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            entries: Arc::new(entries),
            classes,
            ignored,
            opts,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    /// Class names (folder names, or label numbers for a labelled flat folder); empty when unlabelled.
    pub fn class_names(&self) -> &[String] {
        &self.classes
    }
    /// Labels in file order, or `None` for an unlabelled folder.
    pub fn labels(&self) -> Option<Vec<i64>> {
        self.entries.iter().map(|e| e.label).collect()
    }
    /// Non-image files found and ignored while listing.
    pub fn ignored(&self) -> usize {
        self.ignored
    }
    pub fn options(&self) -> &ImageFolderOptions {
        &self.opts
    }
    /// The shape of one decoded example, [C, crop, crop].
    pub fn example_shape(&self) -> [i64; 3] {
        [
            self.opts.channels,
            self.opts.crop as i64,
            self.opts.crop as i64,
        ]
    }

    /// Decodes and preprocesses image `i`: [C·crop·crop] f32 in [0, 1], channel-major.
    pub fn decode(&self, i: usize) -> Result<Vec<f32>> {
        let e = self
            .entries
            .get(i)
            .ok_or_else(|| DataError::IndexOutOfRange {
                data: self.root.display().to_string(),
                index: i as i64,
                len: self.len(),
            })?;
        decode_file(&e.path, &self.opts)
    }

    /// Decodes the images at `indices` in parallel; undecodable files go to `bad` (or fail, per options).
    pub fn load(&self, indices: &[usize]) -> Result<ImageBatch> {
        load_batch(&self.entries, &self.opts, indices)
    }

    /// All images in batches of `batch`, decoded in parallel one batch ahead on a background thread.
    /// Memory: at most three batches alive.
    pub fn batches(&self, batch: usize) -> ImageBatches {
        let batch = batch.max(1);
        let (tx, rx) = sync_channel::<Result<ImageBatch>>(1);
        let entries = Arc::clone(&self.entries);
        let opts = self.opts.clone();
        let n = entries.len();
        let handle = std::thread::spawn(move || {
            let mut start = 0;
            while start < n {
                let idx: Vec<usize> = (start..(start + batch).min(n)).collect();
                start += batch;
                let r = load_batch(&entries, &opts, &idx);
                let stop = r.is_err();
                if tx.send(r).is_err() || stop {
                    return;
                }
            }
        });
        ImageBatches {
            rx: Some(rx),
            handle: Some(handle),
        }
    }
}

/// Iterator over an image folder's batches (see [`ImageFolder::batches`]).
pub struct ImageBatches {
    rx: Option<Receiver<Result<ImageBatch>>>,
    handle: Option<JoinHandle<()>>,
}

impl Iterator for ImageBatches {
    type Item = Result<ImageBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for ImageBatches {
    fn drop(&mut self) {
        self.rx.take(); // the producer's next send fails and it stops
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn threads(opts: &ImageFolderOptions) -> usize {
    if opts.threads > 0 {
        opts.threads
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

fn load_batch(
    entries: &[Entry],
    opts: &ImageFolderOptions,
    indices: &[usize],
) -> Result<ImageBatch> {
    let per = (opts.channels as usize) * (opts.crop as usize) * (opts.crop as usize);
    for &i in indices {
        if i >= entries.len() {
            return Err(DataError::IndexOutOfRange {
                data: "an image folder".into(),
                index: i as i64,
                len: entries.len(),
            }
            .into());
        }
    }
    let nt = threads(opts).min(indices.len()).max(1);
    let chunk = indices.len().div_ceil(nt);
    let mut results: Vec<(usize, Result<Vec<f32>>)> = Vec::with_capacity(indices.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = indices
            .chunks(chunk.max(1))
            .map(|ch| {
                s.spawn(move || {
                    ch.iter()
                        .map(|&i| (i, decode_file(&entries[i].path, opts)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(r) => results.extend(r),
                Err(_) => results.push((usize::MAX, Err(DataError::DecoderPanicked.into()))),
            }
        }
    });
    let mut data = Vec::with_capacity(per * indices.len());
    let mut kept = Vec::with_capacity(indices.len());
    let mut bad = Vec::new();
    for (i, r) in results {
        match r {
            Ok(v) => {
                data.extend_from_slice(&v);
                kept.push(i);
            }
            Err(e) => {
                if opts.on_bad == OnBadImage::Fail || i == usize::MAX {
                    return Err(e);
                }
                log::warn!("skipping image: {e}");
                bad.push((i, e.to_string()));
            }
        }
    }
    let c = opts.channels;
    let s = opts.crop as i64;
    let images = Tensor::from_slice(&data).view([kept.len() as i64, c, s, s]); // [b, C, crop, crop]
    Ok(ImageBatch {
        images,
        indices: kept,
        bad,
    })
}

/// torchvision's resize-then-centre-crop geometry: (new_w, new_h, left, top).
pub fn resize_crop_geometry(w: u32, h: u32, resize: u32, crop: u32) -> (u32, u32, u32, u32) {
    let (nw, nh) = if w <= h {
        (resize, ((resize as f64) * (h as f64) / (w as f64)) as u32)
    } else {
        (((resize as f64) * (w as f64) / (h as f64)) as u32, resize)
    };
    let nw = nw.max(crop);
    let nh = nh.max(crop);
    let left = (((nw - crop) as f64) / 2.0).round() as u32;
    let top = (((nh - crop) as f64) / 2.0).round() as u32;
    (nw, nh, left, top)
}

/// Decodes one file (format sniffed from its bytes) and preprocesses it: [C·crop·crop] in [0, 1].
pub fn decode_file(path: &Path, opts: &ImageFolderOptions) -> Result<Vec<f32>> {
    let reader = image::io::Reader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let img = reader
        .decode()
        .map_err(|e| Error::format(path, format!("not a readable image: {e}")))?;
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(Error::format(path, "empty image"));
    }
    let (nw, nh, left, top) = resize_crop_geometry(w, h, opts.resize, opts.crop);
    if u64::from(nw) * u64::from(nh) > MAX_PIXELS {
        return Err(Error::format(
            path,
            format!(
                "a {w}x{h} image resized to shorter side {} would be {nw}x{nh}, more than {MAX_PIXELS} pixels: \
                 its aspect ratio is too extreme; crop the image or remove it",
                opts.resize
            ),
        ));
    }
    let crop = opts.crop as usize;
    let mut out = vec![0f32; (opts.channels as usize) * crop * crop];
    let plane = crop * crop;
    if opts.channels == 3 {
        let rgb = img.to_rgb8();
        let r = image::imageops::resize(&rgb, nw, nh, FilterType::Triangle);
        for y in 0..crop {
            for x in 0..crop {
                let p = r.get_pixel(left + x as u32, top + y as u32).0;
                for c in 0..3 {
                    out[c * plane + y * crop + x] = p[c] as f32 / 255.0;
                }
            }
        }
    } else {
        let g = img.to_luma8();
        let r = image::imageops::resize(&g, nw, nh, FilterType::Triangle);
        for y in 0..crop {
            for x in 0..crop {
                out[y * crop + x] =
                    r.get_pixel(left + x as u32, top + y as u32).0[0] as f32 / 255.0;
            }
        }
    }
    Ok(out)
}
