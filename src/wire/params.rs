//! Bind parameters: PostgreSQL text or binary values to DataFusion scalars, by the parameter's
//! type (the client's OID when it sent one, else the type the planner inferred).

use std::sync::Arc;

use bytes::Buf;
use datafusion::arrow::datatypes::{DataType, IntervalMonthDayNano};
use datafusion::common::ScalarValue;
use pgwire::api::Type;

use crate::error::{Error, Result, SqlState};
use crate::pg::types::UTC;

const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The Arrow type a parameter of PostgreSQL type `t` is decoded to.
pub fn arrow_type(t: &Type) -> Option<DataType> {
    use datafusion::arrow::datatypes::{IntervalUnit, TimeUnit};
    Some(match *t {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::OID => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC => DataType::Decimal128(38, 10),
        Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::JSON
        | Type::JSONB
        | Type::UUID
        | Type::CHAR => DataType::Utf8,
        Type::BYTEA => DataType::Binary,
        Type::DATE => DataType::Date32,
        Type::TIME => DataType::Time64(TimeUnit::Microsecond),
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        Type::INTERVAL => DataType::Interval(IntervalUnit::MonthDayNano),
        _ => return None,
    })
}

/// Decode one parameter. `None` bytes is SQL NULL.
pub fn decode(bytes: Option<&[u8]>, t: &Type, binary: bool) -> Result<ScalarValue> {
    let Some(b) = bytes else {
        return Ok(match arrow_type(t) {
            Some(dt) => ScalarValue::try_from(&dt).unwrap_or(ScalarValue::Null),
            None => ScalarValue::Null,
        });
    };
    if binary {
        decode_binary(b, t)
    } else {
        decode_text(b, t)
    }
}

fn bad(t: &Type, what: &str) -> Error {
    Error::data(
        SqlState::InvalidBinaryRepresentation,
        format!(
            "incorrect binary data format in bind parameter of type {}: {what}",
            t.name()
        ),
    )
}

fn decode_text(b: &[u8], t: &Type) -> Result<ScalarValue> {
    let s = std::str::from_utf8(b).map_err(|_| {
        Error::data(
            SqlState::CharacterNotInRepertoire,
            "invalid byte sequence for encoding \"UTF8\"",
        )
    })?;
    if let Some(elem) = array_element(t) {
        let items = parse_text_array(s)?;
        let values = items
            .into_iter()
            .map(|i| decode(i.as_deref().map(str::as_bytes), &elem, false))
            .collect::<Result<Vec<_>>>()?;
        let dt = arrow_type(&elem).unwrap_or(DataType::Utf8);
        return Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &values, &dt,
        )));
    }
    let text = ScalarValue::Utf8(Some(s.to_string()));
    match *t {
        Type::BYTEA => {
            let hex = s.strip_prefix("\\x").ok_or_else(|| {
                Error::data(
                    SqlState::InvalidTextRepresentation,
                    "invalid input syntax for type bytea",
                )
            })?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| {
                    Error::data(
                        SqlState::InvalidTextRepresentation,
                        "invalid hexadecimal digit in bytea",
                    )
                })?;
            Ok(ScalarValue::Binary(Some(bytes)))
        }
        Type::BOOL => match s.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "y" | "on" | "1" => Ok(ScalarValue::Boolean(Some(true))),
            "f" | "false" | "no" | "n" | "off" | "0" => Ok(ScalarValue::Boolean(Some(false))),
            _ => Err(Error::data(
                SqlState::InvalidTextRepresentation,
                format!("invalid input syntax for type boolean: \"{s}\""),
            )),
        },
        Type::NUMERIC => {
            let scale = s
                .split_once('.')
                .map(|(_, f)| f.trim().len())
                .unwrap_or(0)
                .min(38) as i8;
            Ok(text
                .cast_to(&DataType::Decimal128(38, scale))
                .map_err(|_| {
                    Error::data(
                        SqlState::InvalidTextRepresentation,
                        format!("invalid input syntax for type numeric: \"{s}\""),
                    )
                })?)
        }
        _ => match arrow_type(t) {
            Some(DataType::Utf8) | None => Ok(text),
            Some(dt) => text.cast_to(&dt).map_err(|_| {
                Error::data(
                    SqlState::InvalidTextRepresentation,
                    format!("invalid input syntax for type {}: \"{s}\"", t.name()),
                )
            }),
        },
    }
}

