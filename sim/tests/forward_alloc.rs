//! The forwarding hot path allocates nothing in steady state (DESIGN.md §4): one publisher,
//! ten subscribers, 10,000 packets through `handle_receive` and `poll_transmit`, every
//! transmitted buffer recycled.
//!
//! To find an allocation, run with `LKR_ALLOC_BACKTRACE=1` (and `-- --nocapture`): the first
//! few allocations inside the window print a backtrace.

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::time::Duration;

use lkr_sfu::TrackId;
use lkr_sim::{MediaSource, Sim, SimConfig, VideoConfig};

/// Counts this thread's allocations while a window is open.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static IN_HOOK: Cell<bool> = const { Cell::new(false) };
    static TRACES_LEFT: Cell<u32> = const { Cell::new(0) };
}

fn note_allocation(layout: Layout) {
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

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts the allocations `f` makes on this thread.
fn count_allocations(f: impl FnOnce()) -> u64 {
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

const SUBSCRIBERS: usize = 10;
const PACKETS: usize = 10_000;

#[test]
fn forwarding_one_to_ten_allocates_nothing() {
    // The counter does see allocations.
    assert!(count_allocations(|| drop(std::hint::black_box(vec![0u8; 64]))) > 0);

    let mut sim = Sim::new(SimConfig::seeded(51));
    let publisher = sim.add_client();
    for _ in 0..SUBSCRIBERS {
        sim.add_client();
    }
    assert!(sim.connect_all(Duration::from_secs(5)));
    let track = TrackId(1);
    sim.publish(publisher, track, MediaSource::Video(VideoConfig::default()));
    for i in 1..=SUBSCRIBERS {
        sim.subscribe(lkr_sim::ClientId(i), track);
    }
    // Warm up through the network: keyframe, PLI, NACK-free steady state.
    sim.run_for(Duration::from_secs(2));
    let now = sim.now();
    sim.client_mut(publisher)
        .publisher_mut(track)
        .expect("published")
        .set_sending(false, now);
    sim.run_for(Duration::from_millis(100));

    let from = sim.client(publisher).addr;
    let now = sim.now();
    let (engine, clients) = sim.parts();
    let forward = |engine: &mut lkr_sfu::Engine, datagram: &mut [u8]| {
        let mut sent = 0;
        engine.handle_receive(now, from, datagram);
        while let Some(t) = engine.poll_transmit() {
            sent += 1;
            engine.recycle(t.data);
        }
        sent
    };
    // Warm up by hand: every slot of the retransmission cache and the buffer pool filled.
    for _ in 0..2_000 {
        let mut d = clients[0].next_media_datagram(track).expect("keyed");
        assert_eq!(forward(engine, &mut d), SUBSCRIBERS);
    }
    let mut batch: Vec<Vec<u8>> = (0..PACKETS)
        .map(|_| clients[0].next_media_datagram(track).expect("keyed"))
        .collect();

    let mut transmitted = 0;
    let allocations = count_allocations(|| {
        for d in &mut batch {
            transmitted += forward(engine, d);
        }
    });
    assert_eq!(
        transmitted,
        PACKETS * SUBSCRIBERS,
        "every packet reached every subscriber"
    );
    assert_eq!(
        allocations, 0,
        "allocations while forwarding {PACKETS} packets to {SUBSCRIBERS}"
    );
}
