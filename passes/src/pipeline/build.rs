//! Small graph-building helpers the training stages share.

use crate::ir::{Builder, DType, Graph, Tensor, Type, ValueId};

/// A name prefix no value of `g` (or its subgraphs' locals, which live in their own scopes)
/// starts with, so values created under it never clash with captured names.
pub fn reserved_prefix(g: &Graph, base: &str) -> String {
    let taken = |p: &str| g.value_ids().any(|v| g.name(v).starts_with(p));
    if !taken(base) {
        return base.to_string();
    }
    (1..)
        .map(|i| format!("{}{i}/", base.trim_end_matches('/')))
        .find(|p| !taken(p))
        .unwrap_or_default()
}

/// `x` cast to `dt` when it is not of that type already.
pub(crate) fn cast_to(b: &mut Builder, x: ValueId, dt: DType) -> ValueId {
    if b.dtype(x) == dt {
        x
    } else {
        b.cast(x, dt)
    }
}

/// Adds a carried state input `name` with initial value `init`.
pub(crate) fn state_input(g: &mut Graph, name: &str, init: Tensor) -> ValueId {
    let ty = Type::Tensor(init.ty());
    let v = g.add_input(name, ty);
    g.value_mut(v).init = Some(init);
    v
}
