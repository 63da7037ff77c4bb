//! Allocator settings for a process that allocates and frees large tensors all the time.
//!
//! Every op allocates its output, and a dream step at 512x512 frees tens of buffers of up to
//! 70 MB. glibc serves blocks that large with fresh `mmap`s and unmaps them on free, so every
//! op pays the kernel to fault in and zero its pages again: a quarter of a dream step's time
//! on the 2-core development machine. Raising the `mmap` threshold and disabling trimming
//! lets freed buffers be reused from the heap instead (the VGG19 step at 512x512 went from
//! 1.08 s to 0.90 s with the same peak memory).

/// Makes freed large buffers reusable instead of returning them to the kernel. Call once at
/// start-up, before threads are spawned; does nothing outside glibc.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // allocate, and a rejected value leaves the defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
