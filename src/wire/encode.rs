//! Arrow columns to PostgreSQL values: type OIDs, and text and binary encodings written straight
//! into DataRow buffers.
//!
//! Written by hand on purpose: pgwire's per-value `ToSql` path boxes and dispatches per field
//! (too slow to stream millions of rows), and `arrow-pg` is built against an older pgwire whose
//! types must not cross into ours. Each batch is first cast to a small canonical set of Arrow
//! types, then encoded column by column with one typed match per column.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array, GenericListArray,
    StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, DurationMicrosecondType, Field, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, IntervalMonthDayNanoType, IntervalUnit, Time64MicrosecondType, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use pgwire::api::Type;
use pgwire::api::results::FieldFormat;
use pgwire::messages::data::DataRow;

use crate::error::{Error, Result};

/// Days from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// How values are rendered in text format (from the session's settings).
#[derive(Debug, Clone)]
pub struct TextOptions {
    pub timezone: chrono_tz::Tz,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            timezone: chrono_tz::UTC,
        }
    }
}

/// The canonical Arrow type a column is cast to before encoding.
pub fn canonical(dt: &DataType) -> DataType {
    use DataType as D;
    match dt {
        D::Utf8View | D::LargeUtf8 => D::Utf8,
        D::BinaryView | D::LargeBinary | D::FixedSizeBinary(_) => D::Binary,
        D::Dictionary(_, v) => canonical(v),
        D::Int8 | D::UInt8 => D::Int16,
        D::UInt16 => D::Int32,
        // rank(), row_number() ...: PostgreSQL answers bigint (a value past i64 fails the cast).
        D::UInt32 | D::UInt64 => D::Int64,
        D::Float16 => D::Float32,
        D::Date64 => D::Date32,
        D::Time32(_) | D::Time64(_) => D::Time64(TimeUnit::Microsecond),
        D::Timestamp(_, tz) => D::Timestamp(TimeUnit::Microsecond, tz.clone()),
        D::Interval(_) => D::Interval(IntervalUnit::MonthDayNano),
        D::Duration(_) => D::Duration(TimeUnit::Microsecond),
        D::Decimal32(p, s) | D::Decimal64(p, s) => D::Decimal128(*p, *s),
        D::Decimal256(p, s) if *p <= 38 => D::Decimal128(*p, *s),
        D::List(f)
        | D::LargeList(f)
        | D::FixedSizeList(f, _)
        | D::ListView(f)
        | D::LargeListView(f) => {
            let inner = canonical(f.data_type());
            if matches!(inner, D::List(_)) || !is_scalar_type(&inner) {
                // nested arrays and arrays of records are rendered as text
                D::Utf8
            } else {
                D::List(Arc::new(Field::new("item", inner, true)))
            }
        }
        D::Boolean
        | D::Int16
        | D::Int32
        | D::Int64
        | D::Float32
        | D::Float64
        | D::Decimal128(..)
        | D::Utf8
        | D::Binary
        | D::Date32
        | D::Null => dt.clone(),
        // Structs, maps, unions, wide decimals: rendered as text.
        _ => D::Utf8,
    }
}

fn is_scalar_type(dt: &DataType) -> bool {
    !matches!(
        dt,
        DataType::Struct(_) | DataType::Map(..) | DataType::Union(..) | DataType::List(_)
    )
}

/// The PostgreSQL type of a (canonical) Arrow type.
pub fn pg_type(dt: &DataType) -> Type {
    use DataType as D;
    match canonical(dt) {
        D::Boolean => Type::BOOL,
        D::Int16 => Type::INT2,
        D::Int32 => Type::INT4,
        D::Int64 => Type::INT8,
        D::Decimal128(..) => Type::NUMERIC,
        D::Float32 => Type::FLOAT4,
        D::Float64 => Type::FLOAT8,
        D::Utf8 | D::Null => Type::TEXT,
        D::Binary => Type::BYTEA,
        D::Date32 => Type::DATE,
        D::Time64(_) => Type::TIME,
        D::Timestamp(_, None) => Type::TIMESTAMP,
        D::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        D::Interval(_) | D::Duration(_) => Type::INTERVAL,
        D::List(f) => match pg_type(f.data_type()) {
            Type::BOOL => Type::BOOL_ARRAY,
            Type::INT2 => Type::INT2_ARRAY,
            Type::INT4 => Type::INT4_ARRAY,
            Type::INT8 => Type::INT8_ARRAY,
            Type::NUMERIC => Type::NUMERIC_ARRAY,
            Type::FLOAT4 => Type::FLOAT4_ARRAY,
            Type::FLOAT8 => Type::FLOAT8_ARRAY,
            Type::BYTEA => Type::BYTEA_ARRAY,
            Type::DATE => Type::DATE_ARRAY,
            Type::TIME => Type::TIME_ARRAY,
            Type::TIMESTAMP => Type::TIMESTAMP_ARRAY,
            Type::TIMESTAMPTZ => Type::TIMESTAMPTZ_ARRAY,
            Type::INTERVAL => Type::INTERVAL_ARRAY,
            _ => Type::TEXT_ARRAY,
        },
        _ => Type::TEXT,
    }
}

