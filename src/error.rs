//! The crate's one error type and the one place where an error becomes a SQLSTATE.
//!
//! Every layer returns [`Error`]; DataFusion callbacks carry it inside
//! `DataFusionError::External`, and [`Error::sqlstate`] digs it out again at the wire edge.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors by domain. Messages are lowercase, name the object and suggest a fix when one is known.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text does not parse.
    #[error("{0}")]
    Syntax(String),
    /// A named table, view or schema does not exist.
    #[error("{0}")]
    UndefinedTable(String),
    #[error("{0}")]
    UndefinedSchema(String),
    #[error("{0}")]
    UndefinedColumn(String),
    #[error("{0}")]
    UndefinedFunction(String),
    #[error("{0}")]
    UndefinedObject(String),
    #[error("{0}")]
    DuplicateTable(String),
    #[error("{0}")]
    DuplicateSchema(String),
    /// Schema not empty and similar dependency errors.
    #[error("{0}")]
    DependentObjects(String),
    /// A value does not fit the type or is malformed (SQLSTATE class 22).
    #[error("{message}")]
    Data {
        sqlstate: &'static str,
        message: String,
    },
    /// NOT NULL violated.
    #[error("{0}")]
    NotNull(String),
    #[error("{0}")]
    InvalidParameter(String),
    /// The feature is not supported (yet).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    WriteConflict(String),
    #[error("canceling statement due to user request")]
    Cancelled,
    #[error("canceling statement due to statement timeout")]
    StatementTimeout,
    #[error("{0}")]
    OutOfMemory(String),
    #[error("{0}")]
    TooManyConnections(String),
    /// A statement nested too deeply to handle (PostgreSQL's `stack depth limit exceeded`).
    #[error("{0}")]
    StackDepth(String),
    /// A statement or value beyond what the server handles (PostgreSQL's program limits).
    #[error("{0}")]
    ProgramLimit(String),
    /// Configuration could not be loaded or is invalid; not a client error.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("storage: {0}")]
    Storage(String),
    #[error(transparent)]
    DataFusion(Box<DataFusionError>),
    /// A bug: something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        // Recover our own error when it travelled through DataFusion.
        match e {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                // A table format's error that travelled through DataFusion (a write's commit).
                Err(other) => match other.downcast::<deltalake::DeltaTableError>() {
                    Ok(delta) => Error::from(*delta),
                    Err(other) => Error::DataFusion(Box::new(DataFusionError::External(other))),
                },
            },
            DataFusionError::Context(_, inner)
                if matches!(inner.as_ref(), DataFusionError::External(_)) =>
            {
                Error::from(*inner)
            }
            other => Error::DataFusion(Box::new(other)),
        }
    }
}

impl From<datafusion::parquet::errors::ParquetError> for Error {
    fn from(e: datafusion::parquet::errors::ParquetError) -> Self {
        Error::from(DataFusionError::ParquetError(Box::new(e)))
    }
}

impl From<ArrowError> for Error {
    fn from(e: ArrowError) -> Self {
        Error::from(DataFusionError::from(e))
    }
}

impl From<ParserError> for Error {
    fn from(e: ParserError) -> Self {
        match e {
            ParserError::RecursionLimitExceeded => crate::error::stack_depth(),
            other => Error::Syntax(strip_parser_prefix(&other.to_string())),
        }
    }
}

/// PostgreSQL's error for a statement nested too deeply.
pub fn stack_depth() -> Error {
    Error::StackDepth(
        "stack depth limit exceeded: the statement nests too deeply (parentheses, subqueries, \
         chains of operators, UNION or JOIN); split it or nest it less"
            .into(),
    )
}

impl From<deltalake::DeltaTableError> for Error {
    fn from(e: deltalake::DeltaTableError) -> Self {
        use deltalake::DeltaTableError as D;
        match e {
            D::VersionAlreadyExists(v) => Error::WriteConflict(format!(
                "could not serialize access: table version {v} was committed concurrently"
            )),
            D::Transaction { source } => Error::WriteConflict(format!(
                "could not serialize access due to concurrent update: {source}"
            )),
            // One of our own checks (not-null, length, row policy) come back through
            // deltalake's writer as text.
            D::Generic(m) if ours_from_text(&m).is_some() => {
                ours_from_text(&m).unwrap_or(Error::Storage(m))
            }
            D::Generic(m) if m.contains("non-nullable") => Error::NotNull(m),
            // deltalake's invariant check (NOT NULL); its message previews the rows: not shown.
            other if other.to_string().contains("failed validation check") => Error::NotNull(
                "null value violates a not-null constraint; nothing was written".into(),
            ),
            other => Error::Storage(other.to_string()),
        }
    }
}

