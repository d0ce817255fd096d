//! The benchmark: see `weir::bench`.
fn main() -> std::process::ExitCode {
    weir::bench::main()
}
