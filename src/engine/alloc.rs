//! Allocator settings for training processes.
//!
//! A training step allocates its activations and gradients afresh (the W2 step: about ten
//! buffers of 512 KiB at batch 1024) and frees them at its end. With glibc's default settings
//! such buffers come from `mmap` or from heap memory that `free` hands back to the kernel
//! (the trim threshold), so every step faults its pages in again and the kernel zeroes them:
//! measured on W2 at batch 1024 with the fused linear layers, up to several hundred page
//! faults and 0.3-0.7 ms per step; on W1 (batch 64, 2 threads) about 80,000 page faults per
//! step, roughly a tenth of its CPU time, down to about 20,000 with the settings.
//! [`keep_freed_memory`] raises both thresholds so that freed memory is reused by the next
//! step instead; the peak resident memory is unchanged (it is the same set of buffers), only
//! memory is not returned to the kernel between steps.

/// `mmap` is used only for blocks of at least this many bytes (glibc's largest allowed value).
pub const MMAP_THRESHOLD: usize = 32 << 20;
/// Free memory at the top of the heap is returned to the kernel only beyond this many bytes.
pub const TRIM_THRESHOLD: usize = 1 << 30;

/// Sets glibc's `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` (see the module documentation) for
/// this process; call it once at the start of a training or benchmark binary. Returns `true`
/// when both settings were applied, `false` on other platforms or C libraries (no effect).
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; both values are in range.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
