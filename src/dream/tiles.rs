//! Tiled gradients: frames too large to push through the network at once (a 4K frame through
//! VGG19 would need about 8 GB) are cut into tiles whose gradients add up to the whole frame's.
//!
//! Every tile is fed with a halo of context around it, but only the activations at its own
//! pixels count (see [`Region`]), so the tiles partition each layer's activations and the
//! objective is the whole frame's L2 norm. Activations near a tile's edge still see a cropped
//! context where the receptive field reaches past the halo; the tile grid moves to a random
//! offset every step so those small differences never line up into a seam.

use std::ops::Range;

use candle_core::{Result, Tensor};

use super::Rng;
use crate::nn::{Network, Objective, Region, TermStats};

/// Context, in input pixels, fed around each tile (rounded up to the network's stride).
pub const HALO: usize = 64;

/// One tile: the crop fed to the network, and what of it the tile owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tile {
    /// Input rows of the crop.
    pub rows: Range<usize>,
    /// Input columns of the crop.
    pub cols: Range<usize>,
    /// The tile's own pixels, relative to the crop.
    pub region: Region,
}

/// Cuts `0..len` into `ceil(len / tile)` near-equal pieces, the cuts all moved by
/// `(shift - 0.5) / 2` of a piece (`shift` in `[0, 1)`) and rounded down to multiples of
/// `align`; no piece is longer than 1.25 `tile` (plus `align`).
fn segments(len: usize, tile: usize, align: usize, shift: f64) -> Vec<(usize, usize)> {
    let pieces = len.div_ceil(tile.max(1)).max(1);
    let size = len as f64 / pieces as f64;
    let mut cuts = vec![0];
    for k in 1..pieces {
        let at = ((k as f64 + (shift - 0.5) / 2.0) * size) as usize / align * align;
        if at > *cuts.last().unwrap_or(&0) && at < len {
            cuts.push(at);
        }
    }
    cuts.push(len);
    cuts.windows(2).map(|c| (c[0], c[1])).collect()
}

/// Tiles of at most about `tile x tile` covering `h x w`, the grid moved by `shift` (each in
/// `[0, 1)`), with `halo` pixels of context. `halo` should be a multiple of `align`, the
/// network's stride, so that every crop starts on its pooling grid.
pub fn tiles(h: usize, w: usize, tile: usize, halo: usize, align: usize, shift: (f64, f64)) -> Vec<Tile> {
    let crop = |(a, b): (usize, usize), len: usize| a.saturating_sub(halo)..(b + halo).min(len);
    let (rows, cols) = (segments(h, tile, align, shift.0), segments(w, tile, align, shift.1));
    let mut out = Vec::with_capacity(rows.len() * cols.len());
    for &r in &rows {
        for &c in &cols {
            let (rows, cols) = (crop(r, h), crop(c, w));
            let region =
                Region { rows: (r.0 - rows.start, r.1 - rows.start), cols: (c.0 - cols.start, c.1 - cols.start) };
            out.push(Tile { rows, cols, region });
        }
    }
    out
}

/// The objective and its gradient with respect to `x` (`[N, 3, H, W]`), computed over tiles of
/// about `tile` pixels a side at a random grid offset when `x` is larger than that (`tile` 0:
/// never), and in one pass otherwise.
pub fn objective_gradient(
    net: &Network,
    x: &Tensor,
    objective: &Objective,
    tile: usize,
    rng: &mut Rng,
) -> Result<(f32, Tensor)> {
    let (n, c, h, w) = x.dims4()?;
    if tile == 0 || (h <= tile && w <= tile) {
        return net.objective_gradient(x, objective);
    }
    let align = objective.terms.iter().map(|(t, _)| net.tap_stride(*t)).max().unwrap_or(1);
    let halo = HALO.div_ceil(align) * align;
    let shift = (rng.unit() as f64, rng.unit() as f64);
    let tiles = tiles(h, w, tile, halo, align, shift);
    let crop = |t: &Tile| x.narrow(2, t.rows.start, t.rows.len())?.narrow(3, t.cols.start, t.cols.len());
    // Each term's seed is its activations over the whole frame's norm. With one plain term the
    // backward is linear in that norm, so it is divided out at the end; with several, or a
    // guide, a forward pass over the tiles measures the whole frame first.
    let measure = objective.terms.len() > 1 || objective.guide.is_some();
    let totals = if measure {
        let mut totals = vec![TermStats::default(); objective.terms.len()];
        for t in &tiles {
            let (s, _) = net.seeded_gradient(&crop(t)?, objective, Some(&t.region), &|_, _| (0.0, 0.0))?;
            totals.iter_mut().zip(&s).for_each(|(a, b)| a.add(b));
        }
        Some(totals)
    } else {
        None
    };
    let norm = |term: usize, _: &TermStats| totals.as_ref().map_or((1.0, 1.0), |t| t[term].norms());
    let mut grad = x.zeros_like()?;
    let mut summed = vec![TermStats::default(); objective.terms.len()];
    for t in &tiles {
        let (s, g) = net.seeded_gradient(&crop(t)?, objective, Some(&t.region), &norm)?;
        summed.iter_mut().zip(&s).for_each(|(a, b)| a.add(b));
        let at = [0..n, 0..c, t.rows.clone(), t.cols.clone()];
        let sum = (grad.narrow(2, t.rows.start, t.rows.len())?.narrow(3, t.cols.start, t.cols.len())? + g)?;
        grad = grad.slice_assign(&at, &sum)?;
    }
    let totals = totals.unwrap_or(summed);
    if let Some(t) = totals.first().filter(|t| !measure && t.squares > 0.0) {
        grad = (grad / t.norms().0 as f64)?;
    }
    let value = objective.value(&totals);
    Ok((value, grad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_partition_the_frame_and_crops_start_on_the_grid() {
        let cases = [(2160, 3840, 768, (0.3, 0.9)), (300, 500, 128, (0.0, 0.5)), (100, 90, 64, (0.99, 0.0))];
        for (h, w, tile, shift) in cases {
            let tiles = tiles(h, w, tile, 64, 32, shift);
            let mut owner = vec![0u8; h * w];
            let longest = tile + tile / 4 + 32 + 2 * 64;
            for t in &tiles {
                assert_eq!(t.rows.start % 32, 0, "{t:?}");
                assert_eq!(t.cols.start % 32, 0, "{t:?}");
                assert!(t.rows.len() <= longest && t.cols.len() <= longest, "{t:?}");
                for y in t.rows.start + t.region.rows.0..t.rows.start + t.region.rows.1 {
                    for x in t.cols.start + t.region.cols.0..t.cols.start + t.region.cols.1 {
                        owner[y * w + x] += 1;
                    }
                }
            }
            assert!(owner.iter().all(|&o| o == 1), "{h}x{w} tile {tile}: pixels owned by 0 or 2+ tiles");
        }
    }

    #[test]
    fn segments_are_even_and_move_with_the_shift() {
        assert_eq!(segments(1200, 400, 1, 0.5), vec![(0, 400), (400, 800), (800, 1200)]);
        assert_eq!(segments(1200, 400, 16, 0.0), vec![(0, 288), (288, 688), (688, 1200)]);
        assert_eq!(segments(1200, 400, 16, 0.99), vec![(0, 496), (496, 896), (896, 1200)]);
        assert_eq!(segments(100, 400, 16, 0.7), vec![(0, 100)]);
        assert_eq!(tiles(2160, 3840, 768, 64, 16, (0.5, 0.5)).len(), 15);
    }
}
