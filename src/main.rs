//! The `switchboard` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    switchboard::cli::run()
}
