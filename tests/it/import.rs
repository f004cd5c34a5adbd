//! `rowguard import schemas`: a django-tenants-style source built in the test cluster (registry
//! and domains in `public`, one schema per tenant) imported tenant by tenant, checked row by row.
//! Long on purpose: every test shares the one source fixture built here (`--all-tables`' tests
//! live in `import_all_tables`).

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use rowguard::import::mapping::Mapping;
use rowguard::import::{ImportError, ImportOptions, ImportReport, Outcome, import_schemas};
use rowguard::platform::PlatformConn;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use crate::cli_concurrency::rowguard;
use crate::support::{TestApp, cli_env_for, scratch_dir, spawn_app, spawn_installed_app, url_password};

pub(crate) const EXAMPLE: &str = include_str!("../../examples/django-tenants.toml");

/// What Django's PBKDF2PasswordHasher stores, with few iterations so the test stays fast.
fn django_hash(password: &str, salt: &str) -> String {
    let iterations = 1_000;
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), salt.as_bytes(), iterations, &mut out);
    format!("pbkdf2_sha256${iterations}${salt}${}", base64::engine::general_purpose::STANDARD.encode(out))
}

pub(crate) struct SourceDb {
    pub(crate) url: String,
    pub(crate) conn: PgConnection,
}

/// The tenants of the source: schema, display name, domains (first primary), contacts.
pub(crate) const TENANTS: &[(&str, &str, &[&str], usize)] = &[
    ("alpha", "Alpha Ltd", &["alpha.example.com", "crm.alpha-corp.com"], 5),
    ("bravo", "Bravo GmbH", &["bravo.example.com"], 3),
    ("charlie_co", "Charlie & Co", &["charlie.localhost"], 4),
];

/// A new database laid out as django-tenants makes it, with `TENANTS` in it.
pub(crate) async fn django_source(app: &TestApp) -> SourceDb {
    let name = format!("src_{}", uuid::Uuid::now_v7().simple());
    let mut admin = app.superuser_connection().await;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE template0")))
        .execute(&mut admin)
        .await
        .expect("create db");
    let url = app.superuser_url().replacen(&format!("/{}?", app.db_name), &format!("/{name}?"), 1);
    assert_ne!(url, app.superuser_url(), "the source URL must name the source database");
    let mut conn = PgConnection::connect(&url).await.expect("source connection");
    sqlx::raw_sql(
        "CREATE TABLE customers_client (
             id serial PRIMARY KEY, schema_name varchar(63) NOT NULL UNIQUE, name varchar(100) NOT NULL,
             paid_until date, on_trial boolean NOT NULL DEFAULT false, created_on date NOT NULL DEFAULT now());
         CREATE TABLE customers_domain (
             id serial PRIMARY KEY, domain varchar(253) NOT NULL UNIQUE, is_primary boolean NOT NULL,
             tenant_id integer NOT NULL REFERENCES customers_client (id));
         INSERT INTO customers_client (schema_name, name) VALUES ('public', 'Public');
         INSERT INTO customers_domain (domain, is_primary, tenant_id) VALUES ('localhost', true, 1);",
    )
    .execute(&mut conn)
    .await
    .expect("registry");
    for (schema, display, domains, contacts) in TENANTS {
        let mut sql = format!(
            "CREATE SCHEMA {schema};
             SET search_path = {schema};
             CREATE TABLE auth_user (
                 id serial PRIMARY KEY, password varchar(128) NOT NULL, last_login timestamptz,
                 is_superuser boolean NOT NULL, username varchar(150) NOT NULL UNIQUE,
                 first_name varchar(150) NOT NULL DEFAULT '', last_name varchar(150) NOT NULL DEFAULT '',
                 email varchar(254) NOT NULL, is_staff boolean NOT NULL, is_active boolean NOT NULL,
                 date_joined timestamptz NOT NULL DEFAULT now());
             CREATE TABLE crm_organization (id bigserial PRIMARY KEY, name varchar(200) NOT NULL, website_domain varchar(200));
             CREATE TABLE crm_contact (
                 id uuid PRIMARY KEY DEFAULT gen_random_uuid(), first_name varchar(100) NOT NULL,
                 last_name varchar(100) NOT NULL, email varchar(254) NOT NULL, phone varchar(40),
                 organization_id bigint REFERENCES crm_organization (id));
             CREATE TABLE crm_deal (
                 id bigserial PRIMARY KEY, title varchar(200) NOT NULL,
                 contact_id uuid NOT NULL REFERENCES crm_contact (id),
                 organization_id bigint REFERENCES crm_organization (id),
                 stage varchar(20) NOT NULL, amount numeric(12, 2) NOT NULL, currency varchar(3));
             INSERT INTO auth_user (password, is_superuser, username, email, is_staff, is_active) VALUES
                 ('{owner}', true, 'boss', 'boss@{schema}.example', true, true),
                 ('{staff}', false, 'staff', 'Staff@{schema}.example', true, true),
                 ('{member}', false, 'member', 'member@{schema}.example', false, true),
                 ('!unusable', false, 'gone', 'gone@{schema}.example', false, false);
             INSERT INTO crm_organization (name, website_domain) VALUES
                 ('{display} HQ', '{dom}.com'), ('{display} Partners', NULL);
             RESET search_path;
             INSERT INTO public.customers_client (schema_name, name) VALUES ('{schema}', '{display}');",
            owner = django_hash(&format!("{schema}-owner-pw"), "salt1"),
            staff = django_hash(&format!("{schema}-staff-pw"), "salt2"),
            member = django_hash(&format!("{schema}-member-pw"), "salt3"),
            dom = schema.replace('_', ""),
        );
        for (i, domain) in domains.iter().enumerate() {
            sql.push_str(&format!(
                "INSERT INTO public.customers_domain (domain, is_primary, tenant_id)
                 SELECT '{domain}', {}, id FROM public.customers_client WHERE schema_name = '{schema}';",
                i == 0
            ));
        }
        for c in 0..*contacts {
            // Every other contact works for the first organization; the rest for none.
            let org =
                if c % 2 == 0 { format!("(SELECT min(id) FROM {schema}.crm_organization)") } else { "NULL".into() };
            sql.push_str(&format!(
                "INSERT INTO {schema}.crm_contact (first_name, last_name, email, phone, organization_id)
                 VALUES ('Person{c}', '{schema}', 'p{c}@{schema}.example', '+1 555 010{c}', {org});"
            ));
        }
        // Two deals on the first contact, one with the second organization and no currency.
        sql.push_str(&format!(
            "INSERT INTO {schema}.crm_deal (title, contact_id, organization_id, stage, amount, currency)
             SELECT 'Big deal', id, (SELECT min(id) FROM {schema}.crm_organization), 'negotiation', 1250.50, 'USD'
               FROM {schema}.crm_contact WHERE first_name = 'Person0';
             INSERT INTO {schema}.crm_deal (title, contact_id, organization_id, stage, amount, currency)
             SELECT 'Small deal', id, (SELECT max(id) FROM {schema}.crm_organization), 'won', 10, NULL
               FROM {schema}.crm_contact WHERE first_name = 'Person1';"
        ));
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await.expect("tenant schema");
    }
    SourceDb { url, conn }
}

pub(crate) fn mapping() -> Mapping {
    Mapping::parse(EXAMPLE).expect("the example mapping")
}

pub(crate) fn options(only: &[&str], dry_run: bool) -> ImportOptions {
    ImportOptions {
        only: only.iter().map(|s| s.to_string()).collect(),
        dry_run,
        replace: false,
        all_tables: false,
        base_domain: "localhost".into(),
        migrations: None,
    }
}

