//! PostgreSQL's text output of Arrow values (what `SELECT` shows in text format and what a
//! `::text` cast gives): floats with shortest exact digits, ISO dates, `t`/`f`, intervals in
//! the `postgres` style, `{a,b}` arrays. Written by hand because Arrow's display formats differ
//! from PostgreSQL's in exactly the places clients parse.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Decimal128Array, GenericListArray, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, DurationMicrosecondType, Field, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, IntervalMonthDayNanoType, IntervalUnit, Time64MicrosecondType, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::error::{Error, Result};

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

/// Cast one column to its canonical type (values with no PostgreSQL counterpart become text).
pub fn canonical_column(c: &ArrayRef) -> Result<ArrayRef> {
    let want = canonical(c.data_type());
    if &want == c.data_type() {
        Ok(c.clone())
    } else if want == DataType::Utf8 && !can_cast_text(c.data_type()) {
        Ok(Arc::new(to_text_array(c)?) as ArrayRef)
    } else {
        Ok(cast(c, &want)?)
    }
}

/// Every value of a column in PostgreSQL's text output format (the `::text` cast).
pub fn text_array(c: &ArrayRef, opts: &TextOptions) -> Result<StringArray> {
    let c = canonical_column(c)?;
    let mut buf = BytesMut::new();
    (0..c.len())
        .map(|i| {
            if c.is_null(i) || c.data_type() == &DataType::Null {
                return Ok(None);
            }
            buf.clear();
            if let DataType::Boolean = c.data_type() {
                // boolean::text is 'true'/'false' (its output format is 't'/'f')
                let v = c.as_boolean_opt().is_some_and(|a| a.value(i));
                return Ok(Some(if v { "true" } else { "false" }.to_string()));
            }
            write_text(&mut buf, &c, i, opts)?;
            Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
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

pub fn write_text(
    buf: &mut BytesMut,
    col: &ArrayRef,
    row: usize,
    opts: &TextOptions,
) -> Result<()> {
    use std::fmt::Write;
    let mut w = Writer(buf);
    let r = match col.data_type() {
        DataType::Boolean => {
            let v = col.as_boolean_opt().is_some_and(|a| a.value(row));
            w.0.put_slice(if v { b"t" } else { b"f" });
            Ok(())
        }
        DataType::Int16 => {
            let v = col.as_primitive::<Int16Type>().value(row);
            w.0.put_slice(itoa::Buffer::new().format(v).as_bytes());
            Ok(())
        }
        DataType::Int32 => {
            let v = col.as_primitive::<Int32Type>().value(row);
            w.0.put_slice(itoa::Buffer::new().format(v).as_bytes());
            Ok(())
        }
        DataType::Int64 => {
            let v = col.as_primitive::<Int64Type>().value(row);
            w.0.put_slice(itoa::Buffer::new().format(v).as_bytes());
            Ok(())
        }
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
            write_decimal(w.0, v, *s);
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
            write_date(w.0, d);
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
    let mut out = Vec::new();
    write_decimal(&mut out, v, scale);
    String::from_utf8(out).unwrap_or_default()
}

/// [`decimal_text`] written straight into `buf`, without allocating (the text results of a
/// wide scan write millions of them; `itoa` formats the digits).
pub fn write_decimal(buf: &mut impl BufMut, v: i128, scale: i8) {
    let mut digits = itoa::Buffer::new();
    if scale <= 0 {
        buf.put_slice(digits.format(v).as_bytes());
        for _ in 0..(-(scale as i16)) {
            buf.put_u8(b'0');
        }
        return;
    }
    let scale = scale as usize;
    if v < 0 {
        buf.put_u8(b'-');
    }
    let digits = digits.format(v.unsigned_abs()).as_bytes();
    if digits.len() <= scale {
        buf.put_slice(b"0.");
        for _ in digits.len()..scale {
            buf.put_u8(b'0');
        }
        buf.put_slice(digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        buf.put_slice(int);
        buf.put_u8(b'.');
        buf.put_slice(frac);
    }
}

/// [`date_text`] written straight into `buf`: years 1 to 9999 digit by digit, others (BC,
/// five-digit years) through chrono's formatting.
pub fn write_date(buf: &mut impl BufMut, days: i32) {
    use chrono::Datelike;
    match NaiveDate::from_num_days_from_ce_opt(days.saturating_add(719_163)) {
        Some(d) if (1..=9999).contains(&d.year()) => {
            let (y, m, day) = (d.year() as u32, d.month(), d.day());
            let digit = |n: u32| b'0' + (n % 10) as u8;
            buf.put_slice(&[
                digit(y / 1000),
                digit(y / 100),
                digit(y / 10),
                digit(y),
                b'-',
                digit(m / 10),
                digit(m),
                b'-',
                digit(day / 10),
                digit(day),
            ]);
        }
        _ => buf.put_slice(date_text(days).as_bytes()),
    }
}

pub fn date_text(days: i32) -> String {
    match NaiveDate::from_num_days_from_ce_opt(days.saturating_add(719_163)) {
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
        assert_eq!(decimal_text(5, -2), "500");
        assert_eq!(decimal_text(-1, 0), "-1");
        assert_eq!(decimal_text(120, 3), "0.120");
        assert_eq!(decimal_text(i128::MIN + 1, 10).len(), 41);
        for days in [0, -719_162, 2_932_896, -800_000, 3_000_000, 19_000] {
            let mut b = Vec::new();
            write_date(&mut b, days);
            assert_eq!(String::from_utf8(b).unwrap_or_default(), date_text(days));
        }
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
