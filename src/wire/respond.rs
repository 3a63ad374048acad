//! A session's answers as the wire's responses: row descriptions (text or binary per column),
//! rows, command tags, COPY TO STDOUT's data.

use std::sync::Arc;

use futures::{StreamExt, stream};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::error::PgWireResult;

use super::cancel::CancelSlot;
use super::encode::TextOptions;
use super::{ConnState, cancellable, encode, pg_error};
use crate::error::Error;
use crate::session::{Engine, Outcome};

/// The columns of a result as announced, with each one's format and PostgreSQL type.
pub(super) fn wire_fields(
    schema: &datafusion::arrow::datatypes::Schema,
    names: &[String],
    formats: &Format,
) -> (Vec<FieldInfo>, Vec<FieldFormat>, Vec<Type>) {
    let fields = field_infos(schema, names, formats);
    let field_formats = fields.iter().map(|f| f.format()).collect();
    let types = fields.iter().map(|f| f.datatype().clone()).collect();
    (fields, field_formats, types)
}

/// Build a streaming row response; the stream ends with 57014 when the statement is cancelled.
pub(super) fn rows_response(
    outcome: Outcome,
    formats: &Format,
    opts: TextOptions,
    slot: &Arc<CancelSlot>,
    guard: crate::session::RunningGuard,
) -> PgWireResult<Response> {
    let Outcome::Rows {
        schema,
        names,
        stream: batches,
        command,
    } = outcome
    else {
        return Err(pg_error(Error::internal("not a row result")));
    };
    let (fields, field_formats, types) = wire_fields(&schema, &names, formats);
    let batches = cancellable(
        batches.map(|b| b.map_err(|e| pg_error(Error::from(e)))),
        slot.clone(),
        guard,
    );
    let rows = batches.flat_map(move |batch| {
        let rows = match batch {
            Ok(b) => match encode::encode_batch(&b, &field_formats, &types, &opts) {
                Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(pg_error(e))],
            },
            Err(e) => vec![Err(e)],
        };
        stream::iter(rows)
    });
    let mut resp = QueryResponse::new(Arc::new(fields), rows);
    resp.set_command_tag(command.tag());
    Ok(Response::Query(resp))
}

pub(super) fn format_for(formats: &Format, i: usize) -> FieldFormat {
    match formats {
        Format::UnifiedText => FieldFormat::Text,
        Format::UnifiedBinary => FieldFormat::Binary,
        Format::Individual(v) => match v.get(i) {
            Some(&1) => FieldFormat::Binary,
            _ => FieldFormat::Text,
        },
    }
}

pub(super) fn field_infos(
    schema: &datafusion::arrow::datatypes::Schema,
    names: &[String],
    formats: &Format,
) -> Vec<FieldInfo> {
    schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            use crate::pg::describe;
            let name = names.get(i).cloned().unwrap_or_else(|| f.name().clone());
            let (table, column) = describe::field_origin(f);
            let pg = encode::pg_type_of(f);
            let size = type_size(&pg);
            FieldInfo::new(
                name,
                (table != 0).then_some(table),
                (column != 0).then_some(column),
                pg,
                format_for(formats, i),
            )
            .with_type_modifier(describe::type_modifier(f))
            .with_type_size(size)
        })
        .collect()
}

/// `pg_type.typlen` of a result column's type, as RowDescription carries it (-1: variable).
pub(super) fn type_size(t: &Type) -> i16 {
    match *t {
        Type::BOOL | Type::CHAR => 1,
        Type::INT2 => 2,
        Type::INT4 | Type::FLOAT4 | Type::DATE | Type::OID => 4,
        Type::INT8 | Type::FLOAT8 | Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::TIME => 8,
        Type::UUID | Type::INTERVAL => 16,
        Type::NAME => 64,
        _ => -1,
    }
}

pub(super) fn outcome_response(
    outcome: Outcome,
    formats: &Format,
    state: &ConnState,
    opts: TextOptions,
    engine: &Engine,
) -> PgWireResult<Response> {
    Ok(match outcome {
        rows @ Outcome::Rows { .. } => {
            return rows_response(rows, formats, opts, &state.slot, engine.statement_guard());
        }
        Outcome::Command(t) => Response::Execution(tag(&t)),
        Outcome::Begin => Response::TransactionStart(Tag::new("BEGIN")),
        Outcome::Commit(t) => Response::TransactionEnd(tag(&t)),
        Outcome::Empty => Response::EmptyQuery,
        Outcome::CopyIn { columns } => Response::CopyIn(pgwire::api::results::CopyResponse::new(
            0,
            columns,
            stream::empty(),
        )),
        // Still in the block, and no longer failed.
        Outcome::RolledBack => Response::TransactionStart(Tag::new("ROLLBACK")),
        Outcome::CopyOut { rows, format } => {
            return copy_out(*rows, format, opts, &state.slot, engine.statement_guard());
        }
    })
}

