//! `rowguard import schemas --all-tables`: the tenant schemas' other tables planned, created,
//! adopted, filled and compared with the source, on the django-tenants-style source that
//! `import` builds.

use axum::http::{Method, StatusCode};
use rowguard::import::{ImportOptions, OperatorFolder, Outcome};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, Executor};

use crate::cli_concurrency::rowguard;
use crate::import::{EXAMPLE, SourceDb, TENANTS, django_source, mapping, options, run, target_rows};
use crate::support::{scratch_dir, spawn_installed_app};

/// `--all-tables --dry-run`: the tenant schemas' other tables (Django's own left out), the
/// schema whose table differs named with the difference, and a migration that applies to
/// rowguard's database with tenant_id leading every key, so a reference cannot cross tenants.
#[tokio::test]
async fn all_tables_dry_run_names_differences_and_writes_a_migration_that_keeps_references_in_the_tenant() {
    let app = spawn_installed_app().await;
    let mut source = django_source(&app).await;
    add_other_tables(&mut source, Some("bravo")).await;
    let plan = rowguard::import::all_tables_plan(&source.url, &mapping(), &options(&[], true)).await.expect("plan");
    assert_eq!(plan.reference_schema, "alpha");
    assert_eq!(plan.schemas, 3);
    assert_eq!(plan.tables, ["crm_tag", "crm_task", "crm_task_tags"], "Django's own and the mapped tables left out");
    assert_eq!(
        plan.differences,
        [("bravo".to_string(), "crm_task".to_string(), "+ column priority integer".to_string())]
    );
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    // Django's `_like` index keeps its operator class; two alike indexes make one.
    assert_eq!(plan.migration.matches("ON public.\"crm_task\" (tenant_id, title varchar_pattern_ops);").count(), 1);
    assert_eq!(plan.migration.matches("ON public.\"crm_task\" (tenant_id, title);").count(), 1, "{}", plan.migration);

    // The migration applies to rowguard's database as the owner role.
    let mut su = app.superuser_connection().await;
    let mut tx = su.begin().await.expect("begin");
    tx.execute("SET LOCAL ROLE rowguard_owner").await.expect("owner");
    if app.on_citus() {
        // There statement by statement, each table placed as it is created (`migrate --dir`).
        rowguard::migrate::citus::run_placing_tables(&mut tx, &plan.migration)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", plan.migration));
    } else {
        tx.execute(AssertSqlSafe(plan.migration.clone())).await.unwrap_or_else(|e| panic!("{e}\n{}", plan.migration));
    }
    tx.commit().await.expect("commit");
    let keys: Vec<(String, String)> = sqlx::query_as(
        "SELECT conrelid::regclass::text || ' ' || contype::text, pg_get_constraintdef(oid) FROM pg_constraint
          WHERE conrelid::regclass::text IN ('crm_tag', 'crm_task', 'crm_task_tags') AND contype IN ('p', 'u', 'f')
          ORDER BY 1, 2",
    )
    .fetch_all(&mut su)
    .await
    .expect("keys");
    for (what, def) in &keys {
        let inner = def.split_once('(').map(|(_, rest)| rest).unwrap_or_default();
        assert!(inner.starts_with("tenant_id"), "{what}: {def}");
    }
    let def = |needle: &'static str| keys.iter().any(|(_, d)| d.contains(needle));
    assert!(def(
        "FOREIGN KEY (tenant_id, contact_id) REFERENCES contacts(tenant_id, id) DEFERRABLE INITIALLY DEFERRED"
    ));
    // Citus refuses SET NULL on a key that includes tenant_id: there the key is NO ACTION.
    assert!(def(if app.on_citus() {
        "FOREIGN KEY (tenant_id, assignee_id) REFERENCES users(tenant_id, id)"
    } else {
        "FOREIGN KEY (tenant_id, assignee_id) REFERENCES users(tenant_id, id) ON DELETE SET NULL (assignee_id)"
    }));
    assert!(def("FOREIGN KEY (tenant_id, task_id) REFERENCES crm_task(tenant_id, id) ON DELETE CASCADE"));
    assert!(def("UNIQUE (tenant_id, title, due)"));
    let (assignee_type, identity): (String, String) = sqlx::query_as(
        "SELECT format_type(a.atttypid, a.atttypmod), (SELECT attidentity::text FROM pg_attribute
                 WHERE attrelid = 'crm_task'::regclass AND attname = 'id')
           FROM pg_attribute a WHERE a.attrelid = 'crm_task'::regclass AND a.attname = 'assignee_id'",
    )
    .fetch_one(&mut su)
    .await
    .expect("columns");
    assert_eq!((assignee_type.as_str(), identity.as_str()), ("uuid", "d"));

    // A task of one tenant cannot point at another tenant's contact.
    let t1 = app.create_tenant("one").await;
    let t2 = app.create_tenant("two").await;
    let contact: uuid::Uuid = {
        let mut conn = app.app_connection().await;
        let mut tx = rowguard::db::TenantTx::begin_on(&mut conn, t1.id).await.expect("tenant one");
        let id = sqlx::query_scalar(
            "INSERT INTO contacts (tenant_id, id, name, email) VALUES ($1, gen_random_uuid(), 'A', 'a@x.io') RETURNING id",
        )
        .bind(t1.id)
        .fetch_one(tx.conn())
        .await
        .expect("a contact of tenant one");
        tx.commit().await.expect("commit");
        id
    };
    let insert = "INSERT INTO crm_task (tenant_id, title, contact_id) VALUES ($1, 't', $2)";
    let mut tx = su.begin().await.expect("begin");
    sqlx::query(insert).bind(t1.id).bind(contact).execute(&mut *tx).await.expect("same tenant");
    tx.commit().await.expect("the reference holds");
    let mut tx = su.begin().await.expect("begin");
    sqlx::query(insert).bind(t2.id).bind(contact).execute(&mut *tx).await.expect("deferred until commit");
    // On Citus COMMIT would say only "could not commit transaction for shard …": the deferred
    // checks are run first on the tenant's worker, as the service does (`TenantTx::commit`).
    let crossing = if app.on_citus() {
        let refused =
            sqlx::query("SELECT check_deferred_keys($1)").bind(t2.id).execute(&mut *tx).await.expect_err("checked");
        tx.rollback().await.expect("rollback");
        // And COMMIT itself refuses it too, in Citus's words.
        let mut tx = su.begin().await.expect("begin");
        sqlx::query(insert).bind(t2.id).bind(contact).execute(&mut *tx).await.expect("deferred until commit");
        let at_commit = tx.commit().await.expect_err("another tenant's contact, at COMMIT");
        assert!(at_commit.to_string().contains("could not commit"), "{at_commit}");
        refused
    } else {
        tx.commit().await.expect_err("another tenant's contact")
    };
    assert!(crossing.to_string().contains("foreign key"), "{crossing}");

    // Adopted as the migration's last lines say, the tables are guarded: as the app role,
    // tenant two sees none of tenant one's tasks and cannot write one for it.
    let dir = scratch_dir("import-all-tables-adopt");
    for table in &plan.tables {
        assert!(plan.migration.contains(&format!("--   rowguard tables adopt {table}\n")));
        let out = rowguard(&app.cli_env(), &dir, &["tables", "adopt", table]).output().await.expect("adopt");
        assert!(out.status.success(), "adopt {table}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut conn = app.app_connection().await;
    for (tenant, seen) in [(t1.id, 1), (t2.id, 0)] {
        let mut tx = rowguard::db::TenantTx::begin_on(&mut conn, tenant).await.expect("tenant");
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM crm_task").fetch_one(tx.conn()).await.expect("count");
        assert_eq!(n, seen);
        tx.commit().await.expect("commit");
    }
    let mut tx = rowguard::db::TenantTx::begin_on(&mut conn, t2.id).await.expect("tenant two");
    let refused = sqlx::query(insert).bind(t1.id).bind(contact).execute(tx.conn()).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("row-level security")), "tenant two wrote for tenant one");

    // The command line: --all-tables needs --dry-run; the dry run names bravo and writes the file.
    let dir = scratch_dir("import-all-tables");
    let mapping_file = dir.join("mapping.toml");
    std::fs::write(&mapping_file, EXAMPLE).expect("write the mapping");
    let out_file = dir.join("tables.sql");
    let env = app.cli_env();
    let base = ["import", "schemas", "--source", &source.url, "--mapping", mapping_file.to_str().expect("path")];
    // Without --dry-run the differing schema stops the run before anything is written.
    let refused = rowguard(&env, &dir, &[&base[..], &["--all-tables"]].concat()).output().await.expect("run");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("schema bravo, table crm_task: + column priority integer") && stderr.contains("--dry-run"),
        "{stderr}"
    );
    let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE import_source IS NOT NULL")
        .fetch_one(&mut su)
        .await
        .expect("tenants");
    assert_eq!(tenants, 0, "nothing imported");
    let args =
        [&base[..], &["--all-tables", "--dry-run", "--migration-out", out_file.to_str().expect("path")]].concat();
    let out = rowguard(&env, &dir, &args).output().await.expect("run");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("schema bravo, table crm_task: + column priority integer"), "{stdout}");
    assert!(stderr.contains("1 schema(s) differ from alpha: bravo"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&out_file).expect("the migration file"), plan.migration);
}

