//! The graph IR: nodes and values in arenas addressed by typed ids. A value is defined once
//! (graph input, initializer, node output, or a capture of an enclosing graph's value in a
//! subgraph) and referenced by id; ONNX names are labels kept unique per graph.

use super::ops::Op;
use super::types::{Dim, Tensor, Type};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A node in a graph's arena; prints as `n3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// A value in a graph's arena; prints as `v3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A node attribute. Graph attributes hold whole subgraphs; kinds the compiler never inspects
/// (type protos, sparse tensors) are kept as serialized protobuf bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Float(f32),
    Int(i64),
    String(Vec<u8>),
    Tensor(Tensor),
    Graph(Box<Graph>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Graph>),
    /// A serialized `AttributeProto` of a kind kept verbatim (type protos, sparse tensors,
    /// references to function attributes).
    Raw(Vec<u8>),
}

/// Where a value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueDef {
    /// A graph input (it may also have an initializer: a default value).
    Input,
    /// A constant initializer that is not an input.
    Initializer,
    /// Output `slot` of a node.
    Node(NodeId, usize),
    /// In a subgraph: a value of an enclosing graph, referenced by name.
    Outer,
}

/// A value: its ONNX name, type, origin and, for initializers, its constant.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub ty: Type,
    pub def: ValueDef,
    pub init: Option<Tensor>,
    /// Name of the external-data file this initializer came from (kept so export knows the
    /// model used external data).
    pub external: bool,
    pub doc: String,
    /// For small integer tensors (shapes, indices): the element values as dimensions, when
    /// inference knows them, symbolic ones included (`Shape(x)` of a batch-first `x` is
    /// `[batch, 64]`). Lets reshapes keep static shapes with a symbolic batch.
    pub sym: Option<Vec<Dim>>,
}

/// A node: operator, inputs (None = omitted optional input), outputs, attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub name: String,
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<Option<ValueId>>,
    pub attrs: BTreeMap<String, Attr>,
    pub doc: String,
    /// `NodeProto` fields the IR does not model (overload, metadata_props), serialized.
    pub extra: Vec<u8>,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.get(name)
    }

    pub fn attr_int(&self, name: &str) -> Option<i64> {
        match self.attrs.get(name) {
            Some(Attr::Int(i)) => Some(*i),
            _ => None,
        }
    }

    pub fn attr_float(&self, name: &str) -> Option<f32> {
        match self.attrs.get(name) {
            Some(Attr::Float(f)) => Some(*f),
            _ => None,
        }
    }

    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        match self.attrs.get(name) {
            Some(Attr::Ints(v)) => Some(v),
            _ => None,
        }
    }

    pub fn attr_str(&self, name: &str) -> Option<&str> {
        match self.attrs.get(name) {
            Some(Attr::String(s)) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }

    /// Input `i` if present.
    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    /// Output `i` if present.
    pub fn output(&self, i: usize) -> Option<ValueId> {
        self.outputs.get(i).copied().flatten()
    }

    /// The subgraphs held in attributes.
    pub fn subgraphs(&self) -> impl Iterator<Item = &Graph> {
        self.attrs.values().flat_map(|a| match a {
            Attr::Graph(g) => std::slice::from_ref(g.as_ref()).iter(),
            Attr::Graphs(gs) => gs.iter(),
            _ => [].iter(),
        })
    }

    /// A label for error messages: `'name' (Op)` or `#n3 (Op)` when unnamed.
    pub fn label(&self, id: NodeId) -> String {
        if self.name.is_empty() {
            format!("#{id} ({})", self.op)
        } else {
            format!("'{}' ({})", self.name, self.op)
        }
    }
}

