//! A small boolean expression language over dotted keys, for `sweep.where` (and run queries).
//!
//! `train.batch_size * train.grad_accum <= 512 and not (model.ffn.unit = 'mlp')`

use std::fmt;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Str(String),
    Bool(bool),
    /// A dotted key, with the 1-based column where it starts.
    Key(String, usize),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Or => "or",
            Op::And => "and",
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
        })
    }
}

/// The deepest an expression may nest: parentheses, `not`, `-` and each chained operator add
/// a level. Deeper ones are refused while parsing, before anything recurses over them: the
/// evaluator, the SQL compiler (SQLite allows 1,000 levels) and even dropping the tree recurse
/// once per level.
pub const MAX_DEPTH: usize = 256;

/// A syntax error, at a 1-based character column of the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
    End,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Num(n) => format!("number {n}"),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Ident(i) => format!("`{i}`"),
        Tok::Op(o) => format!("`{o}`"),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::End => "the end of the expression".into(),
    }
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '(' || c == ')' {
            out.push((if c == '(' { Tok::LParen } else { Tok::RParen }, column));
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|&d| d == c)
                .ok_or_else(|| ParseError {
                    column,
                    message: "unterminated string".into(),
                })?;
            out.push((Tok::Str(chars[i + 1..i + 1 + end].iter().collect()), column));
            i += end + 2;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || chars[i] == '_'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().filter(|&&c| c != '_').collect();
            let n = text.parse::<f64>().map_err(|_| ParseError {
                column,
                message: format!("`{text}` is not a number"),
            })?;
            out.push((Tok::Num(n), column));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | '-'))
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let tok = match word.to_ascii_lowercase().as_str() {
                "and" => Tok::Op("and"),
                "or" => Tok::Op("or"),
                "not" => Tok::Op("not"),
                _ => Tok::Ident(word),
            };
            out.push((tok, column));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = ["<=", ">=", "!=", "==", "&&", "||"]
            .into_iter()
            .find(|o| two == *o);
        if let Some(op) = op {
            out.push((Tok::Op(op), column));
            i += 2;
            continue;
        }
        let op = ["<", ">", "=", "+", "-", "*", "/", "!"]
            .into_iter()
            .find(|o| o.starts_with(c));
        match op {
            Some(op) => {
                out.push((Tok::Op(op), column));
                i += 1;
            }
            None => {
                return Err(ParseError {
                    column,
                    message: format!("unexpected character `{c}`"),
                });
            }
        }
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// How deep the parser has recursed into `not`, `-` and parentheses.
    nesting: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    fn column(&self) -> usize {
        self.toks[self.pos].1
    }
    fn eat_op(&mut self, ops: &[&str]) -> Option<&'static str> {
        if let Tok::Op(o) = self.peek()
            && ops.contains(o)
        {
            let o = *o;
            self.pos += 1;
            return Some(o);
        }
        None
    }
    fn error<T>(&self, expected: &str) -> Result<T, ParseError> {
        Err(ParseError {
            column: self.column(),
            message: format!("expected {expected}, found {}", describe(self.peek())),
        })
    }

    fn too_deep(column: usize) -> ParseError {
        ParseError {
            column,
            message: format!(
                "the expression nests deeper than {MAX_DEPTH} levels (parentheses, `not`, `-` \
                 and each chained operator add one)"
            ),
        }
    }

    /// Enters a recursion (`not`, `-`, parentheses), refusing one level too many.
    fn enter(&mut self, column: usize) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_DEPTH {
            return Err(Self::too_deep(column));
        }
        Ok(())
    }

    /// A binary node, refused if chaining made the tree too deep.
    fn binary(&self, op: Op, lhs: Expr, rhs: Expr, column: usize) -> Result<Expr, ParseError> {
        let e = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        if e.depth() > MAX_DEPTH {
            return Err(Self::too_deep(column));
        }
        Ok(e)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.and()?;
        loop {
            let column = self.column();
            if self.eat_op(&["or", "||"]).is_none() {
                return Ok(lhs);
            }
            let rhs = self.and()?;
            lhs = self.binary(Op::Or, lhs, rhs, column)?;
        }
    }
    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.not()?;
        loop {
            let column = self.column();
            if self.eat_op(&["and", "&&"]).is_none() {
                return Ok(lhs);
            }
            let rhs = self.not()?;
            lhs = self.binary(Op::And, lhs, rhs, column)?;
        }
    }
    fn not(&mut self) -> Result<Expr, ParseError> {
        let column = self.column();
        if self.eat_op(&["not", "!"]).is_some() {
            self.enter(column)?;
            let inner = self.not()?;
            self.nesting -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr, ParseError> {
        let lhs = self.sum()?;
        let column = self.column();
        let op = match self.eat_op(&["=", "==", "!=", "<", "<=", ">", ">="]) {
            Some("=" | "==") => Op::Eq,
            Some("!=") => Op::Ne,
            Some("<") => Op::Lt,
            Some("<=") => Op::Le,
            Some(">") => Op::Gt,
            Some(">=") => Op::Ge,
            _ => return Ok(lhs),
        };
        let rhs = self.sum()?;
        self.binary(op, lhs, rhs, column)
    }
    fn sum(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.product()?;
        loop {
            let column = self.column();
            let Some(o) = self.eat_op(&["+", "-"]) else {
                return Ok(lhs);
            };
            let op = if o == "+" { Op::Add } else { Op::Sub };
            let rhs = self.product()?;
            lhs = self.binary(op, lhs, rhs, column)?;
        }
    }
    fn product(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        loop {
            let column = self.column();
            let Some(o) = self.eat_op(&["*", "/"]) else {
                return Ok(lhs);
            };
            let op = if o == "*" { Op::Mul } else { Op::Div };
            let rhs = self.unary()?;
            lhs = self.binary(op, lhs, rhs, column)?;
        }
    }
    fn unary(&mut self) -> Result<Expr, ParseError> {
        let column = self.column();
        if self.eat_op(&["-"]).is_some() {
            self.enter(column)?;
            let inner = self.unary()?;
            self.nesting -= 1;
            return Ok(Expr::Neg(Box::new(inner)));
        }
        self.atom()
    }
    fn atom(&mut self) -> Result<Expr, ParseError> {
        let column = self.column();
        let expr = match self.peek().clone() {
            Tok::Num(n) => Expr::Num(n),
            Tok::Str(s) => Expr::Str(s),
            Tok::Ident(i) if i == "true" || i == "false" => Expr::Bool(i == "true"),
            Tok::Ident(i) => Expr::Key(i, column),
            Tok::LParen => {
                self.enter(column)?;
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != &Tok::RParen {
                    return self.error("`)`");
                }
                self.nesting -= 1;
                inner
            }
            _ => return self.error("a key, a number, a string or `(`"),
        };
        self.pos += 1;
        Ok(expr)
    }
}

impl Expr {
    pub fn parse(src: &str) -> Result<Expr, ParseError> {
        let toks = lex(src)?;
        let mut parser = Parser {
            toks,
            pos: 0,
            nesting: 0,
        };
        let expr = parser.or()?;
        if parser.peek() != &Tok::End {
            return parser.error("an operator or the end of the expression");
        }
        Ok(expr)
    }

    /// Levels of nesting: 1 for a leaf.
    pub fn depth(&self) -> usize {
        match self {
            Expr::Not(e) | Expr::Neg(e) => 1 + e.depth(),
            Expr::Binary(_, a, b) => 1 + a.depth().max(b.depth()),
            _ => 1,
        }
    }

    /// Every key the expression reads, with its column.
    pub fn keys(&self) -> Vec<(&str, usize)> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Key(k, c) = e {
                out.push((k.as_str(), *c));
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match self {
            Expr::Not(e) | Expr::Neg(e) => e.walk(f),
            Expr::Binary(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            _ => {}
        }
    }

    /// Evaluates against a lookup of key values.
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<Val>) -> Result<Val, String> {
        Ok(match self {
            Expr::Num(n) => Val::Num(*n),
            Expr::Str(s) => Val::Str(s.clone()),
            Expr::Bool(b) => Val::Bool(*b),
            Expr::Key(k, _) => lookup(k).ok_or_else(|| format!("`{k}` has no value"))?,
            Expr::Not(e) => Val::Bool(!e.eval(lookup)?.truthy("operand of `not`")?),
            Expr::Neg(e) => Val::Num(-e.eval(lookup)?.num("operand of `-`")?),
            Expr::Binary(op, a, b) => {
                let a = a.eval(lookup)?;
                match op {
                    Op::And => Val::Bool(
                        a.truthy("left of `and`")? && b.eval(lookup)?.truthy("right of `and`")?,
                    ),
                    Op::Or => Val::Bool(
                        a.truthy("left of `or`")? || b.eval(lookup)?.truthy("right of `or`")?,
                    ),
                    _ => {
                        let b = b.eval(lookup)?;
                        binary(*op, a, b)?
                    }
                }
            }
        })
    }
}

fn binary(op: Op, a: Val, b: Val) -> Result<Val, String> {
    use std::cmp::Ordering;
    let arith = |f: fn(f64, f64) -> f64| -> Result<Val, String> {
        Ok(Val::Num(f(
            a.num(&format!("left of `{op}`"))?,
            b.num(&format!("right of `{op}`"))?,
        )))
    };
    let order = || -> Result<Ordering, String> {
        match (&a, &b) {
            (Val::Num(x), Val::Num(y)) => x
                .partial_cmp(y)
                .ok_or_else(|| "cannot order NaN".to_string()),
            (Val::Str(x), Val::Str(y)) => Ok(x.cmp(y)),
            (Val::Bool(x), Val::Bool(y)) => Ok(x.cmp(y)),
            _ => Err(format!("cannot compare {} with {}", a.kind(), b.kind())),
        }
    };
    Ok(match op {
        Op::Add => arith(|x, y| x + y)?,
        Op::Sub => arith(|x, y| x - y)?,
        Op::Mul => arith(|x, y| x * y)?,
        Op::Div => arith(|x, y| x / y)?,
        Op::Eq => Val::Bool(order()? == Ordering::Equal),
        Op::Ne => Val::Bool(order()? != Ordering::Equal),
        Op::Lt => Val::Bool(order()? == Ordering::Less),
        Op::Le => Val::Bool(order()? != Ordering::Greater),
        Op::Gt => Val::Bool(order()? == Ordering::Greater),
        Op::Ge => Val::Bool(order()? != Ordering::Less),
        Op::And | Op::Or => unreachable!("short-circuited by the caller"),
    })
}

/// A value inside an expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Num(f64),
    Str(String),
    Bool(bool),
}

