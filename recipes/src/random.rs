//! Where the recipes' random choices come from: back-off jitter, the GUIDs
//! of protected nodes, and discovery's random strategies.
//!
//! By default every thread draws from the operating system's entropy
//! (through `rand`'s thread-local generator). A deterministic simulation —
//! many clients, a server and a simulated network on one current-thread
//! runtime with a paused clock — can make those choices replay:
//! [`seed_thread`] makes this thread's draws follow a seed, so a schedule
//! run twice from the same seed takes the same path.
//!
//! ```
//! // Every recipe on this thread now draws from seed 42...
//! zkit_recipes::random::seed_thread(42);
//! // ...until this thread goes back to the system's entropy.
//! zkit_recipes::random::unseed_thread();
//! ```

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

thread_local! {
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// Makes the recipes' random choices on this thread follow `seed`, for
/// deterministic simulation and replay. The tasks of a current-thread
/// runtime run on the thread that drives it: seed that thread.
///
/// Only for simulations: protected-node GUIDs must differ between
/// processes, and two processes seeded alike draw the same ones (the
/// recipes stay safe, since they check the owner of a node they find, but
/// they lose the protection against their own orphans).
pub fn seed_thread(seed: u64) {
    SEEDED.with(|s| *s.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
}

/// Returns this thread to the system's entropy.
pub fn unseed_thread() {
    SEEDED.with(|s| *s.borrow_mut() = None);
}

/// Fills `buf` from this thread's source.
pub(crate) fn fill(buf: &mut [u8]) {
    SEEDED.with(|s| match s.borrow_mut().as_mut() {
        Some(r) => r.fill_bytes(buf),
        None => rand::rng().fill_bytes(buf),
    });
}

/// A random `u64` from this thread's source.
pub(crate) fn u64() -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_le_bytes(b)
}

/// A random index below `n` (`n` > 0) from this thread's source.
pub(crate) fn below(n: usize) -> usize {
    SEEDED.with(|s| match s.borrow_mut().as_mut() {
        Some(r) => r.random_range(0..n),
        None => rand::rng().random_range(0..n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seeded_thread_replays_and_an_unseeded_one_does_not() {
        seed_thread(7);
        let a: Vec<u64> = (0..4).map(|_| u64()).collect();
        seed_thread(7);
        let b: Vec<u64> = (0..4).map(|_| u64()).collect();
        assert_eq!(a, b);
        unseed_thread();
        let c: Vec<u64> = (0..4).map(|_| u64()).collect();
        assert_ne!(a, c);
        assert!((0..100).all(|_| below(3) < 3));
    }
}