/// Our errors that deltalake's writer turned into text: recover their SQLSTATE and words.
fn ours_from_text(m: &str) -> Option<Error> {
    let tail = |start: &str| m.find(start).map(|i| m[i..].to_string());
    if m.contains("violates not-null constraint") {
        return tail("null value in column").map(Error::NotNull);
    }
    if m.contains("value too long for type") {
        return tail("value too long").map(|t| Error::data("22001", t));
    }
    if m.contains("violates row-level security policy") {
        return tail("new row violates").map(Error::PermissionDenied);
    }
    if m.contains("permission denied for column") {
        return tail("permission denied for column").map(Error::PermissionDenied);
    }
    None
}

impl From<iceberg::Error> for Error {
    fn from(e: iceberg::Error) -> Self {
        use iceberg::ErrorKind as K;
        match e.kind() {
            K::CatalogCommitConflicts => Error::WriteConflict(format!(
                "could not serialize access due to concurrent update: {}",
                e.message()
            )),
            K::FeatureUnsupported => Error::Unsupported(format!("iceberg: {}", e.message())),
            K::TableNotFound => Error::UndefinedTable(e.message().to_string()),
            K::TableAlreadyExists => Error::DuplicateTable(e.message().to_string()),
            _ => Error::Storage(format!("iceberg: {e}")),
        }
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<Error> for DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::DataFusion(inner) => *inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

fn strip_parser_prefix(s: &str) -> String {
    s.trim_start_matches("sql parser error: ").to_string()
}

impl Error {
    pub fn internal(msg: impl Into<String>) -> Self {
        Error::Internal(msg.into())
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Error::Unsupported(msg.into())
    }
    pub fn data(sqlstate: &'static str, msg: impl Into<String>) -> Self {
        Error::Data {
            sqlstate,
            message: msg.into(),
        }
    }

    /// The one mapping from an error to its PostgreSQL SQLSTATE.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Syntax(_) => "42601",
            Error::UndefinedTable(_) => "42P01",
            Error::UndefinedSchema(_) => "3F000",
            Error::UndefinedColumn(_) => "42703",
            Error::UndefinedFunction(_) => "42883",
            Error::UndefinedObject(_) => "42704",
            Error::DuplicateTable(_) => "42P07",
            Error::DuplicateSchema(_) => "42P06",
            Error::DependentObjects(_) => "2BP01",
            Error::Data { sqlstate, .. } => sqlstate,
            Error::NotNull(_) => "23502",
            Error::InvalidParameter(_) => "22023",
            Error::Unsupported(_) => "0A000",
            Error::PermissionDenied(_) => "42501",
            Error::WriteConflict(_) => "40001",
            Error::Cancelled | Error::StatementTimeout => "57014",
            Error::OutOfMemory(_) => "53200",
            Error::TooManyConnections(_) => "53300",
            Error::StackDepth(_) => "54001",
            Error::ProgramLimit(_) => "54000",
            Error::Config(_) => "F0000",
            Error::Io(_) => "58030",
            Error::Storage(_) => "58030",
            Error::Internal(_) => "XX000",
            Error::DataFusion(e) => datafusion_sqlstate(e),
        }
    }

    /// The message shown to the client.
    pub fn client_message(&self) -> String {
        match self {
            Error::DataFusion(e) => datafusion_message(e),
            other => other.to_string(),
        }
    }
}

fn datafusion_message(e: &DataFusionError) -> String {
    let root = e.find_root();
    let msg = match root {
        DataFusionError::SQL(p, _) if matches!(p.as_ref(), ParserError::RecursionLimitExceeded) => {
            crate::error::stack_depth().to_string()
        }
        DataFusionError::SQL(p, _) => strip_parser_prefix(&p.to_string()),
        DataFusionError::Plan(m) if system_catalog(m).is_some() => format!(
            "system catalog {} is not available yet (psql's \\d commands and driver metadata need it)",
            system_catalog(m).unwrap_or_default()
        ),
        DataFusionError::Plan(m) if relation_not_found(m).is_some() => {
            format!(
                "relation \"{}\" does not exist",
                relation_not_found(m).unwrap_or_default()
            )
        }
        DataFusionError::Plan(m)
        | DataFusionError::Execution(m)
        | DataFusionError::NotImplemented(m)
        | DataFusionError::Configuration(m)
        | DataFusionError::ResourcesExhausted(m) => m.clone(),
        DataFusionError::SchemaError(s, _) => s.to_string(),
        DataFusionError::ArrowError(a, _) => arrow_message(a),
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => ours.client_message(),
            None => inner.to_string(),
        },
        other => other.to_string(),
    };
    lowercase_first(&msg)
}

