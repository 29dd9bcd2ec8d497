use std::process::ExitCode;

fn main() -> ExitCode {
    opsbook::main()
}
