//! Build script: compiles the bundled APEx catalogue snapshot (`catalog/apex/`) into the
//! daemon. It walks the folder and writes `$OUT_DIR/catalog_apex.rs`, a table of
//! `(path relative to catalog/apex, include_str!(file))` for every JSON file, sorted by
//! path, read by `src/catalogue/bundled.rs`. Adding or removing a file needs no code
//! change.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("catalog")
        .join("apex");
    println!("cargo:rerun-if-changed=catalog/apex");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut code = String::from(
        "/// Every JSON file of `catalog/apex/`: (relative path, text), sorted by path.\n\
         pub static FILES: &[(&str, &str)] = &[\n",
    );
    let mut table: Vec<String> = files
        .iter()
        .map(|path| {
            path.strip_prefix(&root)
                .expect("below the root")
                .components()
                .map(|c| c.as_os_str().to_str().expect("a UTF-8 path").to_string())
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    table.sort();
    // Paths relative to the manifest folder (not absolute), so that the generated file
    // stays right wherever the package is checked out.
    for rel in &table {
        writeln!(
            code,
            "    ({rel:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {:?}))),",
            format!("/catalog/apex/{rel}")
        )
        .expect("a string");
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("catalog_apex.rs");
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}
