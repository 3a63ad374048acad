//! Which queries a materialized view can answer, and the query over the view that answers them.
//!
//! Matching is on the SQL tree of select-project-join-group queries, which is the shape of the
//! BI queries views are made for: the query reads the same FROM (tables, joins, aliases) as
//! the view, keeps every filter of the view (and may add filters on the view's group keys), and
//! groups by some of the view's group keys. It is answered by
//! - the view's rows directly, when it groups by the same keys (any aggregate of the view,
//!   AVG and COUNT(DISTINCT) included, is taken as it is), or
//! - a roll-up of the view's rows, when it groups by fewer keys: SUM of SUMs, SUM of COUNTs,
//!   MIN of MINs, MAX of MAXes;
//! - for a view without aggregates, any query over its columns with the same FROM.
//!
//! The literals of the added filters are free, so a dashboard's tile with another month picked
//! is answered from the same view. The result is a query over the view's table that plans like
//! any other; the session checks freshness, and the view's secure scan carries the asking
//! user's policies on its sources (`policy::matview`).

use std::collections::{HashMap, HashSet};

use datafusion::sql::sqlparser::ast::{
    self, Expr, GroupByExpr, Ident, ObjectName, ObjectNamePart, Query, Select, SelectItem, SetExpr,
    TableFactor, Value,
};

/// A view ready for matching.
#[derive(Debug, Clone)]
pub struct Definition {
    pub schema: String,
    pub name: String,
    /// Its defining query.
    pub query: Query,
    /// The schema its unqualified names resolve to.
    pub default_schema: String,
}

/// The answer from a view.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The query over the view's table.
    pub query: Query,
}

const AGGREGATES: &[&str] = &[
    "sum",
    "count",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "bool_and",
    "bool_or",
    "every",
    "stddev",
    "stddev_samp",
    "stddev_pop",
    "variance",
    "var_samp",
    "var_pop",
    "median",
    "approx_distinct",
];

fn is_aggregate(f: &ast::Function) -> bool {
    f.over.is_none()
        && f.name
            .0
            .last()
            .is_some_and(|p| AGGREGATES.contains(&p.to_string().to_ascii_lowercase().as_str()))
}

