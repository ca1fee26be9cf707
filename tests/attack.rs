//! Tests of the paper's attack (§4.1): verification, c search, outputs, bad input.

use blindspot::attack::{self, AttackSpec};
use blindspot::models::zoo::ZooModel;
use std::path::PathBuf;
use tch::Device;

/// Manual run on a trained zoo model: BLINDSPOT_ATTACK_MODEL=<dir> BLINDSPOT_ATTACK_N=200
/// cargo test --test attack manual_run -- --ignored --nocapture
#[test]
#[ignore]
fn manual_run() {
    tch::set_num_threads(1);
    let dir = PathBuf::from(std::env::var("BLINDSPOT_ATTACK_MODEL").expect("model dir"));
    let n: usize = std::env::var("BLINDSPOT_ATTACK_N")
        .map(|s| s.parse().unwrap())
        .unwrap_or(200);
    let batch: i64 = std::env::var("BLINDSPOT_ATTACK_BATCH")
        .map(|s| s.parse().unwrap())
        .unwrap_or(10_000);
    let split = std::env::var("BLINDSPOT_ATTACK_SPLIT").unwrap_or("test".into());
    let out =
        PathBuf::from(std::env::var("BLINDSPOT_ATTACK_OUT").unwrap_or("/tmp/attack_manual".into()));
    let model = ZooModel::load(&dir, Device::Cpu).unwrap();
    let data =
        blindspot::experiments::MnistData::load(&blindspot::data::mnist::default_dir(), 2014)
            .unwrap();
    let set = data.set(&split).unwrap();
    let mut spec = AttackSpec {
        split,
        first: Some(n),
        batch,
        ..AttackSpec::default()
    };
    if let Ok(t) = std::env::var("BLINDSPOT_ATTACK_TOL") {
        spec.settings.c_rel_tol = t.parse().unwrap();
    }
    if let Ok(t) = std::env::var("BLINDSPOT_ATTACK_SETTINGS") {
        spec.settings = serde_json::from_str(&t).unwrap();
    }
    let t0 = std::time::Instant::now();
    let s = attack::attack_dataset(&model, &set.images, &set.labels, &spec, &out).unwrap();
    println!("{}", serde_json::to_string_pretty(&s).unwrap());
    println!("wall {:.1}s", t0.elapsed().as_secs_f64());
}
