//! Reads the canonical text form back into a [`Model`] (the grammar and what it leaves out are
//! described at the top of `text.rs`). Parsing happens in two steps: the text becomes a small
//! syntax tree (so a graph's `return` names are known before its nodes are built), then the
//! tree becomes IR graphs, innermost subgraphs first.
//!
//! Over 600 lines on purpose: one grammar, read in one place (lexer, syntax tree, graph builder
//! and their typed errors), like the printer it mirrors.

use super::super::graph::{Attr, Graph, Model, ValueId};
use super::super::ops::Op;
use super::super::types::{DType, Dim, Tensor, TensorData, TensorType, Type};
use std::collections::{BTreeMap, HashMap};

/// A parse error, at a line and column of the text (both from 1).
#[derive(Debug, thiserror::Error)]
#[error("text form, line {line}, column {col}: {kind}")]
pub struct TextError {
    pub line: usize,
    pub col: usize,
    pub kind: TextErrorKind,
}

/// What went wrong while reading the text form.
#[derive(Debug, thiserror::Error)]
pub enum TextErrorKind {
    #[error("expected {expected}, found {found}")]
    Expected {
        expected: &'static str,
        found: String,
    },
    #[error("bad number {0:?}")]
    Number(String),
    #[error("unknown element type {0:?}")]
    DType(String),
    #[error("bad string escape {0:?}")]
    Escape(String),
    #[error("{count} values for a tensor of {numel} elements")]
    Count { count: usize, numel: usize },
    #[error("{0} tensors are written as `#hash` (their elements have no text form)")]
    Unwritable(DType),
    #[error("tensor #{0} is not in the side table of big tensors")]
    MissingTensor(String),
    #[error("tensor #{hash} in the side table is not {dtype}{dims:?}")]
    TensorMismatch {
        hash: String,
        dtype: DType,
        dims: Vec<i64>,
    },
    #[error("value {0} is not defined")]
    Undefined(String),
    #[error("value {0} is defined twice")]
    Redefined(String),
    #[error("graph {graph:?} reads {name:?}, which no enclosing graph defines")]
    UndefinedCapture { graph: String, name: String },
}

type Result<T> = std::result::Result<T, TextError>;

/// Parses a whole model printed by [`super::model_to_text`]. Tensors printed as a hash
/// (`f32[64,10] #1a2b3c4d`) are taken from `tensors`, keyed by that hash (build it with
/// [`super::tensors_by_hash`] from the model that was printed); tensors printed in full need
/// no table, and may be written in full at any size.
pub fn parse_model(text: &str, tensors: &HashMap<String, Tensor>) -> Result<Model> {
    let mut p = Parser {
        src: text,
        pos: 0,
        tensors,
    };
    let m = p.model()?;
    p.skip_ws();
    if p.pos < text.len() {
        return Err(p.expected("end of text"));
    }
    Ok(m)
}

/// A reference to a value in a node's inputs or a graph's `return`.
enum Ref {
    Omitted,
    /// `%N`: a value of this graph or an enclosing one.
    Id(String),
    /// `^"name"`: a capture the printer could not number.
    Capture(String),
}

struct NodeAst {
    at: usize,
    outs: Vec<Option<(String, Type)>>,
    op: Op,
    ins: Vec<Ref>,
    attrs: BTreeMap<String, Attr>,
    /// Attribute name, index within a `GRAPHS` attribute, the subgraph.
    subgraphs: Vec<(String, Option<usize>, GraphAst)>,
}

struct GraphAst {
    name: String,
    /// Each with its position in the text (for errors).
    inputs: Vec<(usize, String, String, Type, Option<Tensor>)>,
    inits: Vec<(usize, String, String, Tensor)>,
    nodes: Vec<NodeAst>,
    returns: Vec<(usize, Ref, String)>,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    tensors: &'a HashMap<String, Tensor>,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

impl<'a> Parser<'a> {
    // ----- characters and tokens -----

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.rest().chars().next()
    }

    fn error_at(&self, at: usize, kind: TextErrorKind) -> TextError {
        let before = &self.src[..at];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        TextError { line, col, kind }
    }

    fn error(&self, kind: TextErrorKind) -> TextError {
        self.error_at(self.pos, kind)
    }

