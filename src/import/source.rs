//! The source side of an import: a schema-per-tenant PostgreSQL database, read only. Every
//! identifier from the mapping is checked against the source catalog, then quoted, before use.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::mapping::{Columns, Mapping};

/// A read-only connection to the source. `default_transaction_read_only` is set at connect
/// time, so even a statement of ours that tried to write would be refused by the server.
pub struct Source {
    conn: PgConnection,
    /// `current_database()`: with the schema name, the identity of an imported tenant.
    pub database: String,
}

/// One registry row.
#[derive(Debug, Clone)]
pub struct SourceTenant {
    pub key: String,
    pub schema: String,
    pub name: Option<String>,
    /// Why the registry marks it inactive (`is_active = false`, `status = 'closed'`), if it does.
    pub inactive: Option<String>,
    pub domains: Vec<SourceDomain>,
}

#[derive(Debug, Clone)]
pub struct SourceDomain {
    pub domain: String,
    pub is_primary: bool,
}

/// A resource's rows as read: for each row, the mapped fields in the order `fields` lists.
#[derive(Debug, Default, Clone)]
pub struct SourceRows {
    pub table: String,
    pub rows: Vec<Vec<Option<String>>>,
    /// `count(*)` of the table in the same snapshot: what the target must end up with.
    pub count: i64,
}

/// Everything read from one tenant schema.
#[derive(Debug, Default, Clone)]
pub struct SourceData {
    /// The tenant's fingerprint, taken in the same snapshot as the rows (`fingerprint`).
    pub fingerprint: String,
    pub users: Option<SourceRows>,
    /// With `[users.groups]`: each user's Django group names, by the user's source id.
    pub user_groups: std::collections::HashMap<String, Vec<String>>,
    pub organizations: Option<SourceRows>,
    pub contacts: Option<SourceRows>,
    pub deals: Option<SourceRows>,
    /// `--all-tables`: every other table's rows as JSON objects (`row_to_json`), by table.
    pub other_tables: Vec<(String, Vec<String>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the source connection string is not valid: {0}")]
    ConnectionString(String),
    #[error("the source database ({target}) is not reachable: {source}")]
    Unreachable { target: String, source: sqlx::Error },
    #[error("source: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Mapping(String),
}

/// PostgreSQL's quote_ident for names that were already found in the catalog: always quoted,
/// so case and any character survive, and a `"` inside is doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Columns of every table in `schema`, from the catalog.
pub type Catalog = BTreeMap<String, BTreeSet<String>>;

impl Source {
    /// Connect with a PostgreSQL connection string in either form libpq takes: a URL
    /// (`postgres://user@host/app`, `postgres:///app?host=/var/run/postgresql`) or keywords
    /// (`host=/var/run/postgresql dbname=app user=x`).
    pub async fn connect(connection: &str) -> Result<Source, SourceError> {
        let options = connect_options(connection)?
            .application_name("rowguard-import")
            .options([("default_transaction_read_only", "on")]);
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|source| SourceError::Unreachable { target: describe(&options), source })?;
        let database: String = sqlx::query_scalar("SELECT current_database()::text").fetch_one(&mut conn).await?;
        Ok(Source { conn, database })
    }

    /// Whether the server would refuse a write on this connection: what the import relies on
    /// to promise it never changes the source.
    pub async fn refuses_writes(&mut self) -> Result<bool, SourceError> {
        let setting: String =
            sqlx::query_scalar("SELECT current_setting('transaction_read_only')").fetch_one(&mut self.conn).await?;
        Ok(setting == "on")
    }

    /// Tables (and views) of one schema with their columns.
    pub async fn catalog(&mut self, schema: &str) -> Result<Catalog, SourceError> {
        // LEFT JOIN: a table without columns is still a table (and then "has no column X").
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(
            "SELECT c.relname::text, a.attname::text
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        )
        .bind(schema)
        .fetch_all(&mut self.conn)
        .await?;
        let mut catalog = Catalog::new();
        for (table, column) in rows {
            let columns = catalog.entry(table).or_default();
            columns.extend(column);
        }
        Ok(catalog)
    }

