//! A pickle reader that builds a tree of values from the opcodes and calls nothing.
//!
//! Python's unpickler imports the classes a pickle names and calls them; this one only records
//! what would have been called ([`Value::Call`], [`Value::Build`]), so a checkpoint can be read
//! without trusting it. It knows the opcodes of protocols 0 to 5 that `torch.save` and the
//! Python 2 and 3 picklers write for state dicts; anything else is an error. Containers are
//! shared (`Rc`), so memo references cost nothing, and nesting is limited, so no input can
//! exhaust the stack.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::rc::Rc;

/// Deepest nesting of containers accepted; a state dict inside a wrapper needs about 8.
const MAX_DEPTH: u32 = 100;

/// Longest text line accepted (protocol 0 opcodes and GLOBAL names).
const MAX_LINE: u64 = 4096;

/// Most opcodes run for one pickle. Each makes at most one value (some 32 bytes, and as many
/// again in the memo), so this bounds the memory a pickle takes apart from its strings, which
/// are no longer than the file. A state dict needs some 20 opcodes a tensor: 10,000 tensors
/// are 200,000.
const MAX_OPS: u64 = 1 << 19;

/// Most container items copied because a container the memo shares is added to (APPEND after
/// BINPUT copies the list); a pickle that adds to a shared list again and again would
/// otherwise copy it each time, quadratic in its length. torch copies each dict once per
/// batch of 1,000 items.
const MAX_COPIED: u64 = 1 << 22;

/// A pickled value.
#[derive(Debug, Clone)]
pub enum Value {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer (torch's legacy magic number needs 80 bits).
    Int(i128),
    /// A float.
    Float(f64),
    /// A text string (also Python 2 `str`, which is how Python 2 pickled state-dict keys).
    Str(Rc<str>),
    /// A byte string.
    Bytes(Rc<[u8]>),
    /// A class or function, by module and name.
    Global(Rc<(String, String)>),
    /// A container: what it is and its items.
    Node(Kind, Rc<Node>),
}

/// What a [`Value::Node`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A tuple.
    Tuple,
    /// A list.
    List,
    /// A set or frozenset.
    Set,
    /// A dict: keys and values alternate.
    Dict,
    /// A call that was not made (REDUCE, NEWOBJ): the callable, then its arguments.
    Call,
    /// An object's state set by BUILD: the object, then the state.
    Build,
    /// A persistent id (torch's storages): the id.
    Persistent,
}

/// The items of a container and how deeply it nests.
#[derive(Debug, Clone, Default)]
pub struct Node {
    items: Vec<Value>,
    depth: u32,
}

impl Node {
    fn push(&mut self, value: Value) -> Result<(), Fault> {
        self.depth = self.depth.max(value.depth() + 1);
        if self.depth > MAX_DEPTH {
            return Err(Fault::Invalid(format!("containers nested more than {MAX_DEPTH} deep")));
        }
        self.items.push(value);
        Ok(())
    }
}

impl Value {
    fn node(kind: Kind, items: Vec<Value>) -> Result<Value, Fault> {
        let mut node = Node::default();
        for item in items {
            node.push(item)?;
        }
        Ok(Value::Node(kind, Rc::new(node)))
    }

    fn depth(&self) -> u32 {
        match self {
            Value::Node(_, node) => node.depth,
            _ => 0,
        }
    }

    /// The items, if this is a container of `kind`.
    pub fn items(&self, kind: Kind) -> Option<&[Value]> {
        match self {
            Value::Node(k, node) if *k == kind => Some(&node.items),
            _ => None,
        }
    }

    /// The items of a tuple.
    pub fn tuple(&self) -> Option<&[Value]> {
        self.items(Kind::Tuple)
    }

    /// The (key, value) pairs of a dict.
    pub fn dict(&self) -> Option<impl Iterator<Item = (&Value, &Value)>> {
        self.items(Kind::Dict).map(|items| items.chunks_exact(2).map(|kv| (&kv[0], &kv[1])))
    }

    /// The value of `key` in a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.dict()?.find(|(k, _)| k.str() == Some(key)).map(|(_, v)| v)
    }

    /// `(callable, args)` of a call, or `(object, state)` of a BUILD, by `kind`.
    pub fn pair(&self, kind: Kind) -> Option<(&Value, &Value)> {
        match self.items(kind)? {
            [a, b] => Some((a, b)),
            _ => None,
        }
    }

    /// The text of a string.
    pub fn str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer.
    pub fn int(&self) -> Option<i128> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// `(module, name)` of a class or function.
    pub fn global(&self) -> Option<(&str, &str)> {
        match self {
            Value::Global(g) => Some((&g.0, &g.1)),
            _ => None,
        }
    }

    /// Whether this is the global `module.name`.
    pub fn is_global(&self, module: &str, name: &str) -> bool {
        self.global() == Some((module, name))
    }
}