/// Three more tables in every tenant schema (and Django's migrations table), with references
/// to the mapped contacts and users; `differing`'s crm_task has one column more.
async fn add_other_tables(source: &mut SourceDb, differing: Option<&str>) {
    for (schema, _, _, _) in TENANTS {
        let extra = if Some(*schema) == differing { ", priority integer" } else { "" };
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SET search_path = {schema};
             CREATE TABLE django_migrations (id bigserial PRIMARY KEY, app varchar(255) NOT NULL, name varchar(255) NOT NULL);
             INSERT INTO django_migrations (app, name) VALUES ('crm', '0001_initial');
             CREATE TABLE crm_tag (id serial PRIMARY KEY, name varchar(50) NOT NULL UNIQUE);
             CREATE TABLE crm_task (
                 id bigserial PRIMARY KEY, title varchar(200) NOT NULL CHECK (length(title) > 0),
                 contact_id uuid NOT NULL REFERENCES crm_contact (id) DEFERRABLE INITIALLY DEFERRED,
                 assignee_id integer REFERENCES auth_user (id) ON DELETE SET NULL,
                 due date, done boolean NOT NULL DEFAULT false, payload jsonb{extra},
                 cost numeric(12, 2), ref uuid NOT NULL DEFAULT gen_random_uuid(),
                 logged timestamptz NOT NULL DEFAULT '2026-01-02 03:04:05.123456+02',
                 UNIQUE (title, due));
             CREATE INDEX crm_task_due ON crm_task (due);
             CREATE INDEX crm_task_title ON crm_task (title);
             CREATE INDEX crm_task_title_like ON crm_task (title varchar_pattern_ops);
             CREATE INDEX crm_task_title_again ON crm_task (title);
             CREATE TABLE crm_task_tags (
                 task_id bigint NOT NULL REFERENCES crm_task (id) ON DELETE CASCADE,
                 tag_id integer NOT NULL REFERENCES crm_tag (id),
                 PRIMARY KEY (task_id, tag_id));
             INSERT INTO crm_tag (name) VALUES ('urgent'), ('l''été ✓');
             INSERT INTO crm_task (title, contact_id, assignee_id, due, payload, cost)
             SELECT 'Call ' || c.first_name, c.id, (SELECT id FROM auth_user WHERE username = 'staff'), DATE '2026-01-02',
                    jsonb_build_object('n', 12345678901234567890.123456789, 'schema', '{schema}'), 1234567890.05
               FROM crm_contact c ORDER BY c.first_name;
             INSERT INTO crm_task (title, contact_id) SELECT 'No one', min(id::text)::uuid FROM crm_contact;
             INSERT INTO crm_task_tags SELECT t.id, g.id FROM crm_task t, crm_tag g WHERE t.assignee_id IS NOT NULL;
             RESET search_path;"
        )))
        .execute(&mut source.conn)
        .await
        .expect("other tables");
    }
}