fn decode_binary(mut b: &[u8], t: &Type) -> Result<ScalarValue> {
    let need = |n: usize, b: &[u8]| {
        if b.len() == n {
            Ok(())
        } else {
            Err(bad(t, "wrong length"))
        }
    };
    let out_of_range = || {
        Error::data(
            SqlState::DatetimeFieldOverflow,
            format!("{} out of range", t.name()),
        )
    };
    if let Some(elem) = array_element(t) {
        return decode_binary_array(b, &elem);
    }
    Ok(match *t {
        Type::BOOL => {
            need(1, b)?;
            ScalarValue::Boolean(Some(b[0] != 0))
        }
        Type::INT2 => {
            need(2, b)?;
            ScalarValue::Int16(Some(b.get_i16()))
        }
        Type::INT4 => {
            need(4, b)?;
            ScalarValue::Int32(Some(b.get_i32()))
        }
        Type::OID => {
            need(4, b)?;
            ScalarValue::Int64(Some(b.get_u32() as i64))
        }
        Type::INT8 => {
            need(8, b)?;
            ScalarValue::Int64(Some(b.get_i64()))
        }
        Type::FLOAT4 => {
            need(4, b)?;
            ScalarValue::Float32(Some(b.get_f32()))
        }
        Type::FLOAT8 => {
            need(8, b)?;
            ScalarValue::Float64(Some(b.get_f64()))
        }
        Type::DATE => {
            need(4, b)?;
            ScalarValue::Date32(Some(
                b.get_i32()
                    .checked_add(PG_EPOCH_DAYS)
                    .ok_or_else(out_of_range)?,
            ))
        }
        Type::TIME => {
            need(8, b)?;
            ScalarValue::Time64Microsecond(Some(b.get_i64()))
        }
        Type::TIMESTAMP => {
            need(8, b)?;
            ScalarValue::TimestampMicrosecond(
                Some(
                    b.get_i64()
                        .checked_add(PG_EPOCH_MICROS)
                        .ok_or_else(out_of_range)?,
                ),
                None,
            )
        }
        Type::TIMESTAMPTZ => {
            need(8, b)?;
            ScalarValue::TimestampMicrosecond(
                Some(
                    b.get_i64()
                        .checked_add(PG_EPOCH_MICROS)
                        .ok_or_else(out_of_range)?,
                ),
                Some(Arc::from(UTC)),
            )
        }
        Type::INTERVAL => {
            need(16, b)?;
            let micros = b.get_i64();
            let days = b.get_i32();
            let months = b.get_i32();
            ScalarValue::IntervalMonthDayNano(Some(IntervalMonthDayNano::new(
                months,
                days,
                micros.checked_mul(1000).ok_or_else(out_of_range)?,
            )))
        }
        Type::UUID => {
            need(16, b)?;
            let u = uuid::Uuid::from_slice(b).map_err(|_| bad(t, "uuid"))?;
            ScalarValue::Utf8(Some(u.hyphenated().to_string()))
        }
        Type::JSONB => {
            if b.first() != Some(&1) {
                return Err(bad(t, "unsupported jsonb version"));
            }
            ScalarValue::Utf8(Some(utf8(&b[1..])?))
        }
        Type::BYTEA => ScalarValue::Binary(Some(b.to_vec())),
        Type::NUMERIC => decode_numeric(b)?,
        _ => ScalarValue::Utf8(Some(utf8(b)?)),
    })
}

fn utf8(b: &[u8]) -> Result<String> {
    String::from_utf8(b.to_vec()).map_err(|_| {
        Error::data(
            SqlState::CharacterNotInRepertoire,
            "invalid byte sequence for encoding \"UTF8\"",
        )
    })
}

fn decode_numeric(mut b: &[u8]) -> Result<ScalarValue> {
    let t = Type::NUMERIC;
    if b.len() < 8 {
        return Err(bad(&t, "too short"));
    }
    let ndigits = usize::try_from(b.get_i16()).map_err(|_| bad(&t, "negative digit count"))?;
    let weight = b.get_i16() as i32;
    let sign = b.get_u16();
    let dscale = b.get_i16().clamp(0, 38) as i32;
    if sign == 0xC000 {
        return Err(Error::data(
            SqlState::InvalidBinaryRepresentation,
            "NaN is not a valid numeric parameter",
        ));
    }
    if b.len() != ndigits * 2 {
        return Err(bad(&t, "wrong length"));
    }
    // value = sum(d_i * 10000^(weight - i)); scaled by 10^dscale
    let mut v: i128 = 0;
    let overflow = || {
        Error::data(
            SqlState::NumericValueOutOfRange,
            "numeric parameter out of range",
        )
    };
    for i in 0..ndigits {
        let d = b.get_i16() as i128;
        v = v
            .checked_mul(10_000)
            .and_then(|x| x.checked_add(d))
            .ok_or_else(overflow)?;
        let _ = i;
    }
    // v currently has (ndigits - weight - 1) base-10000 fractional digits
    let frac_digits = (ndigits as i32 - weight - 1) * 4;
    let shift = dscale - frac_digits;
    if shift >= 0 {
        v = 10i128
            .checked_pow(shift as u32)
            .and_then(|p| v.checked_mul(p))
            .ok_or_else(overflow)?;
    } else {
        // More fractional digits than the scale keeps: dropped (all of them past 10^38).
        v = 10i128
            .checked_pow(shift.unsigned_abs())
            .map_or(0, |p| v / p);
    }
    if sign == 0x4000 {
        v = -v;
    }
    Ok(ScalarValue::Decimal128(Some(v), 38, dscale as i8))
}

