//! Arrow columns to PostgreSQL values on the wire: type OIDs, and text and binary encodings
//! written straight into DataRow buffers (the text forms come from `planner::pg_text`).
//!
//! Written by hand on purpose: pgwire's per-value `ToSql` path boxes and dispatches per field
//! (too slow to stream millions of rows), and `arrow-pg` is built against an older pgwire whose
//! types must not cross into ours. Each batch is first cast to a small canonical set of Arrow
//! types, then encoded column by column with one typed match per column.

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Decimal128Array};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, DurationMicrosecondType, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, IntervalMonthDayNanoType, Time64MicrosecondType, TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::Type;
use pgwire::api::results::FieldFormat;
use pgwire::messages::data::DataRow;

use crate::error::{Error, Result};
pub use crate::planner::pg_text::{TextOptions, canonical};
use crate::planner::pg_text::{canonical_column, write_text};

/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

pub use crate::planner::types::{pg_type, pg_type_of};

/// Cast a batch's columns to their canonical types.
pub fn canonicalize(batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    batch.columns().iter().map(canonical_column).collect()
}

/// Encode every row of a batch as DataRow messages. `types` are the PostgreSQL types announced
/// in the RowDescription (they pick uuid's and jsonb's binary forms for text columns).
pub fn encode_batch(
    batch: &RecordBatch,
    formats: &[FieldFormat],
    types: &[Type],
    opts: &TextOptions,
) -> Result<Vec<DataRow>> {
    let columns = canonicalize(batch)?;
    let ncols = columns.len();
    let mut rows = Vec::with_capacity(batch.num_rows());
    // One buffer for the whole batch, each row split off it (no allocation per row); sized
    // from the columns' Arrow buffers, a close guess of their text and binary forms (at most
    // 4 MiB: a slice reports the buffers of the whole array; the buffer grows as needed).
    let guess: usize = columns.iter().map(|c| c.get_buffer_memory_size()).sum();
    let guess = guess.saturating_add(batch.num_rows() * 4 * (ncols + 1));
    let mut buf = BytesMut::with_capacity(guess.min(4 << 20));
    for row in 0..batch.num_rows() {
        for (i, col) in columns.iter().enumerate() {
            let binary = matches!(formats.get(i), Some(FieldFormat::Binary));
            if binary && col.data_type() == &DataType::Utf8 && !col.is_null(row) {
                match types.get(i) {
                    Some(&Type::UUID) => {
                        write_uuid(&mut buf, col.as_string::<i32>().value(row))?;
                        continue;
                    }
                    Some(&Type::JSONB) => {
                        let v = col.as_string::<i32>().value(row);
                        buf.put_i32(v.len() as i32 + 1);
                        buf.put_u8(1);
                        buf.put_slice(v.as_bytes());
                        continue;
                    }
                    _ => {}
                }
            }
            if !col.is_null(row) && write_catalog_value(&mut buf, col, row, binary, types.get(i))? {
                continue;
            }
            write_field(&mut buf, col, row, binary, opts)?;
        }
        rows.push(DataRow::new(buf.split(), ncols as i16));
    }
    Ok(rows)
}