/// `--all-tables` for real: the other tables created and adopted, every tenant's rows copied
/// in its own import transaction with references to users and contacts mapped to their new
/// ids, ids kept, the sequence moved past them, and each tenant's rows served to it alone.
#[tokio::test]
async fn all_tables_import_creates_adopts_and_fills_every_tenants_other_tables() {
    let app = spawn_installed_app().await;
    let mut source = django_source(&app).await;
    add_other_tables(&mut source, None).await;
    let report = run(&app, &source, &mapping(), &ImportOptions { all_tables: true, ..options(&[], false) }).await;
    assert_eq!(report.failed(), 0, "{report:#?}");
    let notes = &report.all_tables.as_ref().expect("the plan").notes;
    assert!(notes.iter().any(|n| n.starts_with("crm_task_tags: guarded, but not served")), "{notes:?}");
    for t in &report.tenants {
        let (contacts, _, _, _) =
            TENANTS.iter().find(|(s, ..)| *s == t.schema).map(|(_, a, b, c)| (*c, a, b, ())).expect("tenant");
        // Tasks: one per contact and one more; tags 2; links 2 per assigned task.
        assert_eq!(t.rows.other_tables as usize, (contacts + 1) + 2 + 2 * contacts, "{t:?}");
    }
    let mut su = app.superuser_connection().await;
    // Every task of every tenant: its contact and assignee are that tenant's, and are the
    // rows the source pointed at (by name and e-mail).
    let wrong: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM crm_task t
           LEFT JOIN contacts c ON c.tenant_id = t.tenant_id AND c.id = t.contact_id
           LEFT JOIN users u ON u.tenant_id = t.tenant_id AND u.id = t.assignee_id
          WHERE c.id IS NULL OR (t.title <> 'No one' AND (u.email NOT LIKE 'Staff@%' OR t.title <> 'Call ' || split_part(c.name, ' ', 1)))
             OR (t.title = 'No one' AND t.assignee_id IS NOT NULL)",
    )
    .fetch_one(&mut su)
    .await
    .expect("tasks");
    assert_eq!(wrong, 0);
    let (payload, tags, other_instants): (String, i64, i64) = sqlx::query_as(
        "SELECT (SELECT payload->>'n' FROM crm_task WHERE payload IS NOT NULL LIMIT 1),
                (SELECT count(*) FROM crm_tag WHERE name = 'l''été ✓'),
                (SELECT count(*) FROM crm_task WHERE logged <> '2026-01-02 01:04:05.123456+00')",
    )
    .fetch_one(&mut su)
    .await
    .expect("values");
    assert_eq!((payload.as_str(), tags), ("12345678901234567890.123456789", 3), "every digit, every character");
    assert_eq!(other_instants, 0, "every timestamptz to the microsecond");
    // Numerics and uuids exactly as the source has them, row by row.
    let source_values: Vec<(i64, Option<String>, String)> =
        sqlx::query_as("SELECT id, cost::text, ref::text FROM alpha.crm_task ORDER BY id")
            .fetch_all(&mut source.conn)
            .await
            .expect("source values");
    let alpha_tenant = report.tenants.iter().find(|t| t.schema == "alpha").and_then(|t| t.tenant_id).expect("alpha");
    let target_values: Vec<(i64, Option<String>, String)> =
        sqlx::query_as("SELECT id, cost::text, ref::text FROM crm_task WHERE tenant_id = $1 ORDER BY id")
            .bind(alpha_tenant)
            .fetch_all(&mut su)
            .await
            .expect("target values");
    assert_eq!(source_values, target_values);
    assert!(source_values.iter().any(|(_, cost, _)| cost.as_deref() == Some("1234567890.05")));
    // Source ids kept; the shared sequence is past every tenant's.
    let (max_id, next): (i64, i64) =
        sqlx::query_as("SELECT max(id), nextval(pg_get_serial_sequence('public.crm_task', 'id')) FROM crm_task")
            .fetch_one(&mut su)
            .await
            .expect("sequence");
    assert!(next > max_id, "{next} after {max_id}");
    let source_ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM alpha.crm_task ORDER BY id").fetch_all(&mut source.conn).await.expect("ids");
    let alpha_id = report.tenants.iter().find(|t| t.schema == "alpha").and_then(|t| t.tenant_id).expect("alpha");
    let target_ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM crm_task WHERE tenant_id = $1 ORDER BY id")
        .bind(alpha_id)
        .fetch_all(&mut su)
        .await
        .expect("ids");
    assert_eq!(source_ids, target_ids);

    // Served over HTTP to each tenant alone; a new row gets an id past the imported ones.
    let login = app.login("alpha", "boss@alpha.example", "alpha-owner-pw").await;
    let token = login.body["access_token"].as_str().expect("token").to_string();
    let listed = app.call_as(&token, "alpha", Method::GET, "/v1/data/crm_task?limit=100", None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(target_ids.len()), "{}", listed.body);
    // The one tenant.import event counts the other tables' rows, table by table.
    let events = app.call_as(&token, "alpha", Method::GET, "/v1/audit-events?action=tenant.import", None).await;
    let details = &events.body["items"][0]["details"];
    let alpha_report = report.tenants.iter().find(|t| t.schema == "alpha").expect("alpha");
    assert_eq!(details["rows"]["other_tables"].as_u64(), Some(alpha_report.rows.other_tables), "{}", events.body);
    assert_eq!(details["tables"]["crm_task"].as_u64(), Some(target_ids.len() as u64), "{}", events.body);
    assert_eq!(alpha_report.tables.get("crm_task").copied(), Some(target_ids.len() as u64));
    let bravo_login = app.login("bravo", "boss@bravo.example", "bravo-owner-pw").await;
    let bravo_token = bravo_login.body["access_token"].as_str().expect("token").to_string();
    let first = target_ids[0];
    let foreign = app.call_as(&bravo_token, "bravo", Method::GET, &format!("/v1/data/crm_task/{first}"), None).await;
    let own = app.call_as(&token, "alpha", Method::GET, &format!("/v1/data/crm_task/{first}"), None).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);
    if foreign.status == StatusCode::OK {
        // Ids are per tenant: bravo may have a task with the same id; it must be bravo's own.
        assert_eq!(foreign.body["payload"]["schema"], "bravo", "{}", foreign.body);
        assert_eq!(own.body["payload"]["schema"], "alpha", "{}", own.body);
    } else {
        assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    }
    let contact = own.body["contact_id"].as_str().expect("contact id").to_string();
    let made = app
        .call_as(
            &token,
            "alpha",
            Method::POST,
            "/v1/data/crm_task",
            Some(json!({"title": "New", "contact_id": contact})),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    assert!(made.body["id"].as_i64().is_some_and(|id| id > max_id), "{}", made.body);

    // A re-run finds the tables and the tenants, and changes nothing.
    let before = target_rows(&app).await;
    let again = run(&app, &source, &mapping(), &ImportOptions { all_tables: true, ..options(&[], false) }).await;
    assert!(again.tenants.iter().all(|t| t.outcome == Outcome::Skipped), "{again:#?}");
    assert_eq!(target_rows(&app).await, before);
    // The other tables count in the fingerprint: an edited task is a changed source.
    sqlx::raw_sql("UPDATE alpha.crm_task SET done = true WHERE title = 'No one'")
        .execute(&mut source.conn)
        .await
        .expect("edit");
    let changed = run(&app, &source, &mapping(), &ImportOptions { all_tables: true, ..options(&[], false) }).await;
    let alpha = changed.tenants.iter().find(|t| t.schema == "alpha").expect("alpha");
    assert_eq!(alpha.outcome, Outcome::Changed, "{changed:#?}");
    // --replace brings alpha again, its other tables too, in one transaction.
    let replaced =
        run(&app, &source, &mapping(), &ImportOptions { all_tables: true, replace: true, ..options(&[], false) }).await;
    let alpha = replaced.tenants.iter().find(|t| t.schema == "alpha").expect("alpha");
    assert_eq!(alpha.outcome, Outcome::Imported, "{replaced:#?}");
    let new_alpha = alpha.tenant_id.expect("the new alpha");
    let (done, tasks): (bool, i64) = sqlx::query_as(
        "SELECT (SELECT done FROM crm_task WHERE tenant_id = $1 AND title = 'No one'),
                (SELECT count(*) FROM crm_task WHERE tenant_id = $1)",
    )
    .bind(new_alpha)
    .fetch_one(&mut su)
    .await
    .expect("the new alpha's tasks");
    assert_eq!((done, tasks as usize), (true, source_ids.len()));
    let old_left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM crm_task WHERE tenant_id = $1) + (SELECT count(*) FROM crm_tag WHERE tenant_id = $1)",
    )
    .bind(alpha_id)
    .fetch_one(&mut su)
    .await
    .expect("the old alpha's tasks");
    assert_eq!(old_left, 0);
}

