//! `netc check model.net [--params]`

use super::load::ModelArgs;
use super::CliResult;
use crate::ir::{fmt_shape, Graph};
use crate::ops::Op;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the parameter table (name, shape, count).
    #[arg(long)]
    pub params: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn run(args: Args) -> CliResult {
    let loaded = args.model.load()?;
    let g = &loaded.model.graph;
    let outputs: Vec<String> = g.outputs.iter().map(|(n, id)| format!("{n}: {}", g.ty(*id))).collect();
    println!(
        "{}: model `{}` is well formed ({} nodes; outputs {})",
        loaded.source.name,
        loaded.model.name,
        g.len(),
        outputs.join(", ")
    );
    if args.params {
        print!("{}", param_table(g));
    }
    Ok(())
}

/// The parameter table: every parameter and buffer, its shape and size.
pub fn param_table(g: &Graph) -> String {
    let rows: Vec<(String, String, usize, bool)> = g
        .params()
        .into_iter()
        .filter_map(|id| match g.op(id) {
            Op::Param(p) => {
                let count = g.ty(id).dims().map(|d| d.iter().product()).unwrap_or(0);
                Some((p.name.clone(), fmt_shape(&g.ty(id).shape), count, p.trainable))
            }
            _ => None,
        })
        .collect();
    let name_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max("parameter".len());
    let shape_w = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max("shape".len());
    let mut out = format!("{:<name_w$}  {:<shape_w$}  {:>12}\n", "parameter", "shape", "count");
    let (mut trainable, mut buffers) = (0usize, 0usize);
    for (name, shape, count, is_param) in &rows {
        let note = if *is_param { "" } else { "  (buffer)" };
        out += &format!(
            "{name:<name_w$}  {shape:<shape_w$}  {:>12}{note}\n",
            group_digits(*count)
        );
        if *is_param {
            trainable += count;
        } else {
            buffers += count;
        }
    }
    out += &format!(
        "{} trainable parameters ({:.2} MB as f32), {} buffer values\n",
        group_digits(trainable),
        trainable as f64 * 4.0 / 1e6,
        group_digits(buffers)
    );
    out
}

/// `1234567` → `1,234,567`.
pub fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