/// Why a pickle could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The data ends before the pickle does.
    Truncated,
    /// The bytes are not a pickle this reader accepts.
    Invalid(String),
}

/// A pickle that failed at byte `at` (counted from its start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Offset of the opcode that failed.
    pub at: u64,
    /// What went wrong.
    pub fault: Fault,
}

/// A pickle read to its STOP opcode.
#[derive(Debug)]
pub struct Pickle {
    /// The pickled object.
    pub root: Value,
    /// Every persistent id, in the order they appear.
    pub persistent_ids: Vec<Value>,
}

/// Reads one pickle from `r`, which holds at most `limit` more bytes.
pub fn read<R: BufRead>(r: &mut R, limit: u64) -> Result<Pickle, Error> {
    let mut m = Machine {
        r,
        pos: 0,
        limit,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        pids: Vec::new(),
        ops: 0,
        copied: 0,
    };
    loop {
        let at = m.pos;
        match m.step() {
            Ok(Some(root)) => return Ok(Pickle { root, persistent_ids: m.pids }),
            Ok(None) => {}
            Err(fault) => return Err(Error { at, fault }),
        }
    }
}

/// The unpickler's state.
struct Machine<'r, R> {
    r: &'r mut R,
    pos: u64,
    limit: u64,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    pids: Vec<Value>,
    /// Opcodes run (at most [`MAX_OPS`]).
    ops: u64,
    /// Items copied (at most [`MAX_COPIED`]).
    copied: u64,
}

fn invalid<T>(what: impl Into<String>) -> Result<T, Fault> {
    Err(Fault::Invalid(what.into()))
}

