//! `rowguard operators …`: the platform API's operator accounts.

use clap::Subcommand;
use rowguard::auth::password::hash_now;
use rowguard::domain::{Email, NewPassword};
use rowguard::platform::PlatformConn;
use rowguard::startup::DatabaseSetup;

#[derive(Subcommand)]
pub(crate) enum OperatorsCommand {
    /// Create an operator (how the first one is made).
    Create {
        #[arg(long)]
        email: String,
        /// 8 to 256 characters.
        #[arg(long, env = "ROWGUARD_OPERATOR_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// List operators.
    List,
    /// Disable an operator: its tokens are refused from the next request on.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Re-enable a disabled operator.
    Enable {
        #[arg(long)]
        email: String,
    },
}

pub(crate) async fn run(command: OperatorsCommand, setup: &mut DatabaseSetup) -> anyhow::Result<()> {
    match command {
        OperatorsCommand::Create { email, password } => {
            let email = Email::parse(&email)?;
            let password = NewPassword::parse(&password)?;
            setup.bootstrap_and_migrate().await?;
            let hash = tokio::task::spawn_blocking(move || hash_now(password.expose())).await??;
            let id = PlatformConn::connect(setup.admin_url()?).await?.create_operator(&email, &hash).await?;
            println!("created operator {email} ({id})");
            Ok(())
        }
        OperatorsCommand::Disable { email } => operators_set_active(setup, &email, false).await,
        OperatorsCommand::Enable { email } => operators_set_active(setup, &email, true).await,
        OperatorsCommand::List => {
            let operators = PlatformConn::connect(setup.admin_url()?).await?.list_operators().await?;
            println!("{:<36} {:<10} EMAIL", "ID", "STATUS");
            for o in operators {
                println!("{:<36} {:<10} {}", o.id, o.status, o.email);
            }
            Ok(())
        }
    }
}

async fn operators_set_active(setup: &DatabaseSetup, email: &str, active: bool) -> anyhow::Result<()> {
    let mut platform = PlatformConn::connect(setup.admin_url()?).await?;
    anyhow::ensure!(platform.set_operator_active(email, active).await?, "no operator with e-mail {email:?}");
    println!("operator {email} is now {}", if active { "active" } else { "disabled" });
    Ok(())
}
