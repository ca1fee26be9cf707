//! Result files: the schemas, readers and writers of everything a stage leaves on disk (tables as CSV and
//! Markdown, adversarial sets, summaries, done-markers). Every module may use it; it imports no analysis
//! module (attack, units, spectral, train, experiments, report), so the report can be drawn from files alone.

pub mod attack;
pub mod checkpoint;
pub mod fig7;
pub mod models;
pub mod paths;
pub mod spectral;
pub mod table;
pub mod transfer;
pub mod units;

pub use table::{pct, Table};

/// A name made safe as one path component: ASCII letters, digits and `-_.'` are kept, anything else becomes
/// `_` (so `M1'` stays `M1'` and `features.0` stays `features.0`). The one sanitiser of folder names.
pub fn folder_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.'".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn folder_name_keeps_safe_characters() {
        assert_eq!(super::folder_name("M1'"), "M1'");
        assert_eq!(super::folder_name("features.0"), "features.0");
        assert_eq!(super::folder_name("a/b c"), "a_b_c");
    }
}