fn has_aggregate(e: &Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x: &Expr| {
        if let Expr::Function(f) = x
            && is_aggregate(f)
        {
            found = true;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    found
}

/// An expression's text with unquoted identifiers and function names folded to lower case, as
/// PostgreSQL resolves them: what two expressions are compared by.
fn norm(e: &Expr) -> String {
    let mut e = e.clone();
    let _ = ast::visit_expressions_mut(&mut e, |x: &mut Expr| {
        match x {
            Expr::Identifier(i) => fold(i),
            Expr::CompoundIdentifier(parts) => parts.iter_mut().for_each(fold),
            Expr::Function(f) => f.name.0.iter_mut().for_each(|p| {
                if let ObjectNamePart::Identifier(i) = p {
                    fold(i)
                }
            }),
            _ => {}
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    e.to_string()
}

fn fold(i: &mut Ident) {
    if i.quote_style.is_none() {
        i.value = i.value.to_lowercase();
    }
}

/// The FROM clause with table names resolved to `schema.table`.
fn norm_from(s: &Select, default_schema: &str, database: &str) -> String {
    let mut from = s.from.clone();
    for t in &mut from {
        let mut factors: Vec<&mut TableFactor> = vec![&mut t.relation];
        factors.extend(t.joins.iter_mut().map(|j| &mut j.relation));
        for f in factors {
            if let TableFactor::Table { name, .. } = f {
                let parts: Vec<String> = name
                    .0
                    .iter()
                    .map(|p| match p {
                        ObjectNamePart::Identifier(i) => crate::pg::names::ident(i),
                        other => other.to_string(),
                    })
                    .collect();
                let (schema, table) = match parts.as_slice() {
                    [t] => (default_schema.to_string(), t.clone()),
                    [s, t] => (s.clone(), t.clone()),
                    [d, s, t] if d == database => (s.clone(), t.clone()),
                    _ => return String::new(),
                };
                *name = ObjectName(vec![
                    ObjectNamePart::Identifier(Ident::with_quote('"', schema)),
                    ObjectNamePart::Identifier(Ident::with_quote('"', table)),
                ]);
            }
        }
    }
    let mut text = from
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    // Aliases and join conditions compare folded too.
    text = text.to_lowercase();
    text
}

/// The conjuncts of a WHERE clause.
fn conjuncts(e: &Option<Expr>) -> Vec<Expr> {
    fn split(e: &Expr, out: &mut Vec<Expr>) {
        match e {
            Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::And,
                right,
            } => {
                split(left, out);
                split(right, out);
            }
            Expr::Nested(inner)
                if matches!(
                    inner.as_ref(),
                    Expr::BinaryOp {
                        op: ast::BinaryOperator::And,
                        ..
                    }
                ) =>
            {
                split(inner, out)
            }
            other => out.push(other.clone()),
        }
    }
    let mut out = vec![];
    if let Some(e) = e {
        split(e, &mut out);
    }
    out
}

fn and_all(mut es: Vec<Expr>) -> Option<Expr> {
    let first = es.pop()?;
    Some(es.into_iter().rev().fold(first, |acc, e| Expr::BinaryOp {
        left: Box::new(e),
        op: ast::BinaryOperator::And,
        right: Box::new(acc),
    }))
}

/// The name PostgreSQL gives a select item's column.
pub fn item_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(crate::pg::names::ident(alias)),
        SelectItem::UnnamedExpr(e) => Some(match e {
            Expr::Identifier(i) => crate::pg::names::ident(i),
            Expr::CompoundIdentifier(parts) => crate::pg::names::ident(parts.last()?),
            other => crate::pg::names::pg_column_name(other)?,
        }),
        _ => None,
    }
}

/// A plain SELECT (no set operation, CTE, DISTINCT, window or ordering inside a view).
fn plain_select(q: &Query) -> Option<&Select> {
    if q.with.is_some() || q.fetch.is_some() || !q.locks.is_empty() {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else {
        return None;
    };
    if s.distinct.is_some()
        || s.top.is_some()
        || s.into.is_some()
        || !s.lateral_views.is_empty()
        || s.qualify.is_some()
        || !s.named_window.is_empty()
        || s.prewhere.is_some()
    {
        return None;
    }
    Some(s)
}

fn group_exprs(s: &Select) -> Option<Vec<Expr>> {
    match &s.group_by {
        GroupByExpr::Expressions(g, modifiers) if modifiers.is_empty() => {
            // GROUP BY 1, 2: the select items at those positions.
            g.iter()
                .map(|e| match e {
                    Expr::Value(v) => match &v.value {
                        Value::Number(n, _) => {
                            let i: usize = n.parse().ok()?;
                            match s.projection.get(i.checked_sub(1)?)? {
                                SelectItem::UnnamedExpr(e)
                                | SelectItem::ExprWithAlias { expr: e, .. } => Some(e.clone()),
                                _ => None,
                            }
                        }
                        _ => Some(e.clone()),
                    },
                    other => Some(other.clone()),
                })
                .collect()
        }
        _ => None,
    }
}

/// How an expression of the query reads the view.
struct Mapper<'a> {
    /// normalized expression -> view column, for the view's plain and key items
    keys: &'a HashMap<String, String>,
    /// normalized aggregate call -> view column
    aggregates: &'a HashMap<String, String>,
    /// Roll up aggregates (the query groups by fewer keys than the view).
    rollup: bool,
    /// Aggregates are taken as they are (the query groups by the view's keys).
    exact: bool,
    /// The query's own grouping is global (no GROUP BY): a roll-up of COUNT answers 0 on no rows.
    global: bool,
}

fn column(name: &str) -> Expr {
    Expr::Identifier(Ident::with_quote('"', name))
}

fn call(name: &str, arg: Expr) -> Expr {
    call_with(name, vec![arg])
}

fn call_with(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(ast::Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: ast::FunctionArguments::None,
        args: ast::FunctionArguments::List(ast::FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|a| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(a)))
                .collect(),
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// Nesting past which an expression is not mapped (the query then reads its tables).
const MAX_DEPTH: usize = 256;

impl Mapper<'_> {
    /// `e` over the view's columns; None when the view cannot answer it.
    fn map(&self, e: &Expr) -> Option<Expr> {
        self.at(e, 0)
    }

    fn at(&self, e: &Expr, depth: usize) -> Option<Expr> {
        if depth > MAX_DEPTH {
            return None;
        }
        let n = norm(e);
        if let Some(c) = self.keys.get(&n) {
            return Some(column(c));
        }
        let d = depth + 1;
        match e {
            Expr::Function(f) if is_aggregate(f) => self.aggregate(f, &n, d),
            Expr::Function(f) => self.function(f, d),
            Expr::Case {
                case_token,
                end_token,
                operand,
                conditions,
                else_result,
            } => Some(Expr::Case {
                case_token: case_token.clone(),
                end_token: end_token.clone(),
                operand: self.boxed(operand.as_deref(), d)?,
                conditions: conditions
                    .iter()
                    .map(|w| {
                        Some(ast::CaseWhen {
                            condition: self.at(&w.condition, d)?,
                            result: self.at(&w.result, d)?,
                        })
                    })
                    .collect::<Option<_>>()?,
                else_result: self.boxed(else_result.as_deref(), d)?,
            }),
            _ => self.operator(e, d),
        }
    }

    /// An optional operand mapped: Some(None) when there is none.
    fn boxed(&self, e: Option<&Expr>, depth: usize) -> Option<Option<Box<Expr>>> {
        match e {
            Some(x) => Some(Some(Box::new(self.at(x, depth)?))),
            None => Some(None),
        }
    }

    /// An aggregate call of the query (`n` its normalized text).
    fn aggregate(&self, f: &ast::Function, n: &str, depth: usize) -> Option<Expr> {
        if self.exact {
            return self.aggregates.get(n).map(|c| column(c));
        }
        if self.rollup {
            return self.rolled_up(f, self.aggregates.get(n)?);
        }
        // A view without aggregates: the query aggregates the view's columns.
        let mut f = f.clone();
        if let ast::FunctionArguments::List(l) = &mut f.args {
            for a in &mut l.args {
                if let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) = a {
                    *x = self.at(x, depth)?;
                }
            }
        }
        if f.filter.is_some() || f.over.is_some() {
            return None;
        }
        Some(Expr::Function(f))
    }

    /// An aggregate rolled up from the view's column `c` holding it per finer group: sums
    /// and counts add up, minima and maxima are taken again.
    fn rolled_up(&self, f: &ast::Function, c: &str) -> Option<Expr> {
        let fname = f.name.0.last()?.to_string().to_ascii_lowercase();
        if matches!(f.args, ast::FunctionArguments::List(ref l) if l.duplicate_treatment.is_some())
            || f.filter.is_some()
        {
            return None;
        }
        Some(match fname.as_str() {
            "sum" => call("sum", column(c)),
            "min" => call("min", column(c)),
            "max" => call("max", column(c)),
            // COUNT of no rows is 0, where SUM of no rows is NULL.
            "count" if self.global => call_with(
                "coalesce",
                vec![
                    call("sum", column(c)),
                    Expr::Value(Value::Number("0".into(), false).into()),
                ],
            ),
            "count" => call("sum", column(c)),
            _ => return None,
        })
    }

    /// A call of a scalar function, its arguments mapped.
    fn function(&self, f: &ast::Function, depth: usize) -> Option<Expr> {
        let mut f = f.clone();
        match &mut f.args {
            ast::FunctionArguments::List(l) => {
                for a in &mut l.args {
                    match a {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x))
                        | ast::FunctionArg::Named {
                            arg: ast::FunctionArgExpr::Expr(x),
                            ..
                        } => *x = self.at(x, depth)?,
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => {}
                        _ => return None,
                    }
                }
            }
            ast::FunctionArguments::None => {}
            ast::FunctionArguments::Subquery(_) => return None,
        }
        if f.over.is_some() || f.filter.is_some() {
            return None;
        }
        Some(Expr::Function(f))
    }

    /// Constants, operators, casts and predicates, their operands mapped; a column the view
    /// does not have (or anything else) is None.
    fn operator(&self, e: &Expr, d: usize) -> Option<Expr> {
        let m = |x: &Expr| self.at(x, d).map(Box::new);
        Some(match e {
            Expr::Value(_) | Expr::TypedString { .. } | Expr::Interval(_) => e.clone(),
            Expr::Nested(x) => Expr::Nested(m(x)?),
            Expr::UnaryOp { op, expr } => Expr::UnaryOp {
                op: *op,
                expr: m(expr)?,
            },
            Expr::BinaryOp { left, op, right } => Expr::BinaryOp {
                left: m(left)?,
                op: op.clone(),
                right: m(right)?,
            },
            Expr::Cast {
                kind,
                expr,
                data_type,
                array,
                format,
            } => Expr::Cast {
                kind: kind.clone(),
                expr: m(expr)?,
                data_type: data_type.clone(),
                array: *array,
                format: format.clone(),
            },
            Expr::IsNull(x) => Expr::IsNull(m(x)?),
            Expr::IsNotNull(x) => Expr::IsNotNull(m(x)?),
            Expr::IsTrue(x) => Expr::IsTrue(m(x)?),
            Expr::IsFalse(x) => Expr::IsFalse(m(x)?),
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => Expr::Between {
                expr: m(expr)?,
                negated: *negated,
                low: m(low)?,
                high: m(high)?,
            },
            Expr::InList {
                expr,
                list,
                negated,
            } => Expr::InList {
                expr: m(expr)?,
                list: list.iter().map(|x| self.at(x, d)).collect::<Option<_>>()?,
                negated: *negated,
            },
            Expr::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => Expr::Like {
                negated: *negated,
                any: *any,
                expr: m(expr)?,
                pattern: m(pattern)?,
                escape_char: escape_char.clone(),
            },
            Expr::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => Expr::ILike {
                negated: *negated,
                any: *any,
                expr: m(expr)?,
                pattern: m(pattern)?,
                escape_char: escape_char.clone(),
            },
            // Identifier / CompoundIdentifier: a column the view does not output.
            _ => return None,
        })
    }
}