/// A row of another table referencing a user the import does not bring (a dangling id the
/// source kept with its checks off) fails that tenant, named, in the dry run and in the real
/// run; the other tenants come across.
#[tokio::test]
async fn all_tables_names_a_reference_the_import_cannot_map() {
    let app = spawn_installed_app().await;
    let mut source = django_source(&app).await;
    add_other_tables(&mut source, None).await;
    sqlx::raw_sql(
        "BEGIN; SET LOCAL session_replication_role = replica;
         INSERT INTO bravo.crm_task (title, contact_id, assignee_id) SELECT 'Dangling', min(id::text)::uuid, 99999 FROM bravo.crm_contact;
         COMMIT;",
    )
    .execute(&mut source.conn)
    .await
    .expect("a dangling reference");
    for dry_run in [true, false] {
        let report = run(&app, &source, &mapping(), &ImportOptions { all_tables: true, ..options(&[], dry_run) }).await;
        let bravo = report.tenants.iter().find(|t| t.schema == "bravo").expect("bravo");
        assert_eq!(bravo.outcome, Outcome::Failed, "dry run {dry_run}: {report:#?}");
        assert!(
            bravo
                .problems
                .iter()
                .any(|p| p.table == "crm_task" && p.message.starts_with("assignee_id: 1 row(s) reference")),
            "dry run {dry_run}: {:?}",
            bravo.problems
        );
        let others = report.tenants.iter().filter(|t| t.schema != "bravo");
        let want = if dry_run { Outcome::WouldImport } else { Outcome::Imported };
        assert!(others.into_iter().all(|t| t.outcome == want), "dry run {dry_run}: {report:#?}");
    }
}