/// A missing pg_catalog relation: a feature not there yet rather than a user's typo.
fn system_catalog(m: &str) -> Option<String> {
    let name = relation_not_found(m)?;
    name.strip_prefix("pg_catalog.")
        .map(|n| format!("pg_catalog.{n}"))
}

/// `table 'db.schema.name' not found` (DataFusion) to the name PostgreSQL would print.
fn relation_not_found(m: &str) -> Option<String> {
    let name = m.strip_prefix("table '")?.strip_suffix("' not found")?;
    let parts: Vec<&str> = name.split('.').collect();
    Some(match parts.as_slice() {
        [_, s, t] if *s == crate::catalog::DEFAULT_SCHEMA => t.to_string(),
        [_, s, t] => format!("{s}.{t}"),
        _ => name.to_string(),
    })
}

/// PostgreSQL's name of an Arrow type, for messages.
fn pg_type_word(arrow: &str) -> &str {
    match arrow.trim() {
        "Int16" => "smallint",
        "Int32" => "integer",
        "Int64" => "bigint",
        "Float32" => "real",
        "Float64" => "double precision",
        "Boolean" => "boolean",
        "Date32" => "date",
        t if t.starts_with("Timestamp") => "timestamp",
        t if t.starts_with("Decimal") => "numeric",
        t => t,
    }
}

/// Arrow's cast failures in PostgreSQL's words: `Can't cast value 40000 to type Int16` is
/// "smallint out of range"; `Cannot cast string 'x' to value of Int16 type` is invalid input.
fn cast_failure(m: &str) -> Option<(&'static str, String)> {
    if let Some(rest) = m.strip_prefix("Can't cast value ") {
        let ty = rest.split(" to type ").nth(1)?;
        return Some(("22003", format!("{} out of range", pg_type_word(ty))));
    }
    if let Some(rest) = m.strip_prefix("Cannot cast string '") {
        let (value, tail) = rest.rsplit_once("' to value of ")?;
        let ty = tail.strip_suffix(" type")?;
        return Some((
            "22P02",
            format!(
                "invalid input syntax for type {}: \"{value}\"",
                pg_type_word(ty)
            ),
        ));
    }
    None
}

fn arrow_message(a: &ArrowError) -> String {
    match a {
        ArrowError::DivideByZero => "division by zero".to_string(),
        ArrowError::CastError(m) if cast_failure(m).is_some() => {
            cast_failure(m).map(|(_, msg)| msg).unwrap_or_default()
        }
        ArrowError::InvalidArgumentError(m) if m.contains("too large to store") => {
            format!("numeric field overflow: {m}")
        }
        ArrowError::CastError(m)
        | ArrowError::ParseError(m)
        | ArrowError::ComputeError(m)
        | ArrowError::InvalidArgumentError(m) => m.clone(),
        ArrowError::ArithmeticOverflow(m) => format!("value out of range: {m}"),
        other => other.to_string(),
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        // keep acronyms (e.g. "SQL") intact
        Some(c) if c.is_uppercase() && !chars.next().is_some_and(|n| n.is_uppercase()) => {
            let mut out = c.to_lowercase().collect::<String>();
            out.push_str(&s[c.len_utf8()..]);
            out
        }
        _ => s.to_string(),
    }
}

fn datafusion_sqlstate(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::SQL(p, _) if matches!(p.as_ref(), ParserError::RecursionLimitExceeded) => {
            "54001"
        }
        DataFusionError::SQL(_, _) => "42601",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::SchemaError(s, _) => {
            use datafusion::common::SchemaError as S;
            match s.as_ref() {
                S::FieldNotFound { .. } => "42703",
                S::AmbiguousReference { .. } => "42702",
                S::DuplicateQualifiedField { .. } | S::DuplicateUnqualifiedField { .. } => "42701",
            }
        }
        DataFusionError::ArrowError(a, _) => arrow_sqlstate(a),
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => ours.sqlstate(),
            None => match inner.downcast_ref::<ArrowError>() {
                Some(a) => arrow_sqlstate(a),
                None => "XX000",
            },
        },
        DataFusionError::Plan(m) => plan_sqlstate(m),
        DataFusionError::Execution(m) => execution_sqlstate(m),
        DataFusionError::Configuration(_) => "22023",
        _ => "XX000",
    }
}

