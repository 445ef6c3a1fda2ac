//! `swarm members`: the managers of an embedded-Raft group, each listed as it sees itself (a
//! dead one as unreachable, never with a role it cannot have now), and changes to the group,
//! asked of any manager (followers pass them on to the leader).

use std::fmt::Write as _;
use std::time::Duration;

use http::Method;
use serde_json::Value;

use super::{AdminError, Caller};
use crate::cli::{MembersAction, MembersArgs, MembersConn};
use crate::config::ConfigError;

/// Longest wait for a membership change: adding waits for the new manager to catch up.
const CHANGE_BOUND: Duration = Duration::from_secs(60);

/// Runs `swarm members ...`.
pub async fn run(args: &MembersArgs) -> Result<(), AdminError> {
    match &args.action {
        MembersAction::List(conn) => {
            let bound = crate::config::parse_duration(&conn.timeout)?;
            print!(
                "{}",
                list(&Caller::new(&conn.manager, &conn.cluster_secret_file, &conn.tls)?, &conn.manager, bound).await?
            );
            Ok(())
        }
        MembersAction::Add { addr, conn } => change(conn, Method::POST, addr).await,
        MembersAction::Remove { addr, conn } => change(conn, Method::DELETE, addr).await,
    }
}

async fn change(conn: &MembersConn, method: Method, addr: &str) -> Result<(), AdminError> {
    if !crate::config::validate_host_port(addr) {
        return Err(ConfigError(format!("invalid address {addr:?}: expected host:port")).into());
    }
    let caller = Caller::new(&conn.manager, &conn.cluster_secret_file, &conn.tls)?;
    let members = caller
        .call(&conn.manager, method, &format!("/_swarm/members/{addr}"), CHANGE_BOUND)
        .await
        .map_err(|e| AdminError::Refused(format!("{}: {e}", conn.manager)))?;
    for m in members.as_array().into_iter().flatten() {
        println!("{}", m.as_str().unwrap_or_default());
    }
    Ok(())
}

/// The status table: the group's members as `manager` knows them, each asked for its own view.
async fn list(caller: &Caller, manager: &str, bound: Duration) -> Result<String, AdminError> {
    let group = caller
        .call(manager, Method::GET, "/_swarm/members", bound)
        .await
        .map_err(|e| AdminError::Refused(format!("{manager}: {e}")))?;
    let addrs: Vec<String> =
        group.as_array().into_iter().flatten().filter_map(|m| m["Addr"].as_str().map(str::to_string)).collect();
    let views = futures_util::future::join_all(
        addrs.iter().map(|a| caller.call(a, Method::GET, "/_swarm/members/self", bound)),
    )
    .await;
    let rows: Vec<[String; 7]> = addrs.iter().zip(views).map(|(addr, view)| row(addr, view)).collect();
    Ok(table(&rows))
}

/// One member's row: what it says of itself, or that it did not answer.
fn row(addr: &str, view: Result<Value, String>) -> [String; 7] {
    let dash = || "-".to_string();
    match view {
        Ok(v) => [
            addr.to_string(),
            v["Role"].as_str().unwrap_or("-").to_string(),
            v["Term"].as_u64().map_or_else(dash, |t| t.to_string()),
            v["AppliedIndex"].as_u64().map_or_else(dash, |i| i.to_string()),
            v["Primary"].as_str().map_or_else(dash, str::to_string),
            v["LastContactMs"].as_u64().map_or_else(dash, |ms| format!("{:?}", Duration::from_millis(ms))),
            "yes".to_string(),
        ],
        Err(e) => [addr.to_string(), dash(), dash(), dash(), dash(), dash(), format!("no: {e}")],
    }
}

/// Columns aligned as `docker node ls` aligns them.
fn table(rows: &[[String; 7]]) -> String {
    const HEADER: [&str; 7] = ["ADDRESS", "ROLE", "TERM", "APPLIED", "PRIMARY", "LAST CONTACT", "REACHABLE"];
    let mut widths = HEADER.map(str::len);
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (k, (cell, w)) in cells.zip(widths).enumerate() {
            let _ = if k + 1 == HEADER.len() { write!(text, "{cell}") } else { write!(text, "{cell:<w$}   ") };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut HEADER.iter().copied());
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_member_as_it_sees_itself_and_the_dead_as_unreachable() {
        let up = serde_json::json!({"Role": "primary", "Term": 7, "AppliedIndex": 120, "Primary": "a:1", "LastContactMs": 12});
        let rows = [row("a:1", Ok(up)), row("b:1", Err("connection refused".into()))];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ADDRESS   ROLE      TERM"), "{text}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells, ["a:1", "primary", "7", "120", "a:1", "12ms", "yes"]);
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(cells, ["b:1", "-", "-", "-", "-", "-", "no:", "connection", "refused"]);
    }
}
