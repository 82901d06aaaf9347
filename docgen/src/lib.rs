//! Renders the parts of `docs/` that the code already knows, so they cannot drift from it: every variable a
//! service reads (from its clap `Config`) and every metric it declares (from its `telemetry::metrics()`).
//!
//! The renderers are pure (commands and metric lists in, Markdown out); [`parts`] gathers them from the
//! services, `main.rs` writes the files, and `tests/docs_current.rs` fails `cargo test` (so `scripts/test`)
//! when the committed docs differ.
//! A generated part sits between `<!-- generated: <name> -->` and `<!-- end generated -->` in its file;
//! everything around it is hand-written and left alone.

use std::path::Path;

use clap::CommandFactory;
use pipeline::telemetry::Metric;

/// One generated part: the file (from the repository root), the part's name, and what the code says it holds.
#[derive(Debug)]
pub struct Part {
    pub file: &'static str,
    pub name: &'static str,
    pub body: String,
}

/// Every generated part of docs/, rendered from the services' code.
pub fn parts() -> Vec<Part> {
    let services = [
        ("ingestor", ingestor::Config::command()),
        // Its default is the host name and process id of whoever renders it: the docs say what it is made of.
        (
            "batcher",
            batcher::Config::command().mut_arg("batcher_id", |arg| {
                arg.default_value("<host name>-<process id>")
            }),
        ),
        ("notifier", notifier::Config::command()),
    ];
    let metrics = [
        ("ingestor", ingestor::telemetry::metrics()),
        ("batcher", batcher::telemetry::metrics()),
        ("notifier", notifier::telemetry::metrics()),
    ];
    vec![
        Part {
            file: "docs/configuration.md",
            name: "configuration",
            body: configuration_table(&services),
        },
        Part {
            file: "docs/metrics.md",
            name: "metrics",
            body: metrics_table(&metrics),
        },
    ]
}

/// Each file of `parts` under `root` as it is and as the code would have it: `(file, committed, generated)`.
pub fn compare(root: &Path, parts: &[Part]) -> Result<Vec<(&'static str, String, String)>, String> {
    parts
        .iter()
        .map(|part| {
            let doc = std::fs::read_to_string(root.join(part.file))
                .map_err(|error| format!("cannot read {}: {error}", part.file))?;
            let generated = replace_part(&doc, part.name, &part.body)
                .map_err(|error| format!("{}: {error}", part.file))?;
            Ok((part.file, doc, generated))
        })
        .collect()
}

/// What to tell whoever changed the code but not the docs.
pub fn stale_message(files: &[&str]) -> String {
    let verb = if files.len() == 1 {
        "differs"
    } else {
        "differ"
    };
    format!(
        "{} {verb} from what the code declares: run scripts/gen-docs (and commit the result)",
        files.join(" and ")
    )
}

/// The repository root (this crate's parent directory).
pub fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The line that ends every generated part.
pub const END_MARKER: &str = "<!-- end generated -->";

/// The line that opens the generated part `name`.
pub fn start_marker(name: &str) -> String {
    format!("<!-- generated: {name} -->")
}

/// `doc` with the generated part `name` replaced by `body`, or why it cannot be (a marker is missing).
pub fn replace_part(doc: &str, name: &str, body: &str) -> Result<String, String> {
    let start = start_marker(name);
    let open = doc
        .find(&start)
        .ok_or_else(|| format!("no `{start}` line"))?;
    let body_start = open + start.len();
    let close = doc[body_start..]
        .find(END_MARKER)
        .map(|at| body_start + at)
        .ok_or_else(|| format!("no `{END_MARKER}` line after `{start}`"))?;
    Ok(format!("{}\n{}{}", &doc[..body_start], body, &doc[close..]))
}

/// One row of the configuration table: a variable as one or more services read it.
#[derive(Debug, PartialEq, Eq)]
struct Variable {
    env: String,
    flag: String,
    default: String,
    meaning: String,
    services: Vec<&'static str>,
}

/// The table of every environment variable the services read, in the order of their `--help`; a variable
/// that several services read alike (same flag, default and help) is one row naming them all.
pub fn configuration_table(services: &[(&'static str, clap::Command)]) -> String {
    let mut rows: Vec<Variable> = Vec::new();
    for (service, command) in services {
        for arg in command.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let row = Variable {
                env: env.to_string_lossy().into_owned(),
                flag: arg
                    .get_long()
                    .map_or_else(String::new, |long| format!("`--{long}`")),
                default: default_of(arg),
                meaning: meaning_of(arg),
                services: vec![service],
            };
            match rows.iter_mut().find(|known| {
                known.env == row.env
                    && known.flag == row.flag
                    && known.default == row.default
                    && known.meaning == row.meaning
            }) {
                Some(known) => known.services.push(service),
                None => rows.push(row),
            }
        }
    }
    let mut table =
        String::from("| variable | flag | default | read by | meaning |\n|---|---|---|---|---|\n");
    for row in rows {
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            row.env,
            row.flag,
            row.default,
            row.services.join(", "),
            row.meaning
        ));
    }
    table
}

/// The default as clap has it (shown even where `--help` hides it), or "unset".
fn default_of(arg: &clap::Arg) -> String {
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|value| value.to_string_lossy().into_owned())
        .filter(|value| !value.is_empty())
        .collect();
    if defaults.is_empty() {
        "unset".into()
    } else {
        format!("`{}`", defaults.join(","))
    }
}

