//! The benchmark: see the `weir_bench` library.
fn main() -> std::process::ExitCode {
    weir_bench::main()
}
