//! A tiny column formatter for human output: a header row and data rows, columns
//! separated by two spaces, each as wide as its widest cell (counted in characters),
//! optionally right-aligned (numbers) or capped in width (long titles end in `…`).
//! The last column is never padded, so lines carry no trailing spaces.

/// How a column is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Align {
    /// Text starts at the left edge of the column.
    #[default]
    Left,
    /// Text ends at the right edge of the column (numbers).
    Right,
}

#[derive(Debug, Clone)]
struct Column {
    header: String,
    align: Align,
    max_width: Option<usize>,
}

/// A table being built; [`Table::render`] turns it into text.
#[derive(Debug, Clone, Default)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers, all left-aligned and unbounded.
    pub fn new<I, S>(headers: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Table {
            columns: headers
                .into_iter()
                .map(|h| Column {
                    header: h.into(),
                    align: Align::Left,
                    max_width: None,
                })
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Sets the alignment of column `index` (ignored when there is no such column).
    pub fn align(mut self, index: usize, align: Align) -> Table {
        if let Some(c) = self.columns.get_mut(index) {
            c.align = align;
        }
        self
    }

    /// Caps the width of column `index`; longer cells are cut and end in `…`.
    pub fn max_width(mut self, index: usize, width: usize) -> Table {
        if let Some(c) = self.columns.get_mut(index) {
            c.max_width = Some(width.max(1));
        }
        self
    }

    /// Appends a row; missing cells are empty, extra cells are dropped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.columns.len())
            .map(|c| clean(&c.into()))
            .collect();
        row.resize(self.columns.len(), String::new());
        self.rows.push(row);
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no data rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row (header first), each ending in `\n`.
    pub fn render(&self) -> String {
        let cells: Vec<Vec<String>> = std::iter::once(
            self.columns
                .iter()
                .map(|c| c.header.clone())
                .collect::<Vec<_>>(),
        )
        .chain(self.rows.iter().cloned())
        .map(|row| {
            row.iter()
                .zip(&self.columns)
                .map(|(cell, col)| match col.max_width {
                    Some(w) => truncate(cell, w),
                    None => cell.clone(),
                })
                .collect()
        })
        .collect();
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| cells.iter().map(|r| width(&r[i])).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &cells {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i] - width(cell);
                match self.columns[i].align {
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Display width of a cell: its number of characters (good enough for the Latin,
/// Greek and Cyrillic text of job titles; wide CJK characters count as one).
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Cuts `s` to at most `max` characters, the last being `…` when something was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// Replaces line breaks, tabs and other control characters, which would break the
/// columns, by spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_without_trailing_spaces() {
        let mut t = Table::new(["ID", "STATUS", "TITLE"]).align(0, Align::Right);
        t.row(["7", "running", "NDVI"]);
        t.row(["12", "finished", ""]);
        assert_eq!(
            t.render(),
            "ID  STATUS    TITLE\n\
             \x207  running   NDVI\n\
             12  finished\n"
        );
        assert_eq!(t.len(), 2);
        assert!(!t.is_empty());
    }

    #[test]
    fn long_cells_are_cut_and_control_characters_replaced() {
        let mut t = Table::new(["A", "B"]).max_width(0, 5);
        t.row(["abcdefgh", "x\ny"]);
        t.row(["é", "z"]);
        assert_eq!(t.render(), "A      B\nabcd…  x y\né      z\n");
    }

    #[test]
    fn missing_and_extra_cells() {
        let mut t = Table::new(["A", "B"]);
        t.row(["only"]);
        t.row(["1", "2", "dropped"]);
        assert_eq!(t.render(), "A     B\nonly\n1     2\n");
        assert!(Table::new(["X"]).is_empty());
        assert_eq!(Table::new(["X"]).render(), "X\n");
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("äöüß", 4), "äöüß");
        assert_eq!(truncate("äöüßx", 4), "äöü…");
        assert_eq!(truncate("abc", 1), "…");
    }
}
