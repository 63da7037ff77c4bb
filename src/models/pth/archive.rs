//! Where a checkpoint keeps its pickle and its storages: the zip layout of torch >= 1.6 and the
//! legacy stream of older versions (and of `_use_new_zipfile_serialization=False`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::Path;

use super::pickle::{self, Fault, Pickle, Value};
use super::state_dict::storage_ref;
use super::PthError;

/// The first pickle of a legacy checkpoint.
const LEGACY_MAGIC: i128 = 0x1950_a86a_20f9_469c_fc6c;

/// The legacy format's version, the second pickle.
const LEGACY_PROTOCOL: i128 = 1001;

/// Bytes of a file that hold one storage's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset of the first byte in the file.
    pub start: u64,
    /// Number of bytes.
    pub len: u64,
}

/// A checkpoint's unpickled object and where its storages are.
pub struct Contents {
    /// The pickled object.
    pub root: Value,
    /// Each storage's bytes, by key.
    pub storages: HashMap<String, Span>,
}

fn damaged(reason: impl Into<String>) -> PthError {
    PthError::Damaged(reason.into())
}

fn io_error(e: std::io::Error) -> PthError {
    damaged(format!("cannot read it: {e}"))
}

/// Reads the pickle that starts at byte `start` of a file of `len` bytes; `what` names it in
/// errors.
fn read_pickle<R: BufRead>(r: &mut R, start: u64, len: u64, what: &str) -> Result<Pickle, PthError> {
    pickle::read(r, len - start).map_err(|e| match e.fault {
        Fault::Truncated => damaged(format!("the file ends inside the {what} pickle (at byte {len})")),
        Fault::Invalid(why) => damaged(format!("the {what} pickle is damaged at byte {}: {why}", start + e.at)),
    })
}

/// Reads a zip checkpoint: `ARCHIVE/data.pkl` and the storages `ARCHIVE/data/KEY`.
pub fn read_zip(path: &Path) -> Result<Contents, PthError> {
    let file = File::open(path).map_err(io_error)?;
    let file_len = file.metadata().map_err(io_error)?.len();
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| damaged(format!("it starts like a zip archive but is not a readable one: {e}")))?;
    let names: Vec<String> = zip.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
    if let Some(name) = names.iter().find(|n| n.starts_with('/') || n.split(['/', '\\']).any(|part| part == "..")) {
        return Err(damaged(format!("it names a record {name} outside the archive, which torch never writes")));
    }
    let pkl = names
        .iter()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.len())
        .ok_or_else(|| damaged("a zip archive without a data.pkl record: not a PyTorch checkpoint"))?
        .clone();
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    if let Ok(mut record) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        record.by_ref().take(16).read_to_string(&mut order).map_err(io_error)?;
        if order != "little" {
            return Err(PthError::Unsupported(
                format!("its tensors are stored {order}-endian"),
                "save it again with torch.save on a little-endian machine".into(),
            ));
        }
    }
    let record = zip.by_name(&pkl).map_err(|e| damaged(format!("cannot read {pkl}: {e}")))?;
    // torch stores every record as it is; a compressed pickle could unpack to any size.
    if record.compression() != zip::CompressionMethod::Stored {
        return Err(PthError::Unsupported(
            format!("{pkl} is compressed ({}), which torch never does", record.compression()),
            "save it again with torch.save (do not recompress the archive)".into(),
        ));
    }
    // A record cannot hold more than the file (a header may claim it does).
    let size = record.size().min(file_len);
    let pickle = read_pickle(&mut BufReader::new(record), 0, size, "data.pkl")?;
    let mut storages = HashMap::new();
    for pid in &pickle.persistent_ids {
        let Ok(storage) = storage_ref(pid) else { continue };
        let name = format!("{prefix}data/{}", storage.key);
        let record = zip.by_name(&name).map_err(|_| damaged(format!("the storage record {name} is missing")))?;
        if record.compression() != zip::CompressionMethod::Stored {
            return Err(PthError::Unsupported(
                format!("the storage record {name} is compressed ({}), which torch never does", record.compression()),
                "save it again with torch.save (do not recompress the archive)".into(),
            ));
        }
        let start = record.data_start().ok_or_else(|| damaged(format!("cannot locate the data of {name}")))?;
        storages.insert(storage.key, Span { start, len: record.size() });
    }
    Ok(Contents { root: pickle.root, storages })
}

