//! Reading model parameters from safetensors files with errors that say what to do.

use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

/// A problem with a weights file. Every variant names the file and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file does not exist.
    #[error("weights file {path} not found.\n  fix: {fix}")]
    Missing {
        /// The weights file.
        path: PathBuf,
        /// How to fix it.
        fix: String,
    },
    /// The file exists but is not a readable safetensors file.
    #[error("{path} is not a readable safetensors file ({reason}).\n  fix: delete it and fetch it again: {fix}")]
    Unreadable {
        /// The weights file.
        path: PathBuf,
        /// What the reader said.
        reason: String,
        /// How to fix it.
        fix: String,
    },
    /// A tensor the model needs is absent.
    #[error("{path} has no tensor `{tensor}`; this is not a {model} weights file.\n  fix: {fix}")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The model being loaded.
        model: String,
        /// How to fix it.
        fix: String,
    },
    /// A tensor has the wrong shape.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected}.\n  fix: {fix}")]
    WrongShape {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// What the file has.
        found: Vec<usize>,
        /// What the model needs.
        expected: String,
        /// How to fix it.
        fix: String,
    },
    /// A tensor holds NaN or infinite values (a damaged or diverged file).
    #[error("{path}: tensor `{tensor}` holds NaN or infinite values; the file is damaged.\n  fix: {fix}")]
    NotFinite {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// How to fix it.
        fix: String,
    },
    /// A tensor is not floating point.
    #[error(
        "{path}: tensor `{tensor}` has dtype {found:?}, expected a float type (F32, F16, BF16 or F64).\n  fix: {fix}"
    )]
    WrongDtype {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// What the file has.
        found: DType,
        /// How to fix it.
        fix: String,
    },
}

/// An open safetensors file from which a model pulls its tensors, converted to `F32` on a device.
pub struct WeightFile {
    path: PathBuf,
    model: String,
    fix: String,
    file: MmapedSafetensors,
    device: Device,
}

impl WeightFile {
    /// Opens `path` as the weights of `model`; `fix` tells the user how to obtain a good file.
    pub fn open(path: &Path, model: &str, fix: &str, device: &Device) -> Result<Self, WeightsError> {
        if !path.is_file() {
            return Err(WeightsError::Missing { path: path.into(), fix: fix.into() });
        }
        // SAFETY: the mapping is read-only and lives as long as `file`; a weights file being
        // rewritten while we read it is the only hazard, as for any reader.
        let file = unsafe { MmapedSafetensors::new(path) }.map_err(|e| WeightsError::Unreadable {
            path: path.into(),
            reason: e.to_string(),
            fix: fix.into(),
        })?;
        Ok(Self { path: path.into(), model: model.into(), fix: fix.into(), file, device: device.clone() })
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Device the tensors are loaded onto.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.file.get(name).is_ok()
    }

    /// The tensor `name` as `F32`, after checking its shape against `expected`, where `None`
    /// entries accept any size.
    pub fn get(&self, name: &str, expected: &[Option<usize>]) -> Result<Tensor, WeightsError> {
        let view = self.file.get(name).map_err(|_| WeightsError::MissingTensor {
            path: self.path.clone(),
            tensor: name.into(),
            model: self.model.clone(),
            fix: self.fix.clone(),
        })?;
        let shape = view.shape().to_vec();
        let fits = shape.len() == expected.len()
            && shape.iter().zip(expected).all(|(s, e)| *s > 0 && e.is_none_or(|e| e == *s));
        if !fits {
            let expected = expected.iter().map(|e| e.map_or("*".to_string(), |v| v.to_string())).collect::<Vec<_>>();
            return Err(WeightsError::WrongShape {
                path: self.path.clone(),
                tensor: name.into(),
                found: shape,
                expected: format!("[{}]", expected.join(", ")),
                fix: self.fix.clone(),
            });
        }
        let tensor = self.file.load(name, &self.device).map_err(|e| WeightsError::Unreadable {
            path: self.path.clone(),
            reason: format!("tensor `{name}`: {e}"),
            fix: self.fix.clone(),
        })?;
        if !tensor.dtype().is_float() {
            return Err(WeightsError::WrongDtype {
                path: self.path.clone(),
                tensor: name.into(),
                found: tensor.dtype(),
                fix: self.fix.clone(),
            });
        }
        let unreadable = |e: candle_core::Error| WeightsError::Unreadable {
            path: self.path.clone(),
            reason: format!("tensor `{name}`: {e}"),
            fix: self.fix.clone(),
        };
        let tensor = tensor.to_dtype(DType::F32).map_err(unreadable)?;
        // The sum of magnitudes is finite exactly when every value is (weights are far from
        // overflowing f32 when added up).
        let total = tensor.abs().and_then(|t| t.sum_all()).and_then(|t| t.to_scalar::<f32>()).map_err(unreadable)?;
        if !total.is_finite() {
            return Err(WeightsError::NotFinite {
                path: self.path.clone(),
                tensor: name.into(),
                fix: self.fix.clone(),
            });
        }
        Ok(tensor)
    }
}
