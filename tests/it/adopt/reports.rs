//! What `policies verify` and adopt report about adopted tables: forced RLS gone, grants
//! revoked, a table gone, rowguard's own files never to be edited, tables the API cannot serve.

use rowguard::catalog::overview::tenant_tables;
use rowguard::catalog::{Rule, verify};
use rowguard::db::TenantTx;
use rowguard::migrate::adopt::adopt;
use rowguard::migrate::operator;
use sqlx::Executor;

use super::{adopt_both, app_with_operator_tables, insert_project, output};
use crate::cli_concurrency::rowguard;
use crate::support::scratch_dir;

#[tokio::test]
async fn verify_names_an_adopted_table_once_its_rls_is_no_longer_forced() {
    let (app, _dir) = app_with_operator_tables().await;
    adopt_both(&app).await;
    let mut su = app.superuser_connection().await;
    assert!(verify(&mut su).await.expect("verify").is_empty());
    su.execute("ALTER TABLE projects NO FORCE ROW LEVEL SECURITY").await.expect("break it");
    let findings = verify(&mut su).await.expect("verify");
    let named: Vec<_> = findings.iter().map(|f| (f.object.as_str(), f.rule)).collect();
    assert_eq!(named, vec![("projects", Rule::RlsNotForced)], "{findings:#?}");
    let listed = tenant_tables(&mut su).await.expect("list");
    let projects = listed.iter().find(|t| t.name == "projects").expect("listed");
    assert!(!projects.rls_forced && projects.findings == vec!["rls-not-forced".to_string()]);
    // Adopting again puts it right, and only that.
    let repaired = adopt(&mut su, "projects", None, None, false).await.expect("adopt again");
    assert_eq!(repaired.plan.steps.len(), 1, "{:?}", repaired.plan.steps);
    assert!(verify(&mut su).await.expect("verify").is_empty());
}

#[tokio::test]
async fn verify_names_an_adopted_table_whose_app_role_grants_were_revoked_and_adopt_restores_them() {
    let (app, _dir) = app_with_operator_tables().await;
    adopt_both(&app).await;
    let mut su = app.superuser_connection().await;
    su.execute("REVOKE DELETE ON projects FROM rowguard_app").await.expect("revoke");
    let findings = verify(&mut su).await.expect("verify");
    let named: Vec<_> = findings.iter().map(|f| (f.object.as_str(), f.rule)).collect();
    assert_eq!(named, vec![("projects", Rule::AppRoleGrantMissing)], "{findings:#?}");
    let message = &findings[0].message;
    assert!(message.contains("rowguard_app lacks DELETE on projects"), "{message}");
    assert!(message.contains("`rowguard tables adopt projects`"), "{message}");
    let listed = tenant_tables(&mut su).await.expect("list");
    let projects = listed.iter().find(|t| t.name == "projects").expect("listed");
    assert_eq!(projects.findings, vec!["app-role-grant-missing".to_string()]);
    // The API's delete is what fails without it, as the app role finds.
    let a = app.create_tenant("alpha").await;
    let mut conn = app.app_connection().await;
    let project = insert_project(&mut conn, a.id, "Alpha's", "tok-a").await;
    let mut tx = TenantTx::begin_on(&mut conn, a.id).await.expect("begin");
    let refused = sqlx::query("DELETE FROM projects WHERE id = $1").bind(project).execute(tx.conn()).await;
    assert!(refused.expect_err("no DELETE").to_string().contains("permission denied"));
    drop(tx);

    let repaired = adopt(&mut su, "projects", None, None, false).await.expect("adopt again");
    let steps: Vec<&str> = repaired.plan.steps.iter().map(|s| s.sql.as_str()).collect();
    assert_eq!(steps, vec!["GRANT DELETE ON \"projects\" TO rowguard_app"]);
    assert!(verify(&mut su).await.expect("verify").is_empty());
}

