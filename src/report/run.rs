//! The report of an experiment run (`report.md`, `models.csv`): every table beside the paper's values, read
//! from the stages' result files only — Tables 1 and 3 (model errors, attack distortions), Tables 2 and 4
//! (transfer), Fig 7, units vs random directions (§3) and the spectral bounds (Table 5), and the stage
//! times. The runner says which stages exist and where their folders are ([`ReportInputs`]).

use super::interval::pct_ci;
use super::paper;
use crate::results::attack::AttackSummary;
use crate::results::models::{P_SIZE, TEST_SIZE, TRAIN_SIZE};
use crate::results::{pct, Table};
use crate::Result;
use std::path::PathBuf;

/// A stage the report shows: the model it is about, a detail (a layer, a table name), its folder
/// relative to the run folder, and whether it follows the paper's protocol (`experiments/paper.yaml`:
/// only then does a paper value get a verdict).
#[derive(Debug, Clone)]
pub(crate) struct StageEntry {
    pub model: String,
    pub detail: String,
    pub dir: PathBuf,
    pub paper_protocol: bool,
}

/// A trained model of the run: its name (its folder is `models/<name>`), the set it was trained on
/// (`train`, `p1` or `p2`), and whether its resolved spec is `experiments/paper.yaml`'s entry.
#[derive(Debug, Clone)]
pub(crate) struct ModelEntry {
    pub name: String,
    pub trained_on: String,
    pub paper_protocol: bool,
}

/// Everything the report needs to know about a run besides its files.
#[derive(Debug, Clone)]
pub(crate) struct ReportInputs {
    pub name: String,
    pub run_dir: PathBuf,
    pub split_seed: u64,
    pub device: String,
    pub models: Vec<ModelEntry>,
    pub attacks: Vec<StageEntry>,
    /// `model` holds the table's name.
    pub transfer: Vec<StageEntry>,
    pub fig7: Option<PathBuf>,
    /// `detail` holds the layer.
    pub units: Vec<StageEntry>,
    pub spectral: Vec<StageEntry>,
    /// (stage, seconds, skipped because up to date).
    pub timings: Vec<(String, f64, bool)>,
}

/// Writes `report.md` and `models.csv` for a run whose model stages are finished.
pub(crate) fn write_report(inp: &ReportInputs) -> Result<PathBuf> {
    let run_dir = inp.run_dir.as_path();
    let (t, misses) = models_table(inp)?;
    let mut timing = Table::new(&["stage", "seconds", "this run"]);
    for (s, secs, skipped) in &inp.timings {
        timing.push(vec![
            s.clone(),
            format!("{secs:.1}"),
            if *skipped {
                "skipped (up to date)".into()
            } else {
                "ran".into()
            },
        ]);
    }
    let mut md = format!(
        "# Report: {}\n\nReproduction of Szegedy et al., *Intriguing properties of neural networks* (ICLR 2014), Tables 1 and 3 \
         (model errors). Errors are measured on the full MNIST sets (train 60,000, test 10,000; P1/P2 = the seeded halves of \
         the training set, split seed {}). Loss: mean cross-entropy + Σ λ·Σw²/k (k = units of the layer).\n\n## Models (Tables 1, 3)\n\n{}\n",
        inp.name, inp.split_seed, t.markdown()
    );
    let judged = inp
        .models
        .iter()
        .filter(|m| m.paper_protocol && paper::target(&m.name).is_some())
        .count();
    if judged == 0 {
        md.push_str("No model here is trained by the paper's protocol (`experiments/paper.yaml`), so no target is judged; the paper's values are shown for reference.\n");
    } else if misses.is_empty() {
        md.push_str(&format!(
            "All {judged} models trained by the paper's protocol meet their target.\n"
        ));
    } else {
        md.push_str(&format!(
            "Targets missed: {}. See README \"Reproduction notes\" for the reasons.\n",
            misses.join("; ")
        ));
    }
    md.push_str(&attack_section(inp));
    md.push_str(&transfer_section(inp));
    md.push_str(&fig7_section(inp));
    md.push_str(&units_section(inp));
    md.push_str(&spectral_section(inp));
    md.push_str(&format!(
        "\n## Stage times\n\n{}\nMachine: {} CPU threads seen by libtorch ({}).\n",
        timing.markdown(),
        tch::get_num_threads(),
        inp.device
    ));
    let path = run_dir.join("report.md");
    crate::io::write_atomic(&path, md.as_bytes())?;
    Ok(path)
}

