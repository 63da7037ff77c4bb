//! Infinite zoom: dream, move the camera (zoom, turn, shift), feed the result back, repeat.

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::dream::{self, resample, DreamParams, Rng};
use crate::image_io::tensor_to_rgb;
use crate::nn::Network;

/// Camera motion from one frame to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CameraStep {
    /// Scale per frame (> 1 zooms in).
    pub zoom: f64,
    /// Rotation per frame in degrees, clockwise.
    pub rotate: f64,
    /// Camera shift per frame in pixels `(x, y)`.
    pub translate: (f64, f64),
}

/// Everything one zoom animation needs.
pub struct ZoomJob<'a> {
    /// The network to dream with.
    pub net: &'a Network,
    /// First image, `[1, 3, H, W]` in `[0, 1]`.
    pub seed_image: Tensor,
    /// Frames to produce.
    pub frames: usize,
    /// Make the last frame lead seamlessly into the first.
    pub looped: bool,
    /// Dream settings and camera motion of frame `i`.
    pub frame_settings: &'a dyn Fn(usize) -> (DreamParams, CameraStep),
}

/// Frames generated past the end and cross-faded into the start when looping.
fn loop_overlap(frames: usize) -> usize {
    (frames / 5).clamp(1, 16).min(frames.saturating_sub(1))
}

/// How many frames [`render_zoom`] dreams for `frames` output frames (more when looping).
pub fn generated_frames(frames: usize, looped: bool) -> usize {
    frames + if looped { loop_overlap(frames) } else { 0 }
}

/// A `[1, 3, h, w]` grey image with seeded, slightly smoothed noise: a start with no content.
pub fn noise_image(h: usize, w: usize, seed: u64, device: &Device) -> candle_core::Result<Tensor> {
    let mut rng = Rng::new(seed);
    let data: Vec<f32> = (0..3 * h * w).map(|_| 0.5 + 0.2 * (rng.unit() - 0.5)).collect();
    resample::gaussian_blur(&Tensor::from_vec(data, (1, 3, h, w), device)?, 1.0)
}

/// Renders the animation, calling `on_frame` with the number of frames done.
pub fn render_zoom(job: &ZoomJob, on_frame: &mut dyn FnMut(usize)) -> anyhow::Result<Vec<RgbImage>> {
    let total = generated_frames(job.frames, job.looped);
    let extra = total - job.frames;
    let mut x = job.seed_image.clone();
    let mut generated = Vec::with_capacity(total);
    for i in 0..total {
        let (params, camera) = (job.frame_settings)(i);
        x = dream::dream(job.net, &x, &params, &mut |_| {})?;
        generated.push(tensor_to_rgb(&x)?);
        x = move_camera(&x, camera)?;
        on_frame(i + 1);
    }
    Ok(if extra == 0 { generated } else { close_loop(generated, job.frames, extra) })
}

/// Turns `frames + extra` generated frames into a loop of `frames`: output `i` is generated
/// frame `extra + i`, and the last `extra` outputs fade into generated frames `0..extra`, so
/// the last output leads into the first exactly as generated frames `extra - 1` and `extra` do.
pub fn close_loop(generated: Vec<RgbImage>, frames: usize, extra: usize) -> Vec<RgbImage> {
    (0..frames)
        .map(|i| {
            let main = &generated[extra + i];
            let fade_start = frames - extra;
            if i < fade_start {
                return main.clone();
            }
            let alpha = (i - fade_start + 1) as f32 / (extra + 1) as f32;
            let other = &generated[i - fade_start];
            let mut out = main.clone();
            for (o, (a, b)) in out.iter_mut().zip(main.iter().zip(other.iter())) {
                *o = ((1.0 - alpha) * *a as f32 + alpha * *b as f32).round() as u8;
            }
            out
        })
        .collect()
}