    /// The registry and its domains, after checking their tables and columns exist.
    pub async fn tenants(&mut self, mapping: &Mapping) -> Result<Vec<SourceTenant>, SourceError> {
        let t = &mapping.tenants;
        let d = &mapping.domains;
        let registry = self.catalog(&t.schema).await?;
        let mut registry_columns = vec![t.id.as_str(), &t.schema_name, &t.name];
        registry_columns.extend([&t.is_active, &t.status].into_iter().flatten().map(String::as_str));
        require(&registry, &t.schema, &t.table, &registry_columns).map_err(SourceError::Mapping)?;
        let domains = if d.schema == t.schema { registry } else { self.catalog(&d.schema).await? };
        require(&domains, &d.schema, &d.table, &[&d.domain, &d.tenant, &d.is_primary]).map_err(SourceError::Mapping)?;

        let q = quote_ident;
        let text_or_null =
            |column: &Option<String>| column.as_deref().map_or("NULL::text".into(), |c| format!("({})::text", q(c)));
        let sql = format!(
            "SELECT ({id})::text, ({schema})::text, ({name})::text, {active}, {status} FROM {s}.{t} ORDER BY 2",
            id = q(&t.id),
            schema = q(&t.schema_name),
            name = q(&t.name),
            active = text_or_null(&t.is_active),
            status = text_or_null(&t.status),
            s = q(&t.schema),
            t = q(&t.table),
        );
        type RegistryRow = (Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);
        let rows: Vec<RegistryRow> = sqlx::query_as(AssertSqlSafe(sql)).fetch_all(&mut self.conn).await?;
        let sql = format!(
            "SELECT ({tenant})::text, ({domain})::text, coalesce(({primary})::boolean, false)
               FROM {s}.{t} ORDER BY 1, 2",
            tenant = q(&d.tenant),
            domain = q(&d.domain),
            primary = q(&d.is_primary),
            s = q(&d.schema),
            t = q(&d.table),
        );
        let domain_rows: Vec<(Option<String>, Option<String>, bool)> =
            sqlx::query_as(AssertSqlSafe(sql)).fetch_all(&mut self.conn).await?;
        let mut by_tenant: BTreeMap<String, Vec<SourceDomain>> = BTreeMap::new();
        for (tenant, domain, is_primary) in domain_rows {
            if let (Some(tenant), Some(domain)) = (tenant, domain) {
                by_tenant.entry(tenant).or_default().push(SourceDomain { domain, is_primary });
            }
        }
        let mut tenants = Vec::new();
        for (key, schema, name, active, status) in rows {
            let (Some(key), Some(schema)) = (key, schema) else {
                return Err(SourceError::Mapping(format!(
                    "{}.{}: a row has no {} or no {}",
                    t.schema, t.table, t.id, t.schema_name
                )));
            };
            let domains = by_tenant.remove(&key).unwrap_or_default();
            let mut inactive = None;
            if let Some(column) = &t.is_active
                && !super::plan::truthy(active.as_deref().map(str::trim))
            {
                inactive = Some(format!("{column} = {}", active.as_deref().unwrap_or("NULL")));
            }
            if let (Some(column), Some(value)) = (&t.status, status.as_deref())
                && t.inactive_statuses.iter().any(|s| s.trim().eq_ignore_ascii_case(value.trim()))
            {
                inactive = Some(format!("{column} = {value:?}"));
            }
            tenants.push(SourceTenant { key, schema, name, inactive, domains });
        }
        Ok(tenants)
    }

    /// Every table and column the mapping names for tenant resources exists in `schema`: a
    /// `SourceError::Mapping` naming the first one that does not.
    pub async fn check_mapping(&mut self, mapping: &Mapping, schema: &str) -> Result<(), SourceError> {
        let catalog = self.catalog(schema).await?;
        if catalog.is_empty() {
            return Err(SourceError::Mapping(format!(
                "schema {schema} does not exist in the source, or has no tables"
            )));
        }
        for (table, columns) in mapping.resource_columns() {
            require(&catalog, schema, table, &columns).map_err(SourceError::Mapping)?;
        }
        Ok(())
    }