/// The long help (the whole doc comment), else the short one, on one line, with the possible values of an
/// enumerated variable.
fn meaning_of(arg: &clap::Arg) -> String {
    let help = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    let mut meaning = sentence(&help);
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|value| !value.is_hide_set())
        .map(|value| match value.get_help() {
            Some(help) => format!("`{}` ({})", value.get_name(), sentence(&help.to_string())),
            None => format!("`{}`", value.get_name()),
        })
        .collect();
    if !values.is_empty() {
        meaning.push_str(&format!(" One of: {}.", values.join(", ")));
    }
    meaning
}

/// Text for one table cell ending with a full stop (clap drops the last one of a one-paragraph help).
fn sentence(text: &str) -> String {
    let mut meaning = one_line(text);
    if !meaning.is_empty() && !meaning.ends_with('.') {
        meaning.push('.');
    }
    meaning
}

/// Text for one table cell: lines joined with spaces, pipes escaped.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

/// The table of every metric the services declare, in declaration order; a metric that several services
/// declare (`pipeline_queue_depth`) is one row naming them all.
pub fn metrics_table(services: &[(&'static str, &'static [Metric])]) -> String {
    let mut rows: Vec<(Metric, Vec<&'static str>)> = Vec::new();
    for (service, metrics) in services {
        for metric in *metrics {
            match rows
                .iter_mut()
                .find(|(known, _)| known.name() == metric.name())
            {
                Some((_, by)) => by.push(service),
                None => rows.push((*metric, vec![service])),
            }
        }
    }
    let mut table =
        String::from("| metric | type | labels | recorded by | help |\n|---|---|---|---|---|\n");
    for (metric, by) in rows {
        let (kind, labels, help) = match metric {
            Metric::Counter { help, label, .. } => (
                "counter",
                label.map_or_else(String::new, |(label, values)| {
                    let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
                    format!("`{label}` = {}", values.join(", "))
                }),
                help,
            ),
            Metric::Gauge { help, .. } => ("gauge", String::new(), help),
            Metric::Histogram { help, labels, .. } => (
                "histogram",
                labels
                    .iter()
                    .map(|label| format!("`{label}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                help,
            ),
        };
        table.push_str(&format!(
            "| `{}` | {kind} | {labels} | {} | {} |\n",
            metric.name(),
            by.join(", "),
            one_line(help)
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_replaced_between_its_markers_and_the_rest_is_kept() {
        let doc = "intro\n<!-- generated: a -->\nold\nlines\n<!-- end generated -->\nafter\n";
        assert_eq!(
            replace_part(doc, "a", "new\n").unwrap(),
            "intro\n<!-- generated: a -->\nnew\n<!-- end generated -->\nafter\n"
        );
        assert_eq!(
            replace_part(doc, "b", "x").unwrap_err(),
            "no `<!-- generated: b -->` line"
        );
        assert_eq!(
            replace_part("<!-- generated: a -->\n", "a", "x").unwrap_err(),
            "no `<!-- end generated -->` line after `<!-- generated: a -->`"
        );
    }

    #[derive(Debug, clap::ValueEnum, Clone)]
    enum Shape {
        /// Round.
        Round,
        Square,
    }

    #[derive(Debug, clap::Parser)]
    struct Config {
        /// Shared | piped.
        #[arg(long, env = "SHARED", default_value = "1")]
        shared: u32,
        /// The shape,
        /// over two lines.
        #[arg(long, env = "SHAPE", value_enum)]
        shape: Option<Shape>,
        /// Not from the environment.
        #[arg(long)]
        flag_only: bool,
    }

    #[test]
    fn variables_read_alike_by_two_services_are_one_row() {
        use clap::CommandFactory;
        let table = configuration_table(&[("a", Config::command()), ("b", Config::command())]);
        assert_eq!(
            table,
            "| variable | flag | default | read by | meaning |\n|---|---|---|---|---|\n\
             | `SHARED` | `--shared` | `1` | a, b | Shared \\| piped. |\n\
             | `SHAPE` | `--shape` | unset | a, b | The shape, over two lines. One of: `round` (Round.), `square`. |\n"
        );
    }

    #[test]
    fn a_metric_declared_by_two_services_is_one_row_with_its_labels() {
        const A: &[Metric] = &[
            Metric::Counter {
                name: "a_total",
                help: "As.",
                label: Some(("reason", &["x", "y"])),
            },
            Metric::Gauge {
                name: "shared_depth",
                help: "Depth.",
            },
        ];
        const B: &[Metric] = &[
            Metric::Histogram {
                name: "b_seconds",
                help: "Bs.",
                labels: &["method", "status"],
            },
            Metric::Gauge {
                name: "shared_depth",
                help: "Depth.",
            },
        ];
        assert_eq!(
            metrics_table(&[("a", A), ("b", B)]),
            "| metric | type | labels | recorded by | help |\n|---|---|---|---|---|\n\
             | `a_total` | counter | `reason` = `x`, `y` | a | As. |\n\
             | `shared_depth` | gauge |  | a, b | Depth. |\n\
             | `b_seconds` | histogram | `method`, `status` | b | Bs. |\n"
        );
    }
}
