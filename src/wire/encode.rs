//! Arrow columns to PostgreSQL values on the wire: type OIDs, and text and binary encodings
//! written straight into DataRow buffers (the text forms come from `pg::pg_text`).
//!
//! Written by hand on purpose: pgwire's per-value `ToSql` path boxes and dispatches per field
//! (too slow to stream millions of rows), and `arrow-pg` is built against an older pgwire whose
//! types must not cross into ours. Each batch is first cast to a small canonical set of Arrow
//! types, then encoded column by column with one typed match per column.

use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    Float64Array, Int16Array, Int32Array, Int64Array, StringArray, StringViewArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, DurationMicrosecondType, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, IntervalMonthDayNanoType, Time64MicrosecondType, TimeUnit, TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::Type;
use pgwire::api::results::FieldFormat;
use pgwire::messages::data::DataRow;

use crate::error::{Error, Result, SqlState};
pub use crate::pg::pg_text::{TextOptions, canonical};
use crate::pg::pg_text::{canonical_column, write_date, write_decimal, write_text};

/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

pub use crate::pg::types::{pg_type, pg_type_of};

/// A column downcast once per batch to the array type its values are written from, so that a
/// row costs one match per value instead of a dynamic downcast and a `DataType` comparison.
/// The common types have a variant; every other type, and the columns whose announced type has
/// a wire form of its own (uuid, jsonb, the catalog types), take the per-value path (`Other`).
enum Column<'a> {
    Bool(&'a BooleanArray),
    Int16(&'a Int16Array),
    Int32(&'a Int32Array),
    Int64(&'a Int64Array),
    Float64(&'a Float64Array),
    /// Values, scale, and whether trailing zeros after the point go (a column declared
    /// `numeric` without scale, stored with 10 digits after the point).
    Decimal(&'a Decimal128Array, i8, bool),
    Utf8(&'a StringArray),
    Utf8View(&'a StringViewArray),
    Date(&'a Date32Array),
    Timestamp(&'a TimestampMicrosecondArray),
    Other,
}

/// How one column of a batch is written.
struct Encoder<'a> {
    col: &'a ArrayRef,
    nulls: Option<&'a NullBuffer>,
    column: Column<'a>,
    binary: bool,
    ty: Option<&'a Type>,
}

impl<'a> Encoder<'a> {
    fn new(
        col: &'a ArrayRef,
        format: Option<&FieldFormat>,
        ty: Option<&'a Type>,
        unconstrained: bool,
    ) -> Self {
        let binary = matches!(format, Some(FieldFormat::Binary));
        let column = if own_form(ty) {
            Column::Other
        } else {
            match col.data_type() {
                DataType::Boolean => col.as_boolean_opt().map_or(Column::Other, Column::Bool),
                DataType::Int16 => col.as_primitive_opt().map_or(Column::Other, Column::Int16),
                DataType::Int32 => col.as_primitive_opt().map_or(Column::Other, Column::Int32),
                DataType::Int64 => col.as_primitive_opt().map_or(Column::Other, Column::Int64),
                // float text needs PostgreSQL's shortest-precise form: the per-value path
                DataType::Float64 if binary => col
                    .as_primitive_opt()
                    .map_or(Column::Other, Column::Float64),
                DataType::Decimal128(_, s) => col
                    .as_primitive_opt()
                    .map_or(Column::Other, |a| Column::Decimal(a, *s, unconstrained)),
                DataType::Utf8 => col.as_string_opt().map_or(Column::Other, Column::Utf8),
                DataType::Utf8View => col
                    .as_string_view_opt()
                    .map_or(Column::Other, Column::Utf8View),
                DataType::Date32 => col.as_primitive_opt().map_or(Column::Other, Column::Date),
                // timestamp text depends on the session's time zone: the per-value path
                DataType::Timestamp(TimeUnit::Microsecond, _) if binary => col
                    .as_primitive_opt()
                    .map_or(Column::Other, Column::Timestamp),
                _ => Column::Other,
            }
        };
        Encoder {
            col,
            nulls: col.nulls(),
            column,
            binary,
            ty,
        }
    }

    /// Write one value with its 4-byte length prefix (-1 for NULL).
    fn write(&self, buf: &mut BytesMut, row: usize, opts: &TextOptions) -> Result<()> {
        let binary = self.binary;
        if !matches!(self.column, Column::Other) && self.nulls.is_some_and(|n| n.is_null(row)) {
            buf.put_i32(-1);
            return Ok(());
        }
        match &self.column {
            Column::Bool(a) if binary => {
                buf.put_i32(1);
                buf.put_u8(a.value(row) as u8);
            }
            Column::Bool(a) => {
                buf.put_i32(1);
                buf.put_u8(if a.value(row) { b't' } else { b'f' });
            }
            Column::Int16(a) if binary => {
                buf.put_i32(2);
                buf.put_i16(a.value(row));
            }
            Column::Int32(a) if binary => {
                buf.put_i32(4);
                buf.put_i32(a.value(row));
            }
            Column::Int64(a) if binary => {
                buf.put_i32(8);
                buf.put_i64(a.value(row));
            }
            Column::Int16(a) => {
                with_length(buf, itoa::Buffer::new().format(a.value(row)).as_bytes())
            }
            Column::Int32(a) => {
                with_length(buf, itoa::Buffer::new().format(a.value(row)).as_bytes())
            }
            Column::Int64(a) => {
                with_length(buf, itoa::Buffer::new().format(a.value(row)).as_bytes())
            }
            Column::Float64(a) => {
                buf.put_i32(8);
                buf.put_f64(a.value(row));
            }
            Column::Decimal(a, s, trim) => {
                let at = length_slot(buf);
                let (mut v, mut s) = (a.value(row), *s);
                while *trim && s > 0 && v % 10 == 0 {
                    (v, s) = (v / 10, s - 1);
                }
                if binary {
                    numeric_binary(buf, v, s);
                } else {
                    write_decimal(buf, v, s);
                }
                fill_length(buf, at);
            }
            Column::Utf8(a) => with_length(buf, a.value(row).as_bytes()),
            Column::Utf8View(a) => with_length(buf, a.value(row).as_bytes()),
            Column::Date(a) if binary => {
                buf.put_i32(4);
                buf.put_i32(a.value(row) - PG_EPOCH_DAYS);
            }
            Column::Date(a) => {
                let at = length_slot(buf);
                write_date(buf, a.value(row));
                fill_length(buf, at);
            }
            Column::Timestamp(a) => {
                buf.put_i32(8);
                buf.put_i64(a.value(row) - PG_EPOCH_MICROS);
            }
            Column::Other => write_value(buf, self.col, row, binary, self.ty, opts)?,
        }
        Ok(())
    }
}

/// Whether values of the announced type have a wire form other than their column's.
fn own_form(ty: Option<&Type>) -> bool {
    matches!(
        ty,
        Some(
            &Type::UUID
                | &Type::JSONB
                | &Type::REGPROC
                | &Type::XID
                | &Type::INT2_VECTOR
                | &Type::OID_VECTOR
        )
    )
}

fn with_length(buf: &mut BytesMut, bytes: &[u8]) {
    buf.put_i32(bytes.len() as i32);
    buf.put_slice(bytes);
}

/// Reserve a value's length prefix; `fill_length` writes it once the value is written.
fn length_slot(buf: &mut BytesMut) -> usize {
    buf.put_i32(0);
    buf.len()
}

fn fill_length(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at) as i32;
    buf[at - 4..at].copy_from_slice(&len.to_be_bytes());
}

/// The Arrow type of an announced integer type.
fn announced_int(t: &Type) -> Option<DataType> {
    match *t {
        Type::INT2 => Some(DataType::Int16),
        Type::INT4 => Some(DataType::Int32),
        Type::INT8 => Some(DataType::Int64),
        _ => None,
    }
}

/// Encode every row of a batch as DataRow messages. `types` are the PostgreSQL types announced
/// in the RowDescription (they pick uuid's and jsonb's binary forms for text columns).
pub fn encode_batch(
    batch: &RecordBatch,
    formats: &[FieldFormat],
    types: &[Type],
    opts: &TextOptions,
) -> Result<Vec<DataRow>> {
    // Utf8View is written as it is; every other column is cast to its canonical type first.
    let columns = batch
        .columns()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let announced = types.get(i).and_then(announced_int);
            match (c.data_type(), announced) {
                (DataType::Utf8View, _) if !own_form(types.get(i)) => Ok(c.clone()),
                // An integer of another width than the RowDescription announced (a literal in
                // a subquery, typed int8 when described and int4 when run): sent as announced.
                (DataType::Int16 | DataType::Int32 | DataType::Int64, Some(w))
                    if &w != c.data_type() =>
                {
                    Ok(datafusion::arrow::compute::cast(c, &w)?)
                }
                _ => canonical_column(c),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let encoders: Vec<Encoder> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let unconstrained =
                crate::pg::types::unconstrained_numeric(batch.schema_ref().field(i));
            Encoder::new(c, formats.get(i), types.get(i), unconstrained)
        })
        .collect();
    let ncols = columns.len();
    let mut rows = Vec::with_capacity(batch.num_rows());
    // One buffer for the whole batch, each row split off it (no allocation per row); sized
    // from the columns' Arrow buffers, a close guess of their text and binary forms (at most
    // 4 MiB: a slice reports the buffers of the whole array; the buffer grows as needed).
    let guess: usize = columns.iter().map(|c| c.get_buffer_memory_size()).sum();
    let guess = guess.saturating_add(batch.num_rows() * 4 * (ncols + 1));
    let mut buf = BytesMut::with_capacity(guess.min(4 << 20));
    for row in 0..batch.num_rows() {
        for e in &encoders {
            e.write(&mut buf, row, opts)?;
        }
        rows.push(DataRow::new(buf.split(), ncols as i16));
    }
    Ok(rows)
}

/// One value of a column without a typed encoder (see `Column`), with its length prefix.
fn write_value(
    buf: &mut BytesMut,
    col: &ArrayRef,
    row: usize,
    binary: bool,
    ty: Option<&Type>,
    opts: &TextOptions,
) -> Result<()> {
    if binary && col.data_type() == &DataType::Utf8 && !col.is_null(row) {
        match ty {
            Some(&Type::UUID) => return write_uuid(buf, col.as_string::<i32>().value(row)),
            Some(&Type::JSONB) => {
                let v = col.as_string::<i32>().value(row);
                buf.put_i32(v.len() as i32 + 1);
                buf.put_u8(1);
                buf.put_slice(v.as_bytes());
                return Ok(());
            }
            _ => {}
        }
    }
    if !col.is_null(row) && write_catalog_value(buf, col, row, binary, ty)? {
        return Ok(());
    }
    write_field(buf, col, row, binary, opts)
}

/// The catalog types whose wire form is not their Arrow column's (pg::pg_static): a
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
    match (ty, col.data_type(), binary) {
        (&Type::REGPROC, DataType::Int32, false) => {
            let oid = col.as_primitive::<Int32Type>().value(row);
            let name = crate::pg::pg_static::proc_name(oid)
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
            let at = length_slot(buf);
            write_binary_array(buf, col, row, elem.oid())?;
            fill_length(buf, at);
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
    let at = length_slot(buf);
    if binary {
        write_binary(buf, col, row)?;
    } else {
        write_text(buf, col, row, opts)?;
    }
    fill_length(buf, at);
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
            SqlState::InvalidTextRepresentation,
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
    let mag = v.unsigned_abs();
    // Scale the value so that the decimal point falls on a base-10000 digit boundary.
    let pad = (4 - (dscale as u32 % 4)) % 4;
    let frac_groups = (dscale as usize).div_ceil(4) as i16;
    // Base-10000 digits, least significant first (a u128 has at most 10); in u64 arithmetic
    // when the value fits, as nearly every one does (u128 division is a library call).
    let mut groups = [0i16; 12];
    let mut n = 0;
    match u64::try_from(mag)
        .ok()
        .and_then(|m| m.checked_mul(10u64.pow(pad)))
    {
        Some(mut m) => {
            while m > 0 {
                groups[n] = (m % 10_000) as i16;
                m /= 10_000;
                n += 1;
            }
        }
        None => {
            // Past u64 once scaled: from the decimal digits, the integer part left-padded and
            // the fraction right-padded to whole groups (precision 38 near its limit would
            // overflow even a u128 scaled by 10^3).
            let digits = format!(
                "{mag:0>w$}{}",
                "0".repeat(pad as usize),
                w = dscale as usize + 1
            );
            let digits = digits.as_bytes();
            let mut end = digits.len();
            while end > 0 && n < groups.len() {
                let start = end.saturating_sub(4);
                groups[n] = digits[start..end]
                    .iter()
                    .fold(0i16, |g, d| g * 10 + (d - b'0') as i16);
                n += 1;
                end = start;
            }
            while n > 0 && groups[n - 1] == 0 {
                n -= 1;
            }
        }
    }
    let weight = n as i16 - frac_groups - 1;
    // Trailing zero groups carry no information; the most significant group is never zero.
    let low = groups[..n].iter().take_while(|g| **g == 0).count();
    let digits = &groups[low..n];
    buf.put_i16(digits.len() as i16);
    buf.put_i16(if digits.is_empty() { 0 } else { weight });
    buf.put_u16(if neg && !digits.is_empty() { 0x4000 } else { 0 });
    buf.put_i16(dscale);
    for g in digits.iter().rev() {
        buf.put_i16(*g);
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
        let cases: [(i128, i8, &[u8]); 5] = [
            (0, 2, &[0, 0, 0, 0, 0, 0, 0, 2]),               // 0.00
            (1, 2, &[0, 1, 0xff, 0xff, 0, 0, 0, 2, 0, 100]), // 0.01
            (1_000_000, 2, &[0, 1, 0, 1, 0, 0, 0, 2, 0, 1]), // 10000.00
            (-5, 0, &[0, 1, 0, 0, 0x40, 0, 0, 0, 0, 5]),     // -5
            (
                123_456_789,
                0,
                &[0, 3, 0, 2, 0, 0, 0, 0, 0, 1, 0x09, 0x29, 0x1a, 0x85],
            ), // 1,2345,6789
        ];
        for (v, s, want) in cases {
            let mut b = BytesMut::new();
            numeric_binary(&mut b, v, s);
            assert_eq!(&b[..], want, "{v} scale {s}");
        }
    }
}
