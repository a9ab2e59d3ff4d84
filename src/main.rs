fn main() {
    if let Err(e) = tailor::cli::main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
