//! Units vs random directions (§3, Figs 1-4).