impl<R: BufRead> Machine<'_, R> {
    fn bytes(&mut self, n: u64) -> Result<Vec<u8>, Fault> {
        if n > self.limit - self.pos {
            return Err(Fault::Truncated);
        }
        let mut buf = vec![0; n as usize];
        self.r.read_exact(&mut buf).map_err(|_| Fault::Truncated)?;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Fault> {
        let bytes = self.bytes(N as u64)?;
        Ok(bytes.try_into().unwrap_or_else(|_| unreachable!("read {N} bytes")))
    }

    fn u8(&mut self) -> Result<u8, Fault> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Fault> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Fault> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A text line without its newline.
    fn line(&mut self) -> Result<String, Fault> {
        let mut buf = Vec::new();
        let cap = MAX_LINE.min(self.limit - self.pos);
        self.r.by_ref().take(cap).read_until(b'\n', &mut buf).map_err(|_| Fault::Truncated)?;
        self.pos += buf.len() as u64;
        if buf.last() != Some(&b'\n') {
            if buf.len() as u64 == MAX_LINE {
                return invalid(format!("a text line longer than {MAX_LINE} bytes"));
            }
            return Err(Fault::Truncated);
        }
        buf.pop();
        String::from_utf8(buf).or_else(|_| invalid("a text line that is not UTF-8"))
    }

    fn text(&mut self, n: u64) -> Result<Value, Fault> {
        let bytes = self.bytes(n)?;
        let text = String::from_utf8(bytes).or_else(|_| invalid("a string that is not UTF-8"))?;
        Ok(Value::Str(text.into()))
    }

    /// Python 2 `str`: text when it is UTF-8 (as torch.load decodes it), else bytes.
    fn py2_string(&mut self, n: u64) -> Result<Value, Fault> {
        let bytes = self.bytes(n)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => Value::Str(s.into()),
            Err(e) => Value::Bytes(e.into_bytes().into()),
        })
    }

    fn long(&mut self, n: u64) -> Result<Value, Fault> {
        if n > 16 {
            return invalid(format!("a {n}-byte integer (at most 16 are accepted)"));
        }
        let bytes = self.bytes(n)?;
        let value = bytes.iter().rev().fold(0i128, |acc, &b| (acc << 8) | i128::from(b));
        // Two's complement: sign-extend from the top bit of the last byte.
        let shift = 128 - 8 * n as u32;
        Ok(Value::Int(if n == 0 { 0 } else { (value << shift) >> shift }))
    }

    fn pop(&mut self) -> Result<Value, Fault> {
        if self.marks.last().is_some_and(|&m| m == self.stack.len()) {
            return invalid("an opcode takes an object across a MARK");
        }
        self.stack.pop().ok_or(Fault::Invalid("an opcode pops an empty stack".into()))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, Fault> {
        let mark = self.marks.pop().ok_or(Fault::Invalid("an opcode needs a MARK that is not there".into()))?;
        Ok(self.stack.split_off(mark))
    }

    fn top(&mut self) -> Result<&mut Value, Fault> {
        if self.marks.last().is_some_and(|&m| m == self.stack.len()) {
            return invalid("an opcode takes an object across a MARK");
        }
        self.stack.last_mut().ok_or(Fault::Invalid("an opcode needs an object on an empty stack".into()))
    }

    /// Counts the items the next change of the container on top of the stack copies (none
    /// unless the memo shares it).
    fn charge_copy(&mut self) -> Result<(), Fault> {
        if let Value::Node(_, node) = self.top()? {
            if Rc::strong_count(node) > 1 {
                self.copied += node.items.len() as u64;
            }
        }
        if self.copied > MAX_COPIED {
            return invalid(format!("it copies more than {MAX_COPIED} items adding to shared containers"));
        }
        Ok(())
    }

    /// Adds `items` to the list or set on top of the stack; an object of an unknown class
    /// being appended to becomes a list.
    fn extend(&mut self, items: Vec<Value>) -> Result<(), Fault> {
        self.charge_copy()?;
        let top = self.top()?;
        if matches!(top, Value::Node(Kind::Call, _)) {
            *top = Value::node(Kind::List, Vec::new())?;
        }
        match top {
            Value::Node(Kind::List | Kind::Set, node) => {
                let node = Rc::make_mut(node);
                items.into_iter().try_for_each(|item| node.push(item))
            }
            _ => invalid("APPEND or ADDITEMS on an object that is no list or set"),
        }
    }

    /// Sets `pairs` (keys and values alternating) in the dict on top of the stack; an object
    /// of an unknown class being set items on (a dict subclass) becomes a dict.
    fn set_items(&mut self, pairs: Vec<Value>) -> Result<(), Fault> {
        if !pairs.len().is_multiple_of(2) {
            return invalid("SETITEMS with a key and no value");
        }
        self.charge_copy()?;
        let top = self.top()?;
        if matches!(top, Value::Node(Kind::Call, _)) {
            *top = Value::node(Kind::Dict, Vec::new())?;
        }
        match top {
            Value::Node(Kind::Dict, node) => {
                let node = Rc::make_mut(node);
                pairs.into_iter().try_for_each(|item| node.push(item))
            }
            _ => invalid("SETITEM on an object that is no dict"),
        }
    }

    fn memo_get(&mut self, key: u64) -> Result<(), Fault> {
        let value = self.memo.get(&key).cloned().ok_or(Fault::Invalid(format!("memo entry {key} is not set")))?;
        self.stack.push(value);
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), Fault> {
        let value = self.top()?.clone();
        self.memo.insert(key, value);
        Ok(())
    }

    fn line_int(&mut self) -> Result<u64, Fault> {
        let line = self.line()?;
        line.trim().parse().or_else(|_| invalid(format!("`{line}` is not a memo index")))
    }

    fn push_node(&mut self, kind: Kind, items: Vec<Value>) -> Result<(), Fault> {
        let node = Value::node(kind, items)?;
        self.stack.push(node);
        Ok(())
    }

    fn persistent(&mut self, pid: Value) -> Result<(), Fault> {
        self.pids.push(pid.clone());
        self.push_node(Kind::Persistent, vec![pid])
    }

    /// Runs one opcode; returns the pickled object at STOP.
    fn step(&mut self) -> Result<Option<Value>, Fault> {
        self.ops += 1;
        if self.ops > MAX_OPS {
            return invalid(format!("more than {MAX_OPS} opcodes, far more than any state dict needs"));
        }
        let op = self.u8()?;
        match op {
            0x80 => {
                let protocol = self.u8()?;
                if protocol > 5 {
                    return invalid(format!("pickle protocol {protocol} (at most 5 exists)"));
                }
            }
            0x95 => {
                self.u64()?; // FRAME: a length hint
            }
            b'.' => {
                let root = self.pop()?;
                return Ok(Some(root));
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => {
                self.pop()?;
            }
            b'1' => {
                self.pop_mark()?;
            }
            b'2' => {
                let top = self.top()?.clone();
                self.stack.push(top);
            }
            b'N' => self.stack.push(Value::None),
            0x88 => self.stack.push(Value::Bool(true)),
            0x89 => self.stack.push(Value::Bool(false)),
            b'I' => {
                let line = self.line()?;
                let value = match line.as_str() {
                    "01" => Value::Bool(true),
                    "00" => Value::Bool(false),
                    s => Value::Int(s.parse().or_else(|_| invalid(format!("`{s}` is not an integer")))?),
                };
                self.stack.push(value);
            }
            b'L' => {
                let line = self.line()?;
                let digits = line.strip_suffix('L').unwrap_or(&line);
                let value = digits.parse().or_else(|_| invalid(format!("`{line}` is not an integer")))?;
                self.stack.push(Value::Int(value));
            }
            b'J' => {
                let value = i32::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(value.into()));
            }
            b'K' => {
                let value = self.u8()?;
                self.stack.push(Value::Int(value.into()));
            }
            b'M' => {
                let value = u16::from_le_bytes(self.array()?);
                self.stack.push(Value::Int(value.into()));
            }
            0x8a => {
                let n = self.u8()?;
                let value = self.long(n.into())?;
                self.stack.push(value);
            }
            0x8b => {
                let n = self.u32()?;
                let value = self.long(n.into())?;
                self.stack.push(value);
            }
            b'G' => {
                let value = f64::from_be_bytes(self.array()?);
                self.stack.push(Value::Float(value));
            }
            b'F' => {
                let line = self.line()?;
                let value = line.trim().parse().or_else(|_| invalid(format!("`{line}` is not a float")))?;
                self.stack.push(Value::Float(value));
            }
            b'X' | 0x8c | 0x8d => {
                let n = match op {
                    b'X' => self.u32()?.into(),
                    0x8c => self.u8()?.into(),
                    _ => self.u64()?,
                };
                let value = self.text(n)?;
                self.stack.push(value);
            }
            b'T' | b'U' => {
                let n = if op == b'T' { self.u32()?.into() } else { self.u8()?.into() };
                let value = self.py2_string(n)?;
                self.stack.push(value);
            }
            b'B' | b'C' | 0x8e => {
                let n = match op {
                    b'B' => self.u32()?.into(),
                    b'C' => self.u8()?.into(),
                    _ => self.u64()?,
                };
                let bytes = self.bytes(n)?;
                self.stack.push(Value::Bytes(bytes.into()));
            }
            b')' => self.push_node(Kind::Tuple, Vec::new())?,
            b't' => {
                let items = self.pop_mark()?;
                self.push_node(Kind::Tuple, items)?;
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                items.reverse();
                self.push_node(Kind::Tuple, items)?;
            }
            b']' => self.push_node(Kind::List, Vec::new())?,
            b'l' => {
                let items = self.pop_mark()?;
                self.push_node(Kind::List, items)?;
            }
            b'a' => {
                let item = self.pop()?;
                self.extend(vec![item])?;
            }
            b'e' | 0x90 => {
                let items = self.pop_mark()?;
                self.extend(items)?;
            }
            b'}' => self.push_node(Kind::Dict, Vec::new())?,
            b'd' => {
                let items = self.pop_mark()?;
                if !items.len().is_multiple_of(2) {
                    return invalid("DICT with a key and no value");
                }
                self.push_node(Kind::Dict, items)?;
            }
            b's' => {
                let value = self.pop()?;
                let key = self.pop()?;
                self.set_items(vec![key, value])?;
            }
            b'u' => {
                let items = self.pop_mark()?;
                self.set_items(items)?;
            }
            0x8f => self.push_node(Kind::Set, Vec::new())?,
            0x91 => {
                let items = self.pop_mark()?;
                self.push_node(Kind::Set, items)?;
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.stack.push(Value::Global(Rc::new((module, name))));
            }
            0x93 => {
                let name = self.pop()?;
                let module = self.pop()?;
                match (module.str(), name.str()) {
                    (Some(module), Some(name)) => {
                        self.stack.push(Value::Global(Rc::new((module.into(), name.into()))));
                    }
                    _ => return invalid("STACK_GLOBAL of something other than two strings"),
                }
            }
            b'R' | 0x81 | 0x92 => {
                if op == 0x92 {
                    self.pop()?; // NEWOBJ_EX's keyword arguments
                }
                let args = self.pop()?;
                let callable = self.pop()?;
                let empty_dict =
                    callable.is_global("collections", "OrderedDict") && args.tuple().is_some_and(<[Value]>::is_empty);
                if empty_dict {
                    self.push_node(Kind::Dict, Vec::new())?;
                } else {
                    self.push_node(Kind::Call, vec![callable, args])?;
                }
            }
            b'b' => {
                let state = self.pop()?;
                let object = self.pop()?;
                if object.items(Kind::Dict).is_some() {
                    // The attributes of a dict subclass, such as a state dict's `_metadata`:
                    // they are not items.
                    self.stack.push(object);
                } else {
                    self.push_node(Kind::Build, vec![object, state])?;
                }
            }
            b'Q' => {
                let pid = self.pop()?;
                self.persistent(pid)?;
            }
            b'P' => {
                let pid = self.line()?;
                self.persistent(Value::Str(pid.into()))?;
            }
            b'q' => {
                let key = self.u8()?;
                self.memo_put(key.into())?;
            }
            b'r' => {
                let key = self.u32()?;
                self.memo_put(key.into())?;
            }
            b'p' => {
                let key = self.line_int()?;
                self.memo_put(key)?;
            }
            0x94 => {
                let key = self.memo.len() as u64;
                self.memo_put(key)?;
            }
            b'h' => {
                let key = self.u8()?;
                self.memo_get(key.into())?;
            }
            b'j' => {
                let key = self.u32()?;
                self.memo_get(key.into())?;
            }
            b'g' => {
                let key = self.line_int()?;
                self.memo_get(key)?;
            }
            other => return invalid(format!("opcode 0x{other:02x}, which torch.save does not write")),
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(bytes: &[u8]) -> Result<Pickle, Error> {
        read(&mut &bytes[..], bytes.len() as u64)
    }

    #[test]
    fn reads_torch_legacy_magic_number() {
        // pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)
        let bytes = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.";
        assert_eq!(load(bytes).unwrap().root.int(), Some(0x1950a86a20f9469cfc6c));
    }

    #[test]
    fn reads_negative_longs_and_protocol_0_ints() {
        // pickle.dumps(-129, protocol=2) uses LONG1 only past 32 bits; write LONG1 by hand.
        assert_eq!(load(b"\x8a\x02\x7f\xff.").unwrap().root.int(), Some(-129));
        assert_eq!(load(b"I-7\n.").unwrap().root.int(), Some(-7));
        assert_eq!(load(b"L12345678901234567890L\n.").unwrap().root.int(), Some(12345678901234567890));
    }

    #[test]
    fn ordered_dict_with_metadata_keeps_only_items() {
        // collections.OrderedDict([('a', 1)]) with a `_metadata` attribute, protocol 2.
        let bytes = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00aK\x01s}q\x02X\t\x00\x00\x00_metadataq\x03}sb.";
        let root = load(bytes).unwrap().root;
        let items: Vec<_> = root.dict().unwrap().map(|(k, v)| (k.str().unwrap().to_string(), v.int())).collect();
        assert_eq!(items, [("a".to_string(), Some(1))]);
    }

    #[test]
    fn memo_shares_and_persistent_ids_are_collected() {
        // ((pid,), BINGET of the same tuple): ('storage', 'k') persisted twice.
        let bytes = b"(X\x07\x00\x00\x00storageX\x01\x00\x00\x00kt\x94Qh\x00Q\x86.";
        let p = load(bytes).unwrap();
        assert_eq!(p.persistent_ids.len(), 2);
        let pair = p.root.tuple().unwrap();
        assert!(pair.iter().all(|v| v.items(Kind::Persistent).is_some()));
    }

    #[test]
    fn truncation_and_garbage_are_errors_not_panics() {
        let bytes = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00aK\x01s.";
        for end in 0..bytes.len() {
            let err = load(&bytes[..end]).unwrap_err();
            assert_eq!(err.fault, Fault::Truncated, "cut at {end}");
        }
        assert!(matches!(load(b"\xff").unwrap_err().fault, Fault::Invalid(_)));
        assert!(matches!(load(b"t.").unwrap_err().fault, Fault::Invalid(_)));
        assert!(matches!(load(b"(K\x01s.").unwrap_err().fault, Fault::Invalid(_)));
        assert!(matches!(load(b"X\xff\xff\xff\xff").unwrap_err().fault, Fault::Truncated));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut bytes = b"N".to_vec();
        bytes.extend(std::iter::repeat_n(0x85u8, 100_000));
        bytes.push(b'.');
        let err = load(&bytes).unwrap_err();
        assert!(matches!(&err.fault, Fault::Invalid(m) if m.contains("nested")), "{err:?}");
    }
}
