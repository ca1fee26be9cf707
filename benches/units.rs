//! Benchmarks of the units pass (paper §3): `cargo bench --bench units`.
//!
//! Needs models generated into /tmp (never committed):
//!   python scripts/make_units_fixtures.py --mnist-conv /tmp/units_mnist_conv.pt
//!   python scripts/export_torchvision.py --out /tmp/units_alexnet.pt
//! (paths overridable with BLINDSPOT_BENCH_MNIST_CONV, BLINDSPOT_BENCH_ALEXNET; an image folder with
//! BLINDSPOT_BENCH_IMAGES, otherwise 128 synthetic 500×375 JPEGs are written to a temporary folder).
//! BLINDSPOT_BENCH_DEVICE=cuda runs on the GPU.

use blindspot::bench::units::{bench, BenchResult};
use blindspot::data::images::{ImageFolder, ImageFolderOptions};
use blindspot::data::mnist::{self, Split};
use blindspot::data::sources::TensorData;
use blindspot::models::torchscript::TorchScriptClassifier;
use blindspot::models::zoo::{init_params, presets, ZooModel};
use blindspot::models::Classifier;
use blindspot::units::{self, Count, UnitsSpec};
use std::path::PathBuf;

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

fn report(r: &BenchResult) {
    println!(
        "{:<22} {:<14} {:>6} images {:>6} directions  batch {:>4}: {:7.2} s  ({:8.1} images/s; forward alone {:.2} s)",
        r.model, r.layer, r.images, r.directions, r.batch, r.seconds, r.images_per_s, r.forward_only_seconds
    );
}

/// What one timed pass analyses (seed 0).
fn spec(layer: &str, units: Count, random: usize, top: usize, batch: usize) -> UnitsSpec {
    UnitsSpec {
        units,
        random,
        top,
        batch,
        ..UnitsSpec::new(layer)
    }
}

fn synthetic_jpegs(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let class = dir.path().join("c0");
    std::fs::create_dir_all(&class).expect("mkdir");
    for i in 0..n {
        let img = image::RgbImage::from_fn(500, 375, |x, y| {
            let v = ((x * 7 + y * 3 + i as u32 * 11) % 255) as u8;
            image::Rgb([v, v.wrapping_mul(3), 255 - v])
        });
        img.save(class.join(format!("img_{i:04}.jpg")))
            .expect("write jpeg");
    }
    dir
}

fn main() -> blindspot::Result<()> {
    std::env::set_var("BLINDSPOT_NO_PROGRESS", "1");
    let device = blindspot::device::parse_device(
        &std::env::var("BLINDSPOT_BENCH_DEVICE").unwrap_or("cpu".into()),
    )?;
    println!(
        "units benchmark on {device:?}, {} threads",
        tch::get_num_threads()
    );

    let conv = env_path("BLINDSPOT_BENCH_MNIST_CONV", "/tmp/units_mnist_conv.pt");
    if conv.is_file() {
        let m = TorchScriptClassifier::load(&conv, device)?;
        let data = TensorData {
            name: "mnist-test".into(),
            data: mnist::load(&mnist::default_dir(), Split::Test)?,
        };
        for layer in ["fc1", "pool1"] {
            let d: i64 = units::layer_shape(&m, layer)?.iter().product();
            let r = bench(&m, &data, &spec(layer, Count::All, d as usize, 9, 1000))?;
            report(&r);
        }
    } else {
        println!(
            "skipping MNIST: {} missing (scripts/make_units_fixtures.py --mnist-conv)",
            conv.display()
        );
    }

    // The zoo's Conv net of experiments/paper.yaml (two conv+pool stages, FC 256), freshly initialised:
    // the pass costs the same whatever the weights.
    {
        tch::manual_seed(0);
        let arch = presets::conv(&[32, 64], 5, 256, 0.5);
        let theta = init_params(&arch, device);
        let m = ZooModel::new("zoo-conv-32-64", arch, theta, serde_json::json!({}))?;
        let data = TensorData {
            name: "mnist-test".into(),
            data: mnist::load(&mnist::default_dir(), Split::Test)?,
        };
        // 256, 1024, 4096 and 4608 units (conv1.relu, 18,432 units, would be an 18,432² projection).
        for layer in ["fc1.relu", "conv2.pool", "conv2.relu", "conv1.pool"] {
            let d: i64 = units::layer_shape(&m, layer)?.iter().product();
            let r = bench(&m, &data, &spec(layer, Count::All, d as usize, 9, 1000))?;
            report(&r);
        }
    }

    let alex = env_path("BLINDSPOT_BENCH_ALEXNET", "/tmp/units_alexnet.pt");
    if alex.is_file() {
        let m = TorchScriptClassifier::load(&alex, device)?;
        let (_tmp, folder) = match std::env::var_os("BLINDSPOT_BENCH_IMAGES") {
            Some(p) => (None, PathBuf::from(p)),
            None => {
                let t = synthetic_jpegs(128);
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let data = ImageFolder::open(&folder, ImageFolderOptions::for_input(&m.input_shape())?)?;
        for layer in ["features.12", "classifier.5"] {
            let r = bench(&m, &data, &spec(layer, Count::N(100), 100, 9, 64))?;
            report(&r);
        }
    } else {
        println!(
            "skipping AlexNet: {} missing (scripts/export_torchvision.py --out ...)",
            alex.display()
        );
    }
    Ok(())
}
