//! The time the root context's tick last read from the host clock (every second), so requests
//! know today (for the client-id cookie's day stamp) and now (for a cut-over) without a host call.

use std::cell::Cell;

/// Today (days since 1970, UTC) as last read from the host; one per VM, that is per Envoy worker.
#[derive(Debug)]
pub struct Clock {
    /// `u32::MAX` until the first read.
    today: Cell<u32>,
    /// Unix seconds; `u64::MAX` until the first read.
    now: Cell<u64>,
}

impl Clock {
    pub const fn new() -> Clock {
        Clock {
            today: Cell::new(u32::MAX),
            now: Cell::new(u64::MAX),
        }
    }

    /// Records the host clock's time (nanoseconds since the Unix epoch) as today's day number.
    pub fn set(&self, unix_nanoseconds: u64) {
        let seconds = unix_nanoseconds / 1_000_000_000;
        self.today.set(policy_core::day_of(seconds));
        self.now.set(seconds);
    }

    /// Today, once the clock has been read.
    pub fn today(&self) -> Option<u32> {
        let day = self.today.get();
        (day != u32::MAX).then_some(day)
    }

    /// Unix seconds as of the last read (at most one tick old), once the clock has been read.
    pub fn now(&self) -> Option<u64> {
        let now = self.now.get();
        (now != u64::MAX).then_some(now)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_gives_days_since_1970() {
        let clock = Clock::new();
        assert_eq!(clock.today(), None);
        assert_eq!(clock.now(), None);
        clock.set(1_763_856_000 * 1_000_000_000 + 5);
        assert_eq!(clock.today(), Some(20415));
        assert_eq!(clock.now(), Some(1_763_856_000));
    }
}