/// The models table (Markdown) of Tables 1 and 3, also written as `models.csv`, and the models that
/// miss their accuracy target.
fn models_table(inp: &ReportInputs) -> Result<(Table, Vec<String>)> {
    let run_dir = inp.run_dir.as_path();
    let mut t = Table::new(&[
        "model",
        "trained on",
        "optimiser",
        "iterations",
        "train err (ours)",
        "train err (paper)",
        "test err (ours)",
        "test err (paper)",
        "P1 err (ours / paper)",
        "P2 err (ours / paper)",
        "target (paper protocol only)",
        "met",
        "seconds",
    ]);
    let mut csv = Table::new(&[
        "model",
        "train_on",
        "optimizer",
        "iterations",
        "train_err",
        "paper_train_err",
        "test_err",
        "paper_test_err",
        "p1_err",
        "paper_p1_err",
        "p2_err",
        "paper_p2_err",
        "target",
        "met",
        "paper_protocol",
        "seconds",
    ]);
    let mut misses = Vec::new();
    for spec in &inp.models {
        let rec = crate::results::models::read_record(&run_dir.join("models").join(&spec.name))?;
        let (errors, iterations, seconds, opt) =
            (rec.errors, rec.iterations, rec.seconds, rec.optimizer);
        let p = paper::paper_model(&spec.name).unwrap_or_default();
        let own = match spec.trained_on.as_str() {
            "p1" => errors.p1,
            "p2" => errors.p2,
            _ => errors.train,
        };
        let (target, met) = match paper::target(&spec.name).filter(|_| spec.paper_protocol) {
            Some((d, check)) => {
                let ok = check(own, errors.test);
                if !ok {
                    misses.push(format!(
                        "{} (target {d}: own-set error {}, test error {})",
                        spec.name,
                        pct(Some(own)),
                        pct(Some(errors.test))
                    ));
                }
                (d.to_string(), if ok { "yes" } else { "NO" }.to_string())
            }
            None if paper::target(&spec.name).is_some() => {
                ("– (not the paper's protocol)".into(), "–".into())
            }
            None => ("–".into(), "–".into()),
        };
        let train_on = spec.trained_on.clone();
        t.push(vec![
            spec.name.clone(),
            train_on.clone(),
            opt.clone(),
            iterations.to_string(),
            pct_ci(errors.train, TRAIN_SIZE),
            pct(p.train_err),
            pct_ci(errors.test, TEST_SIZE),
            pct(p.test_err),
            format!("{} / {}", pct_ci(errors.p1, P_SIZE), pct(p.p1_err)),
            format!("{} / {}", pct_ci(errors.p2, P_SIZE), pct(p.p2_err)),
            target.clone(),
            met.clone(),
            format!("{seconds:.1}"),
        ]);
        let f = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        csv.push(vec![
            spec.name.clone(),
            train_on,
            opt,
            iterations.to_string(),
            errors.train.to_string(),
            f(p.train_err),
            errors.test.to_string(),
            f(p.test_err),
            errors.p1.to_string(),
            f(p.p1_err),
            errors.p2.to_string(),
            f(p.p2_err),
            target,
            met,
            spec.paper_protocol.to_string(),
            format!("{seconds:.3}"),
        ]);
    }
    csv.write_csv(&run_dir.join("models.csv"))?;
    Ok((t, misses))
}

