//! PyTorch checkpoints (`.pth`): the zip layout of torch >= 1.6 and the legacy stream of older
//! versions, read without torch and without running anything the pickle names.
//!
//! candle-core 0.11 has a reader (`candle_core::pickle`), but it reads zip checkpoints only,
//! skips tensors not rebuilt by `_rebuild_tensor_v2` with no more than a line on stderr,
//! refuses tensors with permuted strides (which the EfficientNet-Lite0 checkpoint has) and
//! cannot hold the 80-bit magic number that legacy files start with; hence this module.
//!
//! - [`pickle`]: the pickle reader; [`state_dict`]: the state dict in what it read, and the
//!   storage views of its tensors; [`archive`]: where the pickle and storages are in each layout.

mod archive;
mod pickle;
mod state_dict;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use archive::Span;
pub use state_dict::TensorView;

/// The two layouts of a PyTorch checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A zip archive (`torch.save` since torch 1.6).
    Zip,
    /// A stream of pickles followed by the raw storages (before torch 1.6).
    Legacy,
}

/// A torch storage class: the size and type of its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageType {
    /// The class name, such as `FloatStorage`.
    pub class: &'static str,
    /// Bytes per element.
    pub size: usize,
    /// The candle type of the elements, where candle has one.
    pub dtype: Option<DType>,
}

/// Every storage class torch writes for dense tensors.
const STORAGE_TYPES: [StorageType; 12] = [
    StorageType { class: "FloatStorage", size: 4, dtype: Some(DType::F32) },
    StorageType { class: "DoubleStorage", size: 8, dtype: Some(DType::F64) },
    StorageType { class: "HalfStorage", size: 2, dtype: Some(DType::F16) },
    StorageType { class: "BFloat16Storage", size: 2, dtype: Some(DType::BF16) },
    StorageType { class: "LongStorage", size: 8, dtype: Some(DType::I64) },
    StorageType { class: "IntStorage", size: 4, dtype: Some(DType::I32) },
    StorageType { class: "ShortStorage", size: 2, dtype: Some(DType::I16) },
    StorageType { class: "ByteStorage", size: 1, dtype: Some(DType::U8) },
    StorageType { class: "CharStorage", size: 1, dtype: None },
    StorageType { class: "BoolStorage", size: 1, dtype: None },
    StorageType { class: "ComplexFloatStorage", size: 8, dtype: None },
    StorageType { class: "ComplexDoubleStorage", size: 16, dtype: None },
];

impl StorageType {
    /// The storage class called `class`.
    pub fn named(class: &str) -> Option<StorageType> {
        STORAGE_TYPES.into_iter().find(|t| t.class == class)
    }
}

/// Why a checkpoint cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PthError {
    /// The file is damaged, or not a checkpoint: what is wrong.
    Damaged(String),
    /// A sound checkpoint dreamvid cannot use as it is: what it is, and how to convert it.
    Unsupported(String, String),
}

/// An open checkpoint: its state dict's tensors and where their storages are.
pub struct PthFile {
    file: std::path::PathBuf,
    tensors: HashMap<String, Result<TensorView, String>>,
    storages: HashMap<String, Span>,
}

impl PthFile {
    /// Reads the checkpoint at `path`, laid out as `layout`.
    pub fn open(path: &Path, layout: Layout) -> Result<Self, PthError> {
        let contents = match layout {
            Layout::Zip => archive::read_zip(path)?,
            Layout::Legacy => archive::read_legacy(path)?,
        };
        let tensors = state_dict::tensors(&contents.root).map_err(|found| {
            PthError::Unsupported(
                format!("it holds {found}"),
                "save the model's state dict instead: torch.save(model.state_dict(), PATH)".into(),
            )
        })?;
        Ok(Self { file: path.into(), tensors: tensors.into_iter().collect(), storages: contents.storages })
    }

    /// The tensor called `name`: its view, or why it cannot be read.
    pub fn tensor(&self, name: &str) -> Option<Result<&TensorView, &str>> {
        self.tensors.get(name).map(|t| t.as_ref().map_err(String::as_str))
    }

