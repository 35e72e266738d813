//! The sidecar's global allocator: mimalloc, called the way its C API is
//! meant to be for ordinary layouts.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`,
//! whatever its alignment. For blocks over 1 KiB — hyper's 8 KiB buffers, a
//! response body — that takes mimalloc's generic aligned path, and for
//! sizes that are not a power of two up to 4 KiB its over-allocating one,
//! about 200 instructions where `mi_malloc` spends a few dozen (a dozen such
//! allocations a proxied request; docs/benchmark.md has the A/B). Every
//! mimalloc block is aligned to at least a machine word, so a layout asking
//! for no more than that is served by `mi_malloc` and `mi_realloc`; larger
//! alignments keep the aligned calls.
//!
//! This is the workspace's only `unsafe` code; the sidecar and the operator
//! forbid it.

#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use libmimalloc_sys as ffi;

/// Alignment every mimalloc block has: block sizes are multiples of a word
/// and pages start blocks at least 16-byte aligned.
const WORD: usize = core::mem::size_of::<usize>();

/// mimalloc as a [`GlobalAlloc`].
pub struct Mimalloc;

// SAFETY: each method hands its arguments to the mimalloc function with the
// same contract (`mi_malloc` and friends return null on failure, blocks of
// at least the requested size aligned as asked, and `mi_free` accepts any
// block they returned), choosing the unaligned variant only when mimalloc's
// word alignment already satisfies `layout.align()`.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl; mimalloc accepts any size.
        unsafe {
            if layout.align() <= WORD {
                ffi::mi_malloc(layout.size()).cast()
            } else {
                ffi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= WORD {
                ffi::mi_zalloc(layout.size()).cast()
            } else {
                ffi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: the caller passes a block this allocator returned.
        unsafe { ffi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller passes a block this allocator returned with
        // `layout`; the new block keeps that alignment as `alloc` would.
        unsafe {
            if layout.align() <= WORD {
                ffi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                ffi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;

    /// Allocations of every alignment up to a page come back aligned and
    /// usable, through growth and shrinkage.
    #[test]
    fn blocks_have_the_alignment_asked_for() {
        let alloc = Mimalloc;
        for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in [1usize, 7, 8, 24, 1000, 1025, 4097, 8192, 8199, 100_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size and a valid layout; the block is
                // written within its size and freed with the same layout.
                unsafe {
                    let p = alloc.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "{size} bytes, align {align}");
                    p.write_bytes(0xab, size);
                    let q = alloc.realloc(p, layout, size * 3);
                    assert_eq!(q as usize % align, 0, "grown {size}, align {align}");
                    assert_eq!(*q.add(size - 1), 0xab);
                    alloc.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
                    let z = alloc.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    alloc.dealloc(z, layout);
                }
            }
        }
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499_500);
    }
}