pub(crate) async fn run(app: &TestApp, source: &SourceDb, mapping: &Mapping, options: &ImportOptions) -> ImportReport {
    let mut platform = PlatformConn::connect(&app.superuser_url()).await.expect("platform");
    import_schemas(&mut platform, &source.url, mapping, options, &mut |_| {}).await.expect("import runs")
}

fn outcome(report: &ImportReport, schema: &str) -> Outcome {
    report.tenants.iter().find(|t| t.schema == schema).map(|t| t.outcome).expect("a report for the schema")
}

/// Rows per tenant-scoped table over the whole target database (as the superuser).
pub(crate) async fn target_rows(app: &TestApp) -> Vec<(String, i64)> {
    let mut conn = app.superuser_connection().await;
    let mut out = Vec::new();
    for table in
        ["tenants", "tenant_domains", "users", "organizations", "contacts", "deals", "import_id_map", "audit_events"]
    {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut conn)
            .await
            .expect("count");
        out.push((table.to_string(), n));
    }
    out
}

/// (deal, its contact, its organization) by SOURCE ids, as the source has them …
async fn source_deal_links(source: &mut SourceDb, schema: &str) -> BTreeSet<(String, String, Option<String>)> {
    let sql = format!("SELECT id::text, contact_id::text, organization_id::text FROM {schema}.crm_deal");
    sqlx::query_as(AssertSqlSafe(sql)).fetch_all(&mut source.conn).await.expect("source deals").into_iter().collect()
}

/// … and as rowguard has them, translated back through import_id_map.
async fn target_deal_links(app: &TestApp, slug: &str) -> BTreeSet<(String, String, Option<String>)> {
    let mut conn = app.superuser_connection().await;
    sqlx::query_as(
        "SELECT md.source_id, mc.source_id, mo.source_id
           FROM deals d JOIN tenants t ON t.id = d.tenant_id
           JOIN import_id_map md ON md.tenant_id = d.tenant_id AND md.resource = 'deal' AND md.target_id = d.id
           JOIN import_id_map mc ON mc.tenant_id = d.tenant_id AND mc.resource = 'contact' AND mc.target_id = d.contact_id
           LEFT JOIN import_id_map mo
             ON mo.tenant_id = d.tenant_id AND mo.resource = 'organization' AND mo.target_id = d.organization_id
          WHERE t.slug = $1",
    )
    .bind(slug)
    .fetch_all(&mut conn)
    .await
    .expect("target deals")
    .into_iter()
    .collect()
}

#[tokio::test]
async fn a_django_tenants_database_comes_across_whole_with_references_and_logins() {
    let app = spawn_app().await;
    let mut source = django_source(&app).await;
    let report = run(&app, &source, &mapping(), &options(&[], false)).await;
    assert_eq!(report.failed(), 0, "{report:#?}");
    assert_eq!(report.tenants.len(), 3, "the public tenant is skipped: {report:#?}");
    let charlie = report.tenants.iter().find(|t| t.schema == "charlie_co").expect("charlie");
    assert_eq!(charlie.slug.as_deref(), Some("charlie-co"), "schema rule: lower case, '_' → '-'");
    assert!(charlie.notes.iter().any(|n| n.contains("charlie.localhost")), "{:?}", charlie.notes);

    // Counts, source against target, per tenant and resource.
    let mut su = app.superuser_connection().await;
    for (schema, _, _, contacts) in TENANTS {
        let slug = schema.replace('_', "-");
        let t = report.tenants.iter().find(|t| t.schema == *schema).expect("report");
        assert_eq!((t.rows.users, t.rows.organizations, t.rows.contacts, t.rows.deals), (4, 2, *contacts as u64, 2));
        for (table, source_table) in [
            ("users", "auth_user"),
            ("organizations", "crm_organization"),
            ("contacts", "crm_contact"),
            ("deals", "crm_deal"),
        ] {
            let want: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {schema}.{source_table}")))
                .fetch_one(&mut source.conn)
                .await
                .expect("source count");
            let got: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT count(*) FROM {table} x JOIN tenants t ON t.id = x.tenant_id WHERE t.slug = $1"
            )))
            .bind(&slug)
            .fetch_one(&mut su)
            .await
            .expect("target count");
            assert_eq!(got, want, "{schema}.{source_table} → {slug}.{table}");
        }
        // References intact: every deal names the same contact and organization as before.
        let before = source_deal_links(&mut source, schema).await;
        assert_eq!(before.len(), 2);
        assert_eq!(target_deal_links(&app, &slug).await, before, "{schema}");
    }
    // Contacts keep their organization, by source id.
    let contact_orgs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM contacts c JOIN import_id_map m
             ON m.tenant_id = c.tenant_id AND m.resource = 'organization' AND m.target_id = c.organization_id",
    )
    .fetch_one(&mut su)
    .await
    .expect("contact orgs");
    assert_eq!(contact_orgs, 3 + 2 + 2, "contacts 0, 2, 4 of alpha; 0, 2 of bravo and charlie");

    // Nothing crosses tenants: no reference from one tenant's row to another tenant's row ...
    // (joins on purpose not on the tenant, so on Citus they join across shards.)
    if rowguard::backend::Backend::detect(&mut su)
        .await
        .map(|b| b == rowguard::backend::Backend::Citus)
        .expect("citus?")
    {
        sqlx::query("SET citus.enable_repartition_joins = on").execute(&mut su).await.expect("repartition joins");
    }
    let crossing: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM deals d JOIN contacts c ON c.id = d.contact_id AND c.tenant_id <> d.tenant_id)
              + (SELECT count(*) FROM contacts c JOIN organizations o ON o.id = c.organization_id AND o.tenant_id <> c.tenant_id)
              + (SELECT count(*) FROM import_id_map m WHERE m.resource = 'contact'
                   AND NOT EXISTS (SELECT FROM contacts c WHERE c.tenant_id = m.tenant_id AND c.id = m.target_id))",
    )
    .fetch_one(&mut su)
    .await
    .expect("crossing");
    assert_eq!(crossing, 0);
    // ... and bravo's own owner, over HTTP, sees only bravo's contacts.
    let bravo = app.login("bravo", "boss@bravo.example", "bravo-owner-pw").await;
    assert_eq!(bravo.status, StatusCode::OK, "{}", bravo.body);
    let token = bravo.body["access_token"].as_str().expect("token").to_string();
    let listed = app.call_as(&token, "bravo", Method::GET, "/v1/contacts?limit=100", None).await;
    let emails: Vec<&str> =
        listed.body["items"].as_array().expect("items").iter().filter_map(|c| c["email"].as_str()).collect();
    assert_eq!(emails.len(), 3, "{}", listed.body);
    assert!(emails.iter().all(|e| e.ends_with("@bravo.example")), "{emails:?}");

    // A migrated user logs in with the old password; the hash is then argon2id, and still works.
    let hash_of = |email: &'static str| {
        sqlx::query_scalar::<_, String>("SELECT password_hash FROM users WHERE email = $1").bind(email)
    };
    let before = hash_of("member@alpha.example").fetch_one(&mut su).await.expect("hash");
    assert!(before.starts_with("pbkdf2_sha256$"), "{before}");
    let wrong = app.login("alpha", "member@alpha.example", "not-the-password").await;
    wrong.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let ok = app.login("alpha", "member@alpha.example", "alpha-member-pw").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let after = hash_of("member@alpha.example").fetch_one(&mut su).await.expect("hash");
    assert!(after.starts_with("$argon2id$"), "{after}");
    let again = app.login("alpha", "member@alpha.example", "alpha-member-pw").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    // Roles and status came from is_superuser, is_staff and is_active.
    let roles: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT u.email, u.role, u.status FROM users u JOIN tenants t ON t.id = u.tenant_id
          WHERE t.slug = 'alpha' ORDER BY u.email",
    )
    .fetch_all(&mut su)
    .await
    .expect("roles");
    let roles: Vec<(&str, &str, &str)> = roles.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    assert_eq!(
        roles,
        [
            ("Staff@alpha.example", "admin", "active"),
            ("boss@alpha.example", "owner", "active"),
            ("gone@alpha.example", "member", "deactivated"),
            ("member@alpha.example", "member", "active"),
        ]
    );
    // The custom domain resolves to the imported tenant.
    let by_host = app
        .call(
            Method::POST,
            "/v1/auth/login",
            &[("host", "crm.alpha-corp.com")],
            Some(json!({"email": "boss@alpha.example", "password": "alpha-owner-pw"})),
        )
        .await;
    assert_eq!(by_host.status, StatusCode::OK, "{}", by_host.body);

    // Re-running changes nothing and says why.
    let before = target_rows(&app).await;
    let rerun = run(&app, &source, &mapping(), &options(&[], false)).await;
    assert!(rerun.tenants.iter().all(|t| t.outcome == Outcome::Skipped), "{rerun:#?}");
    assert!(rerun.tenants.iter().all(|t| t.notes.iter().any(|n| n.contains("already imported"))));
    assert_eq!(target_rows(&app).await, before);
    // The source was only read: its data is as it was.
    let source_users: i64 =
        sqlx::query_scalar("SELECT count(*) FROM alpha.auth_user WHERE password LIKE 'pbkdf2_sha256$%'")
            .fetch_one(&mut source.conn)
            .await
            .expect("source");
    assert_eq!(source_users, 3);
}

