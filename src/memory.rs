//! How the process's allocator hands memory back to the operating system.
//!
//! glibc's malloc gives each thread that contends for the heap an arena of its own (up to eight
//! per core) and keeps what is freed in them. With tokio's workers, the blocking pool and the
//! encoder thread each allocating and freeing snapshot-sized data, that retained memory outgrows
//! the live heap several times over; two arenas keep contention low on the few cores an exporter
//! gets while bounding what is held back.

/// Arenas glibc may create; threads beyond that share them.
const ARENA_MAX: i32 = 2;

/// Caps the allocator's arenas. Call first thing in `main`, before any thread is spawned.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of glibc's allocator; no thread allocates yet, and a
    // rejected value (it returns 0) leaves the default in place.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

/// Returns memory that the allocator holds but no longer uses to the operating system. It walks
/// every arena, so run it off the async workers after large frees (start-up, a shrinking reload).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