/// The PostgreSQL type of a result field: its type override (uuid, json ...) or its Arrow type's.
pub fn pg_type_of(field: &Field) -> Type {
    match crate::planner::types::field_pg_type(field) {
        Some("uuid") => Type::UUID,
        Some("json") => Type::JSON,
        Some("jsonb") => Type::JSONB,
        Some("varchar") => Type::VARCHAR,
        Some("bpchar") => Type::BPCHAR,
        _ => pg_type(field.data_type()),
    }
}

/// Cast a batch's columns to their canonical types.
pub fn canonicalize(batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    batch
        .columns()
        .iter()
        .map(|c| {
            let want = canonical(c.data_type());
            if &want == c.data_type() {
                Ok(c.clone())
            } else if want == DataType::Utf8 && !can_cast_text(c.data_type()) {
                Ok(Arc::new(to_text_array(c)?) as ArrayRef)
            } else {
                Ok(cast(c, &want)?)
            }
        })
        .collect()
}

fn can_cast_text(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8View | DataType::LargeUtf8 | DataType::Dictionary(..)
    )
}

fn to_text_array(c: &ArrayRef) -> Result<StringArray> {
    let opts = FormatOptions::default();
    let f = ArrayFormatter::try_new(c.as_ref(), &opts)?;
    Ok((0..c.len())
        .map(|i| {
            if c.is_null(i) {
                None
            } else {
                Some(f.value(i).to_string())
            }
        })
        .collect())
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
    for row in 0..batch.num_rows() {
        let mut buf = BytesMut::with_capacity(16 * ncols + 8);
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
            write_field(&mut buf, col, row, binary, opts)?;
        }
        rows.push(DataRow::new(buf, ncols as i16));
    }
    Ok(rows)
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

