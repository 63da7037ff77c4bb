//! Where shots change: a frame starts a new shot when its luma histogram and its pixels both
//! move far from the previous frame's.

use super::flow::Plane;

/// Luma histogram bins.
const BINS: usize = 64;

/// How different two frames (luma planes in `[0, 1]`) are as shots: the Bhattacharyya distance
/// of their 64-bin luma histograms plus their mean absolute luma difference. Within a shot it
/// stays below about 0.2 even with fast motion (the histogram barely moves); hard cuts score
/// 0.4 and more.
pub fn cut_score(prev: &Plane, cur: &Plane) -> f32 {
    let histogram = |p: &Plane| {
        let mut h = [0f32; BINS];
        for &v in &p.data {
            h[((v * BINS as f32) as usize).min(BINS - 1)] += 1.0;
        }
        let n = p.data.len().max(1) as f32;
        h.map(|c| c / n)
    };
    let (a, b) = (histogram(prev), histogram(cur));
    let overlap: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).sqrt()).sum();
    let distance = (1.0 - overlap).max(0.0).sqrt();
    let diff = prev.data.iter().zip(&cur.data).map(|(a, b)| (a - b).abs()).sum::<f32>() / cur.data.len().max(1) as f32;
    distance + diff
}

/// Whether `cur` starts a new shot after `prev`: its [`cut_score`] is above `threshold`.
pub fn is_cut(prev: &Plane, cur: &Plane, threshold: f32) -> bool {
    cut_score(prev, cur) > threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(f: impl Fn(usize, usize) -> f32) -> Plane {
        let (w, h) = (64, 48);
        Plane { w, h, data: (0..w * h).map(|i| f(i % w, i / w)).collect() }
    }

    #[test]
    fn motion_scores_low_and_a_new_scene_high() {
        let texture =
            |dx: usize| plane(move |x, y| 0.5 + 0.4 * (((x + dx) as f32 * 0.4).sin() * (y as f32 * 0.3).cos()));
        let moved = cut_score(&texture(0), &texture(3));
        assert!(moved < 0.35, "a moving texture is one shot: {moved}");
        let dark = plane(|x, y| 0.1 + 0.002 * (x + y) as f32);
        let cut = cut_score(&texture(0), &dark);
        assert!(cut > 0.8, "another scene: {cut}");
        assert_eq!(cut_score(&dark, &dark), 0.0);
    }
}
