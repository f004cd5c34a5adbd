//! Rebuild when a migration is added or changed: refinery embeds `sql/` and `policies/` at
//! compile time, and cargo would not otherwise notice a new file there.
fn main() {
    println!("cargo:rerun-if-changed=sql");
    println!("cargo:rerun-if-changed=policies");
}