#[tokio::test]
async fn a_broken_row_rolls_back_only_its_tenant() {
    let app = spawn_app().await;
    let mut source = django_source(&app).await;
    // bravo: a contact with a bad e-mail. charlie_co: a deal naming a contact that does not
    // exist (a source without the foreign key, as `db_constraint=False` makes).
    sqlx::raw_sql(
        "UPDATE bravo.crm_contact SET email = 'not-an-email' WHERE first_name = 'Person1';
         ALTER TABLE charlie_co.crm_deal DROP CONSTRAINT crm_deal_contact_id_fkey;
         UPDATE charlie_co.crm_deal SET contact_id = gen_random_uuid() WHERE title = 'Small deal';",
    )
    .execute(&mut source.conn)
    .await
    .expect("break rows");
    let before = target_rows(&app).await;
    let report = run(&app, &source, &mapping(), &options(&[], false)).await;
    assert_eq!(outcome(&report, "alpha"), Outcome::Imported, "{report:#?}");
    assert_eq!(outcome(&report, "bravo"), Outcome::Failed);
    assert_eq!(outcome(&report, "charlie_co"), Outcome::Failed);
    let problems = |schema: &str| report.tenants.iter().find(|t| t.schema == schema).expect("report").problems.clone();
    let bad_email: String = sqlx::query_scalar("SELECT id::text FROM bravo.crm_contact WHERE first_name = 'Person1'")
        .fetch_one(&mut source.conn)
        .await
        .expect("id");
    assert!(
        problems("bravo").iter().any(|p| p.table == "crm_contact"
            && p.row.as_deref() == Some(bad_email.as_str())
            && p.message.contains("email")),
        "{:?}",
        problems("bravo")
    );
    assert!(
        problems("charlie_co").iter().any(|p| p.table == "crm_deal" && p.message.contains("references contact")),
        "{:?}",
        problems("charlie_co")
    );
    // Only alpha arrived: one tenant more, and no row of bravo or charlie anywhere.
    let after = target_rows(&app).await;
    assert_eq!(after[0].1, before[0].1 + 1, "tenants: {after:?}");
    let mut su = app.superuser_connection().await;
    let strays: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM tenants WHERE slug IN ('bravo', 'charlie-co'))
              + (SELECT count(*) FROM contacts WHERE email NOT LIKE '%@alpha.example')
              + (SELECT count(*) FROM users WHERE email NOT LIKE '%@alpha.example')
              + (SELECT count(*) FROM tenant_domains WHERE domain LIKE 'bravo%')",
    )
    .fetch_one(&mut su)
    .await
    .expect("strays");
    assert_eq!(strays, 0);

    // Fixed at the source, bravo alone comes across on the next run.
    sqlx::raw_sql("UPDATE bravo.crm_contact SET email = 'fixed@bravo.example' WHERE first_name = 'Person1'")
        .execute(&mut source.conn)
        .await
        .expect("fix");
    let report = run(&app, &source, &mapping(), &options(&["bravo"], false)).await;
    assert_eq!(report.tenants.len(), 1);
    assert_eq!(outcome(&report, "bravo"), Outcome::Imported, "{report:#?}");
}

/// Every built-in row as stored is compared with the row planned from the source, every
/// column: a row the database changed on the way in (here a trigger on contacts) fails the
/// tenant, naming the source table and the row's source id, and nothing of it is written.
#[tokio::test]
async fn a_row_stored_otherwise_than_planned_fails_its_tenant_named() {
    let app = spawn_app().await;
    let source = django_source(&app).await;
    let mut su = app.tampering_connection().await;
    for statement in [
        "CREATE FUNCTION public.reformat_phone() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.phone := '+1 ' || NEW.phone; RETURN NEW; END $$",
        "CREATE TRIGGER reformat_phone BEFORE INSERT ON public.contacts FOR EACH ROW
           WHEN (NEW.phone IS NOT NULL) EXECUTE FUNCTION public.reformat_phone()",
    ] {
        sqlx::raw_sql(statement).execute(&mut su).await.expect("a trigger that changes contacts on the way in");
    }
    let report = run(&app, &source, &mapping(), &options(&["alpha"], false)).await;
    assert_eq!(outcome(&report, "alpha"), Outcome::Failed, "{report:#?}");
    let alpha = report.tenants.iter().find(|t| t.schema == "alpha").expect("alpha");
    let problem = alpha.problems.iter().find(|p| p.table == "crm_contact").expect("crm_contact named");
    assert!(problem.message.contains("of contacts as stored differ"), "{problem:?}");
    let mut source_conn = PgConnection::connect(&source.url).await.expect("source");
    let ids: Vec<String> = sqlx::query_scalar("SELECT id::text FROM alpha.crm_contact WHERE phone IS NOT NULL")
        .fetch_all(&mut source_conn)
        .await
        .expect("ids");
    assert!(problem.row.as_ref().is_some_and(|r| ids.contains(r)), "{problem:?} not in {ids:?}");
    let written: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tenants WHERE slug = 'alpha'").fetch_one(&mut su).await.expect("n");
    assert_eq!(written, 0, "the tenant rolled back");
    sqlx::raw_sql("DROP TRIGGER reformat_phone ON public.contacts").execute(&mut su).await.expect("drop");
    let again = run(&app, &source, &mapping(), &options(&["alpha"], false)).await;
    assert_eq!(outcome(&again, "alpha"), Outcome::Imported, "{again:#?}");
}

