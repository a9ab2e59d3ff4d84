fn main() {
    restore_sigpipe();
    if let Err(e) = tailor::cli::main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Rust ignores SIGPIPE, so writing to a closed pipe (`tailor weights ... | head -1`) would panic
/// in `println!`; restoring the default makes the process end quietly, as other Unix tools do.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
