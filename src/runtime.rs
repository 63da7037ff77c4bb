//! Process-wide settings made once at start-up, before any thread is spawned.
//!
//! **Allocator.** Every op allocates its output, and a dream step at 512x512 frees tens of
//! buffers of up to 70 MB. glibc serves blocks that large with fresh `mmap`s and unmaps them on
//! free, so every op pays the kernel to fault in and zero its pages again: a quarter of a dream
//! step's time on the 2-core development machine. Raising the `mmap` threshold and disabling
//! trimming lets freed buffers be reused from the heap instead (the VGG19 step at 512x512 went
//! from 1.08 s to 0.90 s with the same peak memory).
//!
//! **candle's elementwise thread pool.** candle 0.11 runs elementwise ops on tensors of 64K
//! elements or more on its own pool of spinning threads, beside rayon's, which runs
//! dreamvid's kernels. The two pools take turns dozens of times per dream step, and every turn
//! waits for a parked thread to wake (or spins against the other pool's threads): on 2 cores
//! that was 12% of GoogLeNet's 224x224 step, spent waiting. The ops themselves (the step's
//! `|g|`, scaling and clamp over one image) are memory-bound passes that one thread does in
//! well under a millisecond, so candle's pool is given no extra threads unless
//! `CANDLE_NUM_THREADS` says otherwise.

/// Applies the settings above. Call once at the start of `main`, before threads are spawned.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads
    // allocate, and a rejected value leaves the defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // candle reads this when it first runs an elementwise op, which is after this call.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
