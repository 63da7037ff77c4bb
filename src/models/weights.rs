//! Reading model parameters from weights files, safetensors or PyTorch checkpoints, with errors
//! that say what to do.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::pth::{Layout, PthError, PthFile};

/// What a weights file holds, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A safetensors file.
    Safetensors,
    /// A PyTorch checkpoint (`torch.save`).
    Pth(Layout),
    /// No file: a model's architecture, every tensor of its real shape and all ones
    /// ([`WeightFile::architecture`]).
    Architecture,
}

/// The first 9 bytes of the file at `path` (fewer if it is shorter).
fn head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(9);
    std::fs::File::open(path)?.take(9).read_to_end(&mut head)?;
    Ok(head)
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Safetensors => "safetensors",
            Format::Pth(Layout::Zip) => "PyTorch checkpoint, zip layout",
            Format::Pth(Layout::Legacy) => "PyTorch checkpoint, legacy layout",
            Format::Architecture => "architecture only, no weights",
        })
    }
}

impl Format {
    /// The format of the file at `path` by its content (the name does not matter), or `None`
    /// when it is none of them.
    pub fn of_file(path: &Path) -> std::io::Result<Option<Format>> {
        Ok(Self::of_bytes(&head(path)?))
    }

    /// The format of a file that starts with `head` (its first 9 bytes or fewer).
    fn of_bytes(head: &[u8]) -> Option<Format> {
        match head {
            [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => Some(Format::Pth(Layout::Zip)),
            // A pickle, protocol 2 to 5: the magic number that starts a legacy checkpoint.
            [0x80, 2..=5, ..] => Some(Format::Pth(Layout::Legacy)),
            // A little-endian header length, then the JSON header.
            [_, _, _, _, _, _, _, _, b'{'] => Some(Format::Safetensors),
            _ => None,
        }
    }
}

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
    /// The file exists but cannot be read.
    #[error("{path} ({format}) cannot be read: {reason}.\n  fix: {fix}")]
    Unreadable {
        /// The weights file.
        path: PathBuf,
        /// What it was read as.
        format: String,
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
        "{path}: tensor `{tensor}` has dtype {found}, expected a float type (F32, F16, BF16 or F64).\n  fix: {fix}"
    )]
    WrongDtype {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// What the file has (candle's name, and torch's storage class for checkpoints).
        found: String,
        /// How to fix it.
        fix: String,
    },
    /// A file known by name is not the file published under that name.
    #[error("{path} is not the published {name}: its sha256 starts with {found}, not {expected}; it is damaged or another file.\n  fix: {fix}")]
    Checksum {
        /// The weights file.
        path: PathBuf,
        /// The published file's name.
        name: String,
        /// The start of the published sha256.
        expected: String,
        /// The start of this file's sha256.
        found: String,
        /// How to fix it.
        fix: String,
    },
}

/// Where the tensors of a weights file come from.
enum Tensors {
    Safetensors(MmapedSafetensors),
    Pth(PthFile),
    /// Tensor names and shapes; every value is 1.
    Shapes(HashMap<String, Vec<usize>>),
}

/// An open weights file from which a model pulls its tensors, converted to `F32` on a device.
pub struct WeightFile {
    path: PathBuf,
    format: Format,
    model: String,
    fix: String,
    tensors: Tensors,
    device: Device,
}

impl WeightFile {
    /// Opens `path` as the weights of `model`, in the format its content shows; `fix` tells the
    /// user how to obtain a good file.
    pub fn open(path: &Path, model: &str, fix: &str, device: &Device) -> Result<Self, WeightsError> {
        if !path.is_file() {
            return Err(WeightsError::Missing { path: path.into(), fix: fix.into() });
        }
        let refetch = format!("delete it and fetch it again: {fix}");
        let unreadable = |format: &str, reason: String, fix: String| WeightsError::Unreadable {
            path: path.into(),
            format: format.into(),
            reason,
            fix,
        };
        let head = head(path).map_err(|e| unreadable("weights file", e.to_string(), fix.into()))?;
        let format = Format::of_bytes(&head).ok_or_else(|| {
            let reason = if head.is_empty() {
                "the file is empty".to_string()
            } else {
                let start: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
                format!("it is neither safetensors nor a PyTorch checkpoint (it starts with {})", start.join(" "))
            };
            unreadable("weights file", reason, refetch.clone())
        })?;
        let tensors = match format {
            // SAFETY: the mapping is read-only and lives as long as the `WeightFile`; a weights
            // file being rewritten while we read it is the only hazard, as for any reader.
            Format::Safetensors => Tensors::Safetensors(
                unsafe { MmapedSafetensors::new(path) }
                    .map_err(|e| unreadable(&format.to_string(), e.to_string(), refetch.clone()))?,
            ),
            Format::Pth(layout) => Tensors::Pth(PthFile::open(path, layout).map_err(|e| match e {
                PthError::Damaged(reason) => unreadable(&format.to_string(), reason, refetch.clone()),
                PthError::Unsupported(reason, how) => unreadable(&format.to_string(), reason, how),
            })?),
            Format::Architecture => unreachable!("told by content, a file is never the architecture"),
        };
        Ok(Self { path: path.into(), format, model: model.into(), fix: fix.into(), tensors, device: device.clone() })
    }