fn arrow_sqlstate(a: &ArrowError) -> &'static str {
    match a {
        ArrowError::DivideByZero => "22012",
        ArrowError::ArithmeticOverflow(_) => "22003",
        ArrowError::CastError(m) if cast_failure(m).is_some() => {
            cast_failure(m).map(|(code, _)| code).unwrap_or("22P02")
        }
        ArrowError::CastError(m) | ArrowError::ParseError(m) => {
            if m.contains("overflow") || m.contains("too large") || m.contains("out of range") {
                "22003"
            } else if m.contains("Can't cast")
                || m.contains("Cannot cast")
                || m.contains("parse")
                || m.contains("Parse")
            {
                "22P02"
            } else {
                "22000"
            }
        }
        ArrowError::ComputeError(m) | ArrowError::InvalidArgumentError(m)
            if m.contains("Overflow")
                || m.contains("overflow")
                || m.contains("too large to store") =>
        {
            "22003"
        }
        ArrowError::InvalidArgumentError(m) if m.contains("non-nullable") || m.contains("null") => {
            "23502"
        }
        _ => "XX000",
    }
}

fn plan_sqlstate(m: &str) -> &'static str {
    let l = m.to_ascii_lowercase();
    if system_catalog(m).is_some() {
        "0A000"
    } else if l.contains("table")
        && (l.contains("not found") || l.contains("doesn't exist") || l.contains("does not exist"))
    {
        "42P01"
    } else if l.contains("schema") && (l.contains("not found") || l.contains("doesn't exist")) {
        "3F000"
    } else if l.contains("invalid function")
        || l.contains("no function matches")
        || l.contains("function") && l.contains("not found")
    {
        "42883"
    } else if l.contains("does not support") && l.contains("type") || l.contains("no field named") {
        if l.contains("no field named") {
            "42703"
        } else {
            "42883"
        }
    } else if l.contains("cannot be cast")
        || l.contains("cannot infer common")
        || l.contains("coercion")
        || l.contains("type") && l.contains("mismatch")
    {
        "42804"
    } else if l.contains("already exists") {
        "42P07"
    } else if l.contains("not supported") || l.contains("unsupported") {
        "0A000"
    } else if l.contains("aggregate") || l.contains("group by") {
        "42803"
    } else {
        "42601"
    }
}

fn execution_sqlstate(m: &str) -> &'static str {
    let l = m.to_ascii_lowercase();
    if l.contains("non-nullable") || l.contains("null value") {
        "23502"
    } else if l.contains("divide by zero") || l.contains("division by zero") {
        "22012"
    } else if l.contains("overflow") || l.contains("out of range") {
        "22003"
    } else if l.contains("cannot cast")
        || l.contains("can't cast")
        || l.contains("invalid input")
        || l.contains("error parsing")
    {
        "22P02"
    } else if l.contains("not supported") || l.contains("unsupported") {
        "0A000"
    } else {
        "XX000"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_errors_survive_a_trip_through_datafusion() {
        let df: DataFusionError = Error::Cancelled.into();
        let back = Error::from(df);
        assert_eq!(back.sqlstate(), "57014");
    }

    #[test]
    fn datafusion_errors_map_to_postgres_codes() {
        let e = Error::from(DataFusionError::Plan(
            "table 'lakegate.public.nope' not found".into(),
        ));
        assert_eq!(e.sqlstate(), "42P01");
        assert_eq!(e.client_message(), "relation \"nope\" does not exist");
        let e = Error::from(DataFusionError::Plan(
            "table 'lakegate.pg_catalog.pg_class' not found".into(),
        ));
        assert_eq!(e.sqlstate(), "0A000");
        let e = Error::from(DataFusionError::NotImplemented("x".into()));
        assert_eq!(e.sqlstate(), "0A000");
        let e = Error::from(ArrowError::DivideByZero);
        assert_eq!(e.sqlstate(), "22012");
        assert_eq!(e.client_message(), "division by zero");
    }

    #[test]
    fn cast_failures_read_like_postgres() {
        let e = Error::from(ArrowError::CastError(
            "Can't cast value 40000 to type Int16".into(),
        ));
        assert_eq!(
            (e.sqlstate(), e.client_message().as_str()),
            ("22003", "smallint out of range")
        );
        let e = Error::from(ArrowError::CastError(
            "Cannot cast string 'x' to value of Int32 type".into(),
        ));
        assert_eq!(e.sqlstate(), "22P02");
        assert_eq!(
            e.client_message(),
            "invalid input syntax for type integer: \"x\""
        );
    }

    #[test]
    fn messages_start_lowercase() {
        assert_eq!(lowercase_first("Invalid function"), "invalid function");
        assert_eq!(lowercase_first("SQL error"), "SQL error");
    }
}