    /// Every readable tensor of the state dict, by name.
    pub fn views(&self) -> impl Iterator<Item = (&str, &TensorView)> {
        self.tensors.iter().filter_map(|(name, t)| Some((name.as_str(), t.as_ref().ok()?)))
    }

    /// Reads the elements of `view` into a row-major tensor of its storage's type.
    pub fn load(&self, view: &TensorView, device: &Device) -> Result<Tensor, String> {
        let kind = view.storage.kind;
        let dtype = kind.dtype.ok_or_else(|| format!("candle has no type for torch.{}", kind.class))?;
        let key = &view.storage.key;
        let span = self.storages.get(key).ok_or_else(|| format!("its storage {key} is not in the file"))?;
        let damaged = || format!("its view of storage {key} reaches past the storage's {} bytes", span.len);
        if view.shape.contains(&0) {
            return Tensor::from_raw_buffer(&[], dtype, &view.shape, device).map_err(|e| e.to_string());
        }
        // A view may repeat elements (a stride of 0), never so many that it outgrows its
        // storage: a few bytes claiming a huge tensor would take any amount of memory.
        let numel = view.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64));
        if numel.and_then(|n| n.checked_mul(kind.size as u64)).is_none_or(|bytes| bytes > span.len) {
            return Err(format!("its shape {:?} holds more elements than its storage {key}", view.shape));
        }
        let first = view.storage.view_offset.checked_add(view.offset);
        let extent = view
            .shape
            .iter()
            .zip(&view.stride)
            .try_fold(0u64, |acc, (&n, &s)| acc.checked_add((n as u64 - 1).checked_mul(s as u64)?));
        let size = kind.size as u64;
        let start = first.and_then(|f| f.checked_mul(size));
        let end = first.zip(extent).and_then(|(f, e)| f.checked_add(e)?.checked_add(1)?.checked_mul(size));
        let (Some(start), Some(end)) = (start, end) else { return Err(damaged()) };
        if end > span.len {
            return Err(damaged());
        }
        let mut file = File::open(&self.file).map_err(|e| format!("cannot read it again: {e}"))?;
        let file_len = file.metadata().map_err(|e| format!("cannot read it again: {e}"))?.len();
        if span.start.saturating_add(end) > file_len {
            return Err(format!("the file ends inside storage {key}"));
        }
        let mut bytes = vec![0; (end - start) as usize];
        file.seek(SeekFrom::Start(span.start + start))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| format!("cannot read storage {key}: {e}"))?;
        let data = gather(&bytes, kind.size, &view.shape, &view.stride);
        Tensor::from_raw_buffer(&data, dtype, &view.shape, device).map_err(|e| e.to_string())
    }
}

/// The elements of the strided view of `src` (elements of `size` bytes), in row-major order.
fn gather(src: &[u8], size: usize, shape: &[usize], stride: &[usize]) -> Vec<u8> {
    let numel: usize = shape.iter().product();
    let mut step = 1;
    let row_major = shape.iter().zip(stride).rev().all(|(&n, &s)| {
        let ok = n == 1 || s == step;
        step *= n;
        ok
    });
    if row_major {
        return src[..numel * size].to_vec();
    }
    let mut out = Vec::with_capacity(numel * size);
    let mut index = vec![0; shape.len()];
    let mut at = 0;
    for _ in 0..numel {
        out.extend_from_slice(&src[at * size..(at + 1) * size]);
        for d in (0..shape.len()).rev() {
            index[d] += 1;
            at += stride[d];
            if index[d] < shape[d] {
                break;
            }
            at -= stride[d] * shape[d];
            index[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::gather;

    #[test]
    fn gather_reads_permuted_strides_row_major() {
        // A 2x3 tensor stored column-major: storage [a00, a10, a01, a11, a02, a12].
        let src: Vec<u8> = vec![0, 10, 1, 11, 2, 12];
        assert_eq!(gather(&src, 1, &[2, 3], &[1, 2]), [0, 1, 2, 10, 11, 12]);
        // Row-major with a size-1 dimension of any stride: copied as is.
        assert_eq!(gather(&src, 2, &[1, 3], &[99, 1]), src);
        // A broadcast (stride 0) dimension.
        assert_eq!(gather(&[7, 8], 1, &[3, 2], &[0, 1]), [7, 8, 7, 8, 7, 8]);
    }
}
