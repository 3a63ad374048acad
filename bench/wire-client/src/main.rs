//! The Rust client of the wire-throughput benchmark (bench/wire.py): streams one query's rows
//! with tokio-postgres, in text (simple protocol) or binary (extended protocol) format, and
//! prints `{"rows": n, "seconds": s}`. Not a measurement of its own: bench/wire.py runs it
//! against Lakegate and PostgreSQL alike.
//!
//!     BENCH_URL=postgresql://... BENCH_QUERY='SELECT * FROM lineitem' BENCH_FORMAT=binary \
//!       cargo run --release --manifest-path bench/wire-client/Cargo.toml

use futures::{StreamExt, pin_mut};
use tokio_postgres::{NoTls, SimpleQueryMessage};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("BENCH_URL")?;
    let query = std::env::var("BENCH_QUERY")?;
    let binary = std::env::var("BENCH_FORMAT").as_deref() == Ok("binary");
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("connection: {e}");
        }
    });
    let started = std::time::Instant::now();
    let mut rows = 0u64;
    let mut bytes = 0u64;
    if binary {
        let stream = client
            .query_raw(query.as_str(), std::iter::empty::<i32>())
            .await?;
        pin_mut!(stream);
        while let Some(row) = stream.next().await {
            let row = row?;
            // Touch every value's bytes, as a client decoding them would.
            for i in 0..row.len() {
                let v: Option<RawValue> = row.try_get(i)?;
                bytes += v.map_or(0, |v| v.0 as u64);
            }
            rows += 1;
        }
    } else {
        let stream = client.simple_query_raw(query.as_str()).await?;
        pin_mut!(stream);
        while let Some(msg) = stream.next().await {
            if let SimpleQueryMessage::Row(row) = msg? {
                for i in 0..row.len() {
                    bytes += row.get(i).map_or(0, |v| v.len() as u64);
                }
                rows += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{{\"rows\": {rows}, \"seconds\": {seconds}, \"value_bytes\": {bytes}}}");
    Ok(())
}

/// Any value, as its byte length (the raw bytes a binary decoder would read).
struct RawValue(usize);

impl<'a> tokio_postgres::types::FromSql<'a> for RawValue {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawValue(raw.len()))
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}