/// Every stored row is compared with its source row before the tenant commits: a row that
/// changed on the way in (here a trigger on the target table rewrites titles) fails that
/// tenant, named by table, key and column, and writes nothing of it; without the trigger the
/// same tenant comes across.
#[tokio::test]
async fn all_tables_compares_every_stored_row_with_the_source_and_names_the_first_difference() {
    let app = spawn_installed_app().await;
    let mut source = django_source(&app).await;
    add_other_tables(&mut source, None).await;
    let mut su = app.tampering_connection().await;
    let all = |only: &[&str]| ImportOptions { all_tables: true, ..options(only, false) };
    let alpha = run(&app, &source, &mapping(), &all(&["alpha"])).await;
    assert_eq!(alpha.failed(), 0, "{alpha:#?}");
    for statement in [
        "CREATE FUNCTION public.shout() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN NEW.title := upper(NEW.title); RETURN NEW; END $$",
        "CREATE TRIGGER shout BEFORE INSERT ON public.crm_task FOR EACH ROW EXECUTE FUNCTION public.shout()",
    ] {
        su.execute(statement).await.expect("a trigger that changes rows on the way in");
    }
    let bravo = run(&app, &source, &mapping(), &all(&["bravo"])).await;
    let report = bravo.tenants.iter().find(|t| t.schema == "bravo").expect("bravo");
    assert_eq!(report.outcome, Outcome::Failed, "{bravo:#?}");
    let problem = report.problems.iter().find(|p| p.table == "crm_task").expect("crm_task named");
    assert!(problem.row.as_deref().is_some_and(|r| r.starts_with("id=")), "{problem:?}");
    let tasks = TENANTS.iter().find(|t| t.0 == "bravo").map(|t| t.3 + 1).expect("bravo");
    assert!(
        problem.message.starts_with(&format!("{tasks} of {tasks} rows differ from the source once stored"))
            && problem.message.contains("title: source \"")
            && (problem.message.contains("rowguard \"CALL ") || problem.message.contains("rowguard \"NO ONE\"")),
        "{problem:?}"
    );
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE slug = 'bravo'")
        .fetch_one(&mut su)
        .await
        .expect("bravo");
    assert_eq!(written, 0, "the tenant rolled back");
    sqlx::raw_sql("DROP TRIGGER shout ON public.crm_task").execute(&mut su).await.expect("drop");
    let again = run(&app, &source, &mapping(), &all(&["bravo"])).await;
    assert_eq!(again.failed(), 0, "{again:#?}");
}