/// The query over `view` that answers `query` (planned in `query_schema` of `database`), if the
/// view can answer it.
pub fn rewrite(
    query: &Query,
    query_schema: &str,
    database: &str,
    view: &Definition,
) -> Option<Rewritten> {
    let q = plain_select(query)?;
    let v = plain_select(&view.query)?;
    if view.query.order_by.is_some() || view.query.limit_clause.is_some() || v.having.is_some() {
        return None;
    }
    let from = norm_from(q, query_schema, database);
    if from.is_empty() || from != norm_from(v, &view.default_schema, database) {
        return None;
    }
    // Every filter of the view is one of the query's; the rest filter the view's rows.
    let q_filters = conjuncts(&q.selection);
    let v_filters: HashSet<String> = conjuncts(&v.selection).iter().map(norm).collect();
    let q_norms: HashSet<String> = q_filters.iter().map(norm).collect();
    if !v_filters.is_subset(&q_norms) {
        return None;
    }
    let remaining: Vec<&Expr> = q_filters
        .iter()
        .filter(|e| !v_filters.contains(&norm(e)))
        .collect();
    let columns = ViewColumns::of(v)?;
    let q_groups = group_exprs(q)?;
    let q_aggregated = is_aggregated(q, &q_groups) || q.having.is_some();
    let (exact, rollup) = columns.grouping(&remaining, &q_groups, q_aggregated)?;
    let mapper = Mapper {
        keys: &columns.keys,
        aggregates: &columns.aggregates,
        rollup,
        exact,
        global: q_groups.is_empty(),
    };
    // Filters on what is left: only the view's keys (no aggregates).
    let no_aggregates = HashMap::new();
    let key_mapper = Mapper {
        keys: &columns.keys,
        aggregates: &no_aggregates,
        rollup: false,
        exact: false,
        global: false,
    };
    let mut where_ = remaining
        .iter()
        .map(|e| {
            if has_aggregate(e) {
                None
            } else {
                key_mapper.map(e)
            }
        })
        .collect::<Option<Vec<_>>>()?;
    let mut select = over_view(q, view, &mapper)?;
    if exact {
        // One view row per group already: no grouping; HAVING filters those rows.
        if let Some(h) = &q.having {
            where_.push(mapper.map(h)?);
        }
    } else {
        if q_aggregated {
            select.group_by = GroupByExpr::Expressions(
                q_groups
                    .iter()
                    .map(|g| key_mapper.map(g))
                    .collect::<Option<_>>()?,
                vec![],
            );
        }
        if let Some(h) = &q.having {
            select.having = Some(mapper.map(h)?);
        }
    }
    select.selection = and_all(where_);
    Some(Rewritten {
        query: Query {
            body: Box::new(SetExpr::Select(Box::new(select))),
            order_by: order_over_view(query, q, &mapper)?,
            ..query.clone()
        },
    })
}

