//! Plain text tables: columns padded to their widest cell, cells cut to a width so a row
//! fits an 80-column terminal.

/// A table with a header row.
pub struct Table {
    header: Vec<String>,
    widths: Vec<usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns, each cut to at most its width.
    pub fn new(columns: &[(&str, usize)]) -> Table {
        Table {
            header: columns.iter().map(|c| c.0.to_string()).collect(),
            widths: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (cells beyond a column's width end in `…`).
    pub fn row(&mut self, cells: Vec<String>) {
        let cut = cells
            .into_iter()
            .zip(&self.widths)
            .map(|(c, &w)| {
                if c.chars().count() > w {
                    let mut s: String = c.chars().take(w.saturating_sub(1)).collect();
                    s.push('…');
                    s
                } else {
                    c
                }
            })
            .collect();
        self.rows.push(cut);
    }

    /// The text, one line per row.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |cells: Vec<&str>, out: &mut String| {
            let mut l = String::new();
            for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    l.push_str(&format!("{c:<w$}  "));
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(self.header.iter().map(String::as_str).collect(), &mut out);
        for row in &self.rows {
            line(row.iter().map(String::as_str).collect(), &mut out);
        }
        out
    }
}

/// A key/value listing of one resource.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|p| p.0.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}
