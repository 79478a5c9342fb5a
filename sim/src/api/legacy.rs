//! The simulated HostUp legacy API (docs/PROVIDERS.md §2), over the same VPS data as
//! the v2 API: `SimState::legacy_vms` maps a VM id to a VPS.
//!
//! | method | path | answer |
//! |---|---|---|
//! | POST | `/api/vm/{vmid}/routed-ipv6` | body `{"action":"allocate"}` (201 when created) or `{"action":"refresh_next_hop"}` (200); `{success, timestamp, requestId, data:{created, allocation}}`, allocation snake_case with an integer id and PostgreSQL timestamps; `allocation: null` when there is none (inferred) |
//! | DELETE | `/api/vm/{vmid}/routed-ipv6` | `{success, …, data:{released, cooldownDays, allocation}}` |
//!
//! For a VM without an active allocation, `refresh_next_hop` answers `allocation: null`,
//! or with `legacy_refresh_problem` a 404 `allocation_not_found` problem: the documented
//! schema has no null allocation, and the documentation does not say which it is.
//!
//! `cooldown_refuses_allocate` and `release_none_problem` switch the same readings as
//! for the v2 API (`mod.rs`), answered as legacy errors.
//!
//! Auth `X-API-Key: <token>`. Errors `{error, message, code, timestamp, requestId}`;
//! a 429 `{error, message, retryAfter, requestId}`. With `legacy_host_bits`, `prefix`
//! is written with host bits set, as in the documentation's example.

use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::{
    Action, Fault, RetryAfter, Routed, Sim, SimAllocation, json_response, release_allocation,
    routed_action, timestamp,
};

impl Sim {
    pub(super) fn legacy_api(
        &self,
        method: &Method,
        path: &str,
        body: &[u8],
        request_id: &str,
    ) -> Response<Full<Bytes>> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let ["", "api", "vm", vmid, "routed-ipv6"] = segments.as_slice() else {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "No such endpoint",
                request_id,
            );
        };
        let Some(vmid) = vmid.parse::<u64>().ok().filter(|v| *v >= 1) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_vmid",
                "vmid must be an integer of at least 1",
                request_id,
            );
        };
        let (vps_id, host_bits, refresh_problem) = {
            let inner = super::lock(&self.inner);
            (
                inner.state.legacy_vms.get(&vmid).cloned(),
                inner.state.legacy_host_bits,
                inner.state.legacy_refresh_problem,
            )
        };
        let Some(vps_id) = vps_id else {
            return error(
                StatusCode::NOT_FOUND,
                "vm_not_found",
                "VM not found",
                request_id,
            );
        };
        match *method {
            Method::POST => {
                let action = match parse_action(body) {
                    Ok(action) => action,
                    Err(message) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "invalid_request",
                            message,
                            request_id,
                        );
                    }
                };
                let refresh = matches!(action, Action::RefreshNextHop);
                self.mutate(|inner| match routed_action(inner, &vps_id, action) {
                    None => error(
                        StatusCode::NOT_FOUND,
                        "vm_not_found",
                        "VM not found",
                        request_id,
                    ),
                    Some(Routed::InCooldown(until)) => error(
                        StatusCode::CONFLICT,
                        "cooldown_active",
                        &format!(
                            "Routed IPv6 was released; a new allocation can be made after {until}"
                        ),
                        request_id,
                    ),
                    Some(_)
                        if refresh
                            && refresh_problem
                            && inner.state.vpses[&vps_id].active_route().is_none() =>
                    {
                        error(
                            StatusCode::NOT_FOUND,
                            "allocation_not_found",
                            "No routed IPv6 allocation exists for this VM",
                            request_id,
                        )
                    }
                    Some(Routed::Done(status, created)) => {
                        let allocation = inner.state.vpses[&vps_id]
                            .allocation
                            .as_ref()
                            .map(|a| allocation_json(a, vmid, host_bits));
                        envelope(
                            status,
                            json!({ "created": created, "allocation": allocation }),
                            request_id,
                        )
                    }
                })
            }
            Method::DELETE => self.mutate(|inner| {
                let days = inner.state.cooldown_days;
                match release_allocation(inner, &vps_id) {
                    Err(()) => error(
                        StatusCode::NOT_FOUND,
                        "vm_not_found",
                        "VM not found",
                        request_id,
                    ),
                    Ok(None) if inner.state.release_none_problem => error(
                        StatusCode::NOT_FOUND,
                        "allocation_not_found",
                        "No routed IPv6 allocation exists for this VM",
                        request_id,
                    ),
                    Ok(released) => envelope(
                        StatusCode::OK,
                        json!({
                            "released": released.is_some(),
                            "cooldownDays": days,
                            "allocation": released.as_ref().map(|a| allocation_json(a, vmid, host_bits)),
                        }),
                        request_id,
                    ),
                }
            }),
            _ => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Use POST or DELETE",
                request_id,
            ),
        }
    }
}

