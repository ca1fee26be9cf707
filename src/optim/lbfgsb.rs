//! Batched L-BFGS-B (Byrd, Lu, Nocedal, Zhu 1995) over tensors [B, n].