/// Django keeps addresses the API's own rule refuses (a non-ASCII local part, an international
/// domain in Unicode): such users come across as they are and log in with the address they
/// know. What cannot be a login (whitespace, a control character) is refused and named.
#[tokio::test]
async fn addresses_django_kept_come_across_and_log_in_and_unusable_ones_are_named() {
    let app = spawn_app().await;
    let mut source = django_source(&app).await;
    let sql = format!(
        "INSERT INTO alpha.auth_user (password, is_superuser, username, email, is_staff, is_active) VALUES
             ('{zoe}', false, 'zoe', 'zoë@alpha.example', false, true),
             ('{jorg}', false, 'jorg', 'jörg@münchen.example', false, true);
         UPDATE alpha.crm_contact SET email = 'kontakt@bücher.example' WHERE first_name = 'Person3';
         UPDATE bravo.auth_user SET email = 'two words@bravo.example' WHERE username = 'member';
         UPDATE charlie_co.auth_user SET email = E'bell\\x07@charlie.example' WHERE username = 'member';",
        zoe = django_hash("zoe-pw", "salt4"),
        jorg = django_hash("jorg-pw", "salt5"),
    );
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut source.conn).await.expect("django's addresses");
    let report = run(&app, &source, &mapping(), &options(&[], false)).await;
    assert_eq!(outcome(&report, "alpha"), Outcome::Imported, "{report:#?}");
    for (schema, address) in [("bravo", "two words@bravo.example"), ("charlie_co", "bell\u{7}@charlie.example")] {
        assert_eq!(outcome(&report, schema), Outcome::Failed, "{report:#?}");
        let member: String = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT id::text FROM {schema}.auth_user WHERE username = 'member'"
        )))
        .fetch_one(&mut source.conn)
        .await
        .expect("id");
        let problems = &report.tenants.iter().find(|t| t.schema == schema).expect("report").problems;
        assert!(
            problems.iter().any(|p| p.table == "auth_user"
                && p.row.as_deref() == Some(member.as_str())
                && p.message.starts_with("email: ")),
            "{address:?}: {problems:?}"
        );
    }

    // Stored as Django had them, and each logs in with it, whatever the case of its ASCII letters.
    for (email, login_as, password) in [
        ("zoë@alpha.example", "Zoë@Alpha.example", "zoe-pw"),
        ("jörg@münchen.example", "jörg@münchen.example", "jorg-pw"),
    ] {
        let ok = app.login("alpha", login_as, password).await;
        assert_eq!(ok.status, StatusCode::OK, "{login_as}: {}", ok.body);
        let token = ok.body["access_token"].as_str().expect("token").to_string();
        let me = app.call_as(&token, "alpha", Method::GET, "/v1/me", None).await;
        assert_eq!(me.body["email"], email, "{}", me.body);
        let wrong = app.login("alpha", login_as, "not-the-password").await;
        wrong.assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    let boss = app.login("alpha", "boss@alpha.example", "alpha-owner-pw").await;
    let token = boss.body["access_token"].as_str().expect("token").to_string();
    let listed = app.call_as(&token, "alpha", Method::GET, "/v1/contacts?limit=100", None).await;
    let emails: Vec<&str> =
        listed.body["items"].as_array().expect("items").iter().filter_map(|c| c["email"].as_str()).collect();
    assert!(emails.contains(&"kontakt@bücher.example"), "{emails:?}");
    // The API's own rule still holds for what is written through it.
    let refused = app
        .call_as(
            &token,
            "alpha",
            Method::POST,
            "/v1/contacts",
            Some(json!({"name": "Neu", "email": "neu@bücher.example"})),
        )
        .await;
    refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_bad_mappings_and_clashes_are_named() {
    let app = spawn_app().await;
    let source = django_source(&app).await;
    let before = target_rows(&app).await;
    let report = run(&app, &source, &mapping(), &options(&[], true)).await;
    assert!(report.tenants.iter().all(|t| t.outcome == Outcome::WouldImport), "{report:#?}");
    assert_eq!(report.rows, 3 * (4 + 2 + 2) + 5 + 3 + 4);
    assert_eq!(target_rows(&app).await, before, "a dry run wrote something");

    // A column the source does not have: every tenant fails, naming table and column.
    let wrong = Mapping::parse(&EXAMPLE.replace("website_domain", "web_site")).expect("still valid TOML");
    let report = run(&app, &source, &wrong, &options(&[], false)).await;
    assert_eq!(report.failed(), 3);
    for t in &report.tenants {
        assert!(
            t.problems.iter().any(|p| p.message.contains("crm_organization") && p.message.contains("web_site")),
            "{t:?}"
        );
    }
    assert_eq!(target_rows(&app).await, before);

    // A registry table that does not exist stops the run before any tenant.
    let no_registry = Mapping::parse(&EXAMPLE.replace("customers_client", "clients")).expect("valid TOML");
    let mut platform = PlatformConn::connect(&app.superuser_url()).await.expect("platform");
    let err = import_schemas(&mut platform, &source.url, &no_registry, &options(&[], false), &mut |_| {})
        .await
        .expect_err("no registry");
    assert!(err.to_string().contains("public.clients"), "{err}");

    // An unreachable source is said to be one.
    let unreachable = "postgres://nobody@127.0.0.1:1/nothing";
    let err = import_schemas(&mut platform, unreachable, &mapping(), &options(&[], false), &mut |_| {})
        .await
        .expect_err("unreachable");
    assert!(matches!(err, ImportError::Source(_)) && err.to_string().contains("not reachable"), "{err}");

    // A rowguard tenant `alpha` that no import made: a clash, reported, not renamed.
    app.create_tenant("alpha").await;
    let report = run(&app, &source, &mapping(), &options(&["alpha", "nope"], false)).await;
    assert_eq!(outcome(&report, "alpha"), Outcome::Failed, "{report:#?}");
    assert_eq!(outcome(&report, "nope"), Outcome::Failed);
    let alpha = report.tenants.iter().find(|t| t.schema == "alpha").expect("alpha");
    assert!(alpha.problems.iter().any(|p| p.message.contains("already exists")), "{alpha:?}");
    // With an override it goes through under the chosen slug.
    let renamed = Mapping::parse(
        &EXAMPLE.replace("# overrides = { acme_corp = \"acme\" }", "overrides = { alpha = \"alpha-ltd\" }"),
    )
    .expect("override");
    let report = run(&app, &source, &renamed, &options(&["alpha"], false)).await;
    let alpha = report.tenants.iter().find(|t| t.schema == "alpha").expect("alpha");
    assert_eq!((alpha.outcome, alpha.slug.as_deref()), (Outcome::Imported, Some("alpha-ltd")), "{alpha:?}");
}

#[tokio::test]
async fn the_source_connection_refuses_writes() {
    let app = spawn_app().await;
    let source = django_source(&app).await;
    let mut opened = rowguard::import::source::Source::connect(&source.url).await.expect("connect");
    assert!(opened.refuses_writes().await.expect("read the setting"));
    // The same URL opened plainly can write, so the guarantee comes from how the importer connects.
    let mut plain = PgConnection::connect(&source.url).await.expect("connect");
    let plain_ro: String = sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
        .fetch_one(&mut plain)
        .await
        .expect("read");
    assert_eq!(plain_ro, "off");
}

/// libpq's keyword form of a test-cluster URL: `host=<socket dir> port=… dbname=… user=… password=…`.
/// A URL over TCP (the Citus cluster's) gets the socket directory the server reports.
async fn keyword_string(url: &str) -> String {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(url).expect("a test-cluster URL");
    let socket = match options.get_socket() {
        Some(socket) => socket.clone(),
        None => {
            let mut conn = PgConnection::connect(url).await.expect("connect");
            let dirs: String =
                sqlx::query_scalar("SHOW unix_socket_directories").fetch_one(&mut conn).await.expect("socket dirs");
            std::path::PathBuf::from(dirs.split(',').next().unwrap_or_default().trim())
        }
    };
    format!(
        "host={} port={} dbname={} user={}{}",
        socket.display(),
        options.get_port(),
        options.get_database().expect("a database"),
        options.get_username(),
        // The Citus cluster's superuser URL has none (trust on loopback).
        if url.split_once("://").and_then(|(_, rest)| rest.split_once('@')).is_some_and(|(u, _)| u.contains(':')) {
            format!(" password='{}'", url_password(url))
        } else {
            String::new()
        },
    )
}

/// A new operator's first command, on a target database that does not exist yet, with the
/// source given as a libpq keyword string over a Unix socket: the import creates and migrates
/// the target itself (even for the dry run) and then imports.
#[tokio::test]
async fn an_empty_target_is_migrated_by_the_import_and_a_keyword_source_over_a_socket_works() {
    let app = spawn_app().await;
    let source = django_source(&app).await;
    let fresh = format!("t_{}_fresh", uuid::Uuid::now_v7().simple());
    let env = cli_env_for(&fresh);
    let dir = scratch_dir("import-fresh");
    let mapping_file = dir.join("mapping.toml");
    std::fs::write(&mapping_file, EXAMPLE).expect("write the mapping");
    let keywords = keyword_string(&source.url).await;
    assert!(keywords.starts_with("host=/"), "{keywords}");
    let args = |dry_run: bool| {
        let mut args =
            vec!["import", "schemas", "--source", &keywords, "--mapping", mapping_file.to_str().expect("path")];
        if dry_run {
            args.push("--dry-run");
        }
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    for (dry_run, summary) in [(true, "0 imported, 3 would import"), (false, "3 imported, 0 would import")] {
        let args = args(dry_run);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = rowguard(&env, &dir, &args).output().await.expect("run rowguard");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "dry run {dry_run}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(summary), "dry run {dry_run}: {stdout}");
    }
    let admin = &env.iter().find(|(k, _)| *k == "ROWGUARD_ADMIN_DATABASE_URL").expect("admin URL").1;
    let mut target = PgConnection::connect(admin).await.expect("the target now exists");
    let slugs: Vec<String> =
        sqlx::query_scalar("SELECT slug FROM tenants ORDER BY slug").fetch_all(&mut target).await.expect("tenants");
    assert_eq!(slugs, ["alpha", "bravo", "charlie-co"]);
}

#[tokio::test]
async fn connection_errors_name_the_socket_or_the_host_and_port() {
    let app = spawn_app().await;
    let mut platform = PlatformConn::connect(&app.superuser_url()).await.expect("platform");
    for (source, named) in [
        (
            "host=/nonexistent/pg port=5999 dbname=app user=x",
            "socket /nonexistent/pg/.s.PGSQL.5999, database app, user x",
        ),
        ("postgres://nobody@127.0.0.1:1/nothing", "host 127.0.0.1 port 1, database nothing, user nobody"),
    ] {
        let err = import_schemas(&mut platform, source, &mapping(), &options(&[], true), &mut |_| {})
            .await
            .expect_err("unreachable");
        let message = err.to_string();
        assert!(message.contains(named) && message.contains("not reachable"), "{source}: {message}");
    }
    let err = import_schemas(&mut platform, "host=/x dbname='app", &mapping(), &options(&[], true), &mut |_| {})
        .await
        .expect_err("unclosed quote");
    assert!(err.to_string().contains("not valid") && err.to_string().contains("closing quote"), "{err}");
}

/// Re-runs skip imported tenants, but the mapping is still checked against each schema: a
/// column renamed in the mapping (or dropped in the source) fails the run instead of "nothing
/// changed".
#[tokio::test]
async fn a_mapping_that_no_longer_fits_is_reported_even_when_every_tenant_is_imported() {
    let app = spawn_app().await;
    let source = django_source(&app).await;
    let report = run(&app, &source, &mapping(), &options(&[], false)).await;
    assert_eq!(report.failed(), 0, "{report:#?}");
    let wrong = Mapping::parse(&EXAMPLE.replace("website_domain", "web_site")).expect("still valid TOML");
    for dry_run in [true, false] {
        let rerun = run(&app, &source, &wrong, &options(&[], dry_run)).await;
        assert_eq!(rerun.failed(), 3, "{rerun:#?}");
        for t in &rerun.tenants {
            assert!(
                t.problems.iter().any(|p| p.table == "(mapping)"
                    && p.message.contains("crm_organization")
                    && p.message.contains("web_site")),
                "{t:?}"
            );
        }
    }
    let rerun = run(&app, &source, &mapping(), &options(&[], false)).await;
    assert!(rerun.tenants.iter().all(|t| t.outcome == Outcome::Skipped), "{rerun:#?}");
}

/// The example mapping with its commented-out lines for an inactive tenant switched on.
fn mapping_with_tenant_status() -> Mapping {
    let text = EXAMPLE
        .replace("# is_active = \"is_active\"", "is_active = \"is_active\"")
        .replace("# status = \"status\"", "status = \"status\"")
        .replace("# inactive_statuses = [", "inactive_statuses = [");
    Mapping::parse(&text).expect("the example with tenant status")
}

/// A tenant the registry marks inactive (by a boolean or by a status value) arrives suspended
/// and nobody logs in to it; inside an active tenant, a user Django deactivated cannot log in
/// with the right password, and an unusable password (`!…`) matches nothing.
#[tokio::test]
async fn inactive_tenants_arrive_suspended_and_inactive_or_unusable_users_cannot_log_in() {
    let app = spawn_app().await;
    let mut source = django_source(&app).await;
    sqlx::raw_sql(
        "ALTER TABLE public.customers_client ADD COLUMN is_active boolean NOT NULL DEFAULT true,
                                             ADD COLUMN status varchar(20) NOT NULL DEFAULT 'paying';
         UPDATE public.customers_client SET is_active = false WHERE schema_name = 'bravo';
         UPDATE public.customers_client SET status = ' Cancelled' WHERE schema_name = 'charlie_co';
         UPDATE alpha.auth_user SET is_active = false WHERE username = 'member';
         INSERT INTO alpha.auth_user (password, is_superuser, username, email, is_staff, is_active)
             VALUES ('!Xy3kq9ZpL0aBcDeFgHiJkLmNoPqRsTuVwXyZ0123', false, 'locked', 'locked@alpha.example', false, true);",
    )
    .execute(&mut source.conn)
    .await
    .expect("inactive tenants and users");
    let report = run(&app, &source, &mapping_with_tenant_status(), &options(&[], false)).await;
    assert_eq!(report.failed(), 0, "{report:#?}");
    let mut su = app.superuser_connection().await;
    let statuses: Vec<(String, String)> =
        sqlx::query_as("SELECT slug, status FROM tenants WHERE import_source IS NOT NULL ORDER BY slug")
            .fetch_all(&mut su)
            .await
            .expect("statuses");
    let want =
        [("alpha", "active"), ("bravo", "suspended"), ("charlie-co", "suspended")].map(|(a, b)| (a.into(), b.into()));
    assert_eq!(statuses, want);
    for (schema, why) in [("bravo", "is_active = false"), ("charlie_co", "status = \" Cancelled\"")] {
        let t = report.tenants.iter().find(|t| t.schema == schema).expect("report");
        assert!(t.notes.iter().any(|n| n.contains(why) && n.contains("suspended")), "{schema}: {:?}", t.notes);
    }
    // Nobody logs in to a suspended tenant, not even its owner with the right password.
    app.login("bravo", "boss@bravo.example", "bravo-owner-pw")
        .await
        .assert_problem(StatusCode::FORBIDDEN, "tenant_suspended");
    app.login("charlie-co", "boss@charlie_co.example", "charlie_co-owner-pw")
        .await
        .assert_problem(StatusCode::FORBIDDEN, "tenant_suspended");
    let boss = app.login("alpha", "boss@alpha.example", "alpha-owner-pw").await;
    assert_eq!(boss.status, StatusCode::OK, "{}", boss.body);

    // Deactivated in Django: the right password does not let them in.
    app.login("alpha", "member@alpha.example", "alpha-member-pw")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    // Unusable: stored as Django had it, active, and nothing matches it.
    let (hash, status): (String, String) =
        sqlx::query_as("SELECT password_hash, status FROM users WHERE email = 'locked@alpha.example'")
            .fetch_one(&mut su)
            .await
            .expect("locked user");
    assert_eq!((hash.as_str(), status.as_str()), ("!Xy3kq9ZpL0aBcDeFgHiJkLmNoPqRsTuVwXyZ0123", "active"));
    for attempt in ["!Xy3kq9ZpL0aBcDeFgHiJkLmNoPqRsTuVwXyZ0123", "Xy3kq9ZpL0aBcDeFgHiJkLmNoPqRsTuVwXyZ0123", "!", "x"] {
        app.login("alpha", "locked@alpha.example", attempt)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
}

/// Owners made with `create_user` are not superusers, so `owner_if = "is_superuser"` finds
/// none: such a tenant (and one whose only owner is inactive) is named by the dry run and not
/// imported until the mapping names an active owner by e-mail.
#[tokio::test]
async fn a_tenant_without_an_active_owner_is_reported_by_the_dry_run_and_refused_unless_named() {
    let app = spawn_app().await;
    let mut source = django_source(&app).await;
    sqlx::raw_sql(
        "UPDATE bravo.auth_user SET is_superuser = false WHERE username = 'boss';
         UPDATE charlie_co.auth_user SET is_active = false WHERE username = 'boss';",
    )
    .execute(&mut source.conn)
    .await
    .expect("owners without superuser");
    let before = target_rows(&app).await;
    for dry_run in [true, false] {
        let report = run(&app, &source, &mapping(), &options(&["bravo", "charlie_co"], dry_run)).await;
        for schema in ["bravo", "charlie_co"] {
            let t = report.tenants.iter().find(|t| t.schema == schema).expect("report");
            assert_eq!(t.outcome, Outcome::Failed, "dry run {dry_run}: {t:?}");
            assert!(
                t.problems.iter().any(|p| p.table == "auth_user"
                    && p.message.contains("no active owner")
                    && p.message.contains(&format!("owner_email = {{ {schema} = "))),
                "dry run {dry_run}: {:?}",
                t.problems
            );
        }
    }
    assert_eq!(target_rows(&app).await, before, "a tenant without an owner was written");

    // Named: an inactive user will not do; an active one (any case) becomes the owner.
    let named = |charlie: &str| {
        Mapping::parse(&EXAMPLE.replace(
            "# owner_email = { acme_corp = \"ceo@acme.example\" }",
            &format!("owner_email = {{ bravo = \"boss@bravo.example\", charlie_co = \"{charlie}\" }}"),
        ))
        .expect("owner_email")
    };
    let report = run(&app, &source, &named("boss@charlie_co.example"), &options(&[], false)).await;
    assert_eq!(outcome(&report, "bravo"), Outcome::Imported, "{report:#?}");
    let charlie = report.tenants.iter().find(|t| t.schema == "charlie_co").expect("charlie");
    assert_eq!(charlie.outcome, Outcome::Failed);
    assert!(charlie.problems.iter().any(|p| p.message.contains("inactive user")), "{:?}", charlie.problems);
    let report = run(&app, &source, &named("staff@charlie_co.example"), &options(&["charlie_co"], false)).await;
    assert_eq!(outcome(&report, "charlie_co"), Outcome::Imported, "{report:#?}");

    let mut su = app.superuser_connection().await;
    let owners: Vec<(String, String)> = sqlx::query_as(
        "SELECT t.slug, u.email FROM users u JOIN tenants t ON t.id = u.tenant_id
          WHERE u.role = 'owner' AND u.status = 'active' AND t.slug IN ('bravo', 'charlie-co') ORDER BY 1",
    )
    .fetch_all(&mut su)
    .await
    .expect("owners");
    let want = [("bravo", "boss@bravo.example"), ("charlie-co", "Staff@charlie_co.example")]
        .map(|(a, b)| (a.into(), b.into()));
    assert_eq!(owners, want);
    let boss = app.login("bravo", "boss@bravo.example", "bravo-owner-pw").await;
    assert_eq!(boss.status, StatusCode::OK, "{}", boss.body);
    let token = boss.body["access_token"].as_str().expect("token").to_string();
    let me = app.call_as(&token, "bravo", Method::GET, "/v1/me", None).await;
    assert_eq!(me.body["role"], "owner", "{}", me.body);
}

/// With `created_at`/`updated_at` mapped, rows keep the source's times to the microsecond, and
/// lists in creation order (rowguard lists by id, a uuid v7 made from the creation time) come
/// out in the source's creation order, not in import or source-id order.
#[tokio::test]
async fn mapped_timestamps_come_across_and_lists_keep_the_source_creation_order() {
    let app = spawn_app().await;
    let mut source = django_source(&app).await;
    // Contacts created in the reverse order of their names (Person4 first), one of them updated
    // since; users joined in an order unlike their ids. Two contacts a microsecond apart.
    sqlx::raw_sql(
        "ALTER TABLE alpha.crm_contact ADD COLUMN created_at timestamptz, ADD COLUMN updated_at timestamptz;
         UPDATE alpha.crm_contact
            SET created_at = timestamptz '2019-03-01 10:00:00.123456+00'
                             + (4 - substr(first_name, 7)::int) * interval '1 day';
         UPDATE alpha.crm_contact SET created_at = timestamptz '2019-03-01 10:00:00.123457+00' WHERE first_name = 'Person3';
         UPDATE alpha.crm_contact SET created_at = timestamptz '2019-03-01 10:00:00.123456+00' WHERE first_name = 'Person4';
         UPDATE alpha.crm_contact SET updated_at = timestamptz '2024-06-30 23:59:59.5+02' WHERE first_name = 'Person2';
         UPDATE alpha.auth_user SET date_joined = CASE username WHEN 'boss' THEN timestamptz '2018-01-01 00:00:00+00'
             WHEN 'member' THEN '2019-01-01 00:00:00+00' WHEN 'staff' THEN '2020-01-01 00:00:00+00'
             ELSE '2021-01-01 00:00:00+00' END;",
    )
    .execute(&mut source.conn)
    .await
    .expect("source times");
    // The example already maps auth_user's date_joined; the contacts' columns are added here.
    assert!(EXAMPLE.contains("created_at = \"date_joined\""));
    let text = EXAMPLE.replace(
        "table = \"crm_contact\"",
        "table = \"crm_contact\"\ncreated_at = \"created_at\"\nupdated_at = \"updated_at\"",
    );
    let timed = Mapping::parse(&text).expect("mapping with times");
    let report = run(&app, &source, &timed, &options(&["alpha"], false)).await;
    assert_eq!(outcome(&report, "alpha"), Outcome::Imported, "{report:#?}");

    type Times = (String, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>);
    let want: Vec<Times> = sqlx::query_as(
        "SELECT email, created_at, coalesce(updated_at, created_at) FROM alpha.crm_contact ORDER BY created_at",
    )
    .fetch_all(&mut source.conn)
    .await
    .expect("source contacts");
    let emails: Vec<&str> = want.iter().map(|(e, _, _)| e.as_str()).collect();
    assert_eq!(
        emails,
        ["p4@alpha.example", "p3@alpha.example", "p2@alpha.example", "p1@alpha.example", "p0@alpha.example"]
    );
    let mut su = app.superuser_connection().await;
    let got: Vec<Times> = sqlx::query_as(
        "SELECT c.email, c.created_at, c.updated_at FROM contacts c JOIN tenants t ON t.id = c.tenant_id
          WHERE t.slug = 'alpha' ORDER BY c.id",
    )
    .fetch_all(&mut su)
    .await
    .expect("target contacts");
    assert_eq!(got, want, "times to the microsecond, and id order = source creation order");
    let users: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT u.email, u.created_at FROM users u JOIN tenants t ON t.id = u.tenant_id
          WHERE t.slug = 'alpha' ORDER BY u.id",
    )
    .fetch_all(&mut su)
    .await
    .expect("target users");
    let users: Vec<(&str, String)> = users.iter().map(|(e, t)| (e.as_str(), t.to_rfc3339())).collect();
    assert_eq!(
        users,
        [
            ("boss@alpha.example", "2018-01-01T00:00:00+00:00".to_string()),
            ("member@alpha.example", "2019-01-01T00:00:00+00:00".to_string()),
            ("Staff@alpha.example", "2020-01-01T00:00:00+00:00".to_string()),
            ("gone@alpha.example", "2021-01-01T00:00:00+00:00".to_string()),
        ]
    );

    // The API's list, in its own (creation) order, is the source's creation order.
    let boss = app.login("alpha", "boss@alpha.example", "alpha-owner-pw").await;
    let token = boss.body["access_token"].as_str().expect("token").to_string();
    let listed = app.call_as(&token, "alpha", Method::GET, "/v1/contacts?limit=100", None).await;
    let listed: Vec<&str> =
        listed.body["items"].as_array().expect("items").iter().filter_map(|c| c["email"].as_str()).collect();
    assert_eq!(listed, emails);
}

/// Users whose hashes Django's other shipped hashers made (these strings come from Django 5.2
/// itself, low costs) log in with their old password after the import, get argon2id hashes,
/// and a wrong password still fails; an MD5 hash (accepted by no rowguard) never matches.
#[tokio::test]
async fn users_hashed_by_djangos_other_hashers_log_in_with_their_old_passwords() {
    const PASSWORD: &str = "correct horse \u{fc}n\u{ef}code";
    let users = [
        ("boss", "pbkdf2_sha1$1000$seasalt$I7rtQjLcQDkgsiL4UlaTLfdWlh8="),
        ("staff", "bcrypt_sha256$$2b$04$vyzG1ALzvjNCJK4Z9r04KuFgt2HhroVP/DVizHQUp75tljyFC7bg2"),
        (
            "member",
            "scrypt$1024$seasalt$8$2$0wc08RhZPFWBP76qw6+DWytDL+liAN2mlqXrIFiGLzL1ubEXO1LUpc6P8BQsd3jvXiRpgdqQgbSdNgQMWenKUQ==",
        ),
    ];
    let app = spawn_app().await;
    let mut source = django_source(&app).await;
    for (username, hash) in users {
        sqlx::query("UPDATE alpha.auth_user SET password = $1 WHERE username = $2")
            .bind(hash)
            .bind(username)
            .execute(&mut source.conn)
            .await
            .expect("set the Django hash");
    }
    sqlx::raw_sql(
        "INSERT INTO alpha.auth_user (password, is_superuser, username, email, is_staff, is_active)
             VALUES ('md5$TDbnbLagFKHwJx2llWfzpu$ae7198da535c9f579ddfc546704ca5ee', false, 'old', 'old@alpha.example', false, true)",
    )
    .execute(&mut source.conn)
    .await
    .expect("an md5 user");
    let report = run(&app, &source, &mapping(), &options(&["alpha"], false)).await;
    assert_eq!(report.failed(), 0, "{report:#?}");
    let mut su = app.superuser_connection().await;
    for (username, hash) in users {
        let email =
            if username == "staff" { "Staff@alpha.example".to_string() } else { format!("{username}@alpha.example") };
        let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
            .bind(&email)
            .fetch_one(&mut su)
            .await
            .expect("imported user");
        assert_eq!(stored, hash, "imported as Django stored it");
        app.login("alpha", &email, "correct horse unicode")
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
        let ok = app.login("alpha", &email, PASSWORD).await;
        assert_eq!(ok.status, StatusCode::OK, "{username}: {}", ok.body);
        let after: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
            .bind(&email)
            .fetch_one(&mut su)
            .await
            .expect("rehashed user");
        assert!(after.starts_with("$argon2id$"), "{username}: {after}");
        let again = app.login("alpha", &email, PASSWORD).await;
        assert_eq!(again.status, StatusCode::OK, "{username} with the argon2id hash: {}", again.body);
    }
    app.login("alpha", "old@alpha.example", PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED, "invalid_credentials");
}

/// A re-run tells a tenant whose source changed since its import from one that did not: the
/// changed one is reported (nothing written, exit code non-zero), the others are skipped. An
/// edit in any column of a mapped table counts, as do added and removed rows; a change to a
/// table the mapping does not read does not.
#[tokio::test]
async fn a_rerun_reports_a_tenant_whose_source_changed_since_its_import() {
    let app = spawn_installed_app().await;
    let mut source = django_source(&app).await;
    let first = run(&app, &source, &mapping(), &options(&[], false)).await;
    assert_eq!(first.failed(), 0, "{first:#?}");
    let before = target_rows(&app).await;

    // Unmapped: not a change.
    sqlx::raw_sql("CREATE TABLE alpha.notes (id int); INSERT INTO alpha.notes VALUES (1);")
        .execute(&mut source.conn)
        .await
        .expect("an unmapped table");
    let rerun = run(&app, &source, &mapping(), &options(&[], false)).await;
    assert!(rerun.tenants.iter().all(|t| t.outcome == Outcome::Skipped), "{rerun:#?}");
    assert!(rerun.tenants.iter().all(|t| t.notes.iter().any(|n| n.contains("not changed since"))), "{rerun:#?}");

    for (what, sql) in [
        ("an edited phone", "UPDATE bravo.crm_contact SET phone = '+1 555 0199' WHERE first_name = 'Person0'"),
        ("a removed deal", "DELETE FROM bravo.crm_deal WHERE title = 'Small deal'"),
        (
            "an added user",
            "INSERT INTO bravo.auth_user (password, is_superuser, username, email, is_staff, is_active)
                 VALUES ('!x', false, 'new', 'new@bravo.example', false, true)",
        ),
    ] {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut source.conn).await.expect(what);
        let rerun = run(&app, &source, &mapping(), &options(&[], false)).await;
        let outcome_of = |schema: &str| rerun.tenants.iter().find(|t| t.schema == schema).expect("reported").outcome;
        assert_eq!(outcome_of("bravo"), Outcome::Changed, "{what}: {rerun:#?}");
        assert_eq!(outcome_of("alpha"), Outcome::Skipped, "{what}");
        assert_eq!(outcome_of("charlie_co"), Outcome::Skipped, "{what}");
        assert_eq!(rerun.changed(), 1);
        let bravo = rerun.tenants.iter().find(|t| t.schema == "bravo").expect("bravo");
        assert!(
            bravo.notes.iter().any(|n| n.contains("changed since") && n.contains("tenants delete bravo")),
            "{bravo:?}"
        );
        assert_eq!(target_rows(&app).await, before, "{what}: nothing written");
    }

    // The command line says so and exits non-zero.
    let dir = scratch_dir("import-changed");
    let mapping_file = dir.join("mapping.toml");
    std::fs::write(&mapping_file, EXAMPLE).expect("write the mapping");
    let env = app.cli_env();
    let args = ["import", "schemas", "--source", &source.url, "--mapping", mapping_file.to_str().expect("path")];
    let out = rowguard(&env, &dir, &args).output().await.expect("run rowguard");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 changed since imported"), "{stdout}\n{stderr}");
    assert!(stderr.contains("changed in the source since they were imported: bravo"), "{stderr}");

    // `--replace`: the old copy out and the new one in, in one transaction.
    let mut su = app.superuser_connection().await;
    let old_id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM tenants WHERE slug = 'bravo'").fetch_one(&mut su).await.expect("bravo");
    let dry = run(&app, &source, &mapping(), &ImportOptions { replace: true, ..options(&[], true) }).await;
    let bravo = dry.tenants.iter().find(|t| t.schema == "bravo").expect("bravo");
    assert_eq!(bravo.outcome, Outcome::WouldImport, "{dry:#?}");
    assert_eq!(target_rows(&app).await, before, "a dry run writes nothing");
    let replaced = run(&app, &source, &mapping(), &ImportOptions { replace: true, ..options(&[], false) }).await;
    assert_eq!(replaced.failed() + replaced.changed(), 0, "{replaced:#?}");
    let outcome_of = |schema: &str| replaced.tenants.iter().find(|t| t.schema == schema).expect("reported").outcome;
    assert_eq!(
        [outcome_of("alpha"), outcome_of("bravo"), outcome_of("charlie_co")],
        [Outcome::Skipped, Outcome::Imported, Outcome::Skipped]
    );
    let (new_id, domains): (uuid::Uuid, i64) = sqlx::query_as(
        "SELECT t.id, (SELECT count(*) FROM tenant_domains d WHERE d.tenant_id = t.id) FROM tenants t WHERE slug = 'bravo'",
    )
    .fetch_one(&mut su)
    .await
    .expect("the new bravo");
    assert_ne!(new_id, old_id);
    assert_eq!(domains, 1, "bravo.example.com came across again");
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM tenants WHERE id = $1) + (SELECT count(*) FROM users WHERE tenant_id = $1)
              + (SELECT count(*) FROM contacts WHERE tenant_id = $1) + (SELECT count(*) FROM deals WHERE tenant_id = $1)
              + (SELECT count(*) FROM audit_events WHERE tenant_id = $1)
              + (SELECT count(*) FROM import_id_map WHERE tenant_id = $1)
              + (SELECT count(*) FROM tenant_domains WHERE tenant_id = $1)
              + (SELECT count(*) FROM audit_tree_state WHERE tenant_id = $1)
              + (SELECT count(*) FROM audit_tree_leaves WHERE tenant_id = $1)
              + (SELECT count(*) FROM audit_unsealed WHERE tenant_id = $1)",
    )
    .bind(old_id)
    .fetch_one(&mut su)
    .await
    .expect("what is left of the old bravo");
    assert_eq!(left, 0);
    // The new copy is the source as it is now: the edit, the removed deal, the added user.
    let (phone, deals, users): (String, i64, i64) = sqlx::query_as(
        "SELECT (SELECT phone FROM contacts WHERE tenant_id = $1 AND name LIKE 'Person0%'),
                (SELECT count(*) FROM deals WHERE tenant_id = $1), (SELECT count(*) FROM users WHERE tenant_id = $1)",
    )
    .bind(new_id)
    .fetch_one(&mut su)
    .await
    .expect("the new bravo's rows");
    assert_eq!((phone.as_str(), deals, users), ("+1 555 0199", 1, 5));
    let boss = app.login("bravo", "boss@bravo.example", "bravo-owner-pw").await;
    assert_eq!(boss.status, StatusCode::OK, "{}", boss.body);
    let again = run(&app, &source, &mapping(), &options(&[], false)).await;
    assert!(again.tenants.iter().all(|t| t.outcome == Outcome::Skipped), "{again:#?}");
}

