//! Lexer, grammar and syntax tree of `.net` files.

pub mod ast;
