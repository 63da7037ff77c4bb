//! Guided dreams (google/deepdream's `objective_guide`): each position of the dreamed layer is
//! pushed towards the guide image's feature vector that matches it best.
//!
//! For activations `x_p` (one `C`-vector per position `p`) and the guide's features `g_q` at
//! the same layer, the guide objective is `sum_p x_p . g*(p)` with `g*(p) = argmax_q x_p . g_q`;
//! where the best match does not change, its gradient at the layer is the matched features
//! `G = [g*(p)]_p` themselves. [`crate::nn::Objective`] divides it by `||G||`, so that its
//! gradient has unit length at the layer like the plain objective's, and mixes the two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{Result, Tensor};

/// Largest `positions x guide positions` matrix of dot products computed at once.
const MATCH_CHUNK: usize = 1 << 22;

/// A guide image and its features at each layer asked for (computed once per layer).
pub struct Guide {
    image: Tensor,
    features: Mutex<HashMap<usize, Tensor>>,
}

impl std::fmt::Debug for Guide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guide({:?})", self.image.dims())
    }
}

impl Guide {
    /// A guide from `image` (`[1, 3, H, W]` RGB in `[0, 1]`, at the size its features are to
    /// be computed at), for one network.
    pub fn new(image: Tensor) -> Self {
        Self { image, features: Mutex::new(HashMap::new()) }
    }

    /// The guide's features at tap `tap`, `[C, positions]`: computed on first use from
    /// `activations` (the network's activations at that tap for an image, here the guide's).
    pub fn features(&self, tap: usize, activations: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
        let mut cache = self.features.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(f) = cache.get(&tap) {
            return Ok(f.clone());
        }
        let act = activations(&self.image)?;
        let (n, c, h, w) = act.dims4()?;
        let f = act.permute((1, 0, 2, 3))?.reshape((c, n * h * w))?.contiguous()?;
        cache.insert(tap, f.clone());
        Ok(f)
    }

    /// For activations `act` (`[N, C, h, w]`) of tap `tap`, the guide features (`[C, positions]`,
    /// see [`Guide::features`]; only the chosen channels, as in `act`) that match each
    /// position best (largest dot product; the first of ties), as `[N, C, h, w]`.
    pub fn matched(act: &Tensor, features: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = act.dims4()?;
        let positions = features.dim(1)?;
        let x = act.permute((0, 2, 3, 1))?.reshape((n * h * w, c))?.contiguous()?;
        let rows = (MATCH_CHUNK / positions.max(1)).max(1);
        let mut best = Vec::with_capacity(n * h * w);
        let mut start = 0;
        while start < n * h * w {
            let len = rows.min(n * h * w - start);
            let dots = x.narrow(0, start, len)?.matmul(features)?;
            best.push(dots.argmax(1)?);
            start += len;
        }
        let best = Tensor::cat(&best, 0)?;
        let chosen = features.t()?.contiguous()?.index_select(&best, 0)?; // [n h w, C]
        chosen.reshape((n, h, w, c))?.permute((0, 3, 1, 2))?.contiguous()
    }
}

/// The guide part of an objective: the guide, and its weight against the plain objective.
#[derive(Debug, Clone)]
pub struct GuideTerm {
    /// The guide image and its features.
    pub guide: Arc<Guide>,
    /// In `(0, 1]`: 1 follows only the guide; the plain objective gets `1 - weight`.
    pub weight: f32,
}

impl PartialEq for GuideTerm {
    /// The same guide (not an equal image) with the same weight.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.guide, &other.guide) && self.weight == other.weight
    }
}
