//! kubectl's `-o jsonpath=TEMPLATE` (kubectl(1), "JSONPath Support" in
//! kubectl's reference; the implementation is client-go's
//! `util/jsonpath/jsonpath.go` and `parser.go`), for what stackinstall
//! uses of it:
//! - `{.a.b}` fields (`\.` for a dot inside a key), `{@}` the current
//!   object, `{"\t"}` quoted text (Go's string escapes);
//! - `{range EXPR}...{end}` over `.list[*]` or a filter
//!   `.list[?(@.key=="text")]` (`==` or `!=`);
//! - printing as `PrintResults` does: a map or a list as JSON
//!   (`json.Marshal`), a string as it is, any other value as Go prints it;
//!   a missing field as nothing (kubectl's `--allow-missing-template-keys`
//!   is on by default).
//!
//! Anything else is refused in client-go's words.

use serde_json::Value;

#[derive(Debug)]
enum Node {
    Text(String),
    Field(String),
    Range(String, Vec<Node>),
}

/// `template` applied to `value`.
pub fn render(value: &Value, template: &str) -> Result<String, String> {
    let refused = |why: &str| format!("error: error parsing jsonpath {template}, {why}\n");
    let nodes = parse(template).map_err(|why| refused(&why))?;
    let mut out = String::new();
    print(&nodes, value, &mut out).map_err(|why| refused(&why))?;
    Ok(out)
}

fn parse(template: &str) -> Result<Vec<Node>, String> {
    let mut stack: Vec<(Option<String>, Vec<Node>)> = vec![(None, Vec::new())];
    let mut rest = template;
    while !rest.is_empty() {
        let Some(start) = rest.find('{') else {
            stack.last_mut().unwrap().1.push(Node::Text(rest.into()));
            break;
        };
        if start > 0 {
            (stack.last_mut().unwrap().1).push(Node::Text(rest[..start].into()));
        }
        let end = action_end(&rest[start..]).ok_or("unclosed action")?;
        let action = rest[start + 1..start + end].trim();
        rest = &rest[start + end + 1..];
        if let Some(expression) = action.strip_prefix("range ") {
            stack.push((Some(expression.trim().into()), Vec::new()));
        } else if action == "end" {
            let (Some(expression), body) = stack.pop().unwrap() else {
                return Err("not in range, nothing to end".into());
            };
            (stack.last_mut().ok_or("not in range, nothing to end")?.1)
                .push(Node::Range(expression, body));
        } else if action.starts_with('"') {
            let text = unquote(action).ok_or("invalid syntax")?;
            stack.last_mut().unwrap().1.push(Node::Text(text));
        } else if action == "@" || action.starts_with('.') {
            (stack.last_mut().unwrap().1).push(Node::Field(action.into()));
        } else {
            return Err("unrecognized character in action".into());
        }
    }
    match stack.pop() {
        Some((None, nodes)) if stack.is_empty() => Ok(nodes),
        _ => Err("unclosed range".into()),
    }
}

/// Where the action starting at `{` ends (its `}`), skipping quoted text.
fn action_end(text: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, character) in text.char_indices() {
        match character {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(at),
            _ => {}
        }
    }
    None
}

/// A Go string literal's text (`\t`, `\n`, `\\`, `\"`).
fn unquote(literal: &str) -> Option<String> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    let mut text = String::new();
    let mut characters = inner.chars();
    while let Some(character) = characters.next() {
        text.push(match character {
            '\\' => match characters.next()? {
                't' => '\t',
                'n' => '\n',
                '\\' => '\\',
                '"' => '"',
                _ => return None,
            },
            other => other,
        });
    }
    Some(text)
}

fn print(nodes: &[Node], value: &Value, out: &mut String) -> Result<(), String> {
    for node in nodes {
        match node {
            Node::Text(text) => out.push_str(text),
            Node::Field(path) => {
                let found = evaluate(value, path)?;
                let printed: Vec<String> = found.iter().map(|value| printed(value)).collect();
                out.push_str(&printed.join(" "));
            }
            Node::Range(expression, body) => {
                for item in evaluate(value, expression)? {
                    print(body, item, out)?;
                }
            }
        }
    }
    Ok(())
}

