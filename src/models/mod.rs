//! The pretrained CNNs dreams are computed with, and where their weights come from.

mod architecture;
mod batch_norm;
pub mod discovery;
pub mod download;
pub mod efficientnet_lite0;
pub mod googlenet;
mod pth;
pub mod vgg19;
mod weights;

use std::path::Path;

use candle_core::Device;

pub use discovery::Located;
pub use pth::Layout;
pub use weights::{Format, WeightFile, WeightsError};

use crate::nn::Network;

/// Environment variable naming a folder that holds weights files.
pub const WEIGHTS_DIR_ENV: &str = "DREAMVID_WEIGHTS_DIR";

/// A supported model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
pub enum ModelKind {
    /// EfficientNet-Lite0 (ImageNet, 4.7 M parameters): freely downloadable, the default.
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
    /// VGG19 features in torchvision layout: the classic DeepDream look.
    #[serde(rename = "vgg19")]
    Vgg19,
    /// GoogLeNet (Inception v1) in torchvision layout: the original DeepDream network.
    #[serde(rename = "googlenet")]
    GoogLeNet,
}

impl std::str::FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| format!("unknown model `{s}`"))
    }
}

impl ModelKind {
    /// Every model.
    pub const ALL: [ModelKind; 3] = [ModelKind::EfficientNetLite0, ModelKind::Vgg19, ModelKind::GoogLeNet];

    /// Name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::EfficientNetLite0 => "efficientnet-lite0",
            ModelKind::Vgg19 => "vgg19",
            ModelKind::GoogLeNet => "googlenet",
        }
    }

    /// File name of the weights inside a weights folder.
    pub fn file_name(self) -> &'static str {
        match self {
            ModelKind::EfficientNetLite0 => "efficientnet_lite0.safetensors",
            ModelKind::Vgg19 => "vgg19.safetensors",
            ModelKind::GoogLeNet => "googlenet.safetensors",
        }
    }

    /// Layer dreamed on when none is given.
    pub fn default_layer(self) -> &'static str {
        match self {
            ModelKind::EfficientNetLite0 => "blocks.10",
            ModelKind::Vgg19 => "features.30",
            ModelKind::GoogLeNet => "inception4c",
        }
    }

    /// The names of the model's dreamable layers, in forward order.
    pub fn layer_names(self) -> Vec<String> {
        match self {
            ModelKind::EfficientNetLite0 => std::iter::once("stem".to_string())
                .chain((0..efficientnet_lite0::BLOCKS).map(|b| format!("blocks.{b}")))
                .chain(std::iter::once("head".to_string()))
                .collect(),
            ModelKind::Vgg19 => (0..vgg19::layout().len()).map(|i| format!("features.{i}")).collect(),
            ModelKind::GoogLeNet => googlenet::MODULES.iter().map(|(name, _)| name.to_string()).collect(),
        }
    }

    /// The layer name a user's `spec` (a name, or a number such as `30`) refers to.
    pub fn resolve_layer(self, spec: &str) -> Option<String> {
        let names = self.layer_names();
        crate::nn::match_layer(names.iter().map(String::as_str), spec).map(|i| names[i].clone())
    }

    /// How a user obtains a good weights file.
    pub fn fetch_hint(self) -> String {
        let get = format!("run `scripts/fetch-weights {}` in the dreamvid repository", self.name());
        match self {
            ModelKind::EfficientNetLite0 => format!("{get}, or pass --weights PATH (safetensors or .pth)"),
            ModelKind::Vgg19 => format!(
                "{get} (torchvision's file, or timm's from the Hugging Face hub), or let torchvision download vgg19-dcbb9e9d.pth \
                 (torchvision.models.vgg19(weights=\"IMAGENET1K_V1\") puts it in ~/.cache/torch/hub/checkpoints, \
                 where dreamvid finds it), or put any torchvision-layout safetensors or .pth \
                 (keys `features.N.weight`) at weights/{} or pass --weights PATH",
                self.file_name()
            ),
            ModelKind::GoogLeNet => format!(
                "let torchvision download googlenet-1378be20.pth \
                 (torchvision.models.googlenet(weights=\"IMAGENET1K_V1\") puts it in ~/.cache/torch/hub/checkpoints, \
                 where dreamvid finds it; or https://download.pytorch.org/models/googlenet-1378be20.pth), \
                 or put a torchvision-layout safetensors or .pth (keys `conv1.conv.weight`, \
                 `inception4c.branch2.1.conv.weight`, ...) at weights/{} or pass --weights PATH",
                self.file_name()
            ),
        }
    }

    /// Loads the model from a weights file (safetensors or PyTorch checkpoint) onto `device`.
    pub fn load(self, path: &Path, device: &Device) -> anyhow::Result<Network> {
        self.build(&WeightFile::open(path, self.name(), &self.fetch_hint(), device)?)
    }

    /// The model's architecture on `device`, without weights (every parameter 1): its layers,
    /// their descriptions and output shapes are the real model's (`dreamvid layers`).
    pub fn architecture(self, device: &Device) -> anyhow::Result<Network> {
        self.build(&WeightFile::architecture(self.name(), architecture::shapes(self), device))
    }

    fn build(self, file: &WeightFile) -> anyhow::Result<Network> {
        match self {
            ModelKind::EfficientNetLite0 => efficientnet_lite0::build(file),
            ModelKind::Vgg19 => vgg19::build(file),
            ModelKind::GoogLeNet => googlenet::build(file),
        }
    }

    /// Finds this model's weights where [`discovery`] looks, in this process's environment.
    pub fn locate_weights(self) -> Result<Located, WeightsError> {
        discovery::locate(self, &discovery::SearchRoots::from_env())
    }
}