/// Reads a legacy checkpoint: pickles of the magic number, the protocol version, the system
/// info, the state dict and the list of storage keys; then per storage an i64 element count
/// and the raw little-endian elements.
pub fn read_legacy(path: &Path) -> Result<Contents, PthError> {
    let file = File::open(path).map_err(io_error)?;
    let len = file.metadata().map_err(io_error)?.len();
    let mut r = BufReader::new(file);
    let next = |r: &mut BufReader<File>, what: &str| -> Result<Pickle, PthError> {
        let start = r.stream_position().map_err(io_error)?;
        read_pickle(r, start, len, what)
    };
    if next(&mut r, "first")?.root.int() != Some(LEGACY_MAGIC) {
        return Err(damaged("it is a pickle but not a PyTorch checkpoint (no torch magic number)"));
    }
    let protocol = next(&mut r, "protocol version")?.root;
    if protocol.int() != Some(LEGACY_PROTOCOL) {
        return Err(PthError::Unsupported(
            format!("legacy protocol version {protocol:?}; dreamvid reads {LEGACY_PROTOCOL}"),
            "save it again with a recent torch.save".into(),
        ));
    }
    let info = next(&mut r, "system info")?.root;
    if !matches!(info.get("little_endian"), Some(Value::Bool(true))) {
        return Err(PthError::Unsupported(
            "it was saved on a big-endian machine".into(),
            "save it again with torch.save on a little-endian machine".into(),
        ));
    }
    let state = next(&mut r, "state-dict")?;
    let keys = next(&mut r, "storage-key list")?.root;
    let keys = keys
        .items(pickle::Kind::List)
        .ok_or_else(|| damaged("the storage-key list is not a list"))?
        .iter()
        .map(|k| k.str().map(String::from).ok_or_else(|| damaged("a storage key is not a string")))
        .collect::<Result<Vec<_>, _>>()?;
    let mut kinds = HashMap::new();
    for pid in &state.persistent_ids {
        // A storage of unknown size cannot be skipped over, even if no state-dict tensor uses it.
        let storage = storage_ref(pid).map_err(|reason| {
            PthError::Unsupported(
                reason,
                "save the float state dict alone: torch.save(model.state_dict(), PATH)".into(),
            )
        })?;
        kinds.insert(storage.key, (storage.kind, storage.numel));
    }
    let mut storages = HashMap::new();
    for key in keys {
        let (kind, numel) = kinds.get(&key).ok_or_else(|| damaged(format!("storage {key} is listed but not used")))?;
        let mut count = [0; 8];
        let at = r.stream_position().map_err(io_error)?;
        r.read_exact(&mut count).map_err(|_| damaged(format!("the file ends before storage {key} (at byte {len})")))?;
        let count = i64::from_le_bytes(count);
        if u64::try_from(count).ok() != Some(*numel) {
            return Err(damaged(format!("storage {key} at byte {at} says {count} elements, its reference {numel}")));
        }
        let bytes =
            numel.checked_mul(kind.size as u64).ok_or_else(|| damaged(format!("storage {key} is too large")))?;
        let start = at + 8;
        if bytes > len - start {
            return Err(damaged(format!(
                "the file ends inside storage {key}: {} of its {bytes} bytes are there",
                len - start
            )));
        }
        let skip = i64::try_from(bytes).map_err(|_| damaged(format!("storage {key} is too large")))?;
        r.seek_relative(skip).map_err(io_error)?;
        storages.insert(key, Span { start, len: bytes });
    }
    Ok(Contents { root: state.root, storages })
}