/// COPY ... TO STDOUT: each row as one CopyData message in the COPY format asked for. Values are
/// encoded as for a result (text, or binary for BINARY), then framed the COPY way
/// (session::copy); the binary header and a CSV header line lead the first message.
pub(super) fn copy_out(
    outcome: Outcome,
    format: crate::session::copy::CopyFormat,
    opts: TextOptions,
    slot: &Arc<CancelSlot>,
    guard: crate::session::RunningGuard,
) -> PgWireResult<Response> {
    use crate::session::copy::{self, Kind};
    use pgwire::messages::copy::CopyData;
    let Outcome::Rows {
        schema,
        names,
        stream: batches,
        ..
    } = outcome
    else {
        return Err(pg_error(Error::internal("not a row result")));
    };
    let binary = format.kind == Kind::Binary;
    let wire_format = if binary {
        Format::UnifiedBinary
    } else {
        Format::UnifiedText
    };
    let (fields, field_formats, types) = wire_fields(&schema, &names, &wire_format);
    let ncols = fields.len();
    let mut lead: Option<Vec<u8>> = match format.kind {
        Kind::Binary => Some(copy::BINARY_HEADER.to_vec()),
        Kind::Csv | Kind::Text if format.header => {
            let header: Vec<Option<&[u8]>> = names
                .iter()
                .map(|n| Some(n.as_bytes()))
                .chain(
                    schema
                        .fields()
                        .iter()
                        .skip(names.len())
                        .map(|f| Some(f.name().as_bytes())),
                )
                .collect();
            Some(if format.kind == Kind::Csv {
                copy::csv_line(&header, &format)
            } else {
                copy::text_line(&header, &format)
            })
        }
        _ => None,
    };
    let frame = move |row: &pgwire::messages::data::DataRow| -> Vec<u8> {
        if binary {
            let mut out = Vec::with_capacity(row.data.len() + 2);
            out.extend_from_slice(&(row.field_count).to_be_bytes());
            out.extend_from_slice(&row.data);
            return out;
        }
        let mut values: Vec<Option<&[u8]>> = Vec::with_capacity(ncols);
        let mut at = 0;
        let data = &row.data[..];
        while at + 4 <= data.len() {
            let len = i32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            at += 4;
            if len < 0 {
                values.push(None);
            } else {
                let end = (at + len as usize).min(data.len());
                values.push(Some(&data[at..end]));
                at = end;
            }
        }
        if format.kind == Kind::Csv {
            copy::csv_line(&values, &format)
        } else {
            copy::text_line(&values, &format)
        }
    };
    // The lead goes in front of the first row, so the COPY count stays the row count; with no
    // rows at all it goes out on its own at the end.
    let first = Arc::new(std::sync::Mutex::new(lead.take()));
    let take_first = {
        let first = first.clone();
        move || first.lock().map(|mut g| g.take()).unwrap_or_default()
    };
    let rest = take_first.clone();
    let batches = cancellable(
        batches.map(|b| b.map_err(|e| pg_error(Error::from(e)))),
        slot.clone(),
        guard,
    );
    let rows = batches.flat_map(move |batch| {
        let out = match batch {
            Ok(b) => match encode::encode_batch(&b, &field_formats, &types, &opts) {
                Ok(rows) => rows
                    .iter()
                    .map(|r| {
                        let mut bytes = take_first().unwrap_or_default();
                        bytes.extend(frame(r));
                        Ok(CopyData::new(bytes.into()))
                    })
                    .collect::<Vec<_>>(),
                Err(e) => vec![Err(pg_error(e))],
            },
            Err(e) => vec![Err(e)],
        };
        stream::iter(out)
    });
    let rows = rows.chain(
        stream::once(async move { rest() })
            .filter_map(|lead| async move { lead.map(|b| Ok(CopyData::new(b.into()))) }),
    );
    Ok(Response::CopyOut(pgwire::api::results::CopyResponse::new(
        if binary { 1 } else { 0 },
        ncols,
        rows,
    )))
}

pub(super) fn tag(t: &crate::session::CommandTag) -> Tag {
    let mut tag = Tag::new(&t.command);
    if t.with_oid {
        tag = tag.with_oid(0);
    }
    if let Some(r) = t.rows {
        tag = tag.with_rows(r);
    }
    tag
}