/// A graph: arenas of nodes and values, the input/output lists and a topological node order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub doc: String,
    nodes: Vec<Option<Node>>,
    values: Vec<Value>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    order: Vec<NodeId>,
    names: HashMap<String, ValueId>,
    /// `GraphProto` fields the IR does not model (sparse initializers, quantization
    /// annotations, metadata_props), serialized, for a lossless round trip.
    pub extra: Vec<u8>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Graph {
            name: name.into(),
            ..Default::default()
        }
    }

    // ----- values -----

    /// Adds a value. The name is made unique in this graph (a suffix is added when taken);
    /// an empty name becomes `hint`-style `v<N>`.
    pub fn add_value(&mut self, name: &str, ty: Type, def: ValueDef) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        let name = self.fresh_name(if name.is_empty() { "v" } else { name });
        self.names.insert(name.clone(), id);
        self.values.push(Value {
            name,
            ty,
            def,
            init: None,
            external: false,
            doc: String::new(),
            sym: None,
        });
        id
    }

    /// A name not used by any value of this graph, `base` itself when free.
    pub fn fresh_name(&self, base: &str) -> String {
        if !self.names.contains_key(base) {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !self.names.contains_key(n))
            .unwrap_or_default()
    }

    /// Adds a graph input.
    pub fn add_input(&mut self, name: &str, ty: Type) -> ValueId {
        let v = self.add_value(name, ty, ValueDef::Input);
        self.inputs.push(v);
        v
    }

    /// Adds a constant initializer (not an input).
    pub fn add_initializer(&mut self, name: &str, t: Tensor) -> ValueId {
        let v = self.add_value(name, Type::Tensor(t.ty()), ValueDef::Initializer);
        self.values[v.0 as usize].init = Some(t);
        v
    }

    /// Adds a capture of an enclosing graph's value named `name` (subgraphs only).
    pub fn add_outer(&mut self, name: &str, ty: Type) -> ValueId {
        if let Some(&v) = self.names.get(name) {
            return v;
        }
        self.add_value(name, ty, ValueDef::Outer)
    }

    pub fn value(&self, v: ValueId) -> &Value {
        &self.values[v.0 as usize]
    }

    pub fn value_mut(&mut self, v: ValueId) -> &mut Value {
        &mut self.values[v.0 as usize]
    }

    pub fn value_count(&self) -> usize {
        self.values.len()
    }

    /// All value ids (including ones no longer used).
    pub fn value_ids(&self) -> impl Iterator<Item = ValueId> {
        (0..self.values.len() as u32).map(ValueId)
    }

    pub fn ty(&self, v: ValueId) -> &Type {
        &self.values[v.0 as usize].ty
    }

    pub fn name(&self, v: ValueId) -> &str {
        &self.values[v.0 as usize].name
    }

    pub fn by_name(&self, name: &str) -> Option<ValueId> {
        self.names.get(name).copied()
    }

    /// Renames a value (the new name must be free in this graph).
    pub fn rename(&mut self, v: ValueId, name: &str) -> bool {
        if self.names.contains_key(name) {
            return self.name(v) == name;
        }
        let old = std::mem::replace(&mut self.values[v.0 as usize].name, name.to_string());
        self.names.remove(&old);
        self.names.insert(name.to_string(), v);
        true
    }

    /// The constant held by a value: an initializer that is not an overridable input, or a
    /// `Constant` node's value.
    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        let val = self.value(v);
        match val.def {
            ValueDef::Initializer => val.init.as_ref(),
            ValueDef::Node(n, 0) => {
                let node = self.node(n);
                match (&node.op, node.attr("value")) {
                    (Op::Constant, Some(Attr::Tensor(t))) => Some(t),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Initializers (pure constants and input defaults), in value order.
    pub fn initializers(&self) -> impl Iterator<Item = (ValueId, &Tensor)> {
        self.values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.init.as_ref().map(|t| (ValueId(i as u32), t)))
    }

    /// Outer-scope captures of this (sub)graph.
    pub fn outer_values(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.value_ids()
            .filter(|&v| self.value(v).def == ValueDef::Outer)
    }

    // ----- nodes -----

    /// Appends a node whose output values are created with the given names (made unique).
    /// Types are left unknown: callers go through the builder, which infers them.
    pub fn add_node(
        &mut self,
        op: Op,
        name: &str,
        inputs: Vec<Option<ValueId>>,
        output_names: &[&str],
        attrs: BTreeMap<String, Attr>,
    ) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        let outputs = output_names
            .iter()
            .enumerate()
            .map(|(slot, n)| {
                if n.is_empty() {
                    None
                } else {
                    Some(self.add_value(n, Type::Unknown, ValueDef::Node(id, slot)))
                }
            })
            .collect();
        self.nodes.push(Some(Node {
            op,
            name: name.to_string(),
            inputs,
            outputs,
            attrs,
            doc: String::new(),
            extra: Vec::new(),
        }));
        self.order.push(id);
        id
    }

    pub fn node(&self, n: NodeId) -> &Node {
        self.nodes[n.0 as usize]
            .as_ref()
            .expect("node id refers to a removed node")
    }

    pub fn node_mut(&mut self, n: NodeId) -> &mut Node {
        self.nodes[n.0 as usize]
            .as_mut()
            .expect("node id refers to a removed node")
    }

    pub fn is_live(&self, n: NodeId) -> bool {
        self.nodes.get(n.0 as usize).is_some_and(Option::is_some)
    }

    /// Live nodes in topological order.
    pub fn order(&self) -> &[NodeId] {
        &self.order
    }

    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    /// Removes a node; its output values stay in the arena but lose their definition
    /// (the verifier reports any remaining use).
    pub fn remove_node(&mut self, n: NodeId) {
        self.nodes[n.0 as usize] = None;
        self.order.retain(|&m| m != n);
    }

    /// The node defining `v`, if a node does.
    pub fn producer(&self, v: ValueId) -> Option<NodeId> {
        match self.value(v).def {
            ValueDef::Node(n, _) if self.is_live(n) => Some(n),
            _ => None,
        }
    }

    /// Values a node reads: explicit inputs plus the enclosing-scope captures of its subgraphs
    /// resolved in this graph.
    pub fn node_uses(&self, n: NodeId) -> Vec<ValueId> {
        let node = self.node(n);
        let mut uses: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        for g in node.subgraphs() {
            for o in g.outer_values() {
                if let Some(v) = self.by_name(g.name(o)) {
                    uses.push(v);
                }
            }
        }
        uses
    }

    /// For every value, the nodes that read it (explicitly or through a subgraph capture).
    pub fn users(&self) -> HashMap<ValueId, Vec<NodeId>> {
        let mut users: HashMap<ValueId, Vec<NodeId>> = HashMap::new();
        for &n in &self.order {
            for v in self.node_uses(n) {
                let e = users.entry(v).or_default();
                if e.last() != Some(&n) {
                    e.push(n);
                }
            }
        }
        users
    }

    /// Replaces every explicit use of `old` (node inputs and graph outputs) by `new`.
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        for n in self.order.clone() {
            for i in self.node_mut(n).inputs.iter_mut().flatten() {
                if *i == old {
                    *i = new;
                }
            }
        }
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Re-establishes a topological order (stable: keeps the current order where it is
    /// valid). Returns the nodes on a cycle if there is one.
    pub fn toposort(&mut self) -> Result<(), Vec<NodeId>> {
        let producers: HashMap<ValueId, NodeId> = self
            .order
            .iter()
            .flat_map(|&n| self.node(n).outputs.iter().flatten().map(move |&v| (v, n)))
            .collect();
        let mut indeg: HashMap<NodeId, usize> = HashMap::new();
        let mut succ: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        for &n in &self.order {
            let mut deps: Vec<NodeId> = self
                .node_uses(n)
                .iter()
                .filter_map(|v| producers.get(v).copied())
                .filter(|&p| p != n)
                .collect();
            deps.sort();
            deps.dedup();
            indeg.insert(n, deps.len());
            for d in deps {
                succ.entry(d).or_default().push(n);
            }
        }
        let position: HashMap<NodeId, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, &n)| (n, i))
            .collect();
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<(usize, NodeId)>> = self
            .order
            .iter()
            .filter(|n| indeg[n] == 0)
            .map(|&n| std::cmp::Reverse((position[&n], n)))
            .collect();
        let mut out = Vec::with_capacity(self.order.len());
        while let Some(std::cmp::Reverse((_, n))) = ready.pop() {
            out.push(n);
            for &s in succ.get(&n).map(Vec::as_slice).unwrap_or(&[]) {
                let d = indeg.get_mut(&s).expect("successor has a degree");
                *d -= 1;
                if *d == 0 {
                    ready.push(std::cmp::Reverse((position[&s], s)));
                }
            }
        }
        if out.len() != self.order.len() {
            return Err(self.cycle(&producers));
        }
        self.order = out;
        Ok(())
    }
}

