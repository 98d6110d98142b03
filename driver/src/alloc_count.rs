//! A global allocator that counts the allocations one thread makes inside a window, for
//! tests that show a path allocates nothing. Install it in a test binary with
//! `#[global_allocator] static GLOBAL: Counting = Counting;` and measure with
//! [`count_allocations`].
//!
//! With `LKR_ALLOC_BACKTRACE=1` the first allocations inside a window print a backtrace.

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;

/// The counting allocator: the system allocator plus a thread-local count.
pub struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
    static TRACES_LEFT: Cell<u32> = const { Cell::new(0) };
    static TOTAL: Cell<u64> = const { Cell::new(0) };
}

/// Allocations this thread has made so far (window or not).
pub fn allocations() -> u64 {
    TOTAL.with(Cell::get)
}

fn note_allocation(layout: Layout) {
    let _ = TOTAL.try_with(|t| t.set(t.get() + 1));
    // `try_with`: thread-locals may already be gone while a thread shuts down.
    if !COUNTING.try_with(Cell::get).unwrap_or(false) || IN_HOOK.try_with(Cell::get).unwrap_or(true)
    {
        return;
    }
    COUNT.with(|c| c.set(c.get() + 1));
    if TRACES_LEFT.with(Cell::get) > 0 {
        TRACES_LEFT.with(|t| t.set(t.get() - 1));
        // Capturing and printing allocate; the flag keeps that out of the count.
        IN_HOOK.with(|h| h.set(true));
        eprintln!(
            "allocation of {} bytes in the window:\n{}",
            layout.size(),
            Backtrace::force_capture()
        );
        IN_HOOK.with(|h| h.set(false));
    }
}

// SAFETY: every method forwards its arguments unchanged to the system allocator, which
// upholds the `GlobalAlloc` contract; the bookkeeping only touches thread-local cells.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from the system allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(layout);
        // SAFETY: `ptr` came from the system allocator with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Counts the allocations `f` makes on this thread (zero unless [`Counting`] is the global
/// allocator).
pub fn count_allocations(f: impl FnOnce()) -> u64 {
    let traces = if std::env::var_os("LKR_ALLOC_BACKTRACE").is_some() {
        5
    } else {
        0
    };
    TRACES_LEFT.with(|t| t.set(traces));
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(Cell::get)
}