/// An operator's table is fixed with `rowguard tables adopt`, not by editing rowguard's
/// migrations or constants: every fix verify offers for one says so, and none names internals.
#[tokio::test]
async fn verify_tells_an_operator_to_adopt_their_table_never_to_edit_rowguard() {
    let (app, _dir) = app_with_operator_tables().await;
    let mut su = app.superuser_connection().await;
    // tasks: RLS on but no policy, a second shape of "not guarded yet".
    su.execute("ALTER TABLE tasks ENABLE ROW LEVEL SECURITY").await.expect("enable");
    let findings = verify(&mut su).await.expect("verify");
    let rules = |table: &str| findings.iter().filter(|f| f.object == table).map(|f| f.rule).collect::<Vec<_>>();
    assert_eq!(
        rules("projects"),
        vec![Rule::RlsNotEnabled, Rule::RlsNotForced, Rule::CommandNotCovered, Rule::AuditTriggerMissing],
        "{findings:#?}"
    );
    assert_eq!(rules("tasks"), vec![Rule::RlsNotForced, Rule::RlsEnabledNoPolicy, Rule::AuditTriggerMissing]);
    for f in findings.iter().filter(|f| f.object == "projects" || f.object == "tasks") {
        assert!(f.message.contains(&format!("`rowguard tables adopt {}`", f.object)), "{f:?}");
        for internal in ["PLATFORM_TABLES", "AUDIT_EXEMPT_TABLES", "policies/V", "policy migration", "schema migration"]
        {
            assert!(!f.message.contains(internal), "{internal} is rowguard's, not the operator's: {f:?}");
        }
    }
    // Not adopted yet: granting is part of adopting, so no grant is reported missing.
    assert!(!findings.iter().any(|f| f.rule == Rule::AppRoleGrantMissing), "{findings:#?}");
    // A built-in table keeps the advice for rowguard's own migrations.
    let mut su = app.tampering_connection().await;
    su.execute("DROP TRIGGER audit_row_change ON contacts").await.expect("drop trigger");
    let findings = verify(&mut su).await.expect("verify");
    let contacts = findings.iter().find(|f| f.object == "contacts").expect("contacts");
    assert!(
        contacts.message.contains("AUDIT_EXEMPT_TABLES") && !contacts.message.contains("tables adopt"),
        "{contacts:?}"
    );
}

/// Guarded is not served: the API names rows by one key column of an integer, uuid or text
/// type. `tables adopt` warns, and `tables list` says why, as the service itself decides it.
#[tokio::test]
async fn an_adopted_table_the_api_cannot_serve_is_reported_as_not_served() {
    let (app, dir) = app_with_operator_tables().await;
    std::fs::write(
        dir.join("V3__unserved.sql"),
        "CREATE TABLE pairs (tenant_id uuid NOT NULL REFERENCES tenants (id), a int NOT NULL, b int NOT NULL,
                             note text, PRIMARY KEY (tenant_id, a, b));
         CREATE TABLE days (tenant_id uuid NOT NULL REFERENCES tenants (id), day date NOT NULL, note text,
                            PRIMARY KEY (tenant_id, day));",
    )
    .expect("V3");
    operator::apply(&app.superuser_url(), &dir).await.expect("V3 applies");
    let mut su = app.superuser_connection().await;
    let pairs = adopt(&mut su, "pairs", None, None, false).await.expect("adopt pairs");
    assert!(pairs.applied);
    let why = pairs.not_served.expect("pairs is not served");
    assert!(why.contains("(tenant_id, a, b) has 2 columns after tenant_id"), "{why}");
    let projects = adopt(&mut su, "projects", None, None, false).await.expect("adopt projects");
    assert_eq!(projects.not_served, None);

    let listed = tenant_tables(&mut su).await.expect("list");
    let state = |name: &str| listed.iter().find(|t| t.name == name).map(|t| t.not_served.clone()).expect("listed");
    assert_eq!(state("pairs"), Some(why));
    assert_eq!((state("projects"), state("contacts")), (None, None));

    // The binary: the warning after adopting, and the list's API column.
    let data_dir = scratch_dir("cli-unserved");
    let adopted = output(rowguard(&app.cli_env(), &data_dir, &["tables", "adopt", "days"])).await;
    assert!(adopted.starts_with("adopted days:"), "{adopted}");
    assert!(
        adopted.contains("warning: days is guarded, but the HTTP API will not serve it")
            && adopted.contains("its key column day is of type date"),
        "{adopted}"
    );
    let list = output(rowguard(&app.cli_env(), &data_dir, &["tables", "list"])).await;
    let line = |name: &str| list.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_default().to_string();
    assert!(line("pairs").contains("adopted, not served: its primary key"), "{list}");
    assert!(line("days").contains("not served: its key column day"), "{list}");
    assert!(line("projects").contains("adopted, read: owner") && !line("projects").contains("not served"), "{list}");
}

#[tokio::test]
async fn verify_names_an_adopted_table_that_no_longer_exists() {
    let (app, _dir) = app_with_operator_tables().await;
    adopt_both(&app).await;
    let mut su = app.superuser_connection().await;
    assert!(verify(&mut su).await.expect("verify").is_empty(), "clean after adoption");
    su.execute("DROP TABLE tasks").await.expect("drop");
    let findings = verify(&mut su).await.expect("verify");
    let missing: Vec<_> = findings.iter().filter(|f| f.rule == Rule::AdoptedTableMissing).collect();
    assert_eq!(missing.len(), 1, "{findings:?}");
    assert_eq!(missing[0].object, "tasks");
    assert!(missing[0].message.contains("DELETE FROM rowguard_adopted_tables"), "{}", missing[0].message);
    let listed = tenant_tables(&mut su).await.expect("tables list");
    let tasks = listed.iter().find(|t| t.name == "tasks").expect("still listed");
    assert_eq!(tasks.findings, vec!["adopted-table-missing".to_string()]);
    // Following the message clears it.
    su.execute("DELETE FROM rowguard_adopted_tables WHERE table_name = 'tasks'").await.expect("unregister");
    assert!(verify(&mut su).await.expect("verify").is_empty());
}
