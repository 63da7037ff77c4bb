//! Infinite zoom: dream, move the camera (zoom, turn, shift), feed the result back, repeat.

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::dream::mask;
use crate::dream::{self, Rng};
use crate::image_io::tensor_to_rgb;
use crate::nn::Network;
use crate::plan::mask::Mask;
use crate::plan::FrameParams;
use crate::resample::{self, move_camera};

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
    pub frame_settings: &'a dyn Fn(usize) -> anyhow::Result<FrameParams>,
    /// Where each frame is dreamed, in the camera's frame (with the frames' `mask_weight`):
    /// where it is 0, a frame is the previous one moved by the camera (the first: the seed
    /// image), undreamed.
    pub mask: Option<&'a Mask>,
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

/// Renders the animation and hands each output frame to `emit` as soon as it is final, calling
/// `on_frame` with the number of frames dreamed so far. Memory does not grow with the number of
/// frames: when looping, only the first few generated frames are kept, for the closing fade.
pub fn stream_zoom(
    job: &ZoomJob,
    emit: &mut dyn FnMut(RgbImage) -> anyhow::Result<()>,
    on_frame: &mut dyn FnMut(usize),
) -> anyhow::Result<()> {
    let total = generated_frames(job.frames, job.looped);
    let mut closer = LoopCloser::new(job.frames, total - job.frames);
    let mut x = job.seed_image.clone();
    for i in 0..total {
        let params = (job.frame_settings)(i)?;
        let (_, _, h, w) = x.dims4()?;
        let mask = job.mask.map(|m| m.frame(i, h, w)).transpose()?;
        x = match mask::strength(mask.as_ref(), (h, w), params.mask_weight, x.device())? {
            None => dream::dream(job.net, &x, &params.dream, &mut |_| {})?,
            Some(m) if mask::is_zero(&m)? => x,
            Some(m) => {
                mask::composite(&dream::dream_weighted(job.net, &x, &params.dream, Some(&m), &mut |_| {})?, &x, &m)?
            }
        };
        if let Some(frame) = closer.push(tensor_to_rgb(&x)?) {
            emit(frame)?;
        }
        x = move_camera(&x, params.camera)?;
        on_frame(i + 1);
    }
    Ok(())
}

/// [`stream_zoom`] with every output frame collected in memory: for short animations.
pub fn render_zoom(job: &ZoomJob, on_frame: &mut dyn FnMut(usize)) -> anyhow::Result<Vec<RgbImage>> {
    let mut frames = Vec::with_capacity(job.frames);
    stream_zoom(
        job,
        &mut |frame| {
            frames.push(frame);
            Ok(())
        },
        on_frame,
    )?;
    Ok(frames)
}

/// Turns `frames + extra` generated frames, fed in order, into a loop of `frames`: output `i` is
/// generated frame `extra + i`, and the last `extra` outputs fade into generated frames
/// `0..extra`, so the last output leads into the first exactly as generated frames `extra - 1`
/// and `extra` do. Only those first `extra` generated frames are kept.
struct LoopCloser {
    frames: usize,
    extra: usize,
    start: Vec<RgbImage>,
    generated: usize,
}

impl LoopCloser {
    /// A loop of `frames` output frames from `frames + extra` generated ones (`extra` 0: no loop).
    fn new(frames: usize, extra: usize) -> Self {
        Self { frames, extra, start: Vec::with_capacity(extra), generated: 0 }
    }

    /// Takes the next generated frame; returns the next output frame once it is known.
    fn push(&mut self, mut frame: RgbImage) -> Option<RgbImage> {
        let index = self.generated;
        self.generated += 1;
        if index < self.extra {
            self.start.push(frame);
            return None;
        }
        let (i, fade_start) = (index - self.extra, self.frames - self.extra);
        if i >= fade_start {
            let alpha = (i - fade_start + 1) as f32 / (self.extra + 1) as f32;
            for (o, b) in frame.iter_mut().zip(self.start[i - fade_start].iter()) {
                *o = ((1.0 - alpha) * *o as f32 + alpha * *b as f32).round() as u8;
            }
        }
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_closing_fades_into_the_first_generated_frames() {
        let mut closer = LoopCloser::new(10, 2);
        let out: Vec<RgbImage> =
            (0..12).filter_map(|i| closer.push(RgbImage::from_pixel(2, 2, image::Rgb([i * 10, 0, 0])))).collect();
        assert_eq!(out.len(), 10);
        assert_eq!(out[0].get_pixel(0, 0)[0], 20, "starts at generated frame `extra`");
        assert_eq!(out[7].get_pixel(0, 0)[0], 90);
        // Last output: 1/3 of generated 11 (110) and 2/3 of generated 1 (10).
        assert_eq!(out[9].get_pixel(0, 0)[0], 43);
    }
}