impl Graph {
    /// The nodes of one dependency cycle (a strongly connected component of more than one
    /// node, or a node reading its own output), in order along the cycle's component.
    fn cycle(&self, producers: &HashMap<ValueId, NodeId>) -> Vec<NodeId> {
        let mut dg = petgraph::graph::DiGraph::<NodeId, ()>::new();
        let index: HashMap<NodeId, petgraph::graph::NodeIndex> =
            self.order.iter().map(|&n| (n, dg.add_node(n))).collect();
        for &n in &self.order {
            for v in self.node_uses(n) {
                if let Some(p) = producers.get(&v) {
                    dg.add_edge(index[p], index[&n], ());
                }
            }
        }
        petgraph::algo::tarjan_scc(&dg)
            .into_iter()
            .find(|scc| scc.len() > 1 || dg.contains_edge(scc[0], scc[0]))
            .map(|scc| scc.into_iter().map(|i| dg[i]).collect())
            .unwrap_or_default()
    }
}

/// A whole model: the main graph plus model-level fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    pub ir_version: i64,
    /// Operator set per domain ("" = the default ONNX domain).
    pub opsets: BTreeMap<String, i64>,
    pub producer_name: String,
    pub producer_version: String,
    pub domain: String,
    pub model_version: i64,
    pub doc: String,
    pub metadata: Vec<(String, String)>,
    pub graph: Graph,
    /// `ModelProto` fields the IR does not model (functions, training_info), serialized.
    pub extra: Vec<u8>,
}

impl Model {
    /// A model around `graph` importing the default domain at `opset` (IR version 8).
    pub fn new(graph: Graph, opset: i64) -> Model {
        Model {
            ir_version: 8,
            opsets: BTreeMap::from([(String::new(), opset)]),
            graph,
            ..Model::default()
        }
    }

    /// The default-domain opset version.
    pub fn opset(&self) -> i64 {
        self.opsets.get("").copied().unwrap_or(1)
    }

    /// Sets (or replaces) a metadata entry.
    pub fn set_metadata(&mut self, key: &str, value: String) {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), value));
    }

    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}