/// Whether a SELECT aggregates (GROUP BY, or an aggregate among its items).
fn is_aggregated(s: &Select, groups: &[Expr]) -> bool {
    !groups.is_empty()
        || s.projection.iter().any(|i| match i {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                has_aggregate(e)
            }
            _ => false,
        })
}

/// A view's columns by the normalized expression each holds.
struct ViewColumns {
    aggregated: bool,
    group_norms: HashSet<String>,
    /// plain and key items -> column
    keys: HashMap<String, String>,
    /// aggregate calls -> column
    aggregates: HashMap<String, String>,
}

impl ViewColumns {
    fn of(v: &Select) -> Option<ViewColumns> {
        let groups = group_exprs(v)?;
        let aggregated = is_aggregated(v, &groups);
        let group_norms: HashSet<String> = groups.iter().map(norm).collect();
        let mut keys = HashMap::new();
        let mut aggregates = HashMap::new();
        for item in &v.projection {
            let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item
            else {
                return None;
            };
            let name = item_name(item)?;
            let n = norm(e);
            if !aggregated || group_norms.contains(&n) {
                keys.insert(n, name);
            } else if has_aggregate(e) {
                aggregates.insert(n, name);
            }
        }
        // Every key of the view is among its columns (else rows could not be told apart).
        if group_norms.iter().any(|g| !keys.contains_key(g)) {
            return None;
        }
        Some(ViewColumns {
            aggregated,
            group_norms,
            keys,
            aggregates,
        })
    }

