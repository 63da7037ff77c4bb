//! Small deterministic models and images for tests and golden files.
//!
//! Nothing here is downloaded: the fixture VGG19 has torchvision's exact layer layout with a
//! few channels per layer and He-initialised weights drawn from a seeded generator, written
//! through the same safetensors loader the real weights use.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Result, Tensor};

use crate::dream::Rng;
use crate::models::vgg19::{layout, Slot};

/// Output channels of each convolution of the fixture VGG19, in order.
pub const FIXTURE_VGG_WIDTHS: [usize; 16] = [4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8];

/// Output channels of each convolution of the real VGG19 (for timing with random weights).
pub const VGG19_WIDTHS: [usize; 16] = [
    64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512,
];

/// Standard normal samples (Box-Muller) from `rng`.
fn normals(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1 = rng.unit().max(1e-7);
            let u2 = rng.unit();
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}

/// Tensors (`features.N.weight` / `.bias`) of a VGG19 with the given convolution widths and
/// seeded He-initialised weights.
pub fn vgg19_tensors(widths: &[usize; 16], seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = Rng::new(seed);
    let mut tensors = HashMap::new();
    let mut channels = 3;
    let mut widths = widths.iter();
    for (index, slot) in layout().into_iter().enumerate() {
        if slot != Slot::Conv {
            continue;
        }
        let out = *widths.next().expect("one width per convolution");
        let std = (2.0 / (channels * 9) as f32).sqrt();
        let w: Vec<f32> = normals(&mut rng, out * channels * 9)
            .into_iter()
            .map(|v| v * std)
            .collect();
        let b: Vec<f32> = normals(&mut rng, out)
            .into_iter()
            .map(|v| v * 0.05)
            .collect();
        tensors.insert(
            format!("features.{index}.weight"),
            Tensor::from_vec(w, (out, channels, 3, 3), &Device::Cpu)?,
        );
        tensors.insert(
            format!("features.{index}.bias"),
            Tensor::from_vec(b, out, &Device::Cpu)?,
        );
        channels = out;
    }
    Ok(tensors)
}

/// Writes a seeded VGG19 with the given widths as a safetensors file.
pub fn write_vgg19(path: &Path, widths: &[usize; 16], seed: u64) -> Result<()> {
    candle_core::safetensors::save(&vgg19_tensors(widths, seed)?, path)
}

/// Writes the fixture VGG19 ([`FIXTURE_VGG_WIDTHS`]) as a safetensors file.
pub fn write_tiny_vgg19(path: &Path, seed: u64) -> Result<()> {
    write_vgg19(path, &FIXTURE_VGG_WIDTHS, seed)
}

/// A deterministic `[1, 3, h, w]` test picture in `[0, 1]`: colour ramps, rings and stripes,
/// with detail at several scales.
pub fn test_image(h: usize, w: usize, device: &Device) -> Result<Tensor> {
    let mut data = vec![0f32; 3 * h * w];
    for y in 0..h {
        for x in 0..w {
            let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
            let r = ((u - 0.6).powi(2) + (v - 0.4).powi(2)).sqrt();
            let rings = 0.5 + 0.5 * (r * 40.0).sin();
            let stripes = 0.5 + 0.5 * ((u * 3.0 + v * 7.0) * 6.0).sin();
            data[y * w + x] = 0.2 + 0.6 * u * rings;
            data[h * w + y * w + x] = 0.15 + 0.7 * v * (1.0 - 0.5 * stripes);
            data[2 * h * w + y * w + x] = 0.3 + 0.4 * (1.0 - u) * (0.5 + 0.5 * rings * stripes);
        }
    }
    Tensor::from_vec(data, (1, 3, h, w), device)
}
