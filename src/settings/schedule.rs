//! Keyframed parameter tracks and their interpolation.

use serde::Deserialize;

use super::Value;

/// How a value travels from one keyframe to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interpolation {
    /// Straight line.
    #[default]
    Linear,
    /// Smooth start and stop (smoothstep).
    EaseInOut,
    /// Hold the value until the next keyframe.
    Step,
}

impl Interpolation {
    /// Eased progress for a linear progress `t` in `[0, 1]`.
    pub fn ease(self, t: f64) -> f64 {
        let t = t.clamp(0.0, 1.0);
        match self {
            Interpolation::Linear => t,
            Interpolation::EaseInOut => t * t * (3.0 - 2.0 * t),
            Interpolation::Step => 0.0,
        }
    }
}

/// Values of one parameter at keyframe times (frame indices, increasing).
#[derive(Debug, Clone, PartialEq)]
pub struct Track<T> {
    /// `(frame, value, interpolation towards the next key)`.
    pub keys: Vec<(f64, T, Interpolation)>,
}

impl<T: Clone> Track<T> {
    /// The keys around `frame` and the eased progress between them: `(a, b, s)` with the value
    /// `a` at `s = 0` and `b` at `s = 1`; `None` for an empty track.
    pub fn bracket(&self, frame: f64) -> Option<(T, T, f64)> {
        let first = self.keys.first()?;
        if frame <= first.0 {
            return Some((first.1.clone(), first.1.clone(), 0.0));
        }
        for pair in self.keys.windows(2) {
            let ((t0, v0, how), (t1, v1, _)) = (&pair[0], &pair[1]);
            if frame < *t1 {
                return Some((v0.clone(), v1.clone(), how.ease((frame - t0) / (t1 - t0))));
            }
        }
        let last = self.keys.last().expect("non-empty");
        Some((last.1.clone(), last.1.clone(), 0.0))
    }
}

impl<T: Value> Track<T> {
    /// The value at `frame` (see [`Value::between`]), or `base` for an empty track.
    pub fn value(&self, frame: f64, base: T) -> T {
        self.bracket(frame).map_or(base, |(a, b, s)| T::between(&a, &b, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(how: Interpolation) -> Track<f64> {
        Track { keys: vec![(10.0, 1.0, how), (20.0, 3.0, how), (30.0, 0.0, how)] }
    }

    #[test]
    fn interpolation_values() {
        let lin = track(Interpolation::Linear);
        assert_eq!(lin.value(0.0, 9.0), 1.0, "before the first key: its value");
        assert_eq!(lin.value(15.0, 9.0), 2.0);
        assert_eq!(lin.value(25.0, 9.0), 1.5);
        assert_eq!(lin.value(99.0, 9.0), 0.0, "after the last key: its value");
        let ease = track(Interpolation::EaseInOut);
        assert_eq!(ease.value(15.0, 9.0), 2.0, "symmetric at the midpoint");
        assert!((ease.value(12.5, 9.0) - (1.0 + 2.0 * 0.15625)).abs() < 1e-12, "slow start");
        let step = track(Interpolation::Step);
        assert_eq!(step.value(19.9, 9.0), 1.0);
        assert_eq!(step.value(20.0, 9.0), 3.0);
        assert_eq!(Track { keys: vec![] }.value(5.0, 9.0), 9.0, "empty track: base value");
    }
}
