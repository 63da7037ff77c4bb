//! Finding the state dict in an unpickled checkpoint and what each of its tensors points at.

use super::pickle::{Kind, Value};
use super::StorageType;

/// Keys under which training code commonly nests the state dict, tried in this order.
const WRAPPERS: [&str; 5] = ["state_dict", "model_state_dict", "model", "module", "net"];

/// How deep wrappers may nest (`{"model": {"state_dict": ...}}` is two).
const MAX_WRAPPING: usize = 3;

/// A storage a persistent id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    /// The storage's key: its record in a zip checkpoint, its entry in a legacy one.
    pub key: String,
    /// Its element type.
    pub kind: StorageType,
    /// Its length in elements.
    pub numel: u64,
    /// Where a legacy storage view starts in the storage, in elements (0 for whole storages).
    pub view_offset: u64,
}

/// A tensor as stored: a strided view of a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorView {
    /// The storage holding the elements.
    pub storage: StorageRef,
    /// Offset of the first element in the storage, in elements.
    pub offset: u64,
    /// Size of each dimension.
    pub shape: Vec<usize>,
    /// Step between consecutive indices of each dimension, in elements.
    pub stride: Vec<usize>,
}

/// A state-dict entry: the tensor's name, and its view or why it cannot be read.
pub type Entry = (String, Result<TensorView, String>);

/// The tensors of the checkpoint's state dict; `Err` describes what the checkpoint holds
/// instead of a state dict.
pub fn tensors(root: &Value) -> Result<Vec<Entry>, String> {
    let dict = find_state_dict(root, 0).ok_or_else(|| describe(root))?;
    let mut entries: Vec<Entry> =
        dict.dict().into_iter().flatten().filter_map(|(k, v)| Some((k.str()?.to_string(), tensor(v)?))).collect();
    // nn.DataParallel saves every name with a `module.` prefix.
    if entries.iter().all(|(name, _)| name.starts_with("module.")) {
        for (name, _) in &mut entries {
            name.drain(.."module.".len());
        }
    }
    Ok(entries)
}

