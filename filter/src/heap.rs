//! The module's heap: blocks of power-of-two sizes over wasm linear memory, one free list per
//! size, no headers, no coalescing.
//!
//! Why our own: the filter's allocations are few and small per request (the host's header
//! buffer, a Set-Cookie string, the per-stream entry) plus a configuration's objects once per
//! update, and the allocation pattern repeats request after request. Popping a free list is
//! cheaper than wasi-libc's dlmalloc, and the code is a few hundred bytes where dlmalloc is
//! about 10 KB of the module (docs/benchmarks.md, module size).
//!
//! - A layout of size `s` and alignment `a` gets a block of `max(s, a, 8)` rounded up to a power
//!   of two; freeing it (Rust passes the same layout) pushes the block on that size's list.
//! - New blocks are cut from the end of memory, each aligned to its own size (up to 64 KiB), so
//!   any block can serve any layout of its size. The bytes skipped to align one are cut into
//!   aligned power-of-two blocks and put on their lists, not lost.
//! - Memory grows by whole pages (`memory.grow`); memory is never given back (wasm cannot).
//!   Alignments above 64 KiB are refused (null), as is memory the host will not grow.
//!
//! The price: up to twice the bytes for sizes just above a power of two, and a block freed at
//! one size is only reused at that size. A configuration update frees its objects for the next
//! one of the same shape. The logic is tested natively over an arena (tests below).

use core::alloc::Layout;
use core::ptr::null_mut;

/// 64 KiB, wasm's page.
pub const PAGE: usize = 65536;
/// Blocks are at least 8 bytes: room for the free list's link on every target.
const MIN_SHIFT: u32 = 3;
/// Block sizes 8 B to 2 GiB.
const CLASSES: usize = 29;

/// Where the heap's pages come from.
pub trait Memory {
    /// Adds `pages` pages of zeroed memory; returns the address of the first, or `None`.
    fn grow(&mut self, pages: usize) -> Option<usize>;
}

/// Free lists by size, and the free tail of the last pages grown.
pub struct Heap<M> {
    /// Address of the first free block of each size (0: none); each free block's first word
    /// holds the address of the next.
    free: [usize; CLASSES],
    /// Free memory not yet cut into blocks: `next..end`.
    next: usize,
    end: usize,
    memory: M,
}

fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > PAGE {
        return None;
    }
    let need = layout.size().max(layout.align()).max(1 << MIN_SHIFT);
    let size = need.checked_next_power_of_two()?;
    let class = (size.trailing_zeros() - MIN_SHIFT) as usize;
    (class < CLASSES).then_some(class)
}

fn block_size(class: usize) -> usize {
    1 << (class as u32 + MIN_SHIFT)
}

impl<M: Memory> Heap<M> {
    pub const fn new(memory: M) -> Heap<M> {
        Heap {
            free: [0; CLASSES],
            next: 0,
            end: 0,
            memory,
        }
    }

