//! Octave pyramid geometry.

/// Sizes `(h, w)` of the octave pyramid, largest (the input size) first. Each octave is
/// `scale` times smaller than the previous; octaves whose shorter side would drop below
/// `min_side` are left out, so a small input may get fewer octaves than asked for.
pub fn octave_sizes(h: usize, w: usize, octaves: usize, scale: f64, min_side: usize) -> Vec<(usize, usize)> {
    let mut sizes = vec![(h, w)];
    for i in 1..octaves.max(1) {
        let f = scale.powi(i as i32);
        let size = ((h as f64 / f).round() as usize, (w as f64 / f).round() as usize);
        if size.0.min(size.1) < min_side {
            break;
        }
        sizes.push(size);
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_shrinks_by_scale() {
        let s = octave_sizes(360, 640, 4, 1.4, 32);
        assert_eq!(s, vec![(360, 640), (257, 457), (184, 327), (131, 233)]);
    }

    #[test]
    fn pyramid_stops_at_min_side() {
        assert_eq!(octave_sizes(100, 200, 10, 2.0, 32), vec![(100, 200), (50, 100)]);
        assert_eq!(octave_sizes(20, 20, 4, 1.5, 32), vec![(20, 20)]);
        assert_eq!(octave_sizes(64, 64, 0, 2.0, 32), vec![(64, 64)]);
    }
}
