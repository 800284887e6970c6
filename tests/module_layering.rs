//! No import cycles between the modules (files) of `passes/src`, `runtime/src` and `src`.
//!
//! Every `use` and every path that starts at `crate::`, `super::`, `self::`, a child module or a
//! name a `use` bound is an edge from the file it is written in to the file of the module it
//! names; re-exports (`pub use`) are followed to the file that defines the item, so importing
//! `crate::ir::Model` depends on `ir/graph.rs`, not on `ir/mod.rs`. Declaring a module (`mod x;`)
//! is not an edge. Paths inside macro invocations are not seen. ARCHITECTURE.md ("Module
//! layering") says what may import what.

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

type ModPath = Vec<String>;

/// One crate's module tree: every module that has its own file.
struct Crate {
    /// module path (`["pipeline", "gen"]`) → (file label, syntax tree)
    files: BTreeMap<ModPath, (String, syn::File)>,
    /// module path → re-exported name → the absolute path it stands for
    reexports: HashMap<ModPath, HashMap<String, ModPath>>,
}

/// Reads a crate from its root file; `read` gives a file's text (None: no such file).
fn load(root: &Path, read: &dyn Fn(&Path) -> Option<String>) -> Result<Crate, String> {
    let mut files = BTreeMap::new();
    let mut todo = vec![(Vec::<String>::new(), root.to_path_buf())];
    while let Some((module, file)) = todo.pop() {
        let text = read(&file).ok_or_else(|| format!("{}: cannot read", file.display()))?;
        let ast = syn::parse_file(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let is_dir_owner = matches!(
            file.file_name().and_then(|n| n.to_str()),
            Some("lib.rs" | "mod.rs" | "main.rs")
        ) || module.is_empty();
        let dir = if is_dir_owner {
            file.parent().unwrap_or(Path::new("")).to_path_buf()
        } else {
            file.with_extension("")
        };
        for item in &ast.items {
            if let syn::Item::Mod(m) = item {
                if m.content.is_none() {
                    let name = m.ident.to_string();
                    let flat = dir.join(format!("{name}.rs"));
                    let nested = dir.join(&name).join("mod.rs");
                    let child = if read(&flat).is_some() { flat } else { nested };
                    let mut path = module.clone();
                    path.push(name);
                    todo.push((path, child));
                }
            }
        }
        files.insert(module, (file.display().to_string(), ast));
    }
    let mut krate = Crate {
        files,
        reexports: HashMap::new(),
    };
    let mut reexports = HashMap::new();
    for (module, (_, ast)) in &krate.files {
        let mut names = HashMap::new();
        for item in &ast.items {
            if let syn::Item::Use(u) = item {
                if !matches!(u.vis, syn::Visibility::Inherited) {
                    for (name, path) in flatten_use(&u.tree) {
                        if let (Some(name), Some(abs)) = (name, krate.absolute(module, &path)) {
                            names.insert(name, abs);
                        }
                    }
                }
            }
        }
        reexports.insert(module.clone(), names);
    }
    krate.reexports = reexports;
    Ok(krate)
}

/// The paths a use tree imports, each with the name it binds (None for globs).
fn flatten_use(tree: &syn::UseTree) -> Vec<(Option<String>, Vec<String>)> {
    fn walk(
        t: &syn::UseTree,
        prefix: &mut Vec<String>,
        out: &mut Vec<(Option<String>, Vec<String>)>,
    ) {
        match t {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                walk(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                if name == "self" {
                    out.push((prefix.last().cloned(), prefix.clone()));
                } else {
                    let mut p = prefix.clone();
                    p.push(name.clone());
                    out.push((Some(name), p));
                }
            }
            syn::UseTree::Rename(r) => {
                let mut p = prefix.clone();
                let name = r.ident.to_string();
                if name != "self" {
                    p.push(name);
                }
                out.push((Some(r.rename.to_string()), p));
            }
            syn::UseTree::Glob(_) => out.push((None, prefix.clone())),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| walk(t, prefix, out)),
        }
    }
    let mut out = Vec::new();
    walk(tree, &mut Vec::new(), &mut out);
    out
}

