//! Work buffers reused per thread, uncleared outputs, the slot fused activation masks are left
//! in, and the pointer parallel workers write their disjoint output regions through.

use std::mem::MaybeUninit;
use std::sync::{Mutex, PoisonError};

thread_local! {
    /// Buffers [`Scratch`] returned on this thread, for the next one to reuse.
    static SPARE: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per thread for reuse.
const SPARE_BUFFERS: usize = 4;

/// A work buffer of unspecified contents, reused from the thread's spare buffers when one is
/// there (a fresh buffer is zeroed once): kernels that run for every band of every layer need
/// no allocation or clearing of their buffers. Goes back to the spares of the thread that
/// drops it.
pub(super) struct Scratch(Vec<f32>);

impl Scratch {
    /// A buffer of `len` elements.
    pub(super) fn new(len: usize) -> Self {
        let spare = SPARE.with(|spare| spare.borrow_mut().pop());
        // A spare twice as large as needed is let go, so that big buffers of wide layers are
        // not held through the rest of the network.
        let mut buffer = spare.filter(|b| b.capacity() <= 2 * len).unwrap_or_default();
        buffer.resize(len, 0.0);
        Self(buffer)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Vec<f32>;

    fn deref(&self) -> &Vec<f32> {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut Vec<f32> {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_BUFFERS {
                spare.push(buffer);
            }
        });
    }
}

/// A vector of `len` values that a kernel writes in full before [`assume_init`]: an output or
/// mask not cleared first (clearing the outputs of Lite0's 512 step cost 8% of it).
pub(super) fn uninit<T>(len: usize) -> Vec<MaybeUninit<T>> {
    let mut v = Vec::with_capacity(len);
    v.resize_with(len, MaybeUninit::uninit);
    v
}

/// The values of `v`, every one of which has been written.
///
/// # Safety
/// Every element of `v` must be initialised.
pub(super) unsafe fn assume_init<T>(v: Vec<MaybeUninit<T>>) -> Vec<T> {
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: MaybeUninit<T> has T's size and alignment, the caller guarantees every element
    // is initialised, and the allocation passes from one Vec to the other unchanged.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), v.len(), v.capacity()) }
}

/// A pointer that parallel workers write through, each to its own disjoint region.
#[derive(Clone, Copy)]
pub(super) struct SharedMut<T>(pub(super) *mut T);

impl<T> SharedMut<T> {
    /// The pointer (a method, so that closures capture the `Send` wrapper, not the field).
    pub(super) fn get(self) -> *mut T {
        self.0
    }
}

// SAFETY: only used to hand disjoint output regions to rayon workers (see each use).
unsafe impl<T> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SharedMut<T> {}

/// Where a forward kernel with a clamp leaves the `u8` mask of the clamp's linear range (see
/// [`super::operands::active`]), written while the output is still in cache instead of by a
/// pass of its own over the output.
#[derive(Debug, Default)]
pub struct MaskSlot(Mutex<Option<Vec<u8>>>);

impl MaskSlot {
    /// Leaves `mask` here.
    pub(super) fn put(&self, mask: Vec<u8>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(mask);
    }

    /// The mask left here, if a kernel left one.
    pub fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}
