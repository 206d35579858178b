//! The functions and arithmetic filters may call, for the evaluator.

use super::eval::{EvalError, Evaluator, Result, no_overload, shown};
use super::program::{Binary, Function};
use super::value::{VALUE_BYTES, Value, content_work};

impl Evaluator<'_> {
    pub(super) fn call(&mut self, function: Function, a: Value) -> Result<Value> {
        let fail = |name: &str, a: &Value| no_overload(name, &[a]);
        let text = |s: &str| EvalError::new(format!("cannot convert \"{}\"", shown(s)));
        // Reading, parsing or copying a string or bytes touches each byte.
        let content = match &a {
            Value::String(s) => s.len(),
            Value::Bytes(b) => b.len(),
            _ => 0,
        };
        if !matches!(function, Function::TypeOf | Function::Dyn) {
            self.step(content_work(content))?;
        }
        match function {
            Function::Size => match &a {
                Value::String(s) => Ok(Value::Int(s.chars().count() as i64)),
                Value::Bytes(b) => Ok(Value::Int(b.len() as i64)),
                Value::List(items) => Ok(Value::Int(items.len() as i64)),
                Value::Map(map) => Ok(Value::Int(map.len() as i64)),
                other => Err(fail("size", other)),
            },
            Function::ToInt => match &a {
                Value::Int(_) => Ok(a),
                Value::UInt(u) => i64::try_from(*u)
                    .map(Value::Int)
                    .map_err(|_| EvalError::new("int() overflow")),
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
                Value::Double(d)
                    if d.is_finite() && *d > i64::MIN as f64 && *d < i64::MAX as f64 =>
                {
                    Ok(Value::Int(*d as i64))
                }
                Value::Double(_) => Err(EvalError::new("int() overflow")),
                Value::String(s) => s.parse().map(Value::Int).map_err(|_| text(s)),
                other => Err(fail("int", other)),
            },
            // int()'s conversions with uint's range: negative values overflow.
            Function::ToUInt => match &a {
                Value::UInt(_) => Ok(a),
                Value::Int(i) => u64::try_from(*i)
                    .map(Value::UInt)
                    .map_err(|_| EvalError::new("uint() overflow")),
                #[allow(
                    clippy::cast_precision_loss,
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss
                )]
                Value::Double(d) if d.is_finite() && *d > -1.0 && *d < u64::MAX as f64 => {
                    Ok(Value::UInt(*d as u64))
                }
                Value::Double(_) => Err(EvalError::new("uint() overflow")),
                Value::String(s) => s.parse().map(Value::UInt).map_err(|_| text(s)),
                other => Err(fail("uint", other)),
            },
            Function::ToDouble => match &a {
                Value::Double(_) => Ok(a),
                #[allow(clippy::cast_precision_loss)]
                Value::Int(i) => Ok(Value::Double(*i as f64)),
                #[allow(clippy::cast_precision_loss)]
                Value::UInt(u) => Ok(Value::Double(*u as f64)),
                Value::String(s) => s.parse().map(Value::Double).map_err(|_| text(s)),
                other => Err(fail("double", other)),
            },
            Function::ToBool => match &a {
                Value::Bool(_) => Ok(a),
                Value::String(s) => match s.as_str() {
                    "true" | "TRUE" | "True" | "t" | "1" => Ok(Value::Bool(true)),
                    "false" | "FALSE" | "False" | "f" | "0" => Ok(Value::Bool(false)),
                    _ => Err(text(s)),
                },
                other => Err(fail("bool", other)),
            },
            Function::ToString => {
                let s = match &a {
                    Value::String(_) => return Ok(a),
                    Value::Bool(b) => b.to_string(),
                    Value::Int(i) => i.to_string(),
                    Value::UInt(u) => u.to_string(),
                    Value::Double(d) => d.to_string(),
                    Value::Bytes(b) => std::str::from_utf8(b)
                        .map_err(|_| EvalError::new("the bytes are not UTF-8"))?
                        .to_owned(),
                    other => return Err(fail("string", other)),
                };
                self.alloc(2 * VALUE_BYTES + s.len() as u64)?;
                Ok(Value::string(s))
            }
            Function::ToBytes => match &a {
                Value::Bytes(_) => Ok(a),
                Value::String(s) => {
                    self.alloc(2 * VALUE_BYTES + s.len() as u64)?;
                    Ok(Value::Bytes(s.as_bytes().into()))
                }
                other => Err(fail("bytes", other)),
            },
            Function::TypeOf => Ok(Value::Type(a.type_name())),
            Function::Dyn => Ok(a),
        }
    }

    pub(super) fn arithmetic(op: Binary, a: &Value, b: &Value) -> Result<Value> {
        use Value::{Double, Int, UInt};
        match (a, b) {
            (Int(x), Int(y)) => integer(op, *x, *y).map(Int),
            (UInt(x), UInt(y)) => integer(op, *x, *y).map(UInt),
            (Double(x), Double(y)) if op != Binary::Modulo => Ok(Double(match op {
                Binary::Subtract => x - y,
                Binary::Multiply => x * y,
                _ => x / y,
            })),
            _ => Err(no_overload(names(op).1, &[a, b])),
        }
    }
}

/// The CEL name and overload symbol of an arithmetic operator other than `+`.
fn names(op: Binary) -> (&'static str, &'static str) {
    match op {
        Binary::Subtract => ("sub", "_-_"),
        Binary::Multiply => ("mul", "_*_"),
        Binary::Divide => ("div", "_/_"),
        _ => ("rem", "_%_"),
    }
}

/// An integer type's checked `-`, `*`, `/` and `%`: `None` where the result overflows.
trait Checked: Sized + Default + PartialEq {
    fn checked(op: Binary, x: Self, y: Self) -> Option<Self>;
}

macro_rules! checked {
    ($($t:ty),*) => {$(
        impl Checked for $t {
            fn checked(op: Binary, x: Self, y: Self) -> Option<Self> {
                match op {
                    Binary::Subtract => x.checked_sub(y),
                    Binary::Multiply => x.checked_mul(y),
                    Binary::Divide => x.checked_div(y),
                    _ => x.checked_rem(y),
                }
            }
        }
    )*};
}
checked!(i64, u64);

/// `op` on two integers of one type: a division or remainder by zero, and an overflow,
/// are errors.
fn integer<T: Checked>(op: Binary, x: T, y: T) -> Result<T> {
    if matches!(op, Binary::Divide | Binary::Modulo) && y == T::default() {
        return Err(EvalError::new(if op == Binary::Divide {
            "Division by zero"
        } else {
            "Remainder by zero"
        }));
    }
    T::checked(op, x, y)
        .ok_or_else(|| EvalError::new(format!("Overflow from binary operator '{}'", names(op).0)))
}
