//! Writes a synthetic test clip: a slow pan across the sample photo, with a stereo tone.
//!
//!   cargo run --release --example make_clip -- OUT.mp4 [WIDTH HEIGHT SECONDS FPS [cut]]
//!
//! With `cut`, the second half is another shot (the photo in negative colours, panning the
//! other way): a clip whose render-farm plan has a cut in the middle.
//! Used for benchmarks and manual checks; tests make their own clips.

use dreamvid::fixture::clip::{write_clip, ClipSpec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = args.first().map(String::as_str).unwrap_or("clip.mp4");
    let num = |i: usize, d: u32| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (w, h, secs, fps) = (num(1, 640), num(2, 360), num(3, 10), num(4, 25));
    let photo = image::open(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/chelsea.png"))?.to_rgb8();
    // Scale the photo so the frame covers 70% of its width, then pan left to right.
    let scale = w as f32 / (0.7 * photo.width() as f32);
    let big = image::imageops::resize(
        &photo,
        (photo.width() as f32 * scale) as u32,
        ((photo.height() as f32 * scale) as u32).max(h),
        image::imageops::FilterType::CatmullRom,
    );
    let frames = (secs * fps) as usize;
    let travel = (big.width() - w) as f32;
    let cut = args.get(5).is_some_and(|a| a == "cut");
    let spec = ClipSpec { audio: true, ..ClipSpec::constant(w, h, frames, fps as i32) };
    write_clip(out.as_ref(), &spec, |i| {
        let second_shot = cut && i >= frames / 2;
        let t = i as f32 / frames.max(2) as f32;
        let x = (travel * if second_shot { 1.0 - t } else { t }) as u32;
        let y = (big.height() - h) / 2;
        let mut frame = image::imageops::crop_imm(&big, x, y, w, h).to_image();
        if second_shot {
            image::imageops::invert(&mut frame);
        }
        frame
    })?;
    println!("wrote {out}: {w}x{h}, {frames} frames at {fps} fps, with audio");
    Ok(())
}
