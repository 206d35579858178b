//! `hookwire whoami` and `hookwire admin`: what a token reaches, and the operators' views
//! across organizations, through the admin API.

use anyhow::Result;
use clap::Subcommand;
use hookwire_api::auth::WhoAmI;
use hookwire_api::operations::OrgList;

use crate::api_flags::{ApiArgs, Pages};
use crate::client::follow_pages;
use crate::output::{print_json, print_json_value};

#[derive(Subcommand, Debug)]
pub enum AdminAction {
    /// List the organizations that have webhooks, in name order. Needs an operator's
    /// token (`api.tokens`).
    Orgs {
        #[command(flatten)]
        pages: Pages,
    },
}

/// Prints what the token given may do.
pub async fn whoami(api: &ApiArgs) -> Result<()> {
    let reply = api.client()?.whoami().await?;
    if api.json {
        print_json(&reply.raw);
        return Ok(());
    }
    println!("{}", describe(&reply.value));
    Ok(())
}

/// Runs one `admin` subcommand and prints its answer.
pub async fn run(api: &ApiArgs, action: AdminAction) -> Result<()> {
    let client = api.client()?;
    let AdminAction::Orgs {
        pages: Pages { limit, cursor, all },
    } = action;
    let (orgs, next_cursor) = if all {
        let orgs = follow_pages(cursor, async |cursor| {
            let page = client.orgs(cursor, limit).await?.value;
            Ok((page.orgs, page.next_cursor))
        })
        .await?;
        if api.json {
            return print_json_value(&OrgList {
                orgs,
                next_cursor: None,
            });
        }
        (orgs, None)
    } else {
        let reply = client.orgs(cursor, limit).await?;
        if api.json {
            print_json(&reply.raw);
            return Ok(());
        }
        (reply.value.orgs, reply.value.next_cursor)
    };
    if orgs.is_empty() {
        println!("No organization has webhooks.");
    }
    for org in orgs {
        println!("{org}");
    }
    if let Some(next) = next_cursor {
        // On stderr, so that the names alone go down a pipe.
        eprintln!("More organizations: add --cursor {next} (or --all for every page).");
    }
    Ok(())
}

/// One line: the kind of token, what it is limited to, and until when.
fn describe(who: &WhoAmI) -> String {
    let mut line = match &who.orgs {
        None => "operator: every organization and /v1/admin/*".to_owned(),
        Some(orgs) => format!("organization token for {}", orgs.join(", ")),
    };
    line.push_str(if who.read_only {
        "; read-only"
    } else {
        "; read-write"
    });
    if let Some(until) = &who.expires_at {
        line.push_str(&format!("; expires {until}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_says_the_reach_the_mode_and_the_expiry() {
        let operator = WhoAmI {
            kind: "operator".into(),
            orgs: None,
            read_only: false,
            expires_at: None,
        };
        assert_eq!(
            describe(&operator),
            "operator: every organization and /v1/admin/*; read-write"
        );
        let reader = WhoAmI {
            kind: "organization".into(),
            orgs: Some(vec!["acme".into(), "initech".into()]),
            read_only: true,
            expires_at: Some("2030-01-01T00:00:00.000Z".into()),
        };
        assert_eq!(
            describe(&reader),
            "organization token for acme, initech; read-only; expires 2030-01-01T00:00:00.000Z"
        );
    }
}