    /// How the query's grouping reads the view's: (exact, rollup), exact when each group of
    /// the query is one row of the view, rollup when the query groups by fewer keys; None
    /// when it groups by something the view does not.
    fn grouping(
        &self,
        remaining: &[&Expr],
        q_groups: &[Expr],
        q_aggregated: bool,
    ) -> Option<(bool, bool)> {
        if !self.aggregated {
            return Some((false, false));
        }
        let q_group_norms: HashSet<String> = q_groups.iter().map(norm).collect();
        if !q_aggregated || !q_group_norms.is_subset(&self.group_norms) {
            return None;
        }
        // The view's keys the query does not group by but fixes to one value (`key = literal`)
        // split none of its groups: each group of the query is one row of the view, whose
        // aggregates (AVG included) are taken as they are.
        let pinned: HashSet<String> = remaining
            .iter()
            .filter_map(|e| match e {
                Expr::BinaryOp {
                    left,
                    op: ast::BinaryOperator::Eq,
                    right,
                } => match (left.as_ref(), right.as_ref()) {
                    (k, Expr::Value(_) | Expr::TypedString { .. })
                    | (Expr::Value(_) | Expr::TypedString { .. }, k) => Some(norm(k)),
                    _ => None,
                },
                _ => None,
            })
            .filter(|k| self.group_norms.contains(k))
            .collect();
        let same = !q_group_norms.is_empty()
            && q_group_norms
                .union(&pinned)
                .cloned()
                .collect::<HashSet<_>>()
                == self.group_norms;
        Some((same, !same))
    }
}

