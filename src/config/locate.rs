//! Finding a strategy entry's keys in the YAML text, for errors that name a line and column.
//!
//! serde_yaml's values carry no positions, and strategy parameters are validated only after the
//! file is parsed (the registry decides which keys exist), so positions are recovered from the
//! text: the n-th item of the top-level `strategies:` list, then a `key:` inside that item.

/// 1-based (line, column) of `key` inside the `index`-th entry of `strategies:`, or of the entry
/// itself when `key` is `None` or not found; `None` when the list cannot be found.
pub fn strategy_key(text: &str, index: usize, key: Option<&str>) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let list_start = lines
        .iter()
        .position(|l| l.trim_end() == "strategies:" || l.starts_with("strategies:"))?;
    let mut items = Vec::new();
    let mut item_indent = None;
    for (i, line) in lines.iter().enumerate().skip(list_start + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent == 0 && !trimmed.starts_with('-') {
            break; // the next top-level key
        }
        if trimmed.starts_with('-') && item_indent.is_none_or(|w| w == indent) {
            item_indent = Some(indent);
            items.push(i);
        }
    }
    let start = *items.get(index)?;
    let end = items.get(index + 1).copied().unwrap_or(lines.len());
    if let Some(key) = key {
        for (i, line) in lines.iter().enumerate().take(end).skip(start) {
            let body = line.trim_start().trim_start_matches('-').trim_start();
            if body
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
            {
                return Some((i + 1, line.len() - body.len() + 1));
            }
            // Flow style: `- {name: ewc, lambda: 1}`.
            if let Some(pos) = line.find(&format!("{key}:")) {
                let before = line[..pos].chars().last();
                if matches!(before, Some(' ' | '{' | ',')) {
                    return Some((i + 1, pos + 1));
                }
            }
        }
    }
    let line = lines[start];
    Some((start + 1, line.len() - line.trim_start().len() + 1))
}

/// 1-based (line, column) of `key` inside the top-level mapping `section:` (block or inline
/// `{...}` form), or of the section itself when `key` is `None` or not found there; `None` when
/// the section is not in the text.
pub fn section_key(text: &str, section: &str, key: Option<&str>) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| {
        l.strip_prefix(section)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    })?;
    // An empty key (a YAML key `''`) would match everywhere without moving on: the section.
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return Some((start + 1, 1));
    };
    let pattern = |line: &str| -> Option<usize> {
        let mut from = 0;
        while let Some(i) = line[from..].find(key) {
            let at = from + i;
            let before = line[..at].chars().last();
            let after = line[at + key.len()..].trim_start();
            if before.is_none_or(|c| c == ' ' || c == '{' || c == ',') && after.starts_with(':') {
                return Some(at);
            }
            from = at + key.len();
        }
        None
    };
    // Inline form on the section's own line, after `section:`.
    let own = lines[start];
    if let Some(col) = pattern(&own[section.len() + 1..]) {
        return Some((start + 1, section.len() + 2 + col));
    }
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.len() == trimmed.len() {
            break; // the next top-level key
        }
        if let Some(col) = pattern(line) {
            return Some((i + 1, col + 1));
        }
    }
    Some((start + 1, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name: x\nstrategies:\n  - name: naive\n  - name: ewc\n    lamda: 3\n    fisher: empirical\noutput: r\n";

    #[test]
    fn finds_a_key_in_the_right_entry() {
        assert_eq!(strategy_key(TEXT, 1, Some("lamda")), Some((5, 5)));
        assert_eq!(strategy_key(TEXT, 1, Some("name")), Some((4, 5)));
        assert_eq!(strategy_key(TEXT, 0, None), Some((3, 3)));
        assert_eq!(strategy_key(TEXT, 2, None), None);
    }

    #[test]
    fn an_empty_key_is_the_section_itself_not_an_endless_search() {
        let text = "model:\n  channels: [16, {'': -.inf}]\n";
        assert_eq!(section_key(text, "model", Some("")), Some((1, 1)));
    }

    #[test]
    fn finds_keys_in_flow_style() {
        let text = "strategies:\n- {name: l2, lambda: [1, 2]}\n";
        assert_eq!(strategy_key(text, 0, Some("lambda")), Some((2, 14)));
    }
}
