//! VGG19 feature extractor with torchvision's layer indexing (`features.0` … `features.36`).

use candle_core::Tensor;

use super::weights::WeightFile;
use crate::nn::{Conv2d, Network, Op, Padding, Tap};

/// Convolutions per block; every block ends in a 2x2 max-pool.
const BLOCKS: [usize; 5] = [2, 2, 4, 4, 4];

/// ImageNet channel means and standard deviations used by torchvision.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The op at each torchvision `features` index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// 3x3 convolution, padding 1.
    Conv,
    /// In-place ReLU.
    Relu,
    /// 2x2 max-pool, stride 2.
    Pool,
}

/// The 37 `features` slots of torchvision's VGG19.
pub fn layout() -> Vec<Slot> {
    BLOCKS.iter().flat_map(|&convs| (0..convs).flat_map(|_| [Slot::Conv, Slot::Relu]).chain([Slot::Pool])).collect()
}

/// Builds VGG19 features from torchvision-layout tensors (`features.N.weight` / `.bias`).
///
/// Channel widths are read from the file, so narrower networks with the same layout (such as
/// the test fixture) load too; consecutive convolutions must agree on their channel counts.
pub fn build(file: &WeightFile) -> Result<Network, anyhow::Error> {
    let device = file.device().clone();
    let mean = Tensor::from_slice(&MEAN, (1, 3, 1, 1), &device)?;
    let scale = Tensor::from_slice(&STD.map(|s| 1.0 / s), (1, 3, 1, 1), &device)?;
    let mut ops = vec![Op::Normalize { mean, scale }];
    let mut taps = Vec::new();
    let mut channels = 3;
    for (index, slot) in layout().into_iter().enumerate() {
        let kind = match slot {
            Slot::Conv => {
                let weight =
                    file.get(&format!("features.{index}.weight"), &[None, Some(channels), Some(3), Some(3)])?;
                let out = weight.dim(0)?;
                let bias = file.get(&format!("features.{index}.bias"), &[Some(out)])?;
                ops.push(Op::Conv(Conv2d::new(weight, Some(bias), 1, Padding::Symmetric(1))?));
                let kind = format!("conv 3x3 {channels}->{out}");
                channels = out;
                kind
            }
            Slot::Relu => {
                ops.push(Op::Relu);
                "relu".to_string()
            }
            Slot::Pool => {
                ops.push(Op::MaxPool2);
                "maxpool 2x2".to_string()
            }
        };
        taps.push(Tap { name: format!("features.{index}"), kind, end: ops.len() });
    }
    Ok(Network::new(ops, taps))
}
