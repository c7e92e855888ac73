//! Text and Graphviz pictures of a graph (`netc graph`).

use super::graph::Graph;
use crate::diag::SourceFile;
use crate::ops::Op;
use std::fmt::Write;

/// One line per node: `%7 = conv2d(padding=1) %3, %4 : f32[B, 32, 32, 32]  # conv1, line 7`.
pub fn to_text(graph: &Graph, source: Option<&SourceFile>) -> String {
    let mut out = format!("graph {} ({} nodes)\n", graph.name, graph.len());
    for id in graph.topo_order() {
        let node = graph.node(id);
        let operands: Vec<String> = graph.operands(id).iter().map(|o| format!("%{}", o.index())).collect();
        let head = match &node.op {
            Op::Input(i) => format!("input {}", i.name),
            Op::Param(p) => format!("{} {}", if p.trainable { "param" } else { "buffer" }, p.name),
            op => format!("{op} {}", operands.join(", ")),
        };
        let _ = write!(out, "  %{} = {} : {}", id.index(), head.trim_end(), node.ty);
        let mut notes = Vec::new();
        if !node.origin.name.is_empty() && !matches!(node.op, Op::Input(_) | Op::Param(_)) {
            notes.push(node.origin.name.clone());
        }
        if let (Some(src), Some(span)) = (source, &node.origin.span) {
            notes.push(format!("line {}", src.line_col(span.start).0));
        }
        if !notes.is_empty() {
            let _ = write!(out, "  # {}", notes.join(", "));
        }
        out.push('\n');
    }
    for (name, id) in &graph.outputs {
        let _ = writeln!(out, "  output {name} = %{}", id.index());
    }
    out
}

/// A Graphviz `digraph`: inputs as ellipses, parameters as boxes, ops as
/// rounded boxes labelled with their op, source name and type.
pub fn to_dot(graph: &Graph) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n",
        escape(&graph.name)
    );
    for id in graph.topo_order() {
        let node = graph.node(id);
        let (shape, label) = match &node.op {
            Op::Input(i) => ("ellipse", format!("input {}\\n{}", i.name, node.ty)),
            Op::Param(p) => ("box", format!("{}\\n{}", p.name, node.ty)),
            op => (
                "box, style=rounded",
                format!(
                    "{}\\n{}\\n{}",
                    escape(&op.to_string()),
                    escape(&node.origin.name),
                    node.ty
                ),
            ),
        };
        let _ = writeln!(out, "  n{} [shape={shape}, label=\"{label}\"];", id.index());
    }
    for id in graph.topo_order() {
        for o in graph.operands(id) {
            let _ = writeln!(out, "  n{} -> n{};", o.index(), id.index());
        }
    }
    for (name, id) in &graph.outputs {
        let _ = writeln!(
            out,
            "  out_{0} [shape=doubleoctagon, label=\"output {0}\"];\n  n{1} -> out_{0};",
            escape(name),
            id.index()
        );
    }
    out.push_str("}\n");
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
