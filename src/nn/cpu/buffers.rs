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
/// there (a fresh or grown buffer is zeroed once): kernels that run for every band of every
/// layer need no allocation or clearing of their buffers. The smallest spare that is large
/// enough is taken (else the largest, grown), so that kernels of different buffer sizes
/// running in turn on one thread do not free, allocate and clear each other's buffers. Goes
/// back to the spares of the thread that drops it, which keep the largest [`SPARE_BUFFERS`]
/// for the life of the thread (a few MB at 4K frames).
pub(super) struct Scratch {
    buffer: Vec<f32>,
    len: usize,
}

impl Scratch {
    /// A buffer of `len` elements.
    pub(super) fn new(len: usize) -> Self {
        let spare = SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            let fits = spare.iter().enumerate().filter(|(_, b)| b.len() >= len).min_by_key(|(_, b)| b.len());
            let pick = fits.or_else(|| spare.iter().enumerate().max_by_key(|(_, b)| b.len())).map(|(i, _)| i);
            pick.map(|i| spare.swap_remove(i))
        });
        let mut buffer = spare.unwrap_or_default();
        if buffer.len() < len {
            // Exactly: the spares' lengths are what the choice above weighs.
            buffer.reserve_exact(len - buffer.len());
            buffer.resize(len, 0.0);
        }
        Self { buffer, len }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.buffer[..self.len]
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buffer[..self.len]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        SPARE.with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() < SPARE_BUFFERS {
                spare.push(buffer);
            } else if let Some(smallest) = spare.iter_mut().min_by_key(|b| b.len()).filter(|b| b.len() < buffer.len()) {
                // Keep the larger buffers: a small one is cheap to allocate again.
                *smallest = buffer;
            }
        });
    }
}

/// A vector of `len` values that a kernel writes in full before [`assume_init`]: an output or
/// mask not cleared first (clearing the outputs of Lite0's 512 step cost 8% of it).
pub(crate) fn uninit<T>(len: usize) -> Vec<MaybeUninit<T>> {
    let mut v = Vec::with_capacity(len);
    v.resize_with(len, MaybeUninit::uninit);
    v
}

/// The values of `v`, every one of which has been written.
///
/// # Safety
/// Every element of `v` must be initialised.
pub(crate) unsafe fn assume_init<T>(v: Vec<MaybeUninit<T>>) -> Vec<T> {
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