/// The catalog types whose wire form is not their Arrow column's (planner::pg_static): a
/// `regproc` is shown as the function's name, `int2vector`/`oidvector` as space-separated
/// numbers, an `xid` is 4 bytes in binary, and a binary array names its announced element type.
/// Answers whether it wrote the value.
fn write_catalog_value(
    buf: &mut BytesMut,
    col: &ArrayRef,
    row: usize,
    binary: bool,
    ty: Option<&Type>,
) -> Result<bool> {
    let Some(ty) = ty else { return Ok(false) };
    let with_length = |buf: &mut BytesMut, bytes: &[u8]| {
        buf.put_i32(bytes.len() as i32);
        buf.put_slice(bytes);
    };
    match (ty, col.data_type(), binary) {
        (&Type::REGPROC, DataType::Int32, false) => {
            let oid = col.as_primitive::<Int32Type>().value(row);
            let name = crate::planner::pg_static::proc_name(oid)
                .map(str::to_string)
                .unwrap_or_else(|| oid.to_string());
            with_length(buf, name.as_bytes());
        }
        (&Type::XID, DataType::Int64, true) => {
            buf.put_i32(4);
            buf.put_u32(col.as_primitive::<Int64Type>().value(row) as u32);
        }
        (&Type::INT2_VECTOR | &Type::OID_VECTOR, DataType::List(_), false) => {
            let values = col.as_list::<i32>().value(row);
            let values = datafusion::arrow::compute::cast(&values, &DataType::Int64)?;
            let values = values.as_primitive::<Int64Type>();
            let text = values
                .iter()
                .map(|v| v.map(|v| v.to_string()).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" ");
            with_length(buf, text.as_bytes());
        }
        (t, DataType::List(_), true) => {
            let postgres_types::Kind::Array(elem) = t.kind() else {
                return Ok(false);
            };
            let at = buf.len();
            buf.put_i32(0);
            write_binary_array(buf, col, row, elem.oid())?;
            let len = (buf.len() - at - 4) as i32;
            buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Write one value with its 4-byte length prefix (-1 for NULL).
fn write_field(
    buf: &mut BytesMut,
    col: &ArrayRef,
    row: usize,
    binary: bool,
    opts: &TextOptions,
) -> Result<()> {
    if col.is_null(row) || matches!(col.data_type(), DataType::Null) {
        buf.put_i32(-1);
        return Ok(());
    }
    let at = buf.len();
    buf.put_i32(0);
    if binary {
        write_binary(buf, col, row)?;
    } else {
        write_text(buf, col, row, opts)?;
    }
    let len = (buf.len() - at - 4) as i32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn write_binary(buf: &mut BytesMut, col: &ArrayRef, row: usize) -> Result<()> {
    match col.data_type() {
        DataType::Boolean => {
            let v = col.as_boolean_opt().is_some_and(|a| a.value(row));
            buf.put_u8(v as u8);
        }
        DataType::Int16 => buf.put_i16(col.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => buf.put_i32(col.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => buf.put_i64(col.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => buf.put_f32(col.as_primitive::<Float32Type>().value(row)),
        DataType::Float64 => buf.put_f64(col.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, s) => {
            let v = col
                .as_any()
                .downcast_ref::<Decimal128Array>()
                .map(|a| a.value(row))
                .unwrap_or(0);
            numeric_binary(buf, v, *s);
        }
        DataType::Utf8 => buf.put_slice(col.as_string::<i32>().value(row).as_bytes()),
        DataType::Binary => {
            if let Some(a) = col.as_any().downcast_ref::<BinaryArray>() {
                buf.put_slice(a.value(row));
            }
        }
        DataType::Date32 => {
            buf.put_i32(col.as_primitive::<Date32Type>().value(row) - PG_EPOCH_DAYS)
        }
        DataType::Time64(_) => buf.put_i64(col.as_primitive::<Time64MicrosecondType>().value(row)),
        DataType::Timestamp(..) => {
            buf.put_i64(col.as_primitive::<TimestampMicrosecondType>().value(row) - PG_EPOCH_MICROS)
        }
        DataType::Interval(_) => {
            let v = col.as_primitive::<IntervalMonthDayNanoType>().value(row);
            buf.put_i64(v.nanoseconds / 1000);
            buf.put_i32(v.days);
            buf.put_i32(v.months);
        }
        DataType::Duration(_) => {
            buf.put_i64(col.as_primitive::<DurationMicrosecondType>().value(row));
            buf.put_i32(0);
            buf.put_i32(0);
        }
        DataType::List(f) => write_binary_array(buf, col, row, pg_type(f.data_type()).oid())?,
        other => return Err(Error::internal(format!("no binary encoding for {other}"))),
    }
    Ok(())
}

/// A one-dimensional array in PostgreSQL's binary form, of element type `elem`.
fn write_binary_array(buf: &mut BytesMut, col: &ArrayRef, row: usize, elem: u32) -> Result<()> {
    let values = col.as_list::<i32>().value(row);
    buf.put_i32(1); // dimensions
    buf.put_i32(values.null_count().min(1) as i32); // has nulls
    buf.put_u32(elem);
    buf.put_i32(values.len() as i32);
    buf.put_i32(1); // lower bound
    for i in 0..values.len() {
        write_field(buf, &values, i, true, &TextOptions::default())?;
    }
    Ok(())
}

fn write_uuid(buf: &mut BytesMut, s: &str) -> Result<()> {
    let u = uuid::Uuid::parse_str(s).map_err(|_| {
        Error::data(
            "22P02",
            format!("invalid input syntax for type uuid: \"{s}\""),
        )
    })?;
    buf.put_i32(16);
    buf.put_slice(u.as_bytes());
    Ok(())
}

/// PostgreSQL's binary NUMERIC: base-10000 digits with weight, sign and display scale.
fn numeric_binary(buf: &mut BytesMut, v: i128, scale: i8) {
    let dscale = scale.max(0) as i16;
    let neg = v < 0;
    let mut mag = v.unsigned_abs();
    // Scale the value so that the decimal point falls on a base-10000 digit boundary.
    let pad = (4 - (dscale as usize % 4)) % 4;
    let mut frac_groups = (dscale as usize).div_ceil(4) as i16;
    let mut wide = mag.checked_mul(10u128.pow(pad as u32));
    if wide.is_none() {
        // Cannot overflow for precision <= 38 scaled by at most 10^3, but stay safe.
        frac_groups = 0;
        mag /= 10u128.pow(dscale as u32);
        wide = Some(mag);
    }
    let mut m = wide.unwrap_or(0);
    let mut groups: Vec<i16> = Vec::new();
    while m > 0 {
        groups.push((m % 10_000) as i16);
        m /= 10_000;
    }
    groups.reverse();
    let weight = groups.len() as i16 - frac_groups - 1;
    // trim trailing zero groups (they carry no information)
    while groups.last() == Some(&0) {
        groups.pop();
    }
    // trim leading zero groups
    let mut weight = weight;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    buf.put_i16(groups.len() as i16);
    buf.put_i16(if groups.is_empty() { 0 } else { weight });
    buf.put_u16(if neg && !groups.is_empty() { 0x4000 } else { 0 });
    buf.put_i16(dscale);
    for g in groups {
        buf.put_i16(g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_matches_postgres() {
        let mut b = BytesMut::new();
        numeric_binary(&mut b, 12345, 2); // 123.45
        // ndigits=2 weight=0 sign=0 dscale=2 digits 123, 4500
        assert_eq!(&b[..], &[0, 2, 0, 0, 0, 0, 0, 2, 0, 123, 0x11, 0x94]);
    }
}