fn write_text(buf: &mut BytesMut, col: &ArrayRef, row: usize, opts: &TextOptions) -> Result<()> {
    use std::fmt::Write;
    let mut w = Writer(buf);
    let r = match col.data_type() {
        DataType::Boolean => {
            let v = col
                .as_any()
                .downcast_ref::<BooleanArray>()
                .map(|a| a.value(row))
                .unwrap_or(false);
            w.0.put_slice(if v { b"t" } else { b"f" });
            Ok(())
        }
        DataType::Int16 => write!(w, "{}", col.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => write!(w, "{}", col.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => write!(w, "{}", col.as_primitive::<Int64Type>().value(row)),
        DataType::Float32 => {
            w.0.put_slice(
                float_text(col.as_primitive::<Float32Type>().value(row) as f64, 6, true).as_bytes(),
            );
            Ok(())
        }
        DataType::Float64 => {
            w.0.put_slice(
                float_text(col.as_primitive::<Float64Type>().value(row), 15, false).as_bytes(),
            );
            Ok(())
        }
        DataType::Decimal128(_, s) => {
            let a = col.as_any().downcast_ref::<Decimal128Array>();
            let v = a.map(|a| a.value(row)).unwrap_or(0);
            w.0.put_slice(decimal_text(v, *s).as_bytes());
            Ok(())
        }
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            w.0.put_slice(a.value(row).as_bytes());
            Ok(())
        }
        DataType::Binary => {
            let a = col.as_any().downcast_ref::<BinaryArray>();
            w.0.put_slice(b"\\x");
            for b in a.map(|a| a.value(row)).unwrap_or_default() {
                write!(w, "{b:02x}").map_err(fmt_err)?;
            }
            Ok(())
        }
        DataType::Date32 => {
            let d = col.as_primitive::<Date32Type>().value(row);
            w.0.put_slice(date_text(d).as_bytes());
            Ok(())
        }
        DataType::Time64(_) => {
            let us = col.as_primitive::<Time64MicrosecondType>().value(row);
            w.0.put_slice(time_text(us).as_bytes());
            Ok(())
        }
        DataType::Timestamp(_, tz) => {
            let us = col.as_primitive::<TimestampMicrosecondType>().value(row);
            let s = match tz {
                None => timestamp_text(us),
                Some(_) => timestamptz_text(us, &opts.timezone),
            };
            w.0.put_slice(s.as_bytes());
            Ok(())
        }
        DataType::Interval(_) => {
            let v = col.as_primitive::<IntervalMonthDayNanoType>().value(row);
            w.0.put_slice(interval_text(v.months, v.days, v.nanoseconds / 1000).as_bytes());
            Ok(())
        }
        DataType::Duration(_) => {
            let us = col.as_primitive::<DurationMicrosecondType>().value(row);
            w.0.put_slice(interval_text(0, 0, us).as_bytes());
            Ok(())
        }
        DataType::List(_) => {
            let list = col.as_list::<i32>();
            write_array_text(w.0, list, row, opts)?;
            Ok(())
        }
        other => return Err(Error::internal(format!("no text encoding for {other}"))),
    };
    r.map_err(fmt_err)
}

fn write_array_text(
    buf: &mut BytesMut,
    list: &GenericListArray<i32>,
    row: usize,
    opts: &TextOptions,
) -> Result<()> {
    let values = list.value(row);
    let quoted = matches!(
        values.data_type(),
        DataType::Utf8
            | DataType::Binary
            | DataType::Timestamp(..)
            | DataType::Interval(_)
            | DataType::Date32
            | DataType::Time64(_)
    );
    buf.put_u8(b'{');
    for i in 0..values.len() {
        if i > 0 {
            buf.put_u8(b',');
        }
        if values.is_null(i) {
            buf.put_slice(b"NULL");
            continue;
        }
        let mut item = BytesMut::new();
        write_text(&mut item, &values, i, opts)?;
        if quoted && needs_quotes(&item) {
            buf.put_u8(b'"');
            for &b in item.iter() {
                if b == b'"' || b == b'\\' {
                    buf.put_u8(b'\\');
                }
                buf.put_u8(b);
            }
            buf.put_u8(b'"');
        } else {
            buf.put_slice(&item);
        }
    }
    buf.put_u8(b'}');
    Ok(())
}

fn needs_quotes(item: &[u8]) -> bool {
    item.is_empty()
        || item.eq_ignore_ascii_case(b"null")
        || item.iter().any(|b| {
            matches!(
                b,
                b',' | b'{' | b'}' | b'"' | b'\\' | b' ' | b'\t' | b'\n' | b'\r'
            )
        })
}

fn write_binary(buf: &mut BytesMut, col: &ArrayRef, row: usize) -> Result<()> {
    match col.data_type() {
        DataType::Boolean => {
            let v = col
                .as_any()
                .downcast_ref::<BooleanArray>()
                .map(|a| a.value(row))
                .unwrap_or(false);
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
        DataType::List(f) => {
            let list = col.as_list::<i32>();
            let values = list.value(row);
            let elem = pg_type(f.data_type());
            buf.put_i32(1); // dimensions
            buf.put_i32(values.null_count().min(1) as i32); // has nulls
            buf.put_u32(elem.oid());
            buf.put_i32(values.len() as i32);
            buf.put_i32(1); // lower bound
            for i in 0..values.len() {
                write_field(buf, &values, i, true, &TextOptions::default())?;
            }
        }
        other => return Err(Error::internal(format!("no binary encoding for {other}"))),
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

struct Writer<'a>(&'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

fn fmt_err(e: std::fmt::Error) -> Error {
    Error::internal(format!("formatting: {e}"))
}

/// PostgreSQL's float output (extra_float_digits >= 1): the shortest exact digits, in
/// exponent form when the exponent is below -4 or at least `digits` (15 for float8, 6 for float4).
pub fn float_text(v: f64, digits: i32, single: bool) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = if single {
        format!("{:e}", v as f32)
    } else {
        format!("{v:e}")
    };
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().unwrap_or(0)),
        None => (sci.clone(), 0),
    };
    if exp < -4 || exp >= digits {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else if single {
        format!("{}", v as f32)
    } else {
        format!("{v}")
    }
}

pub fn decimal_text(v: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut s = v.to_string();
        for _ in 0..(-scale) {
            s.push('0');
        }
        return s;
    }
    let scale = scale as usize;
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let digits = if digits.len() <= scale {
        format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
    } else {
        digits
    };
    let (int, frac) = digits.split_at(digits.len() - scale);
    format!("{}{int}.{frac}", if neg { "-" } else { "" })
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

pub fn date_text(days: i32) -> String {
    match NaiveDate::from_num_days_from_ce_opt(days + 719_163) {
        Some(d) => format_date(d),
        None => days.to_string(),
    }
}

fn format_date(d: NaiveDate) -> String {
    use chrono::Datelike;
    if d.year() <= 0 {
        format!("{:04}-{:02}-{:02} BC", 1 - d.year(), d.month(), d.day())
    } else {
        d.format("%Y-%m-%d").to_string()
    }
}

fn frac_text(micros: u32) -> String {
    if micros == 0 {
        String::new()
    } else {
        let s = format!(".{micros:06}");
        s.trim_end_matches('0').to_string()
    }
}

pub fn time_text(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000) as u32;
    match NaiveTime::from_num_seconds_from_midnight_opt(secs as u32, 0) {
        Some(t) => format!("{}{}", t.format("%H:%M:%S"), frac_text(micros)),
        None => "24:00:00".into(),
    }
}

fn naive(us: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(us).map(|d| d.naive_utc())
}

pub fn timestamp_text(us: i64) -> String {
    match naive(us) {
        Some(dt) => format!(
            "{} {}{}",
            format_date(dt.date()),
            dt.time().format("%H:%M:%S"),
            frac_text(dt.time().nanosecond() / 1000)
        ),
        None => us.to_string(),
    }
}

pub fn timestamptz_text(us: i64, tz: &chrono_tz::Tz) -> String {
    let Some(utc) = DateTime::from_timestamp_micros(us) else {
        return us.to_string();
    };
    let local = tz.from_utc_datetime(&utc.naive_utc());
    let offset = chrono::Offset::fix(local.offset()).local_minus_utc();
    let sign = if offset < 0 { '-' } else { '+' };
    let off = offset.abs();
    let (h, m, s) = (off / 3600, (off % 3600) / 60, off % 60);
    let mut zone = format!("{sign}{h:02}");
    if m != 0 || s != 0 {
        zone.push_str(&format!(":{m:02}"));
    }
    if s != 0 {
        zone.push_str(&format!(":{s:02}"));
    }
    let n = local.naive_local();
    format!(
        "{} {}{}{zone}",
        format_date(n.date()),
        n.time().format("%H:%M:%S"),
        frac_text(n.time().nanosecond() / 1000)
    )
}

/// IntervalStyle `postgres`: `1 year 2 mons 3 days 04:05:06.5`.
pub fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut parts: Vec<String> = Vec::new();
    let (years, mons) = (months / 12, months % 12);
    let plural =
        |n: i64, one: &str, many: &str| format!("{n} {}", if n.abs() == 1 { one } else { many });
    if years != 0 {
        parts.push(plural(years as i64, "year", "years"));
    }
    if mons != 0 {
        parts.push(plural(mons as i64, "mon", "mons"));
    }
    if days != 0 {
        parts.push(plural(days as i64, "day", "days"));
    }
    if micros != 0 || parts.is_empty() {
        let neg = micros < 0;
        let m = micros.unsigned_abs();
        let (h, rem) = (m / 3_600_000_000, m % 3_600_000_000);
        let (min, rem) = (rem / 60_000_000, rem % 60_000_000);
        let (s, us) = (rem / 1_000_000, rem % 1_000_000);
        parts.push(format!(
            "{}{h:02}:{min:02}:{s:02}{}",
            if neg { "-" } else { "" },
            frac_text(us as u32)
        ));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_render_like_postgres() {
        assert_eq!(float_text(0.1, 15, false), "0.1");
        assert_eq!(float_text(1e20, 15, false), "1e+20");
        assert_eq!(float_text(1.5e-7, 15, false), "1.5e-07");
        assert_eq!(float_text(123456.0, 15, false), "123456");
        assert_eq!(float_text(f64::INFINITY, 15, false), "Infinity");
        assert_eq!(float_text(f64::NAN, 15, false), "NaN");
        assert_eq!(float_text(1.1f32 as f64, 6, true), "1.1");
    }

    #[test]
    fn decimals_keep_their_scale() {
        assert_eq!(decimal_text(12345, 2), "123.45");
        assert_eq!(decimal_text(-5, 2), "-0.05");
        assert_eq!(decimal_text(100, 0), "100");
    }

    #[test]
    fn numeric_binary_matches_postgres() {
        let mut b = BytesMut::new();
        numeric_binary(&mut b, 12345, 2); // 123.45
        // ndigits=2 weight=0 sign=0 dscale=2 digits 123, 4500
        assert_eq!(&b[..], &[0, 2, 0, 0, 0, 0, 0, 2, 0, 123, 0x11, 0x94]);
    }

    #[test]
    fn datetimes_render_like_postgres() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(timestamp_text(1_500_000), "1970-01-01 00:00:01.5");
        assert_eq!(
            timestamptz_text(0, &chrono_tz::UTC),
            "1970-01-01 00:00:00+00"
        );
        assert_eq!(
            timestamptz_text(0, &chrono_tz::Asia::Kolkata),
            "1970-01-01 05:30:00+05:30"
        );
        assert_eq!(time_text(3_723_000_000), "01:02:03");
        assert_eq!(
            interval_text(14, 3, 4_000_000),
            "1 year 2 mons 3 days 00:00:04"
        );
        assert_eq!(interval_text(0, 0, 0), "00:00:00");
    }
}