    fn expected(&self, expected: &'static str) -> TextError {
        let found: String = self
            .rest()
            .split_whitespace()
            .next()
            .map(|w| w.chars().take(24).collect())
            .unwrap_or_else(|| "end of text".into());
        self.error(TextErrorKind::Expected {
            expected,
            found: format!("{found:?}"),
        })
    }

    /// Consumes `lit` if the text continues with it.
    fn eat(&mut self, lit: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(lit) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, lit: &'static str) -> Result<()> {
        if self.eat(lit) {
            Ok(())
        } else {
            Err(self.expected(lit))
        }
    }

    /// Consumes keyword `kw` if it is the next whole word.
    fn eat_kw(&mut self, kw: &str) -> bool {
        self.skip_ws();
        let after = self.rest().strip_prefix(kw);
        if after.is_some_and(|a| !a.starts_with(is_word_char)) {
            self.pos += kw.len();
            true
        } else {
            false
        }
    }

    /// A word: letters, digits, `_`, `.`, and `::` (the domain separator of operators).
    fn word(&mut self, what: &'static str) -> Result<&'a str> {
        self.skip_ws();
        let start = self.pos;
        loop {
            let r = self.rest();
            if r.starts_with("::") {
                self.pos += 2;
            } else if r.starts_with(is_word_char) {
                self.pos += 1;
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(self.expected(what));
        }
        Ok(&self.src[start..self.pos])
    }

    /// A number as written: digits, letters, `+`, `-`, `.` (`-1.5e-3`, `NaN`, `-inf`).
    fn number_token(&mut self) -> Result<(usize, &'a str)> {
        self.skip_ws();
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .unwrap_or(self.rest().len());
        if len == 0 {
            return Err(self.expected("a number"));
        }
        self.pos += len;
        Ok((start, &self.src[start..self.pos]))
    }

    fn int(&mut self) -> Result<i64> {
        let (at, tok) = self.number_token()?;
        tok.parse()
            .map_err(|_| self.error_at(at, TextErrorKind::Number(tok.to_string())))
    }

    /// A double-quoted string with Rust escapes (as `{:?}` writes it).
    fn string(&mut self) -> Result<String> {
        self.expect("\"")?;
        let mut out = String::new();
        let src = self.src;
        let mut chars = src[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => {
                    let esc = chars.next().map(|(_, e)| e);
                    let bad = |p: &Self, e: &str| p.error(TextErrorKind::Escape(e.to_string()));
                    match esc {
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some('r') => out.push('\r'),
                        Some('0') => out.push('\0'),
                        Some(e @ ('\\' | '"' | '\'')) => out.push(e),
                        Some('u') => {
                            let body: String = chars
                                .by_ref()
                                .map(|(_, c)| c)
                                .take_while(|&c| c != '}')
                                .collect();
                            let hex = body.strip_prefix('{').ok_or_else(|| bad(self, &body))?;
                            let c = u32::from_str_radix(hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| bad(self, &body))?;
                            out.push(c);
                        }
                        e => return Err(bad(self, &e.map(String::from).unwrap_or_default())),
                    }
                }
                c => out.push(c),
            }
        }
        Err(self.expected("closing `\"`"))
    }

    /// `%N` (any word after `%`).
    fn id(&mut self) -> Result<String> {
        self.expect("%")?;
        let w = self.word("a value number after `%`")?;
        Ok(format!("%{w}"))
    }

    fn dtype(&mut self) -> Result<DType> {
        let at = self.pos;
        if self.eat("?") {
            return Ok(DType::Undefined);
        }
        let w = self.word("an element type")?;
        (1..=26)
            .filter_map(DType::from_onnx)
            .find(|d| d.name() == w)
            .ok_or_else(|| self.error_at(at, TextErrorKind::DType(w.to_string())))
    }

    fn hex(&mut self) -> Result<String> {
        self.skip_ws();
        let len = self
            .rest()
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(self.rest().len());
        let h = self.rest()[..len].to_string();
        self.pos += len;
        Ok(h)
    }

    // ----- types and tensors -----

    /// `?`, `opaque`, `f32[..]`, `f32[batch,3]`.
    fn ty(&mut self) -> Result<Type> {
        if self.eat_kw("opaque") {
            return Ok(Type::Opaque(Vec::new()));
        }
        self.skip_ws();
        if self.rest().starts_with('?') && !self.rest()[1..].starts_with('[') {
            self.pos += 1;
            return Ok(Type::Unknown);
        }
        let dtype = self.dtype()?;
        self.expect("[")?;
        if self.eat("..") {
            self.expect("]")?;
            return Ok(Type::Tensor(TensorType::new(dtype, None)));
        }
        let mut dims = Vec::new();
        while !self.eat("]") {
            if !dims.is_empty() {
                self.expect(",")?;
            }
            dims.push(match self.peek() {
                Some('"') => Dim::Sym(self.string()?),
                Some('?') => {
                    self.pos += 1;
                    Dim::Unknown
                }
                Some(c) if c.is_ascii_digit() || c == '-' => Dim::Fixed(self.int()?),
                _ => Dim::Sym(self.word("a dimension")?.to_string()),
            });
        }
        Ok(Type::Tensor(TensorType::new(dtype, Some(dims))))
    }

    /// `f32[2] {0, 1.5}`, `f32[64,10] #1a2b3c4d`, `u16[2] {#1a2b3c4d}`.
    fn tensor(&mut self) -> Result<Tensor> {
        let dtype = self.dtype()?;
        self.expect("[")?;
        let mut dims = Vec::new();
        while !self.eat("]") {
            if !dims.is_empty() {
                self.expect(",")?;
            }
            dims.push(self.int()?);
        }
        // `#hash`, `{#hash}` (a small tensor without a text form) or `{elements}`
        let hashed = if self.eat("#") {
            Some(false)
        } else {
            self.expect("{")?;
            self.eat("#").then_some(true)
        };
        if let Some(closing) = hashed {
            let at = self.pos;
            let hash = self.hex()?;
            if closing {
                self.expect("}")?;
            }
            let t = self
                .tensors
                .get(&hash)
                .ok_or_else(|| self.error_at(at, TextErrorKind::MissingTensor(hash.clone())))?;
            if t.dtype != dtype || t.dims != dims {
                return Err(self.error_at(at, TextErrorKind::TensorMismatch { hash, dtype, dims }));
            }
            return Ok(t.clone());
        }
        let at = self.pos;
        let numel: usize = dims.iter().map(|&d| d.max(0) as usize).product();
        let data = if dtype == DType::String {
            let mut ss = Vec::new();
            while !self.eat("}") {
                if !ss.is_empty() {
                    self.expect(",")?;
                }
                ss.push(self.string()?.into_bytes());
            }
            if ss.len() != numel {
                let count = ss.len();
                return Err(self.error_at(at, TextErrorKind::Count { count, numel }));
            }
            TensorData::Strings(ss)
        } else {
            let mut raw = Vec::new();
            let mut count = 0;
            while !self.eat("}") {
                if count > 0 {
                    self.expect(",")?;
                }
                let (vat, tok) = self.number_token()?;
                let tok = tok.to_string();
                let bytes = encode(dtype, &tok)
                    .ok_or_else(|| self.error_at(vat, TextErrorKind::Number(tok.clone())))?
                    .ok_or_else(|| self.error_at(vat, TextErrorKind::Unwritable(dtype)))?;
                raw.extend(bytes);
                count += 1;
            }
            if count != numel {
                return Err(self.error_at(at, TextErrorKind::Count { count, numel }));
            }
            TensorData::Raw(raw)
        };
        Ok(Tensor { dtype, dims, data })
    }

    // ----- attributes -----

    fn attr(&mut self) -> Result<Attr> {
        for (lit, empty) in [
            ("ints[]", Attr::Ints(Vec::new())),
            ("floats[]", Attr::Floats(Vec::new())),
            ("strings[]", Attr::Strings(Vec::new())),
            ("tensors[]", Attr::Tensors(Vec::new())),
            ("graphs[]", Attr::Graphs(Vec::new())),
        ] {
            if self.eat(lit) {
                return Ok(empty);
            }
        }
        if self.eat("<raw") {
            let h = self.hex()?;
            self.expect(">")?;
            let bytes = (0..h.len() / 2)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap_or_default())
                .collect();
            return Ok(Attr::Raw(bytes));
        }
        match self.peek() {
            Some('"') => Ok(Attr::String(self.string()?.into_bytes())),
            Some('[') => {
                self.pos += 1;
                self.list()
            }
            Some(c) if starts_number(c, self.rest()) => {
                let (at, tok) = self.number_token()?;
                let bad = || self.error_at(at, TextErrorKind::Number(tok.to_string()));
                if is_int_token(tok) {
                    tok.parse().map(Attr::Int).map_err(|_| bad())
                } else {
                    tok.parse().map(Attr::Float).map_err(|_| bad())
                }
            }
            _ => Ok(Attr::Tensor(self.tensor()?)),
        }
    }

