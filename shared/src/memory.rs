//! Handing memory a process has just freed back to the operating system.
//!
//! The allocator is the binary's choice (`src/main.rs`), so the binary
//! registers how; a library or test process without one does nothing.

use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Registers the allocator's "return freed pages now" (once per process).
pub fn set_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// After a peak the process will not see again soon (a model artifact
/// parsed into a parser's tree and dropped after conversion), return the
/// freed pages now: the allocator would otherwise keep them resident until
/// it next runs a purge on this thread, which an idle worker may never do.
/// Call it on the thread that freed the memory.
pub fn release_freed() {
    if let Some(release) = RELEASE.get() {
        release();
    }
}