    /// The architecture of `model` without its weights: the tensors of `shapes` (name and
    /// shape), every value 1. Networks built from it have the real layers and output shapes,
    /// and dream nothing worth seeing.
    pub fn architecture(model: &str, shapes: HashMap<String, Vec<usize>>, device: &Device) -> Self {
        Self {
            path: PathBuf::from(format!("({model} architecture)")),
            format: Format::Architecture,
            model: model.into(),
            fix: "this is the architecture, not a weights file".into(),
            tensors: Tensors::Shapes(shapes),
            device: device.clone(),
        }
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file holds.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Device the tensors are loaded onto.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        match &self.tensors {
            Tensors::Safetensors(file) => file.get(name).is_ok(),
            Tensors::Pth(file) => file.tensor(name).is_some(),
            Tensors::Shapes(shapes) => shapes.contains_key(name),
        }
    }

    /// The names and shapes of the tensors the file holds, sorted by name (a checkpoint's
    /// entries that are no readable tensor are left out).
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut out: Vec<(String, Vec<usize>)> = match &self.tensors {
            Tensors::Safetensors(file) => {
                file.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())).collect()
            }
            Tensors::Pth(file) => file.views().map(|(name, view)| (name.to_string(), view.shape.clone())).collect(),
            Tensors::Shapes(shapes) => shapes.iter().map(|(n, s)| (n.clone(), s.clone())).collect(),
        };
        out.sort();
        out
    }

    fn unreadable(&self, name: &str, reason: impl fmt::Display) -> WeightsError {
        WeightsError::Unreadable {
            path: self.path.clone(),
            format: self.format.to_string(),
            reason: format!("tensor `{name}` {reason}"),
            fix: format!("delete it and fetch it again: {}", self.fix),
        }
    }

    fn wrong_dtype(&self, name: &str, found: String) -> WeightsError {
        WeightsError::WrongDtype { path: self.path.clone(), tensor: name.into(), found, fix: self.fix.clone() }
    }

    /// The tensor `name` as `F32`, after checking its shape against `expected`, where `None`
    /// entries accept any size.
    pub fn get(&self, name: &str, expected: &[Option<usize>]) -> Result<Tensor, WeightsError> {
        let missing = || WeightsError::MissingTensor {
            path: self.path.clone(),
            tensor: name.into(),
            model: self.model.clone(),
            fix: self.fix.clone(),
        };
        let tensor = match &self.tensors {
            Tensors::Safetensors(file) => {
                let view = file.get(name).map_err(|_| missing())?;
                self.check_shape(name, view.shape(), expected)?;
                file.load(name, &self.device).map_err(|e| self.unreadable(name, format!("cannot be read: {e}")))?
            }
            Tensors::Pth(file) => {
                let view = file.tensor(name).ok_or_else(missing)?.map_err(|reason| self.unreadable(name, reason))?;
                self.check_shape(name, &view.shape, expected)?;
                let kind = view.storage.kind;
                if !kind.dtype.is_some_and(|d| d.is_float()) {
                    let found = kind.dtype.map_or(String::new(), |d| format!("{d:?} "));
                    return Err(self.wrong_dtype(name, format!("{found}(torch.{})", kind.class)));
                }
                file.load(view, &self.device).map_err(|reason| self.unreadable(name, reason))?
            }
            Tensors::Shapes(shapes) => {
                let shape = shapes.get(name).ok_or_else(missing)?;
                self.check_shape(name, shape, expected)?;
                Tensor::ones(shape.as_slice(), DType::F32, &self.device)
                    .map_err(|e| self.unreadable(name, format!("cannot be made: {e}")))?
            }
        };
        if !tensor.dtype().is_float() {
            return Err(self.wrong_dtype(name, format!("{:?}", tensor.dtype())));
        }
        let unreadable = |e: candle_core::Error| self.unreadable(name, format!("cannot be converted: {e}"));
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

    /// Checks that `shape` has no zero sizes and matches `expected` (`None`: any size).
    fn check_shape(&self, name: &str, shape: &[usize], expected: &[Option<usize>]) -> Result<(), WeightsError> {
        let fits = shape.len() == expected.len()
            && shape.iter().zip(expected).all(|(s, e)| *s > 0 && e.is_none_or(|e| e == *s));
        if fits {
            return Ok(());
        }
        let expected = expected.iter().map(|e| e.map_or("*".to_string(), |v| v.to_string())).collect::<Vec<_>>();
        Err(WeightsError::WrongShape {
            path: self.path.clone(),
            tensor: name.into(),
            found: shape.to_vec(),
            expected: format!("[{}]", expected.join(", ")),
            fix: self.fix.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_told_by_content() {
        assert_eq!(Format::of_bytes(b"PK\x03\x04rest"), Some(Format::Pth(Layout::Zip)));
        assert_eq!(Format::of_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF"), Some(Format::Pth(Layout::Legacy)));
        assert_eq!(Format::of_bytes(b"\x10\0\0\0\0\0\0\0{"), Some(Format::Safetensors));
        assert_eq!(Format::of_bytes(b"\x10\0\0\0\0\0\0\0"), None);
        assert_eq!(Format::of_bytes(b"this is not"), None);
        assert_eq!(Format::of_bytes(b""), None);
    }
}
