//! `stackinstall-fake`: every fake program of the tests in one binary (see
//! the library's documentation).

fn main() {
    std::process::exit(stackinstall_fakes::main());
}
