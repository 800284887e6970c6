//! Einsum equations made explicit: one index letter per axis of every operand (an ellipsis
//! expanded by the operand's rank, right-aligned as numpy broadcasting does) and an explicit
//! output term (the implicit form's output is the ellipsis, then the letters used once, in
//! alphabetical order). Shared by shape inference and the Einsum gradient.

use super::types::Dim;

/// An einsum equation with explicit terms.
#[derive(Clone, Debug, PartialEq)]
pub struct Equation {
    pub inputs: Vec<Vec<char>>,
    pub output: Vec<char>,
}

/// Why an equation could not be made explicit.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EinsumError {
    #[error("malformed einsum equation '{0}'")]
    Malformed(String),
    #[error("einsum equation '{eq}' has {terms} input terms for {operands} operands")]
    Arity {
        eq: String,
        terms: usize,
        operands: usize,
    },
    #[error("the rank of operand {0} (which has an ellipsis) must be known")]
    UnknownRank(usize),
    #[error("einsum equation '{0}' leaves no free letters for its ellipsis")]
    NoFreeLetters(String),
}

/// One term's letters, with the ellipsis position if any.
fn term(t: &str, eq: &str) -> Result<(Vec<char>, Option<usize>), EinsumError> {
    let bad = || EinsumError::Malformed(eq.to_string());
    let mut letters = Vec::new();
    let mut ellipsis = None;
    let mut rest = t;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            if ellipsis.replace(letters.len()).is_some() {
                return Err(bad());
            }
            rest = r;
        } else {
            let c = rest.chars().next().ok_or_else(bad)?;
            if !c.is_ascii_alphabetic() {
                return Err(bad());
            }
            letters.push(c);
            rest = &rest[1..];
        }
    }
    Ok((letters, ellipsis))
}

impl Equation {
    /// Parses `eq` for operands of the given ranks (needed only where a term has an ellipsis).
    pub fn parse(eq: &str, ranks: &[Option<usize>]) -> Result<Equation, EinsumError> {
        let compact: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
        let (lhs, rhs) = match compact.split_once("->") {
            Some((l, r)) => (l, Some(r)),
            None => (compact.as_str(), None),
        };
        let terms: Vec<(Vec<char>, Option<usize>)> = lhs
            .split(',')
            .map(|t| term(t, eq))
            .collect::<Result<_, _>>()?;
        if terms.len() != ranks.len() {
            return Err(EinsumError::Arity {
                eq: eq.to_string(),
                terms: terms.len(),
                operands: ranks.len(),
            });
        }
        // letters the ellipsis dims get: unused ones, the last `k` for an operand with k dims
        let mut widths = Vec::with_capacity(terms.len());
        for (i, (letters, ell)) in terms.iter().enumerate() {
            widths.push(match ell {
                None => 0,
                Some(_) => ranks[i]
                    .ok_or(EinsumError::UnknownRank(i))?
                    .checked_sub(letters.len())
                    .ok_or_else(|| EinsumError::Malformed(eq.to_string()))?,
            });
        }
        let width = widths.iter().copied().max().unwrap_or(0);
        let free: Vec<char> = ('a'..='z')
            .chain('A'..='Z')
            .filter(|c| !compact.contains(*c))
            .take(width)
            .collect();
        if free.len() < width {
            return Err(EinsumError::NoFreeLetters(eq.to_string()));
        }
        let expand = |letters: &[char], ell: Option<usize>, k: usize| -> Vec<char> {
            match ell {
                None => letters.to_vec(),
                Some(p) => letters[..p]
                    .iter()
                    .chain(&free[width - k..])
                    .chain(&letters[p..])
                    .copied()
                    .collect(),
            }
        };
        let inputs: Vec<Vec<char>> = terms
            .iter()
            .zip(&widths)
            .map(|((l, e), &k)| expand(l, *e, k))
            .collect();
        let output = match rhs {
            Some(r) => {
                let (letters, ell) = term(r, eq)?;
                expand(&letters, ell, width)
            }
            None => {
                let mut once: Vec<char> = terms
                    .iter()
                    .flat_map(|(l, _)| l.iter().copied())
                    .filter(|c| {
                        terms
                            .iter()
                            .flat_map(|(l, _)| l)
                            .filter(|d| *d == c)
                            .count()
                            == 1
                    })
                    .collect();
                once.sort_unstable();
                free.iter().copied().chain(once).collect()
            }
        };
        Ok(Equation { inputs, output })
    }

    /// The equation in ONNX's explicit form, e.g. "bij,bjk->bik".
    pub fn text(&self) -> String {
        let ins: Vec<String> = self.inputs.iter().map(|t| t.iter().collect()).collect();
        format!(
            "{}->{}",
            ins.join(","),
            self.output.iter().collect::<String>()
        )
    }

    /// The output shape given the operands' shapes: each letter's size from the operands
    /// (a known size other than 1 wins, since size-1 axes broadcast).
    pub fn output_shape(&self, shapes: &[Option<Vec<Dim>>]) -> Vec<Dim> {
        self.output
            .iter()
            .map(|&c| {
                let mut best = Dim::Unknown;
                for (t, s) in self.inputs.iter().zip(shapes) {
                    let Some(s) = s else { continue };
                    for (&l, d) in t.iter().zip(s) {
                        if l != c {
                            continue;
                        }
                        best = match (&best, d) {
                            (Dim::Unknown, _) | (Dim::Fixed(1), Dim::Fixed(_) | Dim::Sym(_)) => {
                                d.clone()
                            }
                            _ => best,
                        };
                    }
                }
                best
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explicit(eq: &str, ranks: &[usize]) -> String {
        let r: Vec<Option<usize>> = ranks.iter().map(|&r| Some(r)).collect();
        Equation::parse(eq, &r).expect("parses").text()
    }

    #[test]
    fn explicit_forms() {
        assert_eq!(explicit("bij,bjk->bik", &[3, 3]), "bij,bjk->bik");
        assert_eq!(explicit("ij,jk", &[2, 2]), "ij,jk->ik");
        assert_eq!(explicit("ba", &[2]), "ba->ab");
        assert_eq!(explicit("...ij,...jk->...ik", &[4, 3]), "abij,bjk->abik");
        assert_eq!(explicit("i...,i->...", &[3, 1]), "iab,i->ab");
        assert_eq!(explicit("...i,...i", &[2, 2]), "ai,ai->a");
        assert_eq!(explicit(" b n d , d e -> b n e ", &[3, 2]), "bnd,de->bne");
    }

    #[test]
    fn errors() {
        assert!(matches!(
            Equation::parse("ij,jk->ik", &[Some(2)]),
            Err(EinsumError::Arity { .. })
        ));
        assert_eq!(
            Equation::parse("...i->i", &[None]),
            Err(EinsumError::UnknownRank(0))
        );
        assert!(matches!(
            Equation::parse("i.j->i", &[Some(2)]),
            Err(EinsumError::Malformed(_))
        ));
    }

    #[test]
    fn shapes() {
        let e = Equation::parse("bij,jk->bik", &[Some(3), Some(2)]).expect("parses");
        let s = e.output_shape(&[
            Some(vec![Dim::Sym("batch".into()), Dim::Fixed(2), Dim::Fixed(3)]),
            Some(vec![Dim::Fixed(3), Dim::Fixed(5)]),
        ]);
        assert_eq!(
            s,
            vec![Dim::Sym("batch".into()), Dim::Fixed(2), Dim::Fixed(5)]
        );
    }
}
