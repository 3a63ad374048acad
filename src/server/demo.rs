//! The demo dataset created on first start: schema `demo` with customers (some columns personal
//! data: email, phone, birth date) and their orders. Deterministic, so every install looks alike.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrameWriteOptions;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::session::{Engine, Session};

const FIRST: &[&str] = &[
    "Ana", "Ben", "Chloé", "David", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kofi",
    "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor",
    "Wen", "Ximena", "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Almeida", "Becker", "Chen", "Dubois", "Eriksen", "Fischer", "García", "Haddad", "Ivanova",
    "Jensen", "Kowalski", "Lopez", "Müller", "Nakamura", "Okafor", "Patel", "Rossi", "Schmidt",
    "Tanaka", "Usman", "Varga", "Weber",
];
const CITIES: &[(&str, &str)] = &[
    ("Lisbon", "PT"),
    ("Berlin", "DE"),
    ("Paris", "FR"),
    ("Madrid", "ES"),
    ("Milan", "IT"),
    ("Warsaw", "PL"),
    ("Stockholm", "SE"),
    ("New York", "US"),
    ("Chicago", "US"),
    ("Toronto", "CA"),
    ("São Paulo", "BR"),
    ("Tokyo", "JP"),
    ("Singapore", "SG"),
    ("Sydney", "AU"),
    ("Mumbai", "IN"),
    ("Lagos", "NG"),
];
const SEGMENTS: &[&str] = &["consumer", "small business", "enterprise"];
const STATUSES: &[&str] = &[
    "pending",
    "paid",
    "shipped",
    "delivered",
    "cancelled",
    "refunded",
];

/// A small deterministic generator (64-bit LCG); good enough for demo rows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// Create the demo schema on first start (when it does not exist yet).
/// A session of the configured administrator, for work the server does itself.
fn admin_session(engine: &Arc<Engine>, settings: &Settings) -> Session {
    let admin = settings
        .users
        .first()
        .map(|u| u.name.as_str())
        .unwrap_or("lakegate");
    Session::new(engine.clone(), admin, None, 0)
}

/// Run `demo.setup_sql` once, as the administrator, on a warehouse that has not run it yet
/// (a marker in `_lakegate` remembers); a failing statement stops the server with its error.
pub async fn run_setup_sql(engine: &Arc<Engine>, settings: &Settings) -> Result<()> {
    let Some(file) = &settings.demo.setup_sql else {
        return Ok(());
    };
    let warehouse = engine.planner.catalog().warehouse();
    if warehouse.read_meta("setup.done")?.is_some() {
        return Ok(());
    }
    let sql = std::fs::read_to_string(file)
        .map_err(|e| Error::Config(format!("cannot read setup SQL {}: {e}", file.display())))?;
    let mut session = admin_session(engine, settings);
    for r in session.execute_simple(&sql, false).await {
        r.map_err(|e| {
            Error::Config(format!(
                "setup SQL {} failed: {}",
                file.display(),
                e.client_message()
            ))
        })?;
    }
    warehouse.write_meta("setup.done", file.display().to_string().as_bytes())?;
    tracing::info!(file = %file.display(), "setup SQL ran");
    Ok(())
}

pub async fn ensure_demo_data(engine: &Arc<Engine>, settings: &Settings) -> Result<()> {
    if engine.planner.catalog().schema_exists("demo") {
        return Ok(());
    }
    let mut session = admin_session(engine, settings);
    let ddl = "CREATE SCHEMA demo;
        CREATE TABLE demo.customers (id BIGINT NOT NULL, name TEXT, email TEXT, phone TEXT, city TEXT,
            country TEXT, segment TEXT, signup_date DATE, birth_date DATE);
        CREATE TABLE demo.orders (id BIGINT NOT NULL, customer_id BIGINT NOT NULL, order_date DATE,
            status TEXT, amount NUMERIC(10,2), currency TEXT, created_at TIMESTAMP)";
    for r in session.execute_simple(ddl, false).await {
        r?;
    }
    let (customers, orders) = generate(settings.demo.customers.max(1), settings.demo.orders);
    let ctx = session.context().clone();
    ctx.read_batch(customers)?
        .write_table(
            &format!("{}.demo.customers", settings.database),
            DataFrameWriteOptions::new(),
        )
        .await?;
    ctx.read_batch(orders)?
        .write_table(
            &format!("{}.demo.orders", settings.database),
            DataFrameWriteOptions::new(),
        )
        .await?;
    tracing::info!("created demo data: demo.customers, demo.orders");
    Ok(())
}

