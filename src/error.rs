//! The crate's one error type and the one place where an error becomes a SQLSTATE.
//!
//! Every layer returns [`Error`]; DataFusion callbacks carry it inside
//! `DataFusionError::External`, and [`Error::sqlstate`] digs it out again at the wire edge.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every SQLSTATE Lakegate answers, by PostgreSQL's condition name (Appendix A of its manual):
/// the one table of codes. An error or notice names one of these; nothing else spells a code.
macro_rules! sqlstates {
    ($($name:ident = $code:literal),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum SqlState { $($name),* }
        impl SqlState {
            /// The five-character code sent to the client.
            pub const fn code(self) -> &'static str {
                match self { $(SqlState::$name => $code),* }
            }
            /// Every state, for tests.
            pub const ALL: &'static [SqlState] = &[$(SqlState::$name),*];
        }
    };
}

sqlstates! {
    SuccessfulCompletion = "00000",
    Warning = "01000",
    ConnectionFailure = "08006",
    ProtocolViolation = "08P01",
    FeatureNotSupported = "0A000",
    CardinalityViolation = "21000",
    DataException = "22000",
    StringDataRightTruncation = "22001",
    NumericValueOutOfRange = "22003",
    DatetimeFieldOverflow = "22008",
    DivisionByZero = "22012",
    CharacterNotInRepertoire = "22021",
    InvalidParameterValue = "22023",
    InvalidTextRepresentation = "22P02",
    InvalidBinaryRepresentation = "22P03",
    BadCopyFileFormat = "22P04",
    NotNullViolation = "23502",
    ActiveSqlTransaction = "25001",
    NoActiveSqlTransaction = "25P01",
    InFailedSqlTransaction = "25P02",
    InvalidAuthorizationSpecification = "28000",
    InvalidPassword = "28P01",
    DependentObjectsStillExist = "2BP01",
    InvalidCursorName = "34000",
    InvalidSavepointSpecification = "3B001",
    InvalidSchemaName = "3F000",
    SerializationFailure = "40001",
    InsufficientPrivilege = "42501",
    SyntaxError = "42601",
    InvalidName = "42602",
    ReservedName = "42939",
    DuplicateColumn = "42701",
    AmbiguousColumn = "42702",
    UndefinedColumn = "42703",
    UndefinedObject = "42704",
    DuplicateObject = "42710",
    GroupingError = "42803",
    DatatypeMismatch = "42804",
    WrongObjectType = "42809",
    UndefinedFunction = "42883",
    UndefinedTable = "42P01",
    DuplicateCursor = "42P03",
    DuplicateSchema = "42P06",
    DuplicateTable = "42P07",
    InvalidTableDefinition = "42P16",
    OutOfMemory = "53200",
    TooManyConnections = "53300",
    ConfigurationLimitExceeded = "53400",
    ProgramLimitExceeded = "54000",
    StatementTooComplex = "54001",
    ObjectNotInPrerequisiteState = "55000",
    CantChangeRuntimeParam = "55P02",
    QueryCanceled = "57014",
    AdminShutdown = "57P01",
    IoError = "58030",
    ConfigFileError = "F0000",
    InternalError = "XX000",
}

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
    Data { sqlstate: SqlState, message: String },
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
    /// The audit log cannot be written: nothing runs unaudited.
    #[error("{0}")]
    AuditLog(String),
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
        return tail("value too long").map(|t| Error::data(SqlState::StringDataRightTruncation, t));
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
    pub fn data(sqlstate: SqlState, msg: impl Into<String>) -> Self {
        Error::Data {
            sqlstate,
            message: msg.into(),
        }
    }

    /// The code of [`Self::state`], as sent to the client.
    pub fn sqlstate(&self) -> &'static str {
        self.state().code()
    }

    /// The one mapping from an error to its PostgreSQL SQLSTATE.
    pub fn state(&self) -> SqlState {
        match self {
            Error::Syntax(_) => SqlState::SyntaxError,
            Error::UndefinedTable(_) => SqlState::UndefinedTable,
            Error::UndefinedSchema(_) => SqlState::InvalidSchemaName,
            Error::UndefinedColumn(_) => SqlState::UndefinedColumn,
            Error::UndefinedFunction(_) => SqlState::UndefinedFunction,
            Error::UndefinedObject(_) => SqlState::UndefinedObject,
            Error::DuplicateTable(_) => SqlState::DuplicateTable,
            Error::DuplicateSchema(_) => SqlState::DuplicateSchema,
            Error::DependentObjects(_) => SqlState::DependentObjectsStillExist,
            Error::Data { sqlstate, .. } => *sqlstate,
            Error::NotNull(_) => SqlState::NotNullViolation,
            Error::InvalidParameter(_) => SqlState::InvalidParameterValue,
            Error::Unsupported(_) => SqlState::FeatureNotSupported,
            Error::PermissionDenied(_) => SqlState::InsufficientPrivilege,
            Error::WriteConflict(_) => SqlState::SerializationFailure,
            Error::Cancelled | Error::StatementTimeout => SqlState::QueryCanceled,
            Error::OutOfMemory(_) => SqlState::OutOfMemory,
            Error::TooManyConnections(_) => SqlState::TooManyConnections,
            Error::StackDepth(_) => SqlState::StatementTooComplex,
            Error::ProgramLimit(_) => SqlState::ProgramLimitExceeded,
            Error::Config(_) => SqlState::ConfigFileError,
            Error::Io(_) => SqlState::IoError,
            Error::Storage(_) | Error::AuditLog(_) => SqlState::IoError,
            Error::Internal(_) => SqlState::InternalError,
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
        // PostgreSQL names a relation of its default schema bare (the catalog's default
        // schema is PostgreSQL's, `public`; this layer is below the catalog's).
        [_, "public", t] => t.to_string(),
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
fn cast_failure(m: &str) -> Option<(SqlState, String)> {
    if let Some(rest) = m.strip_prefix("Can't cast value ") {
        let ty = rest.split(" to type ").nth(1)?;
        return Some((
            SqlState::NumericValueOutOfRange,
            format!("{} out of range", pg_type_word(ty)),
        ));
    }
    if let Some(rest) = m.strip_prefix("Cannot cast string '") {
        let (value, tail) = rest.rsplit_once("' to value of ")?;
        let ty = tail.strip_suffix(" type")?;
        return Some((
            SqlState::InvalidTextRepresentation,
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

fn datafusion_sqlstate(e: &DataFusionError) -> SqlState {
    match e.find_root() {
        DataFusionError::SQL(p, _) if matches!(p.as_ref(), ParserError::RecursionLimitExceeded) => {
            SqlState::StatementTooComplex
        }
        DataFusionError::SQL(_, _) => SqlState::SyntaxError,
        DataFusionError::NotImplemented(_) => SqlState::FeatureNotSupported,
        DataFusionError::ResourcesExhausted(_) => SqlState::OutOfMemory,
        DataFusionError::SchemaError(s, _) => {
            use datafusion::common::SchemaError as S;
            match s.as_ref() {
                S::FieldNotFound { .. } => SqlState::UndefinedColumn,
                S::AmbiguousReference { .. } => SqlState::AmbiguousColumn,
                S::DuplicateQualifiedField { .. } | S::DuplicateUnqualifiedField { .. } => {
                    SqlState::DuplicateColumn
                }
            }
        }
        DataFusionError::ArrowError(a, _) => arrow_sqlstate(a),
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(ours) => ours.state(),
            None => match inner.downcast_ref::<ArrowError>() {
                Some(a) => arrow_sqlstate(a),
                None => SqlState::InternalError,
            },
        },
        DataFusionError::Plan(m) => plan_sqlstate(m),
        DataFusionError::Execution(m) => execution_sqlstate(m),
        DataFusionError::Configuration(_) => SqlState::InvalidParameterValue,
        _ => SqlState::InternalError,
    }
}

fn arrow_sqlstate(a: &ArrowError) -> SqlState {
    match a {
        ArrowError::DivideByZero => SqlState::DivisionByZero,
        ArrowError::ArithmeticOverflow(_) => SqlState::NumericValueOutOfRange,
        ArrowError::CastError(m) if cast_failure(m).is_some() => cast_failure(m)
            .map(|(code, _)| code)
            .unwrap_or(SqlState::InvalidTextRepresentation),
        ArrowError::CastError(m) | ArrowError::ParseError(m) => {
            if m.contains("overflow") || m.contains("too large") || m.contains("out of range") {
                SqlState::NumericValueOutOfRange
            } else if m.contains("Can't cast")
                || m.contains("Cannot cast")
                || m.contains("parse")
                || m.contains("Parse")
            {
                SqlState::InvalidTextRepresentation
            } else {
                SqlState::DataException
            }
        }
        ArrowError::ComputeError(m) | ArrowError::InvalidArgumentError(m)
            if m.contains("Overflow")
                || m.contains("overflow")
                || m.contains("too large to store") =>
        {
            SqlState::NumericValueOutOfRange
        }
        ArrowError::InvalidArgumentError(m) if m.contains("non-nullable") || m.contains("null") => {
            SqlState::NotNullViolation
        }
        _ => SqlState::InternalError,
    }
}

/// A guess of a SQLSTATE from the text of a DataFusion error, which carries no code: the
/// message (lowercased) holds one word of each group. The first matching row wins. `example`
/// is a message DataFusion sends that the row is for (the unit tests check each row with it).
struct Guess {
    words: &'static [&'static [&'static str]],
    state: SqlState,
    #[cfg_attr(not(test), allow(dead_code))]
    example: &'static str,
}

const fn guess(
    words: &'static [&'static [&'static str]],
    state: SqlState,
    example: &'static str,
) -> Guess {
    Guess {
        words,
        state,
        example,
    }
}

/// The guesses for planning errors (`DataFusionError::Plan`); otherwise 42601.
const PLAN_GUESSES: &[Guess] = &[
    guess(
        &[
            &["table"],
            &["not found", "doesn't exist", "does not exist"],
        ],
        SqlState::UndefinedTable,
        "table 'lakegate.public.nope' not found",
    ),
    guess(
        &[&["schema"], &["not found", "doesn't exist"]],
        SqlState::InvalidSchemaName,
        "schema 'nope' doesn't exist",
    ),
    guess(
        &[&["invalid function", "no function matches"]],
        SqlState::UndefinedFunction,
        "Invalid function 'nope'.",
    ),
    guess(
        &[&["function"], &["not found"]],
        SqlState::UndefinedFunction,
        "function 'nope' not found",
    ),
    guess(
        &[&["no field named"]],
        SqlState::UndefinedColumn,
        "Schema error: No field named nope.",
    ),
    guess(
        &[&["does not support"], &["type"]],
        SqlState::UndefinedFunction,
        "Function 'abs' does not support type Utf8",
    ),
    guess(
        &[&["cannot be cast", "cannot infer common", "coercion"]],
        SqlState::DatatypeMismatch,
        "Cannot infer common argument type for comparison operation Int64 = Utf8",
    ),
    guess(
        &[&["type"], &["mismatch"]],
        SqlState::DatatypeMismatch,
        "Data type mismatch in UNION",
    ),
    guess(
        &[&["already exists"]],
        SqlState::DuplicateTable,
        "Table 't' already exists",
    ),
    guess(
        &[&["not supported", "unsupported"]],
        SqlState::FeatureNotSupported,
        "Unsupported ast node in sqltorel",
    ),
    guess(
        &[&["aggregate", "group by"]],
        SqlState::GroupingError,
        "Column in SELECT must be in GROUP BY or an aggregate function",
    ),
];

/// The guesses for execution errors (`DataFusionError::Execution`); otherwise XX000.
const EXECUTION_GUESSES: &[Guess] = &[
    guess(
        &[&["non-nullable", "null value"]],
        SqlState::NotNullViolation,
        "Invalid batch column at '0' has null but schema specifies non-nullable",
    ),
    guess(
        &[&["divide by zero", "division by zero"]],
        SqlState::DivisionByZero,
        "Divide by zero error",
    ),
    guess(
        &[&["overflow", "out of range"]],
        SqlState::NumericValueOutOfRange,
        "Arithmetic overflow: Overflow happened on: 9223372036854775807 + 1",
    ),
    guess(
        &[&[
            "cannot cast",
            "can't cast",
            "invalid input",
            "error parsing",
        ]],
        SqlState::InvalidTextRepresentation,
        "Error parsing 'x' as timestamp",
    ),
    guess(
        &[&["not supported", "unsupported"]],
        SqlState::FeatureNotSupported,
        "Unsupported data type Interval",
    ),
];

fn guessed(guesses: &[Guess], m: &str, otherwise: SqlState) -> SqlState {
    let l = m.to_ascii_lowercase();
    guesses
        .iter()
        .find(|g| g.words.iter().all(|any| any.iter().any(|w| l.contains(w))))
        .map_or(otherwise, |g| g.state)
}

fn plan_sqlstate(m: &str) -> SqlState {
    if system_catalog(m).is_some() {
        return SqlState::FeatureNotSupported;
    }
    guessed(PLAN_GUESSES, m, SqlState::SyntaxError)
}

fn execution_sqlstate(m: &str) -> SqlState {
    guessed(EXECUTION_GUESSES, m, SqlState::InternalError)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_message_guess_matches_its_example_and_no_earlier_row() {
        for (table, otherwise) in [
            (PLAN_GUESSES, SqlState::SyntaxError),
            (EXECUTION_GUESSES, SqlState::InternalError),
        ] {
            for g in table {
                assert_eq!(
                    guessed(table, g.example, otherwise),
                    g.state,
                    "{}",
                    g.example
                );
            }
            assert_eq!(
                guessed(table, "something else entirely", otherwise),
                otherwise
            );
        }
        assert_eq!(
            plan_sqlstate("table 'lakegate.pg_catalog.pg_nope' not found"),
            SqlState::FeatureNotSupported
        );
    }

    #[test]
    fn every_sqlstate_is_five_characters_and_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for s in SqlState::ALL {
            assert_eq!(s.code().len(), 5, "{s:?}");
            assert!(seen.insert(s.code()), "{s:?} listed twice");
        }
    }

    use super::*;

    #[test]
    fn our_errors_survive_a_trip_through_datafusion() {
        let df: DataFusionError = Error::Cancelled.into();
        let back = Error::from(df);
        assert_eq!(back.state(), SqlState::QueryCanceled);
    }

    #[test]
    fn datafusion_errors_map_to_postgres_codes() {
        let e = Error::from(DataFusionError::Plan(
            "table 'lakegate.public.nope' not found".into(),
        ));
        assert_eq!(e.state(), SqlState::UndefinedTable);
        assert_eq!(e.client_message(), "relation \"nope\" does not exist");
        let e = Error::from(DataFusionError::Plan(
            "table 'lakegate.pg_catalog.pg_class' not found".into(),
        ));
        assert_eq!(e.state(), SqlState::FeatureNotSupported);
        let e = Error::from(DataFusionError::NotImplemented("x".into()));
        assert_eq!(e.state(), SqlState::FeatureNotSupported);
        let e = Error::from(ArrowError::DivideByZero);
        assert_eq!(e.state(), SqlState::DivisionByZero);
        assert_eq!(e.client_message(), "division by zero");
    }

    #[test]
    fn cast_failures_read_like_postgres() {
        let e = Error::from(ArrowError::CastError(
            "Can't cast value 40000 to type Int16".into(),
        ));
        assert_eq!(
            (e.state(), e.client_message().as_str()),
            (SqlState::NumericValueOutOfRange, "smallint out of range")
        );
        let e = Error::from(ArrowError::CastError(
            "Cannot cast string 'x' to value of Int32 type".into(),
        ));
        assert_eq!(e.state(), SqlState::InvalidTextRepresentation);
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
