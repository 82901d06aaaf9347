//! The committed docs hold exactly what the code declares: every variable of every service's `--help` in
//! docs/configuration.md, every declared metric in docs/metrics.md. Part of `cargo test`, so of `scripts/test`.

#[test]
fn the_generated_parts_of_the_docs_match_the_code() {
    let files = docgen::compare(docgen::root(), &docgen::parts()).unwrap();
    let stale: Vec<&str> = files
        .iter()
        .filter(|(_, committed, generated)| committed != generated)
        .map(|(file, _, _)| *file)
        .collect();
    assert!(stale.is_empty(), "{}", docgen::stale_message(&stale));
}
