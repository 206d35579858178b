//! What the API commands print: `--json` answers as the API sent them, indented, and
//! otherwise tables and lines for people.

use anyhow::Result;
use serde::Serialize;

/// Prints an API answer for `--json`: the body as sent, indented.
pub fn print_json(raw: &[u8]) {
    println!("{}", pretty_json(raw));
}

/// Prints a value hookwire assembled itself (the pages of `--all`) for `--json`.
pub fn print_json_value<T: Serialize>(value: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.iter().map(|c| one_line(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i == last {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[i])
                }
            })
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// A value on one line: a description may hold newlines or tabs.
pub fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `raw` JSON indented by two spaces, keys in the order the API sent them (re-serializing
/// a `serde_json::Value` would sort them). Anything that is not JSON comes back as text.
pub fn pretty_json(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if serde_json::from_slice::<serde::de::IgnoredAny>(raw).is_err() {
        return text.into_owned();
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                if chars.peek().is_some_and(|&n| n == '}' || n == ']') {
                    // An empty object or array stays on one line.
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn pretty_json_keeps_key_order_and_strings() {
        let raw = br#"{"z":1,"a":[true,null,{}],"s":"a,b:{\"c\"}\\","e":[],"n":{"k":-1.5e3}}"#;
        let pretty = pretty_json(raw);
        let expected = r#"{
  "z": 1,
  "a": [
    true,
    null,
    {}
  ],
  "s": "a,b:{\"c\"}\\",
  "e": [],
  "n": {
    "k": -1.5e3
  }
}"#;
        assert_eq!(pretty, expected);
        let reparsed: Value = serde_json::from_str(&pretty).expect("still JSON");
        assert_eq!(
            reparsed,
            serde_json::from_slice::<Value>(raw).expect("JSON")
        );
    }

    #[test]
    fn pretty_json_passes_non_json_through() {
        assert_eq!(
            pretty_json(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(pretty_json(b" { } "), "{}");
    }
}
