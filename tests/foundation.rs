//! Foundation tests: MNIST IDX validation and checksums, the P1/P2 split, YAML validation, the model format,
//! the training loss (gradient vs finite differences, weight-decay form) and determinism.

use blindspot::config::Experiment;
use blindspot::data::mnist::{self, Split};
use blindspot::data::split::HalfSplit;
use blindspot::data::MnistData;
use blindspot::fingerprint::sha256_file;
use blindspot::models::zoo::{init_params, presets, ZooModel};
use blindspot::models::Classifier;
use blindspot::train::{decay_vector, Problem};
use blindspot::Error;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn mnist_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/mnist")
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A folder with a small, valid MNIST-format test split (n images), optionally mutated.
fn tiny_mnist(
    dir: &Path,
    n: usize,
    mutate_images: impl Fn(&mut Vec<u8>),
    mutate_labels: impl Fn(&mut Vec<u8>),
) {
    let mut img = vec![0, 0, 8, 3];
    img.extend((n as u32).to_be_bytes());
    img.extend(28u32.to_be_bytes());
    img.extend(28u32.to_be_bytes());
    img.extend((0..n * 784).map(|i| (i % 251) as u8));
    let mut lbl = vec![0, 0, 8, 1];
    lbl.extend((n as u32).to_be_bytes());
    lbl.extend((0..n).map(|i| (i % 10) as u8));
    mutate_images(&mut img);
    mutate_labels(&mut lbl);
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gz(&img)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &lbl).unwrap(); // plain, not gzipped
}

fn load_err(dir: &Path) -> String {
    mnist::load(dir, Split::Test)
        .expect_err("should fail")
        .to_string()
}

#[test]
fn vendored_mnist_loads_with_checksums() {
    let checked = mnist::verify_checksums(&mnist_dir()).unwrap();
    assert_eq!(checked.len(), 4);
    let test = mnist::load(&mnist_dir(), Split::Test).unwrap();
    assert_eq!(test.images.size(), [10_000, 1, 28, 28]);
    assert_eq!(test.labels.size(), [10_000]);
    assert!(
        test.images.max().double_value(&[]) <= 1.0 && test.images.min().double_value(&[]) >= 0.0
    );
    // well-known first test labels: 7 2 1 0 4
    let first: Vec<i64> = Vec::try_from(test.labels.narrow(0, 0, 5)).unwrap();
    assert_eq!(first, [7, 2, 1, 0, 4]);
}

#[test]
fn tiny_valid_idx_gz_and_plain_load() {
    let d = tempfile::tempdir().unwrap();
    tiny_mnist(d.path(), 7, |_| {}, |_| {});
    let m = mnist::load(d.path(), Split::Test).unwrap();
    assert_eq!(m.len(), 7);
    assert_eq!(m.labels.int64_value(&[3]), 3);
}

#[test]
fn corrupt_idx_files_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    tiny_mnist(d.path(), 5, |b| b.truncate(b.len() - 100), |_| {});
    let e = load_err(d.path());
    assert!(e.contains("t10k-images") && e.contains("truncated"), "{e}");

    tiny_mnist(d.path(), 5, |b| b[3] = 1, |_| {});
    let e = load_err(d.path());
    assert!(e.contains("bad magic number"), "{e}");

    tiny_mnist(d.path(), 5, |_| {}, |b| b[9] = 12);
    let e = load_err(d.path());
    assert!(e.contains("label 12 at index 1"), "{e}");

    tiny_mnist(
        d.path(),
        5,
        |_| {},
        |b| {
            b[7] = 4;
            b.pop();
        },
    );
    let e = load_err(d.path());
    assert!(e.contains("does not match"), "{e}");

    // a gzip stream cut in the middle
    tiny_mnist(d.path(), 5, |_| {}, |_| {});
    let p = d.path().join("t10k-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_err(d.path());
    assert!(e.contains("gzip"), "{e}");

    std::fs::remove_file(&p).unwrap();
    let e = load_err(d.path());
    assert!(e.contains("missing"), "{e}");
}

/// A copy of the vendored MNIST in a temporary folder.
fn mnist_copy() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(mnist_dir()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, d.path().join(f.file_name().unwrap())).unwrap();
    }
    d
}