/// The report's §3 section: each units stage's conclusion and figures.
fn units_section(inp: &ReportInputs) -> String {
    let run_dir = inp.run_dir.as_path();
    if inp.units.is_empty() {
        return String::new();
    }
    let mut md = String::from("\n## Units vs random directions (§3, Figs 1–2)\n\nLabel purity of the top-T images of each direction (share of the most common label), units vs random directions, 95% bootstrap intervals and a two-sided Mann-Whitney test; the paper's evidence is visual only.\n\n");
    let mut t = Table::new(&[
        "model",
        "layer",
        "images",
        "units: purity",
        "random: purity",
        "difference (units − random)",
        "p",
        "conclusion",
    ]);
    for u in &inp.units {
        let rel = u.dir.display().to_string();
        let Ok(sum) =
            crate::io::read_json::<serde_json::Value>(&run_dir.join(&rel).join("summary.json"))
        else {
            continue;
        };
        let est = |v: &serde_json::Value| match (
            v["mean"].as_f64(),
            v["lo"].as_f64(),
            v["hi"].as_f64(),
        ) {
            (Some(m), Some(l), Some(h)) => format!("{m:.3} [{l:.3}, {h:.3}]"),
            _ => "–".into(),
        };
        let kinds = sum["kinds"].as_array().cloned().unwrap_or_default();
        let kind = |k: &str| {
            kinds
                .iter()
                .find(|x| x["kind"] == k)
                .map(|x| est(&x["purity"]))
                .unwrap_or_else(|| "–".into())
        };
        let cmp = sum["comparisons"]
            .as_array()
            .and_then(|c| c.first().cloned())
            .unwrap_or_default();
        t.push(vec![
            u.model.clone(),
            u.detail.clone(),
            sum["n_images"].to_string(),
            kind("unit"),
            kind("random"),
            est(&cmp["purity_diff"]),
            cmp["purity_test"]["p_value"]
                .as_f64()
                .map(|p| format!("{p:.3}"))
                .unwrap_or_else(|| "–".into()),
            sum["conclusion"].as_str().unwrap_or("").to_string(),
        ]);
        md.push_str(&format!(
            "- {} / {}: ![units]({rel}/unit.png) ![random]({rel}/random.png)\n",
            u.model, u.detail
        ));
    }
    format!("{md}\n{}", t.markdown())
}

/// The report's §4.3 section: each spectral stage's table.
fn spectral_section(inp: &ReportInputs) -> String {
    let run_dir = inp.run_dir.as_path();
    let mut md = String::new();
    for sp in &inp.spectral {
        let rel = sp.dir.display().to_string();
        if let Ok(t) = std::fs::read_to_string(run_dir.join(&rel).join("table5.md")) {
            let body: String = t
                .lines()
                .skip_while(|l| l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n");
            md.push_str(&format!("\n## Spectral bounds of {} (§4.3, Table 5)\n{body}\n\nSpectra: ![spectrum]({rel}/spectrum.png)\n", sp.model));
        }
    }
    md
}

/// The report's §4.1 section: Table 1's last column (average minimum distortion) beside the paper's.
fn attack_section(inp: &ReportInputs) -> String {
    if inp.attacks.is_empty() {
        return String::new();
    }
    let mut t = Table::new(&[
        "model",
        "set",
        "examples",
        "targeted",
        "success (ours, 95% interval)",
        "av. min. distortion (ours)",
        "paper",
        "ours / paper",
        "within ±25% (paper protocol only)",
        "evals / image",
        "images / s",
        "attack time",
    ]);
    let mut outside = Vec::new();
    for a in &inp.attacks {
        let path = inp.run_dir.join(&a.dir).join("summary.json");
        let Ok(s) = crate::io::read_json::<AttackSummary>(&path) else {
            continue;
        };
        let paper = paper::paper_model(&a.model).and_then(|p| p.distortion);
        let ratio = paper.map(|p| s.mean_distortion / p); // ours / paper
        let row = if a.detail.is_empty() || a.detail == a.model {
            a.model.clone()
        } else {
            format!("{} ({})", a.model, a.detail)
        };
        t.push(vec![
            row,
            s.split.clone(),
            s.examples.to_string(),
            if s.targeted {
                "random target"
            } else {
                "untargeted"
            }
            .into(),
            pct_ci(s.success_rate, s.examples),
            format!("{:.4}", s.mean_distortion),
            paper.map(|p| format!("{p}")).unwrap_or_else(|| "–".into()),
            ratio
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "–".into()),
            match ratio {
                Some(_) if !a.paper_protocol => "– (not the paper's protocol)".into(),
                Some(r) if (r - 1.0).abs() <= 0.25 => "yes".into(),
                Some(_) => {
                    outside.push(a.model.clone());
                    "NO".into()
                }
                None => "–".into(),
            },
            format!("{:.0}", s.evaluations_per_image),
            format!("{:.1}", s.images_per_second),
            format!("{:.0} s", s.seconds),
        ]);
    }
    let why = if outside.is_empty() {
        String::new()
    } else {
        format!(
            "\nOutside ±25% of the paper: {}. The minimal distortion measures the model as much as the attack: it grows with the weight decay's strength.\n",
            outside.join(", ")
        )
    };
    format!(
        "\n## Adversarial examples (§4.1, last column of Tables 1 and 3)\n\nThe paper's box-constrained L-BFGS attack with a search over c; every success re-verified in a fresh forward pass. Distortion = sqrt(Σ(x′ − x)²/n), averaged over successful examples. The paper attacks all 60,000 training images for Table 1 and the 10,000 test images for Table 3 (M1, M1′, M2), as `experiments/paper.yaml` does; other experiments attack a subset.\n\n{}{why}",
        t.markdown()
    )
}