    /// Read every mapped resource of one tenant schema in one READ ONLY, REPEATABLE READ
    /// transaction, so the rows and their counts come from one snapshot. A missing table or
    /// column is an error naming it.
    pub async fn read_tenant(
        &mut self,
        mapping: &Mapping,
        schema: &str,
        other_tables: &[String],
    ) -> Result<SourceData, SourceError> {
        self.check_mapping(mapping, schema).await?;
        let mut tx = self.conn.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        // Rows print in UTC and fixed formats: `--all-tables` compares them, as JSON text, with
        // the rows rowguard stores (see `schema::fill_sql`).
        sqlx::raw_sql(super::schema::PIN_OUTPUT).execute(&mut *tx).await?;
        let mut data = SourceData::default();
        if let Some(u) = &mapping.users {
            let fields = [
                Some(Columns::One(u.id.clone())),
                Some(Columns::One(u.email.clone())),
                Some(Columns::One(u.password.clone())),
                u.is_active.clone().map(Columns::One),
                u.owner_if.clone().map(Columns::One),
                u.admin_if.clone().map(Columns::One),
            ];
            data.users =
                Some(read_rows(&mut tx, schema, &u.table, &u.id, &fields, [&u.created_at, &u.updated_at]).await?);
            if !u.groups.is_empty() {
                let sql = format!(
                    "SELECT l.user_id::text, g.name::text FROM {s}.{links} l JOIN {s}.{groups} g ON g.id = l.group_id",
                    s = quote_ident(schema),
                    links = quote_ident(&u.user_groups_table),
                    groups = quote_ident(&u.group_table),
                );
                let links: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
                for (user, group) in links {
                    data.user_groups.entry(user).or_default().push(group);
                }
            }
        }
        if let Some(o) = &mapping.organizations {
            let fields = [Some(Columns::One(o.id.clone())), Some(o.name.clone()), o.domain.clone().map(Columns::One)];
            data.organizations =
                Some(read_rows(&mut tx, schema, &o.table, &o.id, &fields, [&o.created_at, &o.updated_at]).await?);
        }
        if let Some(c) = &mapping.contacts {
            let fields = [
                Some(Columns::One(c.id.clone())),
                Some(c.name.clone()),
                Some(Columns::One(c.email.clone())),
                c.phone.clone().map(Columns::One),
                c.organization.clone().map(Columns::One),
            ];
            data.contacts =
                Some(read_rows(&mut tx, schema, &c.table, &c.id, &fields, [&c.created_at, &c.updated_at]).await?);
        }
        if let Some(d) = &mapping.deals {
            let fields = [
                Some(Columns::One(d.id.clone())),
                Some(d.title.clone()),
                Some(Columns::One(d.contact.clone())),
                d.organization.clone().map(Columns::One),
                d.stage.clone().map(Columns::One),
                Some(Columns::One(d.amount.clone())),
                d.currency.clone().map(Columns::One),
            ];
            data.deals =
                Some(read_rows(&mut tx, schema, &d.table, &d.id, &fields, [&d.created_at, &d.updated_at]).await?);
        }
        for table in other_tables {
            let sql = format!("SELECT row_to_json(t)::text FROM {}.{} AS t", quote_ident(schema), quote_ident(table));
            let rows: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
            data.other_tables.push((table.clone(), rows));
        }
        data.fingerprint = fingerprint_in(&mut tx, mapping, schema, other_tables).await?;
        tx.commit().await?;
        Ok(data)
    }

    /// Every table of each of `schemas` but `skip`, with its definition (`--all-tables`).
    pub async fn table_definitions(
        &mut self,
        schemas: &[String],
        skip: &std::collections::BTreeSet<String>,
    ) -> Result<BTreeMap<String, BTreeMap<String, super::schema::Table>>, SourceError> {
        Ok(super::schema::read(&mut self.conn, schemas, skip).await?)
    }

