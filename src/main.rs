//! The `blindspot` command line: parses arguments, calls the library, maps errors to messages.
fn main() {
    println!("blindspot");
}