#[test]
fn wrong_checksum_is_detected() {
    let d = mnist_copy();
    let p = d.path().join("t10k-labels-idx1-ubyte.gz");
    let mut b = std::fs::read(&p).unwrap();
    let last = b.len() - 1;
    b[last] ^= 0xff; // the gzip trailer: the stream also fails to decode, the checksum error wins
    std::fs::write(&p, b).unwrap();
    for e in [
        mnist::load(d.path(), Split::Test).expect_err("checksum"),
        MnistData::load(d.path(), 1).err().expect("checksum"),
        mnist::verify_checksums(d.path()).expect_err("checksum"),
    ] {
        assert!(matches!(e, Error::Checksum { .. }), "{e}");
        assert!(e.to_string().contains("t10k-labels-idx1-ubyte.gz"), "{e}");
    }
    // The training split does not read the test files.
    mnist::load(d.path(), Split::Train).unwrap();
}

#[test]
fn checksums_are_computed_without_sha256sums() {
    let d = mnist_copy();
    let listed = mnist::verify_checksums(d.path()).unwrap();
    std::fs::remove_file(d.path().join("SHA256SUMS")).unwrap();
    // The same four (name, sha256) pairs, from the files on disk, with or without SHA256SUMS.
    assert_eq!(mnist::verify_checksums(d.path()).unwrap(), listed);
    let data = MnistData::load(d.path(), 1).unwrap();
    assert_eq!(data.checksums, listed);
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz"
        ]
    );
    for (name, sha) in &listed {
        assert_eq!(sha, &sha256_file(&d.path().join(name)).unwrap(), "{name}");
    }
    // One split: its two files, plain or gzipped, hashed as stored.
    let t = tempfile::tempdir().unwrap();
    tiny_mnist(t.path(), 7, |_| {}, |_| {});
    let (m, sums) = mnist::load_checked(t.path(), Split::Test).unwrap();
    assert_eq!(m.len(), 7);
    for (name, sha) in &sums {
        assert_eq!(sha, &sha256_file(&t.path().join(name)).unwrap(), "{name}");
    }
    assert_eq!(sums.len(), 2);
}

/// Peak resident memory of this process (VmHWM), in bytes, where /proc tells it.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A valid single-member gzip of `head` followed by `chunks` × 8 MiB of zeros, built without compressing
/// gigabytes: one sync-flushed deflate segment of 8 MiB of zeros (its back-references reach only zeros)
/// repeated, a final empty block, and the CRC-32 combined per chunk.
fn gzip_bomb(head: &[u8], chunks: usize) -> Vec<u8> {
    use flate2::{write::DeflateEncoder, Compression, Crc};
    const CHUNK: usize = 8 << 20;
    let segment = |data: &[u8]| {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::best());
        e.write_all(data).unwrap();
        e.flush().unwrap(); // sync flush: ends on a byte boundary, no final block
        e.get_ref().clone()
    };
    let zeros = vec![0u8; CHUNK];
    let (head_seg, zero_seg) = (segment(head), segment(&zeros));
    let mut crc = Crc::new();
    crc.update(head);
    let mut zero_crc = Crc::new();
    zero_crc.update(&zeros);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]; // gzip header, no name, no mtime
    out.extend(&head_seg);
    for _ in 0..chunks {
        out.extend(&zero_seg);
        crc.combine(&zero_crc);
    }
    out.extend([0x03, 0x00]); // final empty fixed-Huffman block
    out.extend(crc.sum().to_le_bytes());
    out.extend(((head.len() + chunks * CHUNK) as u32).to_le_bytes()); // ISIZE: length mod 2^32
    out
}

