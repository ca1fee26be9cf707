//! Font registration for plotters' `ab_glyph` text backend (all figures of the paper's reproduction).
//!
//! plotters with the `ab_glyph` feature has no system fonts: a family must be registered before any text
//! is drawn. We embed DejaVu Sans (crate `dejavu`) and register it once as `sans-serif` (normal and bold).

use std::sync::Once;

static FONTS: Once = Once::new();

/// Registers DejaVu Sans as the `sans-serif` family (idempotent, thread-safe). Call before drawing text.
pub fn ensure_fonts() {
    FONTS.call_once(|| {
        use plotters::style::{register_font, FontStyle};
        // The embedded TTFs are valid, so registration cannot fail; ignore the impossible error rather than panic.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
        let _ = register_font("sans-serif", FontStyle::Italic, dejavu::sans::oblique());
        let _ = register_font("sans-serif", FontStyle::Oblique, dejavu::sans::oblique());
    });
}
