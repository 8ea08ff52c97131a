//! Random bytes for new client ids, fetched from the host [`RANDOM_POOL_IDS`] ids at a time: a
//! new client then costs one `random_get` call in 64 instead of one each.
//!
//! The bytes stay in module memory until used once, and are overwritten as they are handed out.

use std::cell::RefCell;

use crate::host::Host;

/// Ids fetched per `random_get` call.
pub const RANDOM_POOL_IDS: usize = 64;

/// One VM's pool of random bytes.
#[derive(Debug)]
pub struct RandomPool {
    state: RefCell<Pool>,
}

#[derive(Debug)]
struct Pool {
    bytes: [u8; 16 * RANDOM_POOL_IDS],
    /// Ids already handed out of `bytes`; `RANDOM_POOL_IDS` means empty.
    used: usize,
}

impl RandomPool {
    pub const fn new() -> RandomPool {
        RandomPool {
            state: RefCell::new(Pool {
                bytes: [0; 16 * RANDOM_POOL_IDS],
                used: RANDOM_POOL_IDS,
            }),
        }
    }

    /// 16 random bytes from the host's CSPRNG, or `None` when the host cannot supply them.
    pub fn random16(&self, host: &impl Host) -> Option<[u8; 16]> {
        let mut out = [0u8; 16];
        if cfg!(feature = "random-per-request") {
            return host.random_bytes(&mut out).then_some(out);
        }
        let mut pool = self.state.try_borrow_mut().ok()?;
        if pool.used >= RANDOM_POOL_IDS {
            if !host.random_bytes(&mut pool.bytes) {
                return None;
            }
            pool.used = 0;
        }
        let start = pool.used * 16;
        let chunk = pool.bytes.get_mut(start..start + 16)?;
        out.copy_from_slice(chunk);
        chunk.fill(0);
        pool.used += 1;
        Some(out)
    }
}

impl Default for RandomPool {
    fn default() -> RandomPool {
        RandomPool::new()
    }
}