    /// A block for `layout`, or null.
    ///
    /// # Safety
    /// The memory `Memory::grow` hands out must be this heap's alone, and blocks must only be
    /// given back through [`Heap::dealloc`] with their layout.
    pub unsafe fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            return null_mut();
        };
        let Some(head) = self.free.get_mut(class) else {
            return null_mut();
        };
        if *head != 0 {
            let block = *head;
            // SAFETY: a listed block is free and at least a word long; its first word is its link.
            *head = unsafe { (block as *const usize).read() };
            return block as *mut u8;
        }
        // SAFETY: as for this function.
        unsafe { self.cut(class) }
    }

    /// Gives a block back.
    ///
    /// # Safety
    /// `ptr` came from [`Heap::alloc`] (or [`Heap::realloc`]) of this heap with this `layout`.
    pub unsafe fn dealloc(&mut self, ptr: *mut u8, layout: Layout) {
        if let Some(class) = class_of(layout) {
            // SAFETY: as for this function.
            unsafe { self.push(ptr as usize, class) };
        }
    }

    /// Resizes a block: kept in place when the new size needs a block of the same size.
    ///
    /// # Safety
    /// As for [`Heap::dealloc`]; `new_size`, rounded up to `layout.align()`, must not overflow.
    pub unsafe fn realloc(&mut self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return null_mut();
        };
        if class_of(layout) == class_of(new_layout) {
            return ptr;
        }
        // SAFETY: as for this function; the two blocks are distinct, both at least `min` long.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                core::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }

    unsafe fn push(&mut self, block: usize, class: usize) {
        if let Some(head) = self.free.get_mut(class) {
            // SAFETY: the caller hands over a free block of this class (at least a word).
            unsafe { (block as *mut usize).write(*head) };
            *head = block;
        }
    }

    /// A new block of `class`, cut from the free tail (grown when too short).
    unsafe fn cut(&mut self, class: usize) -> *mut u8 {
        let size = block_size(class);
        let align = size.min(PAGE);
        loop {
            let start = self.next.checked_add(align - 1).map(|n| n & !(align - 1));
            if let Some((start, end)) = start.and_then(|s| Some((s, s.checked_add(size)?))) {
                if end <= self.end {
                    // SAFETY: next..start is free tail, now cut into blocks.
                    unsafe { self.release(self.next, start) };
                    self.next = end;
                    return start as *mut u8;
                }
            }
            // New pages start page-aligned, so `size` bytes (rounded up to pages) are enough.
            let pages = size.div_ceil(PAGE);
            let Some(base) = self.memory.grow(pages) else {
                return null_mut();
            };
            if base != self.end {
                // Not contiguous (someone else grew memory): keep the old tail as blocks.
                // SAFETY: next..end is free tail.
                unsafe { self.release(self.next, self.end) };
                self.next = base;
            }
            let Some(end) = pages.checked_mul(PAGE).and_then(|bytes| base.checked_add(bytes)) else {
                return null_mut();
            };
            self.end = end;
        }
    }

    /// Puts `from..to` (both multiples of 8) on the free lists as naturally aligned blocks.
    unsafe fn release(&mut self, mut from: usize, to: usize) {
        while from < to {
            let room = to - from;
            // The largest power of two that `from` is aligned to and that fits.
            let aligned = from & from.wrapping_neg();
            let fits = 1usize << (usize::BITS - 1 - room.leading_zeros());
            let size = if aligned == 0 { fits } else { aligned.min(fits) };
            if size < 1 << MIN_SHIFT {
                return;
            }
            let class = (size.trailing_zeros() - MIN_SHIFT) as usize;
            if class < CLASSES {
                // SAFETY: from..from + size is free tail, aligned to its size.
                unsafe { self.push(from, class) };
            }
            from += size;
        }
    }
}

/// The global allocator of the wasm module: wasm32 runs one thread, so the heap needs no lock.
#[cfg(target_arch = "wasm32")]
mod global {
    use super::{Heap, Memory, PAGE};
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;

    struct Linear;

    impl Memory for Linear {
        fn grow(&mut self, pages: usize) -> Option<usize> {
            let previous = core::arch::wasm32::memory_grow(0, pages);
            (previous != usize::MAX).then(|| previous * PAGE)
        }
    }

    struct Global(UnsafeCell<Heap<Linear>>);

    // SAFETY: wasm32 modules here run on one thread (Envoy gives each worker its own VM).
    unsafe impl Sync for Global {}

