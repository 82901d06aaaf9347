//! `docgen` rewrites the generated parts of docs/ from the code; `docgen --check` exits 1 when the committed
//! docs differ from what the code generates. Run through `scripts/gen-docs`.

fn main() {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => {
            eprintln!("usage: docgen [--check] (got {other:?})");
            std::process::exit(2);
        }
    };
    let files =
        docgen::compare(docgen::root(), &docgen::parts()).unwrap_or_else(|error| fail(&error));
    let mut stale = Vec::new();
    for (file, committed, generated) in files {
        if generated == committed {
            continue;
        }
        if check {
            stale.push(file);
        } else {
            std::fs::write(docgen::root().join(file), generated)
                .unwrap_or_else(|error| fail(&format!("cannot write {file}: {error}")));
            println!("rewrote the generated part of {file}");
        }
    }
    if !stale.is_empty() {
        fail(&docgen::stale_message(&stale));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("docgen: {message}");
    std::process::exit(1);
}
