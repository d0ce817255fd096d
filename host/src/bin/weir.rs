//! The `weir` command line: see `weir --help`.

fn main() -> std::process::ExitCode {
    weir::cli::main()
}