fn generate(n_customers: usize, n_orders: usize) -> (RecordBatch, RecordBatch) {
    let mut rng = Rng(42);
    let base_day = 19_000; // 2022-01-08
    let mut c_id = Vec::new();
    let mut c_name = Vec::new();
    let mut c_email = Vec::new();
    let mut c_phone = Vec::new();
    let mut c_city = Vec::new();
    let mut c_country = Vec::new();
    let mut c_segment = Vec::new();
    let mut c_signup = Vec::new();
    let mut c_birth = Vec::new();
    for i in 1..=n_customers as i64 {
        let first = rng.pick(FIRST);
        let last = rng.pick(LAST);
        let (city, country) = CITIES[rng.below(CITIES.len() as u64) as usize];
        c_id.push(i);
        c_name.push(format!("{first} {last}"));
        c_email.push(format!("{}.{}{}@example.com", ascii(first), ascii(last), i));
        c_phone.push(format!(
            "+{} {:03} {:04}",
            1 + rng.below(98),
            rng.below(1000),
            rng.below(10_000)
        ));
        c_city.push(city.to_string());
        c_country.push(country.to_string());
        c_segment.push(rng.pick(SEGMENTS).to_string());
        c_signup.push(base_day + rng.below(1400) as i32);
        c_birth.push(-3650 + rng.below(18_000) as i32 - 7000);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(c_id)),
        Arc::new(StringArray::from(c_name)),
        Arc::new(StringArray::from(c_email)),
        Arc::new(StringArray::from(c_phone)),
        Arc::new(StringArray::from(c_city)),
        Arc::new(StringArray::from(c_country)),
        Arc::new(StringArray::from(c_segment)),
        Arc::new(Date32Array::from(c_signup)),
        Arc::new(Date32Array::from(c_birth)),
    ];
    let customers = RecordBatch::try_from_iter(
        [
            "id",
            "name",
            "email",
            "phone",
            "city",
            "country",
            "segment",
            "signup_date",
            "birth_date",
        ]
        .into_iter()
        .zip(columns),
    );
    let mut o_id = Vec::new();
    let mut o_cust = Vec::new();
    let mut o_date = Vec::new();
    let mut o_status = Vec::new();
    let mut o_amount = Vec::new();
    let mut o_currency = Vec::new();
    let mut o_created = Vec::new();
    for i in 1..=n_orders as i64 {
        let day = base_day + rng.below(1400) as i32;
        o_id.push(i);
        o_cust.push(1 + rng.below(n_customers as u64) as i64);
        o_date.push(day);
        o_status.push(rng.pick(STATUSES).to_string());
        o_amount.push((500 + rng.below(250_000)) as i128);
        o_currency.push(if rng.below(3) == 0 { "USD" } else { "EUR" }.to_string());
        o_created.push(day as i64 * 86_400_000_000 + rng.below(86_400) as i64 * 1_000_000);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(o_id)),
        Arc::new(Int64Array::from(o_cust)),
        Arc::new(Date32Array::from(o_date)),
        Arc::new(StringArray::from(o_status)),
        Arc::new(
            Decimal128Array::from(o_amount)
                .with_precision_and_scale(10, 2)
                .unwrap_or_else(|_| Decimal128Array::from(Vec::<i128>::new())),
        ),
        Arc::new(StringArray::from(o_currency)),
        Arc::new(TimestampMicrosecondArray::from(o_created)),
    ];
    let orders = RecordBatch::try_from_iter(
        [
            "id",
            "customer_id",
            "order_date",
            "status",
            "amount",
            "currency",
            "created_at",
        ]
        .into_iter()
        .zip(columns),
    );
    // Both are built from equal-length columns; an error here would be a bug in this file.
    let empty = |_| RecordBatch::new_empty(Arc::new(datafusion::arrow::datatypes::Schema::empty()));
    (
        customers.unwrap_or_else(empty),
        orders.unwrap_or_else(empty),
    )
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'é' => 'e',
            'ü' => 'u',
            'í' => 'i',
            'ã' => 'a',
            c => c,
        })
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase()
}
