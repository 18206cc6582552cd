//! `ledger`: the auditor's tool (see `docs/audit.md`).

fn main() -> std::process::ExitCode {
    replay::cli::main()
}