    /// A cheap fingerprint of one tenant's mapped source tables, to tell on a re-run whether
    /// the source changed since it was imported (see `fingerprint_in`).
    pub async fn fingerprint(
        &mut self,
        mapping: &Mapping,
        schema: &str,
        other_tables: &[String],
    ) -> Result<String, SourceError> {
        let mut tx = self.conn.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
        let fingerprint = fingerprint_in(&mut tx, mapping, schema, other_tables).await?;
        tx.commit().await?;
        Ok(fingerprint)
    }
}

/// Per mapped table (in the mapping's order, then `--all-tables`' other tables): its row count and the sum of a 64-bit hash of
/// every row's text, whole rows, so a row added, removed or edited in any column changes it;
/// SHA-256 over those lines, hex. One scan per table, nothing sent back but two numbers. The
/// text of a row depends on session settings (time zone, date and float formats): they are
/// pinned for the transaction, so the same rows always give the same fingerprint.
async fn fingerprint_in(
    conn: &mut PgConnection,
    mapping: &Mapping,
    schema: &str,
    other_tables: &[String],
) -> Result<String, SourceError> {
    sqlx::raw_sql(super::schema::PIN_OUTPUT).execute(&mut *conn).await?;
    let mut lines = String::new();
    let mapped = mapping.resource_columns().into_iter().map(|(table, _)| table);
    for table in mapped.chain(other_tables.iter().map(String::as_str)) {
        let sql = format!(
            "SELECT count(*), coalesce(sum(hashtextextended(t::text, 0)), 0)::text FROM {}.{} AS t",
            quote_ident(schema),
            quote_ident(table)
        );
        let (count, sum): (i64, String) = sqlx::query_as(AssertSqlSafe(sql)).fetch_one(&mut *conn).await?;
        lines.push_str(&format!("{table}\t{count}\t{sum}\n"));
    }
    Ok(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(lines.as_bytes())))
}

/// Options from a connection string. sqlx parses URLs only; a keyword string is turned into
/// the URL that says the same (every pair a query parameter, which sqlx reads like libpq),
/// so both forms go through one parser and both read `~/.pgpass` and `PG*` defaults alike.
pub fn connect_options(connection: &str) -> Result<PgConnectOptions, SourceError> {
    let url = if connection.contains("://") {
        connection.to_string()
    } else {
        let pairs = keyword_pairs(connection).map_err(SourceError::ConnectionString)?;
        let mut url = url::Url::parse("postgres:///").expect("a constant URL");
        url.query_pairs_mut().extend_pairs(pairs);
        url.to_string()
    };
    PgConnectOptions::from_str(&url).map_err(|e| SourceError::ConnectionString(e.to_string()))
}