#[test]
fn gzip_bomb_stops_at_the_size_the_header_implies() {
    // The generator makes real gzip: a small one decodes whole, CRC and length checked.
    let small = gzip_bomb(b"head", 2);
    let mut all = Vec::new();
    flate2::read::GzDecoder::new(&small[..])
        .read_to_end(&mut all)
        .unwrap();
    assert_eq!(all.len(), 4 + 2 * (8 << 20));
    assert!(all.starts_with(b"head") && all[4..].iter().all(|&b| b == 0));

    // 2 MB on disk, 2 GiB of data: a header claiming 60,000 images, then zeros far past them.
    let d = tempfile::tempdir().unwrap();
    tiny_mnist(d.path(), 5, |_| {}, |_| {});
    let mut head = vec![0, 0, 8, 3];
    for v in [60_000u32, 28, 28] {
        head.extend(v.to_be_bytes());
    }
    let bomb = gzip_bomb(&head, 256);
    assert!(bomb.len() < 3 << 20, "{} bytes", bomb.len());
    std::fs::write(d.path().join("t10k-images-idx3-ubyte.gz"), &bomb).unwrap();
    let t0 = std::time::Instant::now();
    let e = load_err(d.path());
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        e.contains("t10k-images-idx3-ubyte.gz")
            && e.contains("60000 images of 28x28 (47040016 bytes in all)")
            && e.contains("trailing data"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
    // Reading stops one byte past the 47 MB the header implies (exactly: src/data/idx.rs's unit test);
    // decompressing and holding 2 GiB would take seconds and 2 GiB.
    assert!(secs < 20.0, "{secs} s");
    if let Some(peak) = peak_rss() {
        assert!(peak < 1 << 30, "peak resident memory {peak} bytes");
    }
}

#[test]
fn absurd_idx_headers_are_refused() {
    let d = tempfile::tempdir().unwrap();
    tiny_mnist(
        d.path(),
        5,
        |b| b[4..8].copy_from_slice(&70_001u32.to_be_bytes()),
        |_| {},
    );
    let e = load_err(d.path());
    assert!(
        e.contains("t10k-images")
            && e.contains("header says 70001 images")
            && e.contains("1 to 70000"),
        "{e}"
    );
    tiny_mnist(
        d.path(),
        5,
        |b| b[8..12].copy_from_slice(&0u32.to_be_bytes()),
        |_| {},
    );
    let e = load_err(d.path());
    assert!(e.contains("0x28"), "{e}");
    tiny_mnist(
        d.path(),
        5,
        |_| {},
        |b| b[4..8].copy_from_slice(&u32::MAX.to_be_bytes()),
    );
    let e = load_err(d.path());
    assert!(
        e.contains("t10k-labels") && e.contains("4294967295 labels"),
        "{e}"
    );
    // Plain (not gzipped) data past the header's size.
    tiny_mnist(d.path(), 5, |_| {}, |b| b.extend([0; 3]));
    let e = load_err(d.path());
    assert!(
        e.contains("t10k-labels") && e.contains("trailing data"),
        "{e}"
    );
}

#[test]
fn half_split_is_disjoint_seeded_and_complete() {
    let a = HalfSplit::new(60_000, 7);
    let b = HalfSplit::new(60_000, 7);
    let c = HalfSplit::new(60_000, 8);
    assert_eq!(a, b);
    assert_ne!(a.p1, c.p1);
    assert_eq!(a.p1.len(), 30_000);
    assert_eq!(a.p2.len(), 30_000);
    let mut all: Vec<i64> = a.p1.iter().chain(a.p2.iter()).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..60_000).collect::<Vec<i64>>());
    // a recorded split that was edited is rejected
    let d = tempfile::tempdir().unwrap();
    let mut edited = a.clone();
    edited.p1.swap(0, 1);
    blindspot::io::write_json(&d.path().join("s.json"), &edited).unwrap();
    assert!(HalfSplit::load(&d.path().join("s.json")).is_err());
    blindspot::io::write_json(&d.path().join("s.json"), &a).unwrap();
    assert_eq!(HalfSplit::load(&d.path().join("s.json")).unwrap(), a);
    // A `total` that would allocate without bound is refused before the split is rebuilt.
    let mut v = serde_json::to_value(&a).unwrap();
    v["total"] = serde_json::json!(1u64 << 50);
    blindspot::io::write_json(&d.path().join("s.json"), &v).unwrap();
    let e = HalfSplit::load(&d.path().join("s.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("s.json") && e.contains("`total`"), "{e}");
}

const GOOD: &str = "name: t\nmodels:\n  - name: s\n    arch: {kind: softmax}\n    weight_decay: [1.0e-4]\n    optimizer: {kind: lbfgs, max_iter: 5}\n";

#[test]
fn experiment_yaml_is_validated() {
    let e = Experiment::parse(GOOD, "good.yaml").unwrap();
    assert_eq!(e.models[0].name, "s");
    let bad = |text: &str| {
        Experiment::parse(text, "bad.yaml")
            .expect_err("should be rejected")
            .to_string()
    };

    let m = bad(&GOOD.replace("max_iter: 5", "max_iter: 5, max_itr: 3"));
    assert!(
        m.contains("bad.yaml") && m.contains("unknown field `max_itr`"),
        "{m}"
    );
    let m = bad(&GOOD.replace("max_iter: 5", "max_iter: five"));
    assert!(
        m.contains("models[0]") && m.contains("\"five\"") && m.contains("line 3"),
        "{m}"
    );
    let m = bad(&GOOD.replace("[1.0e-4]", "[1.0e-4, 2.0]"));
    assert!(m.contains("models[0].weight_decay"), "{m}");
    let m = bad(&GOOD.replace("name: t\n", "name: t\nsed: 3\n"));
    assert!(m.contains("unknown field `sed`"), "{m}");
    let m = bad(&GOOD.replace("name: t\n", "name: t\ndata: {mnist_dir: /nonexistent}\n"));
    assert!(
        m.contains("data.mnist_dir") && m.contains("/nonexistent"),
        "{m}"
    );
    let m = bad(&GOOD.replace("name: t\n", "name: t\ndevice: cuda:3\n"));
    assert!(m.contains("device"), "{m}");
    let m = bad(&GOOD.replace("kind: softmax", "kind: transformer"));
    assert!(m.contains("transformer"), "{m}");
}

#[test]
fn conv_net_takes_one_or_several_conv_stages() {
    let conv = |ch: &str, wd: &str| {
        GOOD.replace(
            "arch: {kind: softmax}",
            &format!("arch: {{kind: conv, channels: {ch}, kernel: 5, hidden: 16, dropout: 0.5}}"),
        )
        .replace("[1.0e-4]", wd)
    };
    let e = Experiment::parse(&conv("[4, 8]", "[0.0, 0.0, 0.0, 0.0]"), "c.yaml").unwrap();
    let arch = e.models[0].arch.architecture();
    let x = Tensor::rand([2, 1, 28, 28], (Kind::Float, Device::Cpu));
    let m = ZooModel::new(
        "c",
        arch.clone(),
        init_params(&arch, Device::Cpu),
        serde_json::json!({}),
    )
    .unwrap();
    // 28 → conv5 24 → pool 12 → conv5 8 → pool 4: fc1 reads 8·4·4 = 128 values.
    assert_eq!(m.layer(&x, "conv2.relu").unwrap().size(), [2, 8, 8, 8]);
    assert_eq!(m.logits(&x).unwrap().size(), [2, 10]);
    assert!(arch.layers.iter().any(|l| matches!(l,
        blindspot::models::zoo::Layer::Linear { name, in_features: 128, .. } if name == "fc1")));
    // One number is one stage, as before.
    Experiment::parse(&conv("4", "[0.0, 0.0, 0.0]"), "c.yaml").unwrap();
    let bad = |text: &str| Experiment::parse(text, "c.yaml").unwrap_err().to_string();
    let m = bad(&conv("[]", "[0.0, 0.0]"));
    assert!(m.contains("arch.channels"), "{m}");
    let m = bad(&conv("[4, 8, 8]", "[0.0, 0.0, 0.0, 0.0, 0.0]"));
    assert!(m.contains("conv3") && m.contains("too small"), "{m}");
    let m = bad(&conv("[4, 8]", "[0.0, 0.0, 0.0]"));
    assert!(m.contains("weight_decay"), "{m}");
}

#[test]
fn shipped_experiments_parse() {
    for f in ["experiments/quick.yaml", "experiments/paper.yaml"] {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(f);
        Experiment::load(&p).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

fn small_model(seed: i64) -> ZooModel {
    tch::manual_seed(seed);
    let arch = presets::conv(&[4], 5, 16, 0.5);
    let theta = init_params(&arch, Device::Cpu);
    ZooModel::new("c", arch, theta, serde_json::json!({})).unwrap()
}

#[test]
fn model_save_load_roundtrip_and_mismatch_errors() {
    let d = tempfile::tempdir().unwrap();
    let m = small_model(3);
    m.save(d.path()).unwrap();
    let l = ZooModel::load(d.path(), Device::Cpu).unwrap();
    assert!(l.theta.equal(&m.theta));
    assert_eq!(l.layer_names(), m.layer_names());
    let x = Tensor::rand([3, 1, 28, 28], (Kind::Float, Device::Cpu));
    assert!(l
        .logits(&x)
        .unwrap()
        .allclose(&m.logits(&x).unwrap(), 1e-6, 1e-6, false));
    assert_eq!(m.layer(&x, "fc1.relu").unwrap().size(), [3, 16]);
    let e = m.layer(&x, "fc9").unwrap_err().to_string();
    assert!(e.contains("conv1.relu"), "lists layers: {e}");
    let e = m
        .logits(&Tensor::rand([3, 784], (Kind::Float, Device::Cpu)))
        .unwrap_err()
        .to_string();
    assert!(e.contains("expects inputs [B, 1, 28, 28]"), "{e}");

    // model.json that disagrees with the weights
    let json = d.path().join("model.json");
    let text = std::fs::read_to_string(&json).unwrap();
    std::fs::write(
        &json,
        text.replace("\"out_features\": 16", "\"out_features\": 17")
            .replace("\"in_features\": 16", "\"in_features\": 17"),
    )
    .unwrap();
    let e = ZooModel::load(d.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("weights.safetensors") && e.contains("fc1.weight") && e.contains("shape"),
        "{e}"
    );
    std::fs::write(&json, &text).unwrap();

    // missing weights file / missing folder
    std::fs::remove_file(d.path().join("weights.safetensors")).unwrap();
    let e = ZooModel::load(d.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("weights.safetensors"), "{e}");
    let e = ZooModel::load(&d.path().join("nope"), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model folder not found"), "{e}");

    // NaN weights
    let bad = ZooModel::new(
        "c",
        m.arch.clone(),
        m.theta.fill_nan_like(),
        serde_json::json!({}),
    )
    .unwrap();
    bad.save(d.path()).unwrap();
    let e = ZooModel::load(d.path(), Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(e.contains("NaN"), "{e}");
}

#[test]
fn model_json_numbers_out_of_range_are_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    small_model(3).save(d.path()).unwrap();
    let json = d.path().join("model.json");
    let good: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // Layers: conv1, relu, pool, flatten, fc1 (576 → 16), relu, dropout, fc2.
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "/architecture/layers/0/stride",
            0.into(),
            "layer `conv1` (layers[0]): `stride` is 0; it must be an integer from 1 to 2147483647",
        ),
        (
            "/architecture/layers/0/stride",
            (-2).into(),
            "`stride` is -2",
        ),
        (
            "/architecture/layers/0/kernel_size",
            0.into(),
            "layer `conv1` (layers[0]): `kernel_size` is 0",
        ),
        (
            "/architecture/layers/0/padding",
            (-1).into(),
            "`padding` is -1; it must be an integer from 0 to 2147483647",
        ),
        (
            "/architecture/layers/0/in_channels",
            0.into(),
            "`in_channels` is 0",
        ),
        (
            "/architecture/layers/0/out_channels",
            (-4).into(),
            "`out_channels` is -4",
        ),
        (
            "/architecture/layers/0/padding",
            (1i64 << 40).into(),
            "`padding` is 1099511627776",
        ),
        (
            "/architecture/layers/0/padding",
            (1i64 << 20).into(),
            "its output for one example [4, 2097176, 2097176] has more than 2147483647 values",
        ),
        (
            "/architecture/layers/2/kernel_size",
            0.into(),
            "layer `conv1.pool` (layers[2]): `kernel_size` is 0",
        ),
        (
            "/architecture/layers/2/stride",
            0.into(),
            "layer `conv1.pool` (layers[2]): `stride` is 0",
        ),
        (
            "/architecture/layers/4/in_features",
            0.into(),
            "layer `fc1` (layers[4]): `in_features` is 0",
        ),
        (
            "/architecture/layers/4/out_features",
            (-16).into(),
            "`out_features` is -16",
        ),
        (
            "/architecture/layers/4/out_features",
            (1i64 << 30).into(),
            "layer `fc1` (layers[4]): its weight [1073741824, 576] has more than 2147483647 values",
        ),
        (
            "/architecture/layers/6/p",
            1.5.into(),
            "layer `fc1.dropout` (layers[6]): `p` is 1.5; it must be a probability from 0 to 1",
        ),
        (
            "/architecture/input_shape",
            serde_json::json!([1, 0, 28]),
            "input_shape [1, 0, 28]: every dimension must be at least 1",
        ),
        (
            "/architecture/input_shape",
            serde_json::json!([1, 1 << 20, 1 << 20]),
            "input_shape [1, 1048576, 1048576]",
        ),
    ];
    for (pointer, value, want) in cases {
        let mut v = good.clone();
        *v.pointer_mut(pointer).unwrap() = value;
        std::fs::write(&json, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        let e = ZooModel::load(d.path(), Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: field `architecture`: ", json.display()))
                && e.contains(want),
            "{pointer}: {e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
    }
}

trait FillNan {
    fn fill_nan_like(&self) -> Tensor;
}
impl FillNan for Tensor {
    fn fill_nan_like(&self) -> Tensor {
        let t = self.copy();
        let _ = t.narrow(0, 5, 1).fill_(f64::NAN);
        t
    }
}

#[test]
fn weight_decay_is_lambda_sum_w2_over_units() {
    let arch = presets::mlp(&[3], blindspot::models::zoo::Layer::Sigmoid); // 784 -> 3 -> 10
    let d = decay_vector(&arch, &[0.3, 0.5], Device::Cpu);
    let layout = arch.param_layout();
    assert!((d.double_value(&[layout[0].offset]) - 0.1).abs() < 1e-7);
    assert_eq!(d.double_value(&[layout[1].offset]), 0.0); // bias
    assert!((d.double_value(&[layout[2].offset]) - 0.05).abs() < 1e-7);
}

#[test]
fn loss_gradient_matches_finite_differences() {
    // f64 copy of the loss for accurate differences: a 784-5-10 sigmoid net on 20 real images
    tch::manual_seed(0);
    let arch = presets::mlp(&[5], blindspot::models::zoo::Layer::Sigmoid);
    let layout = arch.param_layout();
    let test = mnist::load(&mnist_dir(), Split::Test).unwrap();
    let x = test.images.narrow(0, 0, 20).to_kind(Kind::Double);
    let y = test.labels.narrow(0, 0, 20);
    let decay = decay_vector(&arch, &[1e-2, 1e-3], Device::Cpu).to_kind(Kind::Double);
    let theta = init_params(&arch, Device::Cpu).to_kind(Kind::Double);
    let p = Problem {
        arch: &arch,
        layout: &layout,
        x: &x,
        y: &y,
        decay: &decay,
    };
    let (_, g) = p.loss_and_grad(&theta);
    let h = 1e-6;
    for &i in &[0i64, 400, 3925, 3930, 3960, 3984] {
        let e = Tensor::zeros_like(&theta);
        let _ = e.narrow(0, i, 1).fill_(h);
        let fp = p.loss(&(&theta + &e), &x, &y, false).double_value(&[]);
        let fm = p.loss(&(&theta - &e), &x, &y, false).double_value(&[]);
        let fd = (fp - fm) / (2.0 * h);
        let an = g.double_value(&[i]);
        assert!(
            (fd - an).abs() <= 1e-6 + 1e-5 * an.abs(),
            "param {i}: finite difference {fd}, autograd {an}"
        );
    }
}

#[test]
fn autoencoder_frozen_encoder_decay_must_be_zero() {
    let ae = "name: t\nmodels:\n  - name: a\n    arch: {kind: autoencoder, code: 8, pretrain: {kind: adam, lr: 1.0e-3, epochs: 1}}\n    weight_decay: [0.0, 1.0e-6]\n    optimizer: {kind: lbfgs, max_iter: 5}\n";
    Experiment::parse(ae, "ae.yaml").unwrap();
    let e = Experiment::parse(&ae.replace("[0.0, 1.0e-6]", "[1.0e-6, 1.0e-6]"), "ae.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("models[0].weight_decay") && e.contains("frozen encoder"),
        "{e}"
    );
}

#[test]
fn autoencoder_model_is_encoder_plus_softmax_on_its_code() {
    let ae = "name: t\nmodels:\n  - name: a\n    arch: {kind: autoencoder, code: 16, pretrain: {kind: adam, lr: 3.0e-3, epochs: 3, batch_size: 100}}\n    weight_decay: [0.0, 1.0e-6]\n    optimizer: {kind: lbfgs, max_iter: 100}\n";
    let exp = Experiment::parse(ae, "ae.yaml").unwrap();
    let test = mnist::load(&mnist_dir(), Split::Test).unwrap();
    let x = test.images.narrow(0, 0, 1000);
    let y = test.labels.narrow(0, 0, 1000);
    let (model, outcomes) = blindspot::train::train_model(&exp.models[0], &x, &y, 3).unwrap();
    assert_eq!(
        outcomes.len(),
        2,
        "autoencoder stage, then the softmax stage"
    );
    assert_eq!(
        model.layer_names(),
        ["input.flatten", "enc", "enc.sigmoid", "fc"]
    );
    // the saved classifier's code is the one the softmax was trained on: it fits those 1000 images far
    // better than chance
    let err = blindspot::train::error_rate(&model, &x, &y).unwrap();
    assert!(err < 0.5, "training error {err}");
    assert_eq!(model.layer(&x, "enc.sigmoid").unwrap().size(), [1000, 16]);
}
