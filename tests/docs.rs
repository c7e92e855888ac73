//! The language reference's op tables are generated from the library, so
//! they list every function, loss and layer with its real defaults.
//! `NETC_BLESS=1 cargo test --test docs` rewrites them after a library change
//! (review the diff).

#[test]
fn language_reference_lists_every_op() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/language.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let (begin, end) = ("<!-- ops:begin -->\n", "<!-- ops:end -->");
    let start = doc.find(begin).expect("begin marker") + begin.len();
    let stop = doc.find(end).expect("end marker");
    let generated = netc::check::library::reference_markdown();
    if std::env::var_os("NETC_BLESS").is_some() {
        std::fs::write(path, format!("{}{generated}{}", &doc[..start], &doc[stop..])).unwrap();
        return;
    }
    assert_eq!(
        &doc[start..stop],
        generated,
        "docs/language.md is out of date: run NETC_BLESS=1 cargo test --test docs"
    );
}
