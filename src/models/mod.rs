//! The pretrained CNNs dreams are computed with, and where their weights come from.

mod batch_norm;
pub mod efficientnet_lite0;
pub mod googlenet;
pub mod vgg19;
mod weights;

use std::path::{Path, PathBuf};

use candle_core::Device;

pub use weights::{WeightFile, WeightsError};

use crate::nn::Network;

/// Environment variable naming a folder that holds weights files.
pub const WEIGHTS_DIR_ENV: &str = "DREAMVID_WEIGHTS_DIR";

/// A supported model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
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
            ModelKind::EfficientNetLite0 => format!("{get}, or pass --weights PATH"),
            ModelKind::Vgg19 => format!(
                "{get} (needs access to the model hub), or download timm's `vgg19.tv_in1k` model.safetensors \
                 (torchvision layout, keys `features.N.weight`) yourself and put it at weights/{} or pass --weights PATH",
                self.file_name()
            ),
            ModelKind::GoogLeNet => format!(
                "download torchvision's `googlenet-1378be20.pth` \
                 (https://download.pytorch.org/models/googlenet-1378be20.pth), save its state dict as \
                 safetensors with the same keys (`conv1.conv.weight`, `inception4c.branch2.1.bn.running_var`, ...) \
                 and put it at weights/{} or pass --weights PATH",
                self.file_name()
            ),
        }
    }

    /// Loads the model from a weights file onto `device`.
    pub fn load(self, path: &Path, device: &Device) -> anyhow::Result<Network> {
        let file = WeightFile::open(path, self.name(), &self.fetch_hint(), device)?;
        match self {
            ModelKind::EfficientNetLite0 => efficientnet_lite0::build(&file),
            ModelKind::Vgg19 => vgg19::build(&file),
            ModelKind::GoogLeNet => googlenet::build(&file),
        }
    }

    /// Finds this model's weights: `$DREAMVID_WEIGHTS_DIR`, then `./weights`, then the
    /// `weights` folder of the repository a development build runs from.
    pub fn locate_weights(self) -> Result<PathBuf, WeightsError> {
        let mut dirs: Vec<PathBuf> = std::env::var_os(WEIGHTS_DIR_ENV).map(PathBuf::from).into_iter().collect();
        dirs.push(PathBuf::from("weights"));
        if let Ok(exe) = std::env::current_exe() {
            // target/<profile>/dreamvid -> <repo>/weights
            if let Some(repo) = exe.parent().and_then(Path::parent).and_then(Path::parent) {
                dirs.push(repo.join("weights"));
            }
        }
        let candidates: Vec<PathBuf> = dirs.iter().map(|d| d.join(self.file_name())).collect();
        candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| WeightsError::Missing {
            path: PathBuf::from("weights").join(self.file_name()),
            fix: format!(
                "{} (looked in: {}; set {WEIGHTS_DIR_ENV} to use another folder)",
                self.fetch_hint(),
                candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        })
    }
}
