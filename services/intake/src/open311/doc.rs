//! One document, two formats: Open311 answers are built once as a tree and
//! written as XML (with the spec's element names) or as JSON by the spec's
//! convention: the root element is dropped, a container of repeated
//! children is an array even when it holds one, an empty element is `null`.

use std::fmt::Write;

/// A document node.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Text; `None` is an empty element (`null` in JSON).
    Text(Option<String>),
    /// A number, already formatted.
    Number(String),
    Bool(bool),
    /// Named fields, in order.
    Object(Vec<(&'static str, Node)>),
    /// Repeated children with one element name (`<service>` in `<services>`).
    List(&'static str, Vec<Node>),
}

impl Node {
    pub fn text(s: impl Into<String>) -> Node {
        Node::Text(Some(s.into()))
    }

    /// Text, or an empty element when there is none.
    pub fn opt(s: Option<impl Into<String>>) -> Node {
        Node::Text(s.map(Into::into))
    }

    pub fn number(n: impl std::fmt::Display) -> Node {
        Node::Number(n.to_string())
    }
}

/// The document as XML under `root`, with the declaration the spec asks for.
pub fn xml(root: &str, node: &Node) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    element(&mut out, root, node, 0);
    out
}

fn element(out: &mut String, name: &str, node: &Node, depth: usize) {
    let pad = "  ".repeat(depth);
    match node {
        Node::Text(None) => {
            let _ = writeln!(out, "{pad}<{name}/>");
        }
        Node::Text(Some(s)) => {
            let _ = writeln!(out, "{pad}<{name}>{}</{name}>", escape(s));
        }
        Node::Number(n) => {
            let _ = writeln!(out, "{pad}<{name}>{n}</{name}>");
        }
        Node::Bool(b) => {
            let _ = writeln!(out, "{pad}<{name}>{b}</{name}>");
        }
        Node::Object(fields) => {
            let _ = writeln!(out, "{pad}<{name}>");
            for (child, value) in fields {
                element(out, child, value, depth + 1);
            }
            let _ = writeln!(out, "{pad}</{name}>");
        }
        Node::List(item, items) => {
            if items.is_empty() {
                let _ = writeln!(out, "{pad}<{name}/>");
                return;
            }
            let _ = writeln!(out, "{pad}<{name}>");
            for value in items {
                element(out, item, value, depth + 1);
            }
            let _ = writeln!(out, "{pad}</{name}>");
        }
    }
}

/// Text made safe inside an XML element; characters XML 1.0 cannot carry
/// at all (most control characters) are left out.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The document as JSON (the root element dropped).
pub fn json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Text(None) => Value::Null,
        Node::Text(Some(s)) => Value::String(s.clone()),
        Node::Number(n) => serde_json::from_str(n).unwrap_or_else(|_| Value::String(n.clone())),
        Node::Bool(b) => Value::Bool(*b),
        Node::Object(fields) => Value::Object(fields.iter().map(|(k, v)| ((*k).to_owned(), json(v))).collect()),
        Node::List(_, items) => Value::Array(items.iter().map(json).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tree_two_formats_as_the_spec_maps_them() {
        let doc = Node::List(
            "request",
            vec![Node::Object(vec![
                ("service_request_id", Node::text("20261123000001")),
                ("service_notice", Node::text("已受理 <ok> & \"done\"")),
                ("account_id", Node::opt(None::<String>)),
                ("lat", Node::number(39.9)),
                ("metadata", Node::Bool(true)),
            ])],
        );
        let x = xml("service_requests", &doc);
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<service_requests>\n  <request>\n"), "{x}");
        assert!(x.contains("<service_notice>已受理 &lt;ok&gt; &amp; &quot;done&quot;</service_notice>"), "{x}");
        assert!(x.contains("<account_id/>") && x.contains("<lat>39.9</lat>") && x.contains("<metadata>true</metadata>"), "{x}");
        let j = json(&doc);
        assert_eq!(
            j,
            serde_json::json!([{"service_request_id": "20261123000001", "service_notice": "已受理 <ok> & \"done\"", "account_id": null, "lat": 39.9, "metadata": true}])
        );
        assert_eq!(escape("a\u{0001}b"), "ab", "no control characters in XML");
    }
}
