fn main() -> std::process::ExitCode {
    callplane::cli::run()
}