/// With the operator's migrations folder, the generated migration becomes its next version and
/// is applied through the operator migrations' history: `migrate --dir` with the same folder
/// afterwards finds everything applied and changes nothing.
#[tokio::test]
async fn all_tables_with_a_migrations_folder_goes_through_the_operator_history() {
    let app = spawn_installed_app().await;
    let mut source = django_source(&app).await;
    add_other_tables(&mut source, None).await;
    let dir = scratch_dir("all-tables-folder");
    std::fs::write(dir.join("V1__notes.sql"), "CREATE TABLE operator_notes (id int PRIMARY KEY);").expect("V1");
    let folder = OperatorFolder { dir: dir.clone(), admin_url: app.superuser_url() };
    let report = run(
        &app,
        &source,
        &mapping(),
        &ImportOptions { all_tables: true, migrations: Some(folder), ..options(&[], false) },
    )
    .await;
    assert_eq!(report.failed(), 0, "{report:#?}");
    let plan = report.all_tables.as_ref().expect("the plan");
    let written = std::fs::read_to_string(dir.join("V2__import_all_tables.sql")).expect("V2 written");
    assert_eq!(written, plan.migration);
    assert!(plan.notes.iter().any(|n| n.contains("V2__import_all_tables.sql")), "{:?}", plan.notes);
    let mut su = app.superuser_connection().await;
    let history: Vec<(i32, String)> =
        sqlx::query_as("SELECT version, name FROM rowguard_operator_history ORDER BY version")
            .fetch_all(&mut su)
            .await
            .expect("history");
    assert_eq!(history, vec![(1, "notes".to_string()), (2, "import_all_tables".to_string())]);
    let again = rowguard::migrate::operator::apply(&app.superuser_url(), &dir).await.expect("migrate --dir again");
    assert!(again.is_empty(), "{again:?}");
    let tasks: i64 = sqlx::query_scalar("SELECT count(*) FROM crm_task").fetch_one(&mut su).await.expect("tasks");
    assert!(tasks > 0);
}