    // SAFETY: the heap is only reached through these calls, never re-entered (it allocates
    // nothing itself), and it is the only user of the pages it grows.
    unsafe impl GlobalAlloc for Global {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            unsafe { (*self.0.get()).alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { (*self.0.get()).dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            unsafe { (*self.0.get()).realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static HEAP: Global = Global(UnsafeCell::new(Heap::new(Linear)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages from one big page-aligned buffer, optionally leaving a page unused between grows
    /// (memory someone else grew).
    struct Arena {
        base: usize,
        pages: usize,
        used: usize,
        gaps: bool,
    }

    impl Arena {
        fn new(pages: usize, gaps: bool) -> Arena {
            let layout = Layout::from_size_align(pages * PAGE, PAGE).unwrap();
            let base = unsafe { std::alloc::alloc_zeroed(layout) } as usize;
            assert_ne!(base, 0);
            Arena {
                base,
                pages,
                used: 0,
                gaps,
            }
        }
    }

    impl Memory for Arena {
        fn grow(&mut self, pages: usize) -> Option<usize> {
            if self.gaps && self.used > 0 {
                self.used += 1;
            }
            if self.used + pages > self.pages {
                return None;
            }
            let at = self.base + self.used * PAGE;
            self.used += pages;
            Some(at)
        }
    }

    /// A tiny deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn check_heap(gaps: bool, seed: u64) {
        let mut heap = Heap::new(Arena::new(1024, gaps));
        let mut rng = Rng(seed);
        // (address, layout, fill byte)
        let mut live: Vec<(usize, Layout, u8)> = Vec::new();
        for step in 0..20_000u32 {
            let roll = rng.below(100);
            if roll < 46 || live.is_empty() {
                let size = match rng.below(10) {
                    0 => rng.below(70_000) as usize,
                    1..=3 => rng.below(600) as usize,
                    _ => rng.below(64) as usize,
                };
                let max_shift = if rng.below(20) == 0 { 13 } else { 4 };
                let align = 1usize << rng.below(max_shift);
                let layout = Layout::from_size_align(size, align).unwrap();
                let ptr = unsafe { heap.alloc(layout) };
                assert!(!ptr.is_null(), "step {step}: out of memory for {layout:?}");
                let at = ptr as usize;
                assert_eq!(at % align, 0, "step {step}: {layout:?} at {at:#x}");
                let fill = (step % 251) as u8;
                unsafe { core::ptr::write_bytes(ptr, fill, size) };
                live.push((at, layout, fill));
            } else if roll < 90 {
                let (at, layout, fill) = live.swap_remove(rng.below(live.len() as u64) as usize);
                let bytes = unsafe { core::slice::from_raw_parts(at as *const u8, layout.size()) };
                assert!(bytes.iter().all(|&b| b == fill), "step {step}: a block was overwritten");
                unsafe { heap.dealloc(at as *mut u8, layout) };
            } else {
                let i = rng.below(live.len() as u64) as usize;
                let (at, layout, fill) = live[i];
                let new_size = rng.below(2_000) as usize;
                let ptr = unsafe { heap.realloc(at as *mut u8, layout, new_size) };
                assert!(!ptr.is_null());
                let kept = layout.size().min(new_size);
                let bytes = unsafe { core::slice::from_raw_parts(ptr, kept) };
                assert!(bytes.iter().all(|&b| b == fill), "step {step}: realloc lost bytes");
                let new_layout = Layout::from_size_align(new_size, layout.align()).unwrap();
                assert_eq!(ptr as usize % layout.align(), 0);
                unsafe { core::ptr::write_bytes(ptr, fill, new_size) };
                live[i] = (ptr as usize, new_layout, fill);
            }
            if step % 1000 == 0 {
                // No two live blocks overlap.
                let mut spans: Vec<(usize, usize)> = live.iter().map(|(a, l, _)| (*a, *a + l.size())).collect();
                spans.sort();
                for pair in spans.windows(2) {
                    assert!(pair[0].1 <= pair[1].0, "step {step}: {pair:?} overlap");
                }
            }
        }
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_keep_their_bytes() {
        for seed in [1, 2, 3, 0x9e37_79b9] {
            check_heap(false, seed);
        }
    }

    #[test]
    fn memory_grown_by_someone_else_in_between_is_survived() {
        for seed in [4, 5] {
            check_heap(true, seed);
        }
    }

    #[test]
    fn freed_blocks_are_reused_at_their_size() {
        let mut heap = Heap::new(Arena::new(4, false));
        let layout = Layout::from_size_align(100, 8).unwrap();
        let a = unsafe { heap.alloc(layout) };
        unsafe { heap.dealloc(a, layout) };
        // 100 and 128 bytes share the 128-byte size.
        let b = unsafe { heap.alloc(Layout::from_size_align(128, 4).unwrap()) };
        assert_eq!(a, b);
        // Growing within the size keeps the block.
        let c = unsafe { heap.realloc(b, Layout::from_size_align(128, 4).unwrap(), 120) };
        assert_eq!(b, c);
    }

    #[test]
    fn refusals_are_null_not_panics() {
        let mut heap = Heap::new(Arena::new(2, false));
        let huge = Layout::from_size_align(3 * PAGE, 8).unwrap();
        assert!(unsafe { heap.alloc(huge) }.is_null(), "more than the memory has");
        let over_aligned = Layout::from_size_align(8, 2 * PAGE).unwrap();
        assert!(unsafe { heap.alloc(over_aligned) }.is_null());
        // Still serving after a refusal.
        assert!(!unsafe { heap.alloc(Layout::from_size_align(64, 8).unwrap()) }.is_null());
    }

    #[test]
    fn skipped_bytes_become_blocks() {
        let mut heap = Heap::new(Arena::new(4, false));
        let small = Layout::from_size_align(8, 8).unwrap();
        let first = unsafe { heap.alloc(small) } as usize;
        // A 4 KiB block must skip to the next 4 KiB boundary; the 8..4096 in between is not lost.
        let page = unsafe { heap.alloc(Layout::from_size_align(4096, 8).unwrap()) } as usize;
        assert_eq!(page, first + 4096);
        // Each size from 8 to 2048 bytes has one block there.
        let seen: Vec<usize> = (3..12)
            .map(|shift| unsafe { heap.alloc(Layout::from_size_align(1 << shift, 8).unwrap()) } as usize)
            .collect();
        assert!(
            seen.iter().all(|&a| a > first && a < page),
            "{seen:x?} not in the skipped bytes"
        );
    }
}