/// libpq's keyword/value form: `key = value` pairs separated by white space; a value may be
/// single-quoted, with `\'` and `\\` inside (libpq's rules, section 34.1.1.1).
fn keyword_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("{key:?} has no \"=\" after it (use key=value pairs, or a postgres:// URL)"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of {key:?} has no closing quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// Where a connection goes, for error messages: the socket file or host and port, the
/// database and the user (never the password).
fn describe(options: &PgConnectOptions) -> String {
    let place = match options.get_socket() {
        Some(dir) => format!("socket {}", dir.join(format!(".s.PGSQL.{}", options.get_port())).display()),
        None => format!("host {} port {}", options.get_host(), options.get_port()),
    };
    let database = options.get_database().unwrap_or(options.get_username());
    format!("{place}, database {database}, user {}", options.get_username())
}

/// The table exists in `catalog` and has every column.
fn require(catalog: &Catalog, schema: &str, table: &str, columns: &[&str]) -> Result<(), String> {
    let Some(have) = catalog.get(table) else {
        return Err(format!("table {schema}.{table} does not exist in the source (named in the mapping)"));
    };
    let missing: Vec<&str> = columns.iter().copied().filter(|c| !have.contains(*c)).collect();
    if !missing.is_empty() {
        return Err(format!("table {schema}.{table} has no column {} (named in the mapping)", missing.join(", ")));
    }
    Ok(())
}

/// `SELECT ARRAY[field::text, …] FROM schema.table`: one text array per row, a NULL for a
/// field the mapping leaves out. Several columns for one field are joined with a space. Then
/// the two `times` (created, updated) as ISO 8601 with their offset (`to_json`, whatever the
/// session's DateStyle or TimeZone), right after `fields`; rows in creation order when the
/// mapping names the creation column, by id otherwise.
async fn read_rows(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
    id: &str,
    fields: &[Option<Columns>],
    times: [&Option<String>; 2],
) -> Result<SourceRows, SourceError> {
    let time = |c: &Option<String>| {
        c.as_deref()
            .map_or("NULL::text".to_string(), |c| format!("to_json(({})::timestamptz) #>> '{{}}'", quote_ident(c)))
    };
    let order = match times[0] {
        Some(created) => format!("{} NULLS LAST, {}", quote_ident(created), quote_ident(id)),
        None => quote_ident(id),
    };
    let exprs: Vec<String> = fields
        .iter()
        .map(|f| match f {
            None => "NULL::text".to_string(),
            Some(Columns::One(c)) => format!("({})::text", quote_ident(c)),
            Some(Columns::Many(cs)) => {
                let parts: Vec<String> =
                    cs.iter().map(|c| format!("NULLIF(btrim(({})::text), '')", quote_ident(c))).collect();
                format!("NULLIF(concat_ws(' ', {}), '')", parts.join(", "))
            }
        })
        .chain(times.into_iter().map(time))
        .collect();
    let from = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let sql = format!("SELECT ARRAY[{}] FROM {from} ORDER BY {order}", exprs.join(", "));
    let rows: Vec<Vec<Option<String>>> = sqlx::query_scalar(AssertSqlSafe(sql)).fetch_all(&mut *conn).await?;
    let count: i64 =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {from}"))).fetch_one(&mut *conn).await?;
    Ok(SourceRows { table: table.to_string(), rows, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_strings_say_what_urls_say() {
        // libpq's quoting: `'it\'s'` is `it's`.
        let keywords = connect_options(r"host=/var/run/postgresql port=5433 dbname='it\'s' user=x password=p");
        let keywords = keywords.expect("keywords");
        assert_eq!(keywords.get_socket().map(|p| p.display().to_string()).as_deref(), Some("/var/run/postgresql"));
        assert_eq!((keywords.get_port(), keywords.get_database(), keywords.get_username()), (5433, Some("it's"), "x"));
        let tcp = connect_options("host = db.internal port=6432 dbname = 'my app' user=ro").expect("keywords");
        assert_eq!((tcp.get_host(), tcp.get_port(), tcp.get_database()), ("db.internal", 6432, Some("my app")));
        assert!(tcp.get_socket().is_none());
        let url = connect_options("postgres://ro@db.internal:6432/app").expect("url");
        assert_eq!((url.get_host(), url.get_port(), url.get_database()), ("db.internal", 6432, Some("app")));
        assert!(connect_options("host=x dbname='app").is_err_and(|e| e.to_string().contains("closing quote")));
        assert!(connect_options("host x").is_err_and(|e| e.to_string().contains("\"host\"")));
    }

    #[test]
    fn connection_errors_name_the_socket_or_the_host_and_port() {
        let socket = connect_options("host=/run/pg port=5433 dbname=app user=x").expect("keywords");
        assert_eq!(describe(&socket), "socket /run/pg/.s.PGSQL.5433, database app, user x");
        let tcp = connect_options("postgres://x:secret@db.internal:6432/app").expect("url");
        assert_eq!(describe(&tcp), "host db.internal port 6432, database app, user x");
    }

    #[test]
    fn identifiers_are_always_quoted_and_quotes_doubled() {
        assert_eq!(quote_ident("auth_user"), "\"auth_user\"");
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(quote_ident("x\"; DROP TABLE t; --"), "\"x\"\"; DROP TABLE t; --\"");
    }
}
