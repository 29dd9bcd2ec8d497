//! Positions in text: byte offsets turned into the 1-based line and column an error names
//! (config files, runbooks, migration files, SQL scripts).

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |nl| before.len() - nl - 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_and_columns_are_one_based_and_char_safe() {
        assert_eq!(super::line_col("ab\ncd", 0), (1, 1));
        assert_eq!(super::line_col("ab\ncd", 4), (2, 2));
        assert_eq!(super::line_col("é\nx", 1), (1, 1), "inside a character: its start");
        assert_eq!(super::line_col("ab", 99), (1, 3), "past the end: the end");
    }
}