fn array_element(t: &Type) -> Option<Type> {
    Some(match *t {
        Type::BOOL_ARRAY => Type::BOOL,
        Type::INT2_ARRAY => Type::INT2,
        Type::INT4_ARRAY => Type::INT4,
        Type::INT8_ARRAY => Type::INT8,
        Type::OID_ARRAY => Type::OID,
        Type::FLOAT4_ARRAY => Type::FLOAT4,
        Type::FLOAT8_ARRAY => Type::FLOAT8,
        Type::NUMERIC_ARRAY => Type::NUMERIC,
        Type::TEXT_ARRAY => Type::TEXT,
        Type::VARCHAR_ARRAY => Type::VARCHAR,
        Type::BPCHAR_ARRAY => Type::BPCHAR,
        Type::BYTEA_ARRAY => Type::BYTEA,
        Type::DATE_ARRAY => Type::DATE,
        Type::TIME_ARRAY => Type::TIME,
        Type::TIMESTAMP_ARRAY => Type::TIMESTAMP,
        Type::TIMESTAMPTZ_ARRAY => Type::TIMESTAMPTZ,
        Type::INTERVAL_ARRAY => Type::INTERVAL,
        Type::UUID_ARRAY => Type::UUID,
        Type::JSON_ARRAY => Type::JSON,
        Type::JSONB_ARRAY => Type::JSONB,
        _ => return None,
    })
}

fn decode_binary_array(mut b: &[u8], elem: &Type) -> Result<ScalarValue> {
    let t = Type::TEXT_ARRAY;
    if b.len() < 12 {
        return Err(bad(&t, "array header too short"));
    }
    let ndim = b.get_i32();
    let _has_nulls = b.get_i32();
    let _oid = b.get_u32();
    let dt = arrow_type(elem).unwrap_or(DataType::Utf8);
    if ndim == 0 {
        return Ok(ScalarValue::List(ScalarValue::new_list_nullable(&[], &dt)));
    }
    if ndim != 1 {
        return Err(Error::unsupported(
            "multi-dimensional array parameters are not supported",
        ));
    }
    if b.len() < 8 {
        return Err(bad(&t, "array dimension too short"));
    }
    let n = b.get_i32().max(0) as usize;
    let _lower = b.get_i32();
    // Each element takes at least its 4-byte length: no more than that many are reserved,
    // whatever count the client claims.
    let mut values = Vec::with_capacity(n.min(b.len() / 4));
    for _ in 0..n {
        if b.len() < 4 {
            return Err(bad(&t, "array element too short"));
        }
        let len = b.get_i32();
        if len < 0 {
            values.push(decode(None, elem, true)?);
        } else {
            let len = len as usize;
            if b.len() < len {
                return Err(bad(&t, "array element too short"));
            }
            values.push(decode(Some(&b[..len]), elem, true)?);
            b.advance(len);
        }
    }
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &values, &dt,
    )))
}

/// `{a,"b c",NULL}` into its elements (one dimension).
fn parse_text_array(s: &str) -> Result<Vec<Option<String>>> {
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .ok_or_else(|| {
            Error::data(
                SqlState::InvalidTextRepresentation,
                format!("malformed array literal: \"{s}\""),
            )
        })?;
    let mut out = Vec::new();
    if inner.trim().is_empty() {
        return Ok(out);
    }
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut item = String::new();
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            item.push(n);
                        }
                    }
                    '"' => break,
                    c => item.push(c),
                }
            }
            while chars.peek().is_some_and(|c| *c != ',') {
                chars.next();
            }
            out.push(Some(item));
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            let item = item.trim().to_string();
            out.push(if item.eq_ignore_ascii_case("null") {
                None
            } else {
                Some(item)
            });
        }
        match chars.next() {
            Some(',') => continue,
            None => break,
            Some(_) => {
                return Err(Error::data(
                    SqlState::InvalidTextRepresentation,
                    format!("malformed array literal: \"{s}\""),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_arrays_parse() -> Result<()> {
        assert_eq!(
            parse_text_array("{1,\"a b\",NULL}")?,
            vec![Some("1".to_string()), Some("a b".to_string()), None]
        );
        assert!(parse_text_array("{}")?.is_empty());
        Ok(())
    }

    #[test]
    fn binary_numeric_decodes() -> Result<()> {
        let bytes = [0u8, 2, 0, 0, 0, 0, 0, 2, 0, 123, 0x11, 0x94];
        assert_eq!(
            decode_numeric(&bytes)?,
            ScalarValue::Decimal128(Some(12345), 38, 2)
        );
        Ok(())
    }

    #[test]
    fn scalars_decode() -> Result<()> {
        assert_eq!(
            decode(Some(b"42"), &Type::INT4, false)?,
            ScalarValue::Int32(Some(42))
        );
        assert_eq!(
            decode(Some(&42i64.to_be_bytes()), &Type::INT8, true)?,
            ScalarValue::Int64(Some(42))
        );
        assert_eq!(
            decode(Some(b"t"), &Type::BOOL, false)?,
            ScalarValue::Boolean(Some(true))
        );
        assert!(decode(Some(b"x"), &Type::INT4, false).is_err());
        Ok(())
    }
}