/// The report's §4.2 cross-model section (Tables 2 and 4).
fn transfer_section(inp: &ReportInputs) -> String {
    let mut md = String::new();
    for t in &inp.transfer {
        let Ok(table) = crate::results::transfer::read(&inp.run_dir.join(&t.dir)) else {
            continue;
        };
        md.push_str(&format!(
            "\n## Cross-model generalisation: {} (§4.2, Tables 2 and 4)\n\nError of each column's model on each row's examples, ours (the paper's in brackets where it has the cell). Adversarial rows: every verified adversarial of that model's attack stage; Gaussian rows: the first row's originals plus noise of that stddev, {}; amplified rows: each perturbation scaled to that distortion, clipped. Distortion: measured on the evaluated images.\n\n{}",
            t.model,
            if table.clip_noise { "clipped to [0, 1]" } else { "not clipped" },
            super::transfer::markdown(&table)
        ));
    }
    md
}

/// The report's Fig 7 section.
fn fig7_section(inp: &ReportInputs) -> String {
    let Some(dir) = &inp.fig7 else {
        return String::new();
    };
    let Ok(f) = crate::io::read_json::<crate::results::fig7::Fig7>(
        &inp.run_dir.join(dir).join("fig7.json"),
    ) else {
        return String::new();
    };
    // The noise accuracies are measured on the test set (10,000 images unless recorded otherwise).
    let eval = f.eval_images.unwrap_or(TEST_SIZE);
    let mut t = Table::new(&[
        "model",
        "shown",
        "adversarial stddev",
        "accuracy on adversarials (paper 0%)",
        "accuracy, Gaussian noise of that stddev (test set)",
        "grid",
    ]);
    for p in &f.panels {
        let png = p
            .png
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        t.push(vec![
            p.model.clone(),
            p.images.to_string(),
            format!("{:.4}", p.stddev),
            pct_ci(p.adversarial_accuracy, p.images),
            pct_ci(p.noise_accuracy, eval),
            format!("![fig7](fig7/{png})"),
        ]);
    }
    format!(
        "\n## Fig 7: adversarials vs Gaussian noise\n\n{}\nPanel (c), {}: accuracy on test images with Gaussian noise of stddev 1 = {} clipped to [0, 1], {} unclipped (paper: 51%; the paper does not say whether it clipped). ![fig7c](fig7/fig7c.png)\n",
        t.markdown(),
        f.panel_c_model,
        pct_ci(f.panel_c_accuracy, eval),
        pct_ci(f.panel_c_accuracy_unclipped, eval)
    )
}
