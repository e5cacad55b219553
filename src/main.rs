//! The `fetchpar` binary: everything lives in the library, so the tests run the same code.

fn main() {
    std::process::exit(fetchpar::app::main());
}