impl Crate {
    /// `path` as written in module `at` made absolute; None when it leaves the crate.
    fn absolute(&self, at: &[String], path: &[String]) -> Option<ModPath> {
        let (first, rest) = path.split_first()?;
        let mut base: ModPath = match first.as_str() {
            "crate" => Vec::new(),
            "self" => at.to_vec(),
            "super" => at[..at.len().checked_sub(1)?].to_vec(),
            _ => {
                let mut child = at.to_vec();
                child.push(first.clone());
                if !self.files.contains_key(&child) {
                    return None;
                }
                child
            }
        };
        let mut rest = rest;
        while let Some(("super", tail)) = rest.split_first().map(|(h, t)| (h.as_str(), t)) {
            base.pop()?;
            rest = tail;
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file module that defines what absolute `path` names, following re-exports.
    fn owner(&self, path: &[String]) -> ModPath {
        let mut path = path.to_vec();
        for _ in 0..16 {
            let mut cur = Vec::new();
            let mut redirect = None;
            for (i, seg) in path.iter().enumerate() {
                let mut next = cur.clone();
                next.push(seg.clone());
                if self.files.contains_key(&next) {
                    cur = next;
                    continue;
                }
                if let Some(target) = self.reexports.get(&cur).and_then(|m| m.get(seg)) {
                    let mut p = target.clone();
                    p.extend(path[i + 1..].iter().cloned());
                    redirect = Some(p);
                }
                break;
            }
            match redirect {
                Some(p) if p != path => path = p,
                _ => return cur,
            }
        }
        Vec::new()
    }

    /// Every edge: (importing file module, imported file module, the path as written).
    fn edges(&self) -> Vec<(ModPath, ModPath, String)> {
        let mut out = Vec::new();
        for (module, (_, ast)) in &self.files {
            let mut uses = Uses::new(module);
            uses.visit_file(ast);
            let mut bindings: HashMap<String, ModPath> = HashMap::new();
            for (at, name, path) in &uses.found {
                if let Some(abs) = self.absolute(at, path) {
                    if let Some(name) = name {
                        bindings.insert(name.clone(), abs.clone());
                    }
                    out.push((
                        module.clone(),
                        self.owner(&abs),
                        format!("use {}", path.join("::")),
                    ));
                }
            }
            let mut paths = Paths::new(module);
            paths.visit_file(ast);
            for (at, path) in &paths.found {
                let abs = match bindings.get(&path[0]) {
                    Some(b) if path.len() > 1 => {
                        Some(b.iter().chain(&path[1..]).cloned().collect::<Vec<_>>())
                    }
                    _ => self.absolute(at, path),
                };
                if let Some(abs) = abs {
                    out.push((module.clone(), self.owner(&abs), path.join("::")));
                }
            }
        }
        out.retain(|(from, to, _)| from != to);
        out
    }

    fn label(&self, m: &ModPath) -> &str {
        &self.files[m].0
    }

    /// Each import cycle: the files of its strongly connected component, and one cycle through
    /// them as `a.rs → b.rs (path) → a.rs (path)`.
    fn cycles(&self) -> Vec<(Vec<String>, String)> {
        let mut g: DiGraph<ModPath, String> = DiGraph::new();
        let ix: HashMap<&ModPath, NodeIndex> = self
            .files
            .keys()
            .map(|m| (m, g.add_node(m.clone())))
            .collect();
        for (from, to, how) in self.edges() {
            if let (Some(&a), Some(&b)) = (ix.get(&from), ix.get(&to)) {
                if g.find_edge(a, b).is_none() {
                    g.add_edge(a, b, how);
                }
            }
        }
        let mut out = Vec::new();
        for scc in tarjan_scc(&g) {
            if scc.len() < 2 {
                continue;
            }
            // a shortest way from the first member back to itself, inside the component
            let start = scc[0];
            let mut prev: HashMap<NodeIndex, NodeIndex> = HashMap::new();
            let mut queue = std::collections::VecDeque::from([start]);
            'bfs: while let Some(n) = queue.pop_front() {
                for e in g.edges(n) {
                    use petgraph::visit::EdgeRef;
                    let t = e.target();
                    if !scc.contains(&t) || prev.contains_key(&t) {
                        continue;
                    }
                    prev.insert(t, n);
                    if t == start {
                        break 'bfs;
                    }
                    queue.push_back(t);
                }
            }
            let mut chain = vec![start];
            let mut n = start;
            while let Some(&p) = prev.get(&n) {
                chain.push(p);
                n = p;
                if p == start {
                    break;
                }
            }
            chain.reverse();
            let mut text = self.label(&g[chain[0]]).to_string();
            for w in chain.windows(2) {
                let e = g
                    .find_edge(w[0], w[1])
                    .map(|e| g[e].as_str())
                    .unwrap_or("?");
                text.push_str(&format!(" → {} ({e})", self.label(&g[w[1]])));
            }
            let members = scc.iter().map(|&n| self.label(&g[n]).to_string()).collect();
            out.push((members, text));
        }
        out
    }
}

/// Use trees anywhere in a file, with the module they are written in (inline modules count).
struct Uses {
    at: ModPath,
    found: Vec<(ModPath, Option<String>, Vec<String>)>,
}

impl Uses {
    fn new(m: &ModPath) -> Self {
        Uses {
            at: m.clone(),
            found: Vec::new(),
        }
    }
}

impl<'a> Visit<'a> for Uses {
    fn visit_item_mod(&mut self, m: &'a syn::ItemMod) {
        self.at.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.at.pop();
    }
    fn visit_item_use(&mut self, u: &'a syn::ItemUse) {
        for (name, path) in flatten_use(&u.tree) {
            self.found.push((self.at.clone(), name, path));
        }
    }
}

/// Paths of two or more segments in code (types, expressions, patterns).
struct Paths {
    at: ModPath,
    found: Vec<(ModPath, Vec<String>)>,
}

impl Paths {
    fn new(m: &ModPath) -> Self {
        Paths {
            at: m.clone(),
            found: Vec::new(),
        }
    }
}

impl<'a> Visit<'a> for Paths {
    fn visit_item_mod(&mut self, m: &'a syn::ItemMod) {
        self.at.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.at.pop();
    }
    fn visit_item_use(&mut self, _: &'a syn::ItemUse) {}
    fn visit_path(&mut self, p: &'a syn::Path) {
        if p.leading_colon.is_none() && p.segments.len() > 1 {
            let segs = p.segments.iter().map(|s| s.ident.to_string()).collect();
            self.found.push((self.at.clone(), segs));
        }
        syn::visit::visit_path(self, p);
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(lib: &str) -> (Crate, Vec<(Vec<String>, String)>) {
    let krate = load(&root().join(lib), &|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|e| panic!("{e}"));
    let cycles = krate.cycles();
    (krate, cycles)
}

#[test]
fn no_import_cycles_between_modules() {
    let base = format!("{}/", root().display());
    let mut all = Vec::new();
    for lib in [
        "format/src/lib.rs",
        "passes/src/lib.rs",
        "runtime/src/lib.rs",
        "src/lib.rs",
    ] {
        let (krate, cycles) = check(lib);
        assert!(!krate.files.is_empty(), "{lib}: no modules found");
        for (_, text) in cycles {
            all.push(text.replace(&base, ""));
        }
    }
    assert!(
        all.is_empty(),
        "import cycles between modules:\n{}",
        all.join("\n")
    );
}

#[test]
fn the_check_sees_the_real_imports() {
    // guards against a loader that silently finds nothing: known edges must be there
    let (krate, _) = check("passes/src/lib.rs");
    assert!(
        krate.files.len() > 40,
        "only {} modules of gen-passes found",
        krate.files.len()
    );
    let edges = krate.edges();
    let has = |from: &str, to: &str| {
        edges
            .iter()
            .any(|(f, t, _)| krate.label(f).ends_with(from) && krate.label(t).ends_with(to))
    };
    assert!(
        has("pipeline/gen/mod.rs", "ir/builder.rs"),
        "gen → builder (re-export of crate::ir)"
    );
    assert!(
        has("compile.rs", "pipeline/train.rs"),
        "compile → train (path through a binding)"
    );
}

#[test]
fn a_cycle_is_found_and_named() {
    let files: HashMap<PathBuf, &str> = HashMap::from([
        (PathBuf::from("x/lib.rs"), "mod a; mod b; pub use b::Thing;"),
        (PathBuf::from("x/a.rs"), "use crate::Thing; pub fn g() {}"),
        (
            PathBuf::from("x/b.rs"),
            "pub struct Thing; fn f() { super::a::g() }",
        ),
    ]);
    let krate = load(Path::new("x/lib.rs"), &|p| {
        files.get(p).map(|s| s.to_string())
    })
    .unwrap();
    let cycles = krate.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let (members, text) = &cycles[0];
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(text.contains("x/a.rs") && text.contains("x/b.rs"), "{text}");
    assert!(
        text.contains("use crate::Thing") || text.contains("super::a::g"),
        "{text}"
    );
}