fn printed(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The values `path` finds from `value`: `@`, `.a.b`, `.list[*]`,
/// `.list[?(@.key=="text")]`; none for a missing field.
fn evaluate<'a>(value: &'a Value, path: &str) -> Result<Vec<&'a Value>, String> {
    if path == "@" {
        return Ok(vec![value]);
    }
    let mut current = vec![value];
    for segment in segments(path.strip_prefix('.').ok_or("unrecognized character")?) {
        let (key, subscript) = match segment.split_once('[') {
            Some((key, subscript)) => (key, Some(subscript.strip_suffix(']').ok_or("unclosed [")?)),
            None => (segment.as_str(), None),
        };
        current = (current.into_iter())
            .filter_map(|value| match key {
                "" => Some(value),
                key => value.get(key),
            })
            .collect();
        let Some(subscript) = subscript else {
            continue;
        };
        let items = (current.iter()).flat_map(|value| value.as_array().into_iter().flatten());
        current = match subscript {
            "*" => items.collect(),
            filter => {
                let (field, wanted, equal) = parse_filter(filter)?;
                items
                    .filter(|item| {
                        let found = evaluate(item, &field).ok().and_then(|f| f.first().copied());
                        (found.and_then(Value::as_str) == Some(wanted.as_str())) == equal
                    })
                    .collect()
            }
        };
    }
    Ok(current)
}

/// `?(@.key=="text")` or `!=`: the field's path, the text, and whether
/// equal is wanted.
fn parse_filter(filter: &str) -> Result<(String, String, bool), String> {
    let inner = (filter.strip_prefix("?(").and_then(|f| f.strip_suffix(')')))
        .ok_or_else(|| format!("unrecognized subscript {filter}"))?;
    let (field, text, equal) = match (inner.split_once("!="), inner.split_once("==")) {
        (Some((field, text)), _) => (field, text, false),
        (None, Some((field, text))) => (field, text, true),
        (None, None) => return Err(format!("this fake knows == and != filters, not {inner}")),
    };
    let field = field
        .trim()
        .strip_prefix('@')
        .ok_or("a filter starts with @")?;
    let text = unquote(text.trim()).ok_or("invalid syntax")?;
    Ok((field.to_string(), text, equal))
}

/// The dot-separated parts of a path (`\.` is a dot inside a key; a dot
/// inside `[...]` does not separate).
fn segments(path: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut depth = 0;
    let mut characters = path.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '\\' if characters.peek() == Some(&'.') => part.push(characters.next().unwrap()),
            '[' => {
                depth += 1;
                part.push('[');
            }
            ']' => {
                depth -= 1;
                part.push(']');
            }
            '.' if depth == 0 => parts.push(std::mem::take(&mut part)),
            other => part.push(other),
        }
    }
    parts.push(part);
    parts
}

#[cfg(test)]
mod tests {
    use super::render;
    use serde_json::json;

    #[test]
    fn fields_ranges_filters_and_json() {
        let list = json!({"items": [
            {"kind": "Node", "metadata": {"name": "vm", "labels": {"a": "b"}}},
            {"kind": "Secret", "metadata": {"name": "s", "annotations": {"x.io/y": "1"}}, "data": {"k": "v"}},
        ]});
        let template = r#"{range .items[?(@.kind!="Secret")]}{.metadata.labels}{"\t"}{.spec}{"\n"}{end}{range .items[?(@.kind=="Secret")]}{.metadata.name}={.metadata.annotations.x\.io/y}{"\n"}{end}"#;
        assert_eq!(render(&list, template).unwrap(), "{\"a\":\"b\"}\t\ns=1\n");
        assert_eq!(
            render(&list, "{range .items[*]}{@}{end}")
                .unwrap()
                .matches("\"kind\"")
                .count(),
            2
        );
        assert_eq!(render(&list, "{.items[*].metadata.name}").unwrap(), "vm s");
        assert!(render(&list, "{range .items[*]}").is_err());
        assert!(render(&list, "{.items").is_err());
    }
}