/// The legacy body must name its action; there is no default.
fn parse_action(body: &[u8]) -> Result<Action, &'static str> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "body must be JSON")?;
    match value.get("action").and_then(Value::as_str) {
        Some("allocate") => Ok(Action::Allocate),
        Some("refresh_next_hop") => Ok(Action::RefreshNextHop),
        _ => Err("action must be allocate or refresh_next_hop"),
    }
}

/// `2026-04-27T12:00:00.000Z` as PostgreSQL prints it: `2026-04-27 12:00:00.000000+00`.
fn pg(iso: &str) -> String {
    let trimmed = iso.trim_end_matches('Z');
    let (date, time) = trimmed.split_once('T').unwrap_or((trimmed, "00:00:00"));
    let (whole, fraction) = time.split_once('.').unwrap_or((time, "0"));
    format!("{date} {whole}.{fraction:0<6}+00")
}

/// The integer id the legacy API shows (the trailing digits of the v2 id).
fn legacy_id(id: &str) -> u64 {
    let digits: String = id
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().unwrap_or(0)
}

fn allocation_json(a: &SimAllocation, vmid: u64, host_bits: bool) -> Value {
    let prefix = if host_bits {
        // The doc example's trap: an address with the prefix length.
        let first = std::net::Ipv6Addr::from(u128::from(a.prefix.network()) | 1);
        format!("{first}/{}", a.prefix.prefix_len())
    } else {
        a.prefix.to_string()
    };
    json!({
        "id": legacy_id(&a.id),
        "rack_id": "sim1r01",
        "client_id": "30000",
        "account_id": "20000",
        "proxmox_vm_id": vmid.to_string(),
        "prefix": prefix,
        "prefix_length": a.prefix_length,
        "next_hop": a.next_hop.to_string(),
        "status": a.status,
        "allocated_at": pg(&a.allocated_at),
        "released_at": a.released_at.as_deref().map(pg),
        "cooldown_until": a.cooldown_until.as_deref().map(pg),
        "metadata": { "updatedAt": a.updated_at, "updatedBy": "sim" },
        "created_at": pg(&a.created_at),
        "updated_at": pg(&a.updated_at),
    })
}

fn envelope(status: StatusCode, data: Value, request_id: &str) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({
            "success": true,
            "timestamp": pg(&timestamp(SystemTime::now())),
            "requestId": request_id,
            "data": data,
        }),
        request_id,
    )
}

/// A legacy error document.
pub(super) fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    json_response(
        status,
        &json!({
            "error": status.canonical_reason().unwrap_or("Error"),
            "message": message,
            "code": code,
            "timestamp": timestamp(SystemTime::now()),
            "requestId": request_id,
        }),
        request_id,
    )
}

/// A fault in the legacy API's shapes (body faults are the same for every API).
pub(super) fn fault_response(fault: &Fault, request_id: &str) -> Response<Full<Bytes>> {
    match fault {
        Fault::Status { status, code } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, code, "Simulated failure.", request_id)
        }
        Fault::RateLimited { retry_after } => {
            let seconds = match retry_after {
                Some(RetryAfter::Seconds(s)) | Some(RetryAfter::DateIn(s)) => Some(*s),
                None => None,
            };
            let mut body = json!({
                "error": "Too Many Requests",
                "message": "Rate limit exceeded",
                "requestId": request_id,
            });
            // The legacy API says when in the body, not in a header.
            if let Some(seconds) = seconds {
                body["retryAfter"] = json!(seconds);
            }
            json_response(StatusCode::TOO_MANY_REQUESTS, &body, request_id)
        }
        other => super::fault_response(other, "/api/vm", request_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_ids() {
        assert_eq!(
            pg("2026-04-27T12:00:00.123Z"),
            "2026-04-27 12:00:00.123000+00"
        );
        assert_eq!(legacy_id("ripv6_sim000042"), 42);
    }
}