/// `[users.groups]`: Django groups decide roles after owner_if/admin_if, the first of owner,
/// admin, manager, auditor, member winning; a schema without the group tables is named.
#[tokio::test]
async fn django_groups_map_to_roles_by_the_documented_rules() {
    let app = spawn_app().await;
    let mut source = django_source(&app).await;
    sqlx::raw_sql(
        "CREATE TABLE alpha.auth_group (id serial PRIMARY KEY, name varchar(150) NOT NULL UNIQUE);
         CREATE TABLE alpha.auth_user_groups (id bigserial PRIMARY KEY,
             user_id integer NOT NULL REFERENCES alpha.auth_user (id), group_id integer NOT NULL REFERENCES alpha.auth_group (id));
         INSERT INTO alpha.auth_group (name) VALUES ('Managers'), ('Compliance'), ('Interns');
         INSERT INTO alpha.auth_user (password, is_superuser, username, email, is_staff, is_active) VALUES
             ('!x', false, 'lead', 'lead@alpha.example', false, true),
             ('!x', false, 'both', 'both@alpha.example', false, true),
             ('!x', false, 'intern', 'intern@alpha.example', false, true);
         INSERT INTO alpha.auth_user_groups (user_id, group_id)
         SELECT u.id, g.id FROM alpha.auth_user u, alpha.auth_group g
          WHERE (u.username, g.name) IN (('member', 'Compliance'), ('staff', 'Compliance'), ('lead', 'Managers'),
                                         ('both', 'Compliance'), ('both', 'Managers'), ('intern', 'Interns'));",
    )
    .execute(&mut source.conn)
    .await
    .expect("groups");
    let text = EXAMPLE.replace(
        "# [users.groups]\n# manager = [\"Managers\", \"Team leads\"]\n# auditor = [\"Compliance\"]",
        "[users.groups]\nmanager = [\"Managers\", \"Team leads\"]\nauditor = [\"Compliance\"]",
    );
    assert_ne!(text, EXAMPLE, "the example carries the groups section");
    let with_groups = Mapping::parse(&text).expect("the example with groups");

    // bravo has no group tables: named, not guessed.
    let report = run(&app, &source, &with_groups, &options(&["alpha", "bravo"], false)).await;
    let bravo = report.tenants.iter().find(|t| t.schema == "bravo").expect("bravo");
    assert_eq!(bravo.outcome, Outcome::Failed, "{report:#?}");
    assert!(bravo.problems.iter().any(|p| p.message.contains("auth_group")), "{:?}", bravo.problems);

    let alpha = report.tenants.iter().find(|t| t.schema == "alpha").expect("alpha");
    assert_eq!(alpha.outcome, Outcome::Imported, "{report:#?}");
    let mut su = app.superuser_connection().await;
    let roles: Vec<(String, String)> = sqlx::query_as(
        "SELECT u.email, u.role FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.slug = 'alpha' ORDER BY u.email",
    )
    .fetch_all(&mut su)
    .await
    .expect("roles");
    let roles: Vec<(&str, &str)> = roles.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        roles,
        [
            ("Staff@alpha.example", "admin"),    // is_staff: admin_if comes before groups
            ("boss@alpha.example", "owner"),     // is_superuser
            ("both@alpha.example", "manager"),   // Managers and Compliance: manager ranks first
            ("gone@alpha.example", "member"),    // no group
            ("intern@alpha.example", "member"),  // a group the mapping does not name
            ("lead@alpha.example", "manager"),   // Managers
            ("member@alpha.example", "auditor"), // Compliance
        ]
    );
    // A role name the service does not know is refused when the mapping is read.
    let bad = text.replace("auditor = [\"Compliance\"]", "boss = [\"Compliance\"]");
    assert!(Mapping::parse(&bad).is_err_and(|e| e.contains("[users.groups] boss")));
}
