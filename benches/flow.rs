//! Times the per-frame motion analysis of the video pipeline (two dense optical flows and the
//! consistency check) on consecutive frames of a synthetic pan.
//!
//!   cargo bench --bench flow [-- WIDTH HEIGHT]      (default 640 360)

use std::time::Instant;

use dreamvid::fixture::clip::moving_pattern;
use dreamvid::settings::Settings;
use dreamvid::video::coherence::{motion, Coherence};
use dreamvid::video::flow::Plane;

fn main() {
    dreamvid::runtime::configure();
    let args: Vec<u32> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (w, h) = (args.first().copied().unwrap_or(640), args.get(1).copied().unwrap_or(360));
    let frame = moving_pattern(w, h, 3, 1);
    let (a, b) = (Plane::luma(&frame(0)), Plane::luma(&frame(1)));
    motion(&a, &b, Coherence::Flow, Settings::default().scene_cut as f32);
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            motion(&a, &b, Coherence::Flow, Settings::default().scene_cut as f32);
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("motion analysis {w}x{h}: median {:.3} s (min {:.3}, max {:.3})", times[2], times[0], times[4]);
}