impl Val {
    pub fn from_json(v: &serde_json::Value) -> Option<Val> {
        match v {
            serde_json::Value::Number(n) => n.as_f64().map(Val::Num),
            serde_json::Value::String(s) => Some(Val::Str(s.clone())),
            serde_json::Value::Bool(b) => Some(Val::Bool(*b)),
            _ => None,
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Val::Num(_) => "a number",
            Val::Str(_) => "a string",
            Val::Bool(_) => "a boolean",
        }
    }
    fn num(&self, what: &str) -> Result<f64, String> {
        match self {
            Val::Num(n) => Ok(*n),
            other => Err(format!(
                "the {what} must be a number, found {}",
                other.kind()
            )),
        }
    }
    pub fn truthy(&self, what: &str) -> Result<bool, String> {
        match self {
            Val::Bool(b) => Ok(*b),
            other => Err(format!(
                "the {what} must be true or false, found {}",
                other.kind()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(src: &str) -> Result<Val, String> {
        let e = Expr::parse(src).map_err(|e| e.to_string())?;
        e.eval(&|k| match k {
            "train.batch_size" => Some(Val::Num(32.0)),
            "train.grad_accum" => Some(Val::Num(4.0)),
            "model.ffn.unit" => Some(Val::Str("glu".into())),
            _ => None,
        })
    }

    #[test]
    fn evaluates_with_precedence() {
        assert_eq!(
            eval("train.batch_size * train.grad_accum <= 128"),
            Ok(Val::Bool(true))
        );
        assert_eq!(
            eval("train.batch_size * train.grad_accum < 128"),
            Ok(Val::Bool(false))
        );
        assert_eq!(
            eval("1 + 2 * 3 = 7 and not (model.ffn.unit = 'mlp')"),
            Ok(Val::Bool(true))
        );
        assert_eq!(eval("false or 1e-3 < 2e-3 && -1 < 0"), Ok(Val::Bool(true)));
    }

    #[test]
    fn reports_columns() {
        assert_eq!(Expr::parse("a <= ").unwrap_err().column, 6);
        assert_eq!(
            Expr::parse("a = 'x").unwrap_err(),
            ParseError {
                column: 5,
                message: "unterminated string".into()
            }
        );
        assert_eq!(
            Expr::parse("(a = 1").unwrap_err().message,
            "expected `)`, found the end of the expression"
        );
        assert_eq!(Expr::parse("a # 1").unwrap_err().column, 3);
    }

    #[test]
    fn lists_keys_and_rejects_type_errors() {
        let e = Expr::parse("train.lr * 2 > model.dim").unwrap();
        assert_eq!(e.keys(), vec![("train.lr", 1), ("model.dim", 16)]);
        assert!(
            eval("model.ffn.unit + 1 > 0")
                .unwrap_err()
                .contains("must be a number")
        );
        assert!(eval("train.batch_size").is_ok());
    }

    #[test]
    fn refuses_nesting_deeper_than_the_limit_without_recursing_into_it() {
        // Each of these would overflow the stack (or reach SQLite's depth limit) if parsed.
        let nots = format!("{}x = 1", "not ".repeat(100_000));
        let e = Expr::parse(&nots).unwrap_err();
        assert_eq!(e.column, 4 * MAX_DEPTH + 1, "{e}");
        assert!(
            e.message
                .starts_with("the expression nests deeper than 256 levels")
        );
        let parens = format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(Expr::parse(&parens).unwrap_err().column, MAX_DEPTH + 1);
        let negs = format!("{}1 > 0", "-".repeat(100_000));
        assert!(Expr::parse(&negs).is_err());
        let chain = vec!["x = 1"; 100_000].join(" or ");
        assert!(
            Expr::parse(&chain)
                .unwrap_err()
                .message
                .contains("nests deeper")
        );
        // Realistic expressions stay well inside the limit.
        let runs: Vec<String> = (1..=200).map(|i| format!("run = {i}")).collect();
        assert!(Expr::parse(&runs.join(" or ")).is_ok());
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert!(Expr::parse(&deep).is_ok());
    }
}
