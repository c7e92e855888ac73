//! Symbolic dimensions: integer polynomials over size symbols such as `B` and
//! `T`, kept in a canonical form so that equal sizes compare equal.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A product of symbols, sorted, with repetition (`B*B*T`).
type Monomial = Vec<String>;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Dim {
    terms: BTreeMap<Monomial, i64>,
}

impl Dim {
    pub fn lit(n: i64) -> Dim {
        let mut terms = BTreeMap::new();
        if n != 0 {
            terms.insert(Vec::new(), n);
        }
        Dim { terms }
    }

    pub fn sym(name: &str) -> Dim {
        Dim {
            terms: BTreeMap::from([(vec![name.to_string()], 1)]),
        }
    }

    /// The value if no symbol occurs.
    pub fn as_const(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    pub fn is_const(&self, n: i64) -> bool {
        self.as_const() == Some(n)
    }

    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.terms.keys().flat_map(|m| m.iter().map(String::as_str))
    }

    pub fn add(&self, other: &Dim) -> Dim {
        let mut terms = self.terms.clone();
        for (m, c) in &other.terms {
            *terms.entry(m.clone()).or_insert(0) += c;
        }
        terms.retain(|_, c| *c != 0);
        Dim { terms }
    }

    pub fn neg(&self) -> Dim {
        Dim {
            terms: self.terms.iter().map(|(m, c)| (m.clone(), -c)).collect(),
        }
    }

    pub fn sub(&self, other: &Dim) -> Dim {
        self.add(&other.neg())
    }

    pub fn mul(&self, other: &Dim) -> Dim {
        let mut terms = BTreeMap::new();
        for (ma, ca) in &self.terms {
            for (mb, cb) in &other.terms {
                let mut m: Monomial = ma.iter().chain(mb).cloned().collect();
                m.sort();
                *terms.entry(m).or_insert(0) += ca * cb;
            }
        }
        terms.retain(|_, c| *c != 0);
        Dim { terms }
    }

    /// Division that is exact for every value of the symbols, or `None`.
    /// Handles a constant divisor and a divisor of a single term.
    pub fn div_exact(&self, divisor: &Dim) -> Option<Dim> {
        if divisor.terms.len() != 1 {
            return if divisor == self { Some(Dim::lit(1)) } else { None };
        }
        let (dm, dc) = divisor.terms.iter().next()?;
        let mut terms = BTreeMap::new();
        for (m, c) in &self.terms {
            if c % dc != 0 {
                return None;
            }
            let mut rest = m.clone();
            for s in dm {
                let pos = rest.iter().position(|r| r == s)?;
                rest.remove(pos);
            }
            terms.insert(rest, c / dc);
        }
        Some(Dim { terms })
    }

    /// Floor division by a positive constant: exact on polynomials whose
    /// coefficients all divide, floored on constants.
    pub fn floor_div(&self, k: i64) -> Option<Dim> {
        if k <= 0 {
            return None;
        }
        if let Some(n) = self.as_const() {
            return Some(Dim::lit(n.div_euclid(k)));
        }
        self.div_exact(&Dim::lit(k))
    }

    /// The value under a binding of every symbol; `Err` names the first unbound one.
    pub fn eval(&self, bindings: &HashMap<String, i64>) -> Result<i64, String> {
        let mut total = 0i64;
        for (m, c) in &self.terms {
            let mut v = *c;
            for s in m {
                v *= *bindings.get(s).ok_or_else(|| s.clone())?;
            }
            total += v;
        }
        Ok(total)
    }

    /// Replaces bound symbols by their values, leaving others symbolic.
    pub fn bind(&self, bindings: &HashMap<String, i64>) -> Dim {
        let mut out = Dim::lit(0);
        for (m, c) in &self.terms {
            let mut term = Dim::lit(*c);
            for s in m {
                term = term.mul(&bindings.get(s).map_or_else(|| Dim::sym(s), |&v| Dim::lit(v)));
            }
            out = out.add(&term);
        }
        out
    }
}

impl From<i64> for Dim {
    fn from(n: i64) -> Dim {
        Dim::lit(n)
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Dim {
        Dim::lit(n as i64)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        // Symbolic terms first (`B*128 + 1`), the way people write sizes.
        let mut ordered: Vec<_> = self.terms.iter().collect();
        ordered.sort_by_key(|(m, _)| (m.is_empty(), (*m).clone()));
        for (i, (m, &c)) in ordered.iter().enumerate() {
            let (sign, c) = if c < 0 { ("-", -c) } else { ("+", c) };
            match (i, sign) {
                (0, "-") => f.write_str("-")?,
                (0, _) => {}
                (_, s) => write!(f, " {s} ")?,
            }
            let mut parts: Vec<String> = m.to_vec();
            if c != 1 || parts.is_empty() {
                parts.push(c.to_string());
            }
            f.write_str(&parts.join("*"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Formats a shape as `[B, 3, 32, 32]`.
pub fn fmt_shape(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape.iter().map(Dim::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// The product of a shape's dims.
pub fn numel(shape: &[Dim]) -> Dim {
    shape.iter().fold(Dim::lit(1), |acc, d| acc.mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_is_canonical() {
        let b = Dim::sym("B");
        let flat = b.mul(&Dim::lit(32)).mul(&Dim::lit(16)).mul(&Dim::lit(16));
        assert_eq!(flat.to_string(), "B*8192");
        assert_eq!(flat.div_exact(&Dim::lit(8192)), Some(b.clone()));
        assert_eq!(flat.div_exact(&b), Some(Dim::lit(8192)));
        assert_eq!(b.add(&Dim::lit(1)).sub(&Dim::lit(1)), b);
        assert_eq!(b.sub(&Dim::lit(2)).to_string(), "B - 2");
        assert_eq!(Dim::lit(7).floor_div(2), Some(Dim::lit(3)));
        assert_eq!(b.floor_div(2), None);
    }

    #[test]
    fn evaluation_reports_unbound_symbols() {
        let d = Dim::sym("B").mul(&Dim::sym("T"));
        let mut env = HashMap::from([("B".to_string(), 4)]);
        assert_eq!(d.eval(&env), Err("T".to_string()));
        env.insert("T".into(), 5);
        assert_eq!(d.eval(&env), Ok(20));
        assert_eq!(d.bind(&HashMap::from([("B".to_string(), 2)])).to_string(), "T*2");
    }
}