/// The storage a persistent id names: `('storage', torch.<Type>Storage, key, location, numel)`,
/// with a sixth item in legacy checkpoints, `None` or `(view key, offset, size)`.
pub fn storage_ref(pid: &Value) -> Result<StorageRef, String> {
    let bad = || format!("a storage reference {} that torch does not write", brief(pid));
    let items = pid.tuple().ok_or_else(bad)?;
    let [tag, class, key, _location, numel, rest @ ..] = items else { return Err(bad()) };
    if tag.str() != Some("storage") {
        return Err(bad());
    }
    let (_, class) = class.global().ok_or_else(bad)?;
    let kind = StorageType::named(class).ok_or_else(|| format!("storage type torch.{class} is not supported"))?;
    let key = match key {
        Value::Str(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        _ => return Err(bad()),
    };
    let numel = numel.int().and_then(|n| u64::try_from(n).ok()).ok_or_else(bad)?;
    let view_offset = match rest {
        [] | [Value::None] => 0,
        [view] => match view.tuple() {
            Some([_, offset, _]) => offset.int().and_then(|n| u64::try_from(n).ok()).ok_or_else(bad)?,
            _ => return Err(bad()),
        },
        _ => return Err(bad()),
    };
    Ok(StorageRef { key, kind, numel, view_offset })
}

/// The dict holding tensors: `value` itself, or one found under a wrapper key.
fn find_state_dict(value: &Value, depth: usize) -> Option<&Value> {
    let mut entries = value.dict()?;
    if entries.any(|(_, v)| tensor(v).is_some()) {
        return Some(value);
    }
    if depth >= MAX_WRAPPING {
        return None;
    }
    WRAPPERS.iter().filter_map(|key| value.get(key)).find_map(|inner| find_state_dict(inner, depth + 1))
}

/// What a checkpoint holds instead of a state dict.
fn describe(root: &Value) -> String {
    if let Some(entries) = root.dict() {
        let keys: Vec<String> = entries.take(8).map(|(k, _)| brief(k)).collect();
        return format!("a dict without tensors (keys: {})", keys.join(", "));
    }
    let class = root.pair(Kind::Build).map_or(root, |(object, _)| object);
    match class.pair(Kind::Call).and_then(|(callable, _)| callable.global()) {
        Some((module, _)) if module.starts_with("__torch__") => {
            "a TorchScript module (torch.jit.save), not a state dict".into()
        }
        Some((module, name)) => format!("a pickled {module}.{name} object (a whole model?), not a state dict"),
        None => format!("{}, not a state dict", brief(root)),
    }
}

/// A short description of a value for messages.
fn brief(value: &Value) -> String {
    match value {
        Value::None => "None".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => format!("'{}'", s.chars().take(40).collect::<String>()),
        Value::Bytes(b) => format!("{} bytes", b.len()),
        Value::Global(g) => format!("{}.{}", g.0, g.1),
        Value::Node(kind, _) => format!("a {kind:?}").to_lowercase(),
    }
}

/// The tensor `value` rebuilds, if it is one (`None`: some other value, such as an int).
fn tensor(value: &Value) -> Option<Result<TensorView, String>> {
    if let Some((callable, args)) = value.pair(Kind::Call) {
        return rebuild(callable, args);
    }
    // torch <= 0.1.10: torch.FloatTensor() and BUILD with (storage, offset, size, stride).
    let (object, state) = value.pair(Kind::Build)?;
    let (callable, _) = object.pair(Kind::Call)?;
    match callable.global()? {
        ("torch", name) if name.ends_with("Tensor") => Some(view(state.tuple().unwrap_or(&[]))),
        _ => None,
    }
}

/// The tensor that calling `callable` with `args` rebuilds, if it is one.
fn rebuild(callable: &Value, args: &Value) -> Option<Result<TensorView, String>> {
    let (module, name) = callable.global()?;
    let args = args.tuple().unwrap_or(&[]);
    match (module, name) {
        // torch >= 0.4, and torch 0.1.11 to 0.3.
        ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => Some(view(args)),
        // nn.Parameter: (tensor, requires_grad, hooks[, state]).
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => tensor(args.first()?),
        // Tensor subclasses: (func, type, args, state).
        ("torch._tensor", "_rebuild_from_type_v2") => match args {
            [func, _, inner, ..] => rebuild(func, inner),
            _ => Some(Err("is a tensor subclass stored in a way torch does not write".into())),
        },
        ("torch" | "torch._utils" | "torch._tensor", _) => {
            Some(Err(format!("is stored by {module}.{name} (not a plain dense tensor), which dreamvid cannot read")))
        }
        _ => None,
    }
}

/// The view from rebuild arguments `(storage, storage_offset, size, stride, ...)`.
fn view(args: &[Value]) -> Result<TensorView, String> {
    let [storage, offset, size, stride, ..] = args else {
        return Err("is a tensor with fewer rebuild arguments than torch writes".into());
    };
    let pid = storage.items(Kind::Persistent).and_then(<[Value]>::first).ok_or("has no storage reference")?;
    let storage = storage_ref(pid)?;
    let offset = offset.int().and_then(|n| u64::try_from(n).ok()).ok_or("has a storage offset that is no count")?;
    let (shape, stride) = (
        dims(size).ok_or("has a size that is no tuple of counts")?,
        dims(stride).ok_or("has a stride that is no tuple of counts")?,
    );
    if shape.len() != stride.len() {
        return Err(format!("has {} sizes but {} strides", shape.len(), stride.len()));
    }
    Ok(TensorView { storage, offset, shape, stride })
}

/// A tuple (or torch.Size) of non-negative integers.
fn dims(value: &Value) -> Option<Vec<usize>> {
    let value = match value.pair(Kind::Call) {
        Some((callable, args)) if callable.is_global("torch", "Size") => args.tuple()?.first()?,
        _ => value,
    };
    value.tuple()?.iter().map(|v| v.int().and_then(|n| usize::try_from(n).ok())).collect()
}