/// The next frame's starting image: `x` seen by a camera that zoomed, turned and shifted by
/// `step` (bicubic resampling, edges extended).
pub fn move_camera(x: &Tensor, step: CameraStep) -> anyhow::Result<Tensor> {
    let (_, c, h, w) = x.dims4()?;
    let src = x.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let (sin, cos) = (-step.rotate.to_radians()).sin_cos();
    let mut out = vec![0f32; c * h * w];
    for y in 0..h {
        for xx in 0..w {
            let (dx, dy) = ((xx as f64 - cx) / step.zoom, (y as f64 - cy) / step.zoom);
            let sx = cx + step.translate.0 + cos * dx - sin * dy;
            let sy = cy + step.translate.1 + sin * dx + cos * dy;
            for ch in 0..c {
                out[ch * h * w + y * w + xx] = bicubic(&src[ch * h * w..(ch + 1) * h * w], w, h, sx, sy);
            }
        }
    }
    Ok(Tensor::from_vec(out, (1, c, h, w), x.device())?.clamp(0.0, 1.0)?.to_dtype(x.dtype())?)
}

fn catmull_rom(t: f64) -> [f64; 4] {
    let (t2, t3) = (t * t, t * t * t);
    [-0.5 * t3 + t2 - 0.5 * t, 1.5 * t3 - 2.5 * t2 + 1.0, -1.5 * t3 + 2.0 * t2 + 0.5 * t, 0.5 * t3 - 0.5 * t2]
}

fn bicubic(plane: &[f32], w: usize, h: usize, x: f64, y: f64) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (wx, wy) = (catmull_rom(x - x0), catmull_rom(y - y0));
    let at = |i: i64, j: i64| plane[(j.clamp(0, h as i64 - 1) as usize) * w + i.clamp(0, w as i64 - 1) as usize] as f64;
    let mut v = 0.0;
    for (m, wyv) in wy.iter().enumerate() {
        for (n, wxv) in wx.iter().enumerate() {
            v += wyv * wxv * at(x0 as i64 - 1 + n as i64, y0 as i64 - 1 + m as i64);
        }
    }
    v as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_camera_keeps_the_image() {
        let x = crate::fixture::test_image(20, 24, &Device::Cpu).unwrap();
        let y = move_camera(&x, CameraStep { zoom: 1.0, rotate: 0.0, translate: (0.0, 0.0) }).unwrap();
        let err = (x - y).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(err < 1e-5, "{err}");
    }

    #[test]
    fn zoom_magnifies_about_the_centre() {
        // A horizontal ramp zoomed 2x has half the slope and the same centre value.
        let w = 33;
        let ramp: Vec<f32> = (0..3 * w * 9).map(|i| (i % w) as f32 / (w - 1) as f32).collect();
        let x = Tensor::from_vec(ramp, (1, 3, 9, w), &Device::Cpu).unwrap();
        let y = move_camera(&x, CameraStep { zoom: 2.0, rotate: 0.0, translate: (0.0, 0.0) }).unwrap();
        let row = y.narrow(1, 0, 1).unwrap().narrow(2, 4, 1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((row[16] - 0.5).abs() < 1e-4);
        assert!(((row[20] - row[12]) - 0.125).abs() < 1e-3, "{}", row[20] - row[12]);
    }

    #[test]
    fn loop_closing_fades_into_the_first_generated_frames() {
        let g: Vec<RgbImage> = (0..12).map(|i| RgbImage::from_pixel(2, 2, image::Rgb([i * 10, 0, 0]))).collect();
        let out = close_loop(g, 10, 2);
        assert_eq!(out.len(), 10);
        assert_eq!(out[0].get_pixel(0, 0)[0], 20, "starts at generated frame `extra`");
        assert_eq!(out[7].get_pixel(0, 0)[0], 90);
        // Last output: 1/3 of generated 11 (110) and 2/3 of generated 1 (10).
        assert_eq!(out[9].get_pixel(0, 0)[0], 43);
    }
}
