//! `include/ledger_client.h` is what cbindgen makes of `src/lib.rs` now.
//! `UPDATE_HEADER=1 cargo test -p ledger-client-ffi --test header` rewrites it.

#[test]
fn the_header_is_current() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(format!("{dir}/src/lib.rs"))
        .generate()
        .unwrap()
        .write(&mut generated);
    let path = format!("{dir}/include/ledger_client.h");
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{path} is stale: UPDATE_HEADER=1 cargo test -p ledger-client-ffi --test header"
    );
}