    /// The rest of `[a, b, ...]`; the first element says which list it is.
    fn list(&mut self) -> Result<Attr> {
        let first = self.peek();
        let mut out = match first {
            Some('"') => Attr::Strings(Vec::new()),
            Some(c) if starts_number(c, self.rest()) => {
                let r = self.rest();
                let len = r.find([',', ']']).unwrap_or(r.len());
                if is_int_token(r[..len].trim()) {
                    Attr::Ints(Vec::new())
                } else {
                    Attr::Floats(Vec::new())
                }
            }
            Some(']') => Attr::Ints(Vec::new()),
            _ => Attr::Tensors(Vec::new()),
        };
        let mut n = 0;
        while !self.eat("]") {
            if n > 0 {
                self.expect(",")?;
            }
            n += 1;
            match &mut out {
                Attr::Strings(v) => v.push(self.string()?.into_bytes()),
                Attr::Tensors(v) => v.push(self.tensor()?),
                Attr::Ints(v) => v.push(self.int()?),
                Attr::Floats(v) => {
                    let (at, tok) = self.number_token()?;
                    let f = tok
                        .parse()
                        .map_err(|_| self.error_at(at, TextErrorKind::Number(tok.to_string())))?;
                    v.push(f);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    // ----- graphs and models -----

    fn model(&mut self) -> Result<Model> {
        if !self.eat_kw("model") {
            return Err(self.expected("`model`"));
        }
        self.expect("ir=")?;
        let ir_version = self.int()?;
        self.expect("opsets[")?;
        let mut opsets = BTreeMap::new();
        while !self.eat("]") {
            if !opsets.is_empty() {
                self.expect(",")?;
            }
            let d = self.word("an opset domain")?;
            let d = if d == "ai.onnx" { "" } else { d }.to_string();
            self.expect("=")?;
            opsets.insert(d, self.int()?);
        }
        let mut metadata = Vec::new();
        while self.eat_kw("meta") {
            let k = self.string()?;
            self.expect("=")?;
            let mut v = self.string()?;
            if self.eat("…") {
                v.push('…');
            }
            metadata.push((k, v));
        }
        let ast = self.graph()?;
        let graph = self.build(ast, &HashMap::new(), false)?;
        Ok(Model {
            ir_version,
            opsets,
            metadata,
            graph,
            ..Default::default()
        })
    }

    fn graph(&mut self) -> Result<GraphAst> {
        if !self.eat_kw("graph") {
            return Err(self.expected("`graph`"));
        }
        let name = self.string()?;
        self.expect("{")?;
        let mut g = GraphAst {
            name,
            inputs: Vec::new(),
            inits: Vec::new(),
            nodes: Vec::new(),
            returns: Vec::new(),
        };
        while self.eat_kw("in") {
            let at = self.pos;
            let id = self.id()?;
            let name = self.string()?;
            self.expect(":")?;
            let ty = self.ty()?;
            let default = if self.eat("=") {
                Some(self.tensor()?)
            } else {
                None
            };
            g.inputs.push((at, id, name, ty, default));
        }
        while self.eat_kw("init") {
            let at = self.pos;
            let id = self.id()?;
            let name = self.string()?;
            self.expect("=")?;
            g.inits.push((at, id, name, self.tensor()?));
        }
        while !self.eat_kw("return") {
            g.nodes.push(self.node()?);
        }
        while !self.eat("}") {
            if !g.returns.is_empty() {
                self.expect(",")?;
            }
            self.skip_ws();
            let at = self.pos;
            let r = self.reference()?;
            g.returns.push((at, r, self.string()?));
        }
        Ok(g)
    }

    fn reference(&mut self) -> Result<Ref> {
        match self.peek() {
            Some('%') => Ok(Ref::Id(self.id()?)),
            Some('^') => {
                self.pos += 1;
                Ok(Ref::Capture(self.string()?))
            }
            Some('?') => {
                self.pos += 1;
                let name = if self.peek() == Some('"') {
                    self.string()?
                } else {
                    "?".into()
                };
                Err(self.error(TextErrorKind::Undefined(name)))
            }
            _ if self.eat_kw("_") => Ok(Ref::Omitted),
            _ => Err(self.expected("a value (`%N`, `^\"name\"` or `_`)")),
        }
    }

    /// `%3: f32[2], _ = Op(%1, _) {k=v}` and its subgraph attributes.
    fn node(&mut self) -> Result<NodeAst> {
        self.skip_ws();
        let at = self.pos;
        let mut outs = Vec::new();
        if self.peek() != Some('=') {
            loop {
                if self.eat_kw("_") {
                    outs.push(None);
                } else {
                    let id = self.id()?;
                    self.expect(":")?;
                    outs.push(Some((id, self.ty()?)));
                }
                if !self.eat(",") {
                    break;
                }
            }
        }
        self.expect("=")?;
        let w = self.word("an operator")?.to_string();
        let op = match w.split_once("::") {
            Some((domain, op_type)) => Op::from_onnx(domain, op_type),
            None => Op::from_onnx("", &w),
        };
        self.expect("(")?;
        let mut ins = Vec::new();
        while !self.eat(")") {
            if !ins.is_empty() {
                self.expect(",")?;
            }
            ins.push(self.reference()?);
        }
        let mut attrs = BTreeMap::new();
        if self.eat("{") {
            while !self.eat("}") {
                if !attrs.is_empty() {
                    self.expect(",")?;
                }
                let k = self.word("an attribute name")?.to_string();
                self.expect("=")?;
                attrs.insert(k, self.attr()?);
            }
        }
        let mut subgraphs = Vec::new();
        while let Some((key, index)) = self.subgraph_label()? {
            subgraphs.push((key, index, self.graph()?));
        }
        Ok(NodeAst {
            at,
            outs,
            op,
            ins,
            attrs,
            subgraphs,
        })
    }

    /// `key:` or `key[i]:` before a subgraph; None (nothing consumed) when the next line is
    /// not one.
    fn subgraph_label(&mut self) -> Result<Option<(String, Option<usize>)>> {
        let save = self.pos;
        self.skip_ws();
        if !self
            .rest()
            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            || self.eat_kw("return")
        {
            self.pos = save;
            return Ok(None);
        }
        let key = self.word("an attribute name")?.to_string();
        let index = if self.eat("[") {
            let i = self.int()?;
            self.expect("]")?;
            Some(i.max(0) as usize)
        } else {
            None
        };
        if !self.eat(":") {
            self.pos = save;
            return Ok(None);
        }
        Ok(Some((key, index)))
    }

    /// Builds a graph; `scope` maps the enclosing graphs' `%N` to value names.
    fn build(&self, ast: GraphAst, scope: &HashMap<String, String>, sub: bool) -> Result<Graph> {
        let mut g = Graph::new(&ast.name);
        let mut local: HashMap<String, ValueId> = HashMap::new();
        let define =
            |local: &mut HashMap<String, ValueId>, id: String, v: ValueId, at: usize| match local
                .insert(id.clone(), v)
            {
                Some(_) => Err(self.error_at(at, TextErrorKind::Redefined(id))),
                None => Ok(()),
            };
        for (at, id, name, ty, default) in ast.inputs {
            let v = g.add_input(&name, ty);
            g.value_mut(v).init = default;
            define(&mut local, id, v, at)?;
        }
        for (at, id, name, t) in ast.inits {
            let v = g.add_initializer(&name, t);
            define(&mut local, id, v, at)?;
        }
        let returned: HashMap<String, String> = ast
            .returns
            .iter()
            .filter_map(|(_, r, name)| match r {
                Ref::Id(id) => Some((id.clone(), name.clone())),
                _ => None,
            })
            .collect();
        let resolve = |g: &mut Graph, local: &HashMap<String, ValueId>, r: &Ref, at: usize| {
            let capture = |g: &mut Graph, name: &str| {
                if sub {
                    Ok(g.add_outer(name, Type::Unknown))
                } else {
                    Err(self.error_at(
                        at,
                        TextErrorKind::UndefinedCapture {
                            graph: g.name.clone(),
                            name: name.to_string(),
                        },
                    ))
                }
            };
            match r {
                Ref::Omitted => Ok(None),
                Ref::Id(id) => match (local.get(id), scope.get(id)) {
                    (Some(&v), _) => Ok(Some(v)),
                    (None, Some(name)) => capture(g, name).map(Some),
                    (None, None) => Err(self.error_at(at, TextErrorKind::Undefined(id.clone()))),
                },
                Ref::Capture(name) => capture(g, name).map(Some),
            }
        };
        for node in ast.nodes {
            let ins = node
                .ins
                .iter()
                .map(|r| resolve(&mut g, &local, r, node.at))
                .collect::<Result<Vec<_>>>()?;
            let names: Vec<&str> = node
                .outs
                .iter()
                .map(|o| match o {
                    Some((id, _)) => returned.get(id).map_or(id.as_str(), String::as_str),
                    None => "",
                })
                .collect();
            let n = g.add_node(node.op, "", ins, &names, BTreeMap::new());
            for (slot, out) in node.outs.into_iter().enumerate() {
                if let (Some((id, ty)), Some(v)) = (out, g.node(n).output(slot)) {
                    g.value_mut(v).ty = ty;
                    define(&mut local, id, v, node.at)?;
                }
            }
            let mut attrs = node.attrs;
            if !node.subgraphs.is_empty() {
                let mut inner = scope.clone();
                for (id, &v) in &local {
                    inner.insert(id.clone(), g.name(v).to_string());
                }
                let mut lists: BTreeMap<String, Vec<(usize, Graph)>> = BTreeMap::new();
                for (key, index, sub_ast) in node.subgraphs {
                    let sg = self.build(sub_ast, &inner, true)?;
                    for o in sg.outer_values() {
                        let name = sg.name(o);
                        if g.by_name(name).is_none() {
                            resolve(&mut g, &local, &Ref::Capture(name.to_string()), node.at)?;
                        }
                    }
                    match index {
                        None => {
                            attrs.insert(key, Attr::Graph(Box::new(sg)));
                        }
                        Some(i) => lists.entry(key).or_default().push((i, sg)),
                    }
                }
                for (key, mut gs) in lists {
                    gs.sort_by_key(|(i, _)| *i);
                    attrs.insert(key, Attr::Graphs(gs.into_iter().map(|(_, g)| g).collect()));
                }
            }
            g.node_mut(n).attrs = attrs;
        }
        for (at, r, _) in &ast.returns {
            if let Some(v) = resolve(&mut g, &local, r, *at)? {
                g.outputs.push(v);
            }
        }
        Ok(g)
    }
}

/// Whether an attribute value starting with `c` (rest of the text `rest`) is a number.
fn starts_number(c: char, rest: &str) -> bool {
    c.is_ascii_digit()
        || c == '-'
        || rest.starts_with("NaN")
        || (rest.starts_with("inf") && !rest[3..].starts_with(is_word_char))
}

/// Integers are written with digits only (floats always carry `.`, an exponent, `NaN` or `inf`).
fn is_int_token(tok: &str) -> bool {
    let digits = tok.strip_prefix('-').unwrap_or(tok);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

/// One element of a tensor written in full, as little-endian bytes. Outer None: not a number;
/// inner None: the element type has no text form.
fn encode(dtype: DType, tok: &str) -> Option<Option<Vec<u8>>> {
    let float = || tok.parse::<f64>().ok();
    let int = || tok.parse::<i64>().ok();
    Some(Some(match dtype {
        DType::F32 => (float()? as f32).to_le_bytes().to_vec(),
        DType::F64 => float()?.to_le_bytes().to_vec(),
        DType::F16 => half::f16::from_f64(float()?).to_le_bytes().to_vec(),
        DType::BF16 => half::bf16::from_f64(float()?).to_le_bytes().to_vec(),
        DType::I64 => int()?.to_le_bytes().to_vec(),
        DType::I32 => i32::try_from(int()?).ok()?.to_le_bytes().to_vec(),
        DType::I8 => i8::try_from(int()?).ok()?.to_le_bytes().to_vec(),
        DType::U8 | DType::Bool => u8::try_from(int()?).ok()?.to_le_bytes().to_vec(),
        _ => return Some(None),
    }))
}
