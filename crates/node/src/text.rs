//! A tiny writer for the text format 0.0.4: one family's `# HELP`,
//! `# TYPE` and samples.

use pharos_model::format_float;
use pharos_model::labels::escape_label_value;

/// One metric family being rendered.
pub(crate) struct Family {
    name: String,
    help: String,
    typ: &'static str,
    lines: String,
}

impl Family {
    pub fn new(name: &str, help: &str, typ: &'static str) -> Family {
        Family {
            name: name.to_string(),
            help: help.replace('\\', "\\\\").replace('\n', "\\n"),
            typ,
            lines: String::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds a sample with `labels` (in the order given).
    pub fn sample(&mut self, labels: &[(&str, &str)], v: f64) {
        self.lines.push_str(&self.name);
        if !labels.is_empty() {
            self.lines.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.lines.push(',');
                }
                self.lines.push_str(k);
                self.lines.push_str("=\"");
                self.lines.push_str(&escape_label_value(val));
                self.lines.push('"');
            }
            self.lines.push('}');
        }
        self.lines.push(' ');
        self.lines.push_str(&format_float(v));
        self.lines.push('\n');
    }

    /// Appends the family to `out`; a family without samples writes nothing.
    pub fn write(self, out: &mut String) {
        if self.lines.is_empty() {
            return;
        }
        out.push_str("# HELP ");
        out.push_str(&self.name);
        out.push(' ');
        out.push_str(&self.help);
        out.push_str("\n# TYPE ");
        out.push_str(&self.name);
        out.push(' ');
        out.push_str(self.typ);
        out.push('\n');
        out.push_str(&self.lines);
    }
}