/// The query's SELECT reading the view: its items mapped onto the view's columns, FROM the
/// view, no filter or grouping yet.
fn over_view(q: &Select, view: &Definition, mapper: &Mapper<'_>) -> Option<Select> {
    let mut projection = vec![];
    for item in &q.projection {
        let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) = item else {
            return None;
        };
        let name = item_name(item)?;
        projection.push(SelectItem::ExprWithAlias {
            expr: mapper.map(e)?,
            alias: Ident::with_quote('"', name),
        });
    }
    Some(Select {
        projection,
        from: vec![ast::TableWithJoins {
            relation: TableFactor::Table {
                name: ObjectName(vec![
                    ObjectNamePart::Identifier(Ident::with_quote('"', view.schema.clone())),
                    ObjectNamePart::Identifier(Ident::with_quote('"', view.name.clone())),
                ]),
                alias: None,
                args: None,
                with_hints: vec![],
                version: None,
                with_ordinality: false,
                partitions: vec![],
                json_path: None,
                sample: None,
                index_hints: vec![],
            },
            joins: vec![],
        }],
        selection: None,
        group_by: GroupByExpr::Expressions(vec![], vec![]),
        having: None,
        ..q.clone()
    })
}

/// The query's ORDER BY over the view: output names and positions stay, other expressions are
/// mapped. Some(None) without ORDER BY; None when it cannot be mapped.
fn order_over_view(query: &Query, q: &Select, mapper: &Mapper<'_>) -> Option<Option<ast::OrderBy>> {
    let Some(o) = &query.order_by else {
        return Some(None);
    };
    let output: HashSet<String> = q.projection.iter().filter_map(item_name).collect();
    let mut o = o.clone();
    let ast::OrderByKind::Expressions(exprs) = &mut o.kind else {
        return None;
    };
    for x in exprs {
        let keep = match &x.expr {
            Expr::Identifier(i) => output.contains(&crate::pg::names::ident(i)),
            Expr::Value(v) => matches!(v.value, Value::Number(..)),
            _ => false,
        };
        if !keep {
            x.expr = mapper.map(&x.expr)?;
        }
    }
    Some(Some(o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn q(sql: &str) -> Query {
        match Parser::parse_sql(&PostgreSqlDialect {}, sql).map(|mut v| v.pop()) {
            Ok(Some(ast::Statement::Query(q))) => *q,
            other => panic!("not a query: {other:?}"),
        }
    }

    fn view(sql: &str) -> Definition {
        Definition {
            schema: "s".into(),
            name: "mv".into(),
            query: q(sql),
            default_schema: "s".into(),
        }
    }

    fn answer(view_sql: &str, query: &str) -> Option<String> {
        rewrite(&q(query), "s", "db", &view(view_sql)).map(|r| r.query.to_string())
    }

    #[test]
    fn averages_keep_sum_and_count() {
        let v = q("SELECT region, avg(amount) AS a, count(*) AS n FROM sales GROUP BY region");
        let stored = with_avg_state(&v).unwrap_or_else(|| panic!("no state for {v}"));
        let text = stored.to_string();
        assert!(
            text.contains("sum(amount) AS \"lakegate$avg_sum_1\"")
                && text.contains("count(amount) AS \"lakegate$avg_count_1\""),
            "{text}"
        );
        assert_eq!(
            incremental_shape(&stored),
            Some(Some(vec![
                Merge::Key,
                Merge::Avg { sum: 3, count: 4 },
                Merge::Sum,
                Merge::Sum,
                Merge::Sum
            ]))
        );
        // Without its hidden columns an AVG is recomputed; no AVG, nothing to keep.
        assert_eq!(incremental_shape(&v), None);
        assert!(with_avg_state(&q("SELECT region, sum(amount) FROM sales GROUP BY 1")).is_none());
        assert!(
            with_avg_state(&q(
                "SELECT s.region, avg(o.x) FROM sales s JOIN o ON s.id = o.id GROUP BY 1"
            ))
            .is_none()
        );
    }

    #[test]
    fn rollups_and_exact_matches() {
        let v = "SELECT region, month, sum(amount) AS total, count(*) AS n, max(amount) AS top \
                 FROM s.sales WHERE year >= 2020 GROUP BY region, month";
        let r = answer(v, "SELECT region, sum(amount) FROM sales WHERE year >= 2020 AND month > '2024-02' GROUP BY region")
            .unwrap_or_default();
        assert!(
            r.contains("sum(\"total\")")
                && r.contains("GROUP BY \"region\"")
                && r.contains("\"month\" > '2024-02'"),
            "{r}"
        );
        // A key fixed to one value splits no group: the view's rows as they are, AVG included.
        let v2 = "SELECT region, month, avg(amount) AS mean, sum(amount) AS total \
                  FROM s.sales WHERE year >= 2020 GROUP BY region, month";
        let r = answer(v2, "SELECT region, avg(amount), sum(amount) FROM sales WHERE year >= 2020 AND month = '2024-02' GROUP BY region ORDER BY region")
            .unwrap_or_default();
        assert!(
            r.contains("\"mean\" AS \"avg\"")
                && r.contains("\"total\" AS \"sum\"")
                && !r.contains("GROUP BY")
                && r.contains("\"month\" = '2024-02'"),
            "{r}"
        );
        // ... but not for a global aggregate (one row even when no row matches).
        assert!(answer(v2, "SELECT avg(amount) FROM sales WHERE year >= 2020 AND month = '2024-02' AND region = 'EU'").is_none());
        // Same keys: the view's rows as they are (AVG too, were it there).
        let r = answer(
            v,
            "SELECT month, region, count(*) FROM s.sales WHERE year >= 2020 GROUP BY region, month",
        )
        .unwrap_or_default();
        assert!(
            r.contains("\"n\" AS \"count\"") && !r.contains("GROUP BY"),
            "{r}"
        );
        // Global roll-up of COUNT answers 0 on no rows.
        let r = answer(v, "SELECT count(*) FROM sales WHERE year >= 2020").unwrap_or_default();
        assert!(r.contains("coalesce(sum(\"n\"), 0)"), "{r}");
        // Not answerable: another filter than the view's, a filter on a non-key, another table.
        assert!(
            answer(
                v,
                "SELECT region, sum(amount) FROM sales WHERE year >= 2021 GROUP BY region"
            )
            .is_none()
        );
        assert!(answer(v, "SELECT region, sum(amount) FROM sales WHERE year >= 2020 AND amount > 5 GROUP BY region").is_none());
        assert!(
            answer(
                v,
                "SELECT region, sum(amount) FROM other WHERE year >= 2020 GROUP BY region"
            )
            .is_none()
        );
        assert!(
            answer(
                v,
                "SELECT region, avg(amount) FROM sales WHERE year >= 2020 GROUP BY region"
            )
            .is_none()
        );
    }
}

/// How one column of a view combines old rows with rows computed from a source's new rows, for
/// an incremental refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// A group key.
    Key,
    /// SUM, or COUNT (counts add up).
    Sum,
    Min,
    Max,
    /// AVG, from the view's hidden sum and count of its argument (columns at these positions).
    Avg {
        sum: usize,
        count: usize,
    },
}

/// Where a view keeps what it needs to update its averages: the names of the hidden columns
/// with the sum and count of the argument of the `avg` at `item` (see
/// `crate::storage::HIDDEN_PREFIX`).
fn avg_state_names(item: usize) -> (String, String) {
    let p = crate::storage::HIDDEN_PREFIX;
    (format!("{p}avg_sum_{item}"), format!("{p}avg_count_{item}"))
}

/// The query a view with AVG stores: its own items, then for each `avg(x)` the hidden items
/// `sum(x)` and `count(x)`, so a refresh can add new rows to the averages. None when the view
/// has no AVG or cannot be refreshed incrementally anyway.
pub fn with_avg_state(view: &Query) -> Option<Query> {
    let v = plain_select(view)?;
    let mut extra = vec![];
    for (i, item) in v.projection.iter().enumerate() {
        let (SelectItem::UnnamedExpr(Expr::Function(f))
        | SelectItem::ExprWithAlias {
            expr: Expr::Function(f),
            ..
        }) = item
        else {
            continue;
        };
        if !is_aggregate(f) || !f.name.0.last()?.to_string().eq_ignore_ascii_case("avg") {
            continue;
        }
        let ast::FunctionArguments::List(l) = &f.args else {
            return None;
        };
        let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))] = l.args.as_slice() else {
            return None;
        };
        let (sum, count) = avg_state_names(i);
        extra.push(SelectItem::ExprWithAlias {
            expr: call("sum", arg.clone()),
            alias: Ident::with_quote('"', sum),
        });
        extra.push(SelectItem::ExprWithAlias {
            expr: call("count", arg.clone()),
            alias: Ident::with_quote('"', count),
        });
    }
    if extra.is_empty() {
        return None;
    }
    let mut q = view.clone();
    if let SetExpr::Select(s) = q.body.as_mut() {
        s.projection.extend(extra);
    }
    incremental_shape(&q)?;
    Some(q)
}

