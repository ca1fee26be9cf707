//! Where the engine's time goes, by phase (issue "attack at the machine's limit": a profile by phase).
//! Off unless `BLINDSPOT_PROFILE=1`; then every [`span`] adds its wall time to a process-wide table that
//! [`report`] prints (and clears). On CPU libtorch ops run synchronously, so wall time per phase is the
//! phase's cost; on CUDA it is not (kernels are queued), so the table is only meaningful on CPU there.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ENABLED: AtomicU8 = AtomicU8::new(2); // 2 = not read yet
static TABLE: Mutex<Vec<(&'static str, f64, u64)>> = Mutex::new(Vec::new());

/// Whether profiling is on (`BLINDSPOT_PROFILE` set to anything but `0`).
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        0 => false,
        1 => true,
        _ => {
            let on = std::env::var("BLINDSPOT_PROFILE").is_ok_and(|v| v != "0");
            ENABLED.store(on as u8, Ordering::Relaxed);
            on
        }
    }
}

/// A running phase; its time is added when it is dropped.
pub struct Span(Option<(&'static str, Instant)>);

/// Starts timing `phase` (nothing when profiling is off).
pub fn span(phase: &'static str) -> Span {
    Span(enabled().then(|| (phase, Instant::now())))
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some((phase, t0)) = self.0.take() {
            let dt = t0.elapsed().as_secs_f64();
            let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
            match t.iter_mut().find(|(p, _, _)| *p == phase) {
                Some(row) => {
                    row.1 += dt;
                    row.2 += 1;
                }
                None => t.push((phase, dt, 1)),
            }
        }
    }
}

/// The table so far as `phase seconds calls` lines (phases nest: "engine" includes the others), and
/// clears it. Empty when profiling is off.
pub fn report() -> String {
    let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let out = t
        .iter()
        .map(|(p, s, n)| format!("{p:<28} {s:>9.3} s {n:>9} calls"))
        .collect::<Vec<_>>()
        .join("\n");
    t.clear();
    out
}
