//! Shared command-line plumbing for the `gen-compile` and `gen-train` binaries.

/// Restores the default SIGPIPE behaviour, so `gen-train ... | head` ends quietly like other
/// Unix tools instead of panicking on a closed stdout (Rust ignores SIGPIPE by default).
pub fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal disposition to the default at start-up, before any thread runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