/// Whether a view can be refreshed from its source's new rows alone, and how: `Some(None)` for
/// a view without aggregates (its new rows are appended), `Some(Some(kinds))` for an aggregate of
/// SUM, COUNT, MIN, MAX and AVG (with its hidden sum and count, see [`with_avg_state`]) over
/// group keys (old and new rows re-aggregated), `None` otherwise. Only over one table, without
/// joins.
pub fn incremental_shape(view: &Query) -> Option<Option<Vec<Merge>>> {
    let v = plain_select(view)?;
    if view.order_by.is_some() || view.limit_clause.is_some() || v.having.is_some() {
        return None;
    }
    let [t] = v.from.as_slice() else {
        return None;
    };
    if !t.joins.is_empty() || !matches!(t.relation, TableFactor::Table { args: None, .. }) {
        return None;
    }
    let groups = group_exprs(v)?;
    let items: Vec<&Expr> = v
        .projection
        .iter()
        .map(|i| match i {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if groups.is_empty() && !items.iter().any(|e| has_aggregate(e)) {
        return Some(None);
    }
    let names: Vec<Option<String>> = v.projection.iter().map(item_name).collect();
    let position = |name: &str| names.iter().position(|n| n.as_deref() == Some(name));
    let keys: HashSet<String> = groups.iter().map(norm).collect();
    let mut kinds = vec![];
    for (i, e) in items.into_iter().enumerate() {
        if keys.contains(&norm(e)) {
            kinds.push(Merge::Key);
            continue;
        }
        let Expr::Function(f) = e else { return None };
        if !is_aggregate(f)
            || f.filter.is_some()
            || matches!(&f.args, ast::FunctionArguments::List(l) if l.duplicate_treatment.is_some())
        {
            return None;
        }
        kinds.push(
            match f.name.0.last()?.to_string().to_ascii_lowercase().as_str() {
                "sum" | "count" => Merge::Sum,
                "min" => Merge::Min,
                "max" => Merge::Max,
                "avg" => {
                    let (sum, count) = avg_state_names(i);
                    Merge::Avg {
                        sum: position(&sum)?,
                        count: position(&count)?,
                    }
                }
                _ => return None,
            },
        );
    }
    // Every key must be a column of the view, to group the merged rows by.
    if kinds.iter().filter(|k| **k == Merge::Key).count() != keys.len() {
        return None;
    }
    Some(Some(kinds))
}
