//! The simulated DigitalOcean Reserved IPv6 API and droplet metadata service
//! (docs/PROVIDERS.md §3).
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/v2/reserved_ipv6?page=&per_page=` | `{reserved_ipv6s, links:{pages:{next?}}, meta:{total}}`; pages of `min(per_page, page_size)` |
//! | GET | `/v2/reserved_ipv6/{ip}` | `{reserved_ipv6:{ip, region_slug, reserved_at, droplet}}`, droplet null when unassigned; no `droplet` key at all with `without_droplet_read` (the spec: the embedded droplet requires droplet:read) |
//! | POST | `/v2/reserved_ipv6/{ip}/actions` | `{"type":"assign","droplet_id":N}` / `{"type":"unassign"}` → 201 `{action:{id, status:"in-progress", type:"assign_ip"…}}`; any other body (read by the sim's own `ActionBody`) 422; assigning to a droplet of another region: 422 (inferred) |
//! | GET | `/v2/actions/{id}` | the action; it completes (and takes effect) after `action_polls` GETs, or ends `errored` with `fail_actions` |
//! | GET | `/metadata/v1/id` | the droplet id as text (no auth) |
//! | GET | `/metadata/v1.json` | `{droplet_id, region, interfaces:{public:[{ipv6:{ip_address, cidr, gateway}}]}, reserved_ip:{ipv6:{active, ip_address}}}`, addresses upper-case and fully expanded |
//!
//! Auth `Authorization: Bearer <token>` (the sim's one token). Errors
//! `{id, message, request_id}`; every answer carries `ratelimit-limit`,
//! `ratelimit-remaining` and `ratelimit-reset` (epoch seconds); a simulated 429 has them
//! with remaining 0 and, when asked, `retry-after`.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use ipnet::Ipv6Net;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Fault, RetryAfter, Sim, json_response, lock, raw_response, timestamp};

/// The body of `POST /v2/reserved_ipv6/{ip}/actions` as DigitalOcean's spec documents
/// it: `type` is required and one of `assign`, `unassign`; `assign` requires
/// `droplet_id`, an integer. The sim's own reading, written from the spec and not
/// shared with the client, so a client that misreads the spec is answered 422 here
/// instead of being agreed with. See issue 14, item 7.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ActionBody {
    Assign { droplet_id: u64 },
    Unassign,
}

/// The body of `POST /v2/reserved_ipv6` (reserve a new address in a region), as the
/// spec's samples write it. The sim does not serve it; the conformance corpus holds
/// such requests, and they are read with the sim's reading like any other.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ReserveBody {
    pub region_slug: String,
}

/// An action request, or why it is not one (the sim answers that with a 422).
pub fn parse_action_body(body: &[u8]) -> Result<ActionBody, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a reserved IPv6 action: {e}"))
}

/// DigitalOcean's side of the simulation.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimDigitalOcean {
    pub droplets: BTreeMap<u64, SimDroplet>,
    pub reserved: BTreeMap<Ipv6Addr, SimReserved>,
    /// The droplet the metadata service describes (`None`: it answers 404).
    pub metadata_droplet: Option<u64>,
    /// Largest page the list answers with (0: DigitalOcean's 200).
    pub page_size: usize,
    /// GETs an action answers `in-progress` before it completes.
    pub action_polls: u32,
    /// Actions end `errored` (and change nothing).
    pub fail_actions: bool,
    /// Droplets in answers carry only `{"id": N}` (as in godo's tests).
    pub droplet_id_only: bool,
    /// The token lacks droplet:read: answers leave the `droplet` key out.
    pub without_droplet_read: bool,
    pub actions: BTreeMap<u64, SimAction>,
}

/// A droplet: its id and the public IPv6 address DigitalOcean routes reserved IPv6 to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimDroplet {
    pub id: u64,
    pub name: String,
    pub public_ipv6: Option<Ipv6Addr>,
    /// Its region slug (`nyc3` unless a test moves it).
    pub region: String,
}

/// A reserved IPv6 address of the account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimReserved {
    pub ip: Ipv6Addr,
    pub region: String,
    pub droplet_id: Option<u64>,
}

/// An assign or unassign action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimAction {
    pub id: u64,
    /// `in-progress`, `completed`, `errored`.
    pub status: String,
    /// `assign_ip` / `unassign_ip`.
    pub kind: String,
    pub ip: Ipv6Addr,
    pub droplet_id: Option<u64>,
    pub polls_left: u32,
    pub started_at: String,
    pub completed_at: Option<String>,
}

impl SimDigitalOcean {
    pub fn with_droplet(mut self, id: u64, name: &str, public_ipv6: Option<Ipv6Addr>) -> Self {
        self.droplets.insert(
            id,
            SimDroplet {
                id,
                name: name.into(),
                public_ipv6,
                region: "nyc3".into(),
            },
        );
        self
    }

    pub fn with_reserved(mut self, ip: Ipv6Addr, droplet_id: Option<u64>) -> Self {
        self.reserved.insert(
            ip,
            SimReserved {
                ip,
                region: "nyc3".into(),
                droplet_id,
            },
        );
        self
    }

    /// Reserved addresses routed to their droplet's public IPv6 address.
    pub fn routes(&self) -> Vec<(Ipv6Net, Ipv6Addr)> {
        self.reserved
            .values()
            .filter_map(|r| {
                let droplet = self.droplets.get(&r.droplet_id?)?;
                let host = Ipv6Net::new(r.ip, 128).ok()?;
                Some((host, droplet.public_ipv6?))
            })
            .collect()
    }

    fn droplet_json(&self, id: u64) -> Value {
        match self.droplets.get(&id) {
            Some(d) if !self.droplet_id_only => json!({
                "id": d.id,
                "name": d.name,
                "status": "active",
                "networks": { "v6": d.public_ipv6.map(|a| vec![json!({
                    "ip_address": a.to_string(), "netmask": 64, "type": "public"
                })]).unwrap_or_default() },
            }),
            _ => json!({ "id": id }),
        }
    }

    fn reserved_json(&self, r: &SimReserved) -> Value {
        let mut item = json!({
            "ip": r.ip.to_string(),
            "region_slug": r.region,
            "reserved_at": "2024-11-20T11:08:30Z",
        });
        if !self.without_droplet_read {
            item["droplet"] = json!(r.droplet_id.map(|id| self.droplet_json(id)));
        }
        item
    }
}

fn action_json(a: &SimAction) -> Value {
    json!({
        "action": {
            "id": a.id,
            "status": a.status,
            "type": a.kind,
            "started_at": a.started_at,
            "completed_at": a.completed_at,
            "resource_id": 0,
            "resource_type": "reserved_ipv6",
            "region_slug": "nyc3",
        }
    })
}

/// Let an action take effect (or fail).
fn finish(state: &mut SimDigitalOcean, id: u64) {
    let fail = state.fail_actions;
    let Some(action) = state.actions.get_mut(&id) else {
        return;
    };
    action.completed_at = Some(timestamp(SystemTime::now()));
    if fail {
        action.status = "errored".into();
        return;
    }
    action.status = "completed".into();
    let (ip, droplet) = (action.ip, action.droplet_id);
    if let Some(reserved) = state.reserved.get_mut(&ip) {
        reserved.droplet_id = droplet;
    }
}

impl Sim {
    pub(super) fn do_api(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
        request_id: &str,
    ) -> Response<Full<Bytes>> {
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        match (method.clone(), segments.as_slice()) {
            (Method::GET, ["", "v2", "reserved_ipv6"]) => {
                let inner = lock(&self.inner);
                let state = &inner.state.digitalocean;
                let mut page = 1usize;
                let mut per_page = 20usize;
                for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
                    match k.as_ref() {
                        "page" => page = v.parse().unwrap_or(1).max(1),
                        "per_page" => per_page = v.parse().unwrap_or(20).clamp(1, 200),
                        _ => {}
                    }
                }
                let limit = if state.page_size == 0 {
                    200
                } else {
                    state.page_size
                };
                let size = per_page.min(limit);
                let all: Vec<&SimReserved> = state.reserved.values().collect();
                let items: Vec<Value> = all
                    .iter()
                    .skip((page - 1) * size)
                    .take(size)
                    .map(|r| state.reserved_json(r))
                    .collect();
                let mut pages = serde_json::Map::new();
                if page * size < all.len() {
                    pages.insert(
                        "next".into(),
                        json!(format!(
                            "https://api.digitalocean.com/v2/reserved_ipv6?page={}&per_page={size}",
                            page + 1
                        )),
                    );
                }
                do_json(
                    StatusCode::OK,
                    &json!({
                        "reserved_ipv6s": items,
                        "links": { "pages": pages },
                        "meta": { "total": all.len() },
                    }),
                    request_id,
                )
            }
            (Method::GET, ["", "v2", "reserved_ipv6", ip]) => {
                let inner = lock(&self.inner);
                let state = &inner.state.digitalocean;
                match ip
                    .parse::<Ipv6Addr>()
                    .ok()
                    .and_then(|ip| state.reserved.get(&ip))
                {
                    Some(r) => do_json(
                        StatusCode::OK,
                        &json!({ "reserved_ipv6": state.reserved_json(r) }),
                        request_id,
                    ),
                    None => not_found(request_id),
                }
            }
            (Method::POST, ["", "v2", "reserved_ipv6", ip, "actions"]) => {
                let Some(ip) = ip.parse::<Ipv6Addr>().ok() else {
                    return not_found(request_id);
                };
                let request = match parse_action_body(body) {
                    Ok(request) => request,
                    Err(_) => {
                        return error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "unprocessable_entity",
                            "request payload validation failed",
                            request_id,
                        );
                    }
                };
                self.mutate(|inner| {
                    inner.next_request += 1;
                    let id = 70_000_000 + inner.next_request;
                    let state = &mut inner.state.digitalocean;
                    if !state.reserved.contains_key(&ip) {
                        return not_found(request_id);
                    }
                    let (kind, droplet_id) = match request {
                        ActionBody::Assign { droplet_id } => {
                            let Some(droplet) = state.droplets.get(&droplet_id) else {
                                return error(
                                    StatusCode::UNPROCESSABLE_ENTITY,
                                    "unprocessable_entity",
                                    "Droplet not found",
                                    request_id,
                                );
                            };
                            if droplet.region != state.reserved[&ip].region {
                                return error(
                                    StatusCode::UNPROCESSABLE_ENTITY,
                                    "unprocessable_entity",
                                    "The reserved IPv6 and the Droplet must be in the same region.",
                                    request_id,
                                );
                            }
                            ("assign_ip", Some(droplet_id))
                        }
                        ActionBody::Unassign => ("unassign_ip", None),
                    };
                    state.actions.insert(
                        id,
                        SimAction {
                            id,
                            status: "in-progress".into(),
                            kind: kind.into(),
                            ip,
                            droplet_id,
                            polls_left: state.action_polls,
                            started_at: timestamp(SystemTime::now()),
                            completed_at: None,
                        },
                    );
                    if state.action_polls == 0 {
                        finish(state, id);
                    }
                    do_json(
                        StatusCode::CREATED,
                        &action_json(&state.actions[&id]),
                        request_id,
                    )
                })
            }
            (Method::GET, ["", "v2", "actions", id]) => {
                let Some(id) = id.parse::<u64>().ok() else {
                    return not_found(request_id);
                };
                self.mutate(|inner| {
                    let state = &mut inner.state.digitalocean;
                    let Some(action) = state.actions.get_mut(&id) else {
                        return not_found(request_id);
                    };
                    if action.status == "in-progress" {
                        action.polls_left = action.polls_left.saturating_sub(1);
                        if action.polls_left == 0 {
                            finish(state, id);
                        }
                    }
                    do_json(
                        StatusCode::OK,
                        &action_json(&state.actions[&id]),
                        request_id,
                    )
                })
            }
            _ => not_found(request_id),
        }
    }

    pub(super) fn metadata_api(
        &self,
        method: &Method,
        path: &str,
        request_id: &str,
    ) -> Response<Full<Bytes>> {
        let inner = lock(&self.inner);
        let state = &inner.state.digitalocean;
        let droplet = state
            .metadata_droplet
            .and_then(|id| state.droplets.get(&id));
        let (Method::GET, Some(droplet)) = (method.clone(), droplet) else {
            return text(StatusCode::NOT_FOUND, "not found\n", request_id);
        };
        match path {
            "/metadata/v1/id" => text(StatusCode::OK, &droplet.id.to_string(), request_id),
            "/metadata/v1.json" => {
                let reserved = state
                    .reserved
                    .values()
                    .find(|r| r.droplet_id == Some(droplet.id));
                let body = json!({
                    // A string, as in cloud-init's sample from a real droplet.
                    "droplet_id": droplet.id.to_string(),
                    "hostname": droplet.name,
                    "region": droplet.region,
                    "interfaces": { "public": [{
                        "ipv6": droplet.public_ipv6.map(|a| json!({
                            "ip_address": expanded(a),
                            "cidr": 64,
                            "gateway": expanded(Ipv6Addr::from(u128::from(a) & !0xffff_ffff_ffff_ffff | 1)),
                        })),
                        "type": "public",
                    }]},
                    "reserved_ip": { "ipv6": {
                        "active": reserved.is_some(),
                        "ip_address": reserved.map(|r| expanded(r.ip)),
                    }},
                });
                json_response(StatusCode::OK, &body, request_id)
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n", request_id),
        }
    }
}

/// `2604:A880:0800:0010:0000:0000:017D:2001`: how the metadata service writes addresses.
fn expanded(addr: Ipv6Addr) -> String {
    addr.segments()
        .iter()
        .map(|s| format!("{s:04X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn text(status: StatusCode, body: &str, request_id: &str) -> Response<Full<Bytes>> {
    raw_response(
        status,
        Bytes::from(body.to_string()),
        "text/plain; charset=utf-8",
        request_id,
    )
}

/// Every DigitalOcean answer carries the rate-limit headers (reset in epoch seconds).
fn with_rate_limit(mut response: Response<Full<Bytes>>, remaining: u32) -> Response<Full<Bytes>> {
    let reset = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + 60;
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from_static("5000"));
    if let Ok(v) = HeaderValue::from_str(&remaining.to_string()) {
        headers.insert("ratelimit-remaining", v);
    }
    if let Ok(v) = HeaderValue::from_str(&reset.to_string()) {
        headers.insert("ratelimit-reset", v);
    }
    response
}

fn do_json(status: StatusCode, body: &Value, request_id: &str) -> Response<Full<Bytes>> {
    with_rate_limit(json_response(status, body, request_id), 4999)
}

/// A DigitalOcean error document.
pub(super) fn error(
    status: StatusCode,
    id: &str,
    message: &str,
    request_id: &str,
) -> Response<Full<Bytes>> {
    do_json(
        status,
        &json!({ "id": id, "message": message, "request_id": request_id }),
        request_id,
    )
}

fn not_found(request_id: &str) -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "The resource you requested could not be found.",
        request_id,
    )
}

/// A fault in DigitalOcean's shapes (body faults are the same for every API).
pub(super) fn fault_response(fault: &Fault, request_id: &str) -> Response<Full<Bytes>> {
    match fault {
        Fault::Status { status, code } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, code, "Simulated failure.", request_id)
        }
        Fault::RateLimited { retry_after } => {
            let body = json!({
                "id": "too_many_requests",
                "message": "API rate limit exceeded.",
                "request_id": request_id,
            });
            let mut response = with_rate_limit(
                json_response(StatusCode::TOO_MANY_REQUESTS, &body, request_id),
                0,
            );
            let value = match retry_after {
                Some(RetryAfter::Seconds(s)) => Some(s.to_string()),
                Some(RetryAfter::DateIn(s)) => Some(httpdate::fmt_http_date(
                    SystemTime::now() + Duration::from_secs(*s),
                )),
                None => None,
            };
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            response
        }
        other => super::fault_response(other, "/v2", request_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_like_the_metadata_service() {
        let a: Ipv6Addr = "2604:a880:800:10::17d:2001".parse().unwrap();
        assert_eq!(expanded(a), "2604:A880:0800:0010:0000:0000:017D:2001");
    }

    /// The spec's request samples, and what it does not allow: no `type`, another
    /// `type`, an assign without `droplet_id` or with one that is not an integer.
    #[test]
    fn action_bodies_as_the_spec_writes_them() {
        assert_eq!(
            parse_action_body(br#"{"type":"assign","droplet_id":8219222}"#),
            Ok(ActionBody::Assign {
                droplet_id: 8219222
            })
        );
        assert_eq!(
            parse_action_body(br#"{"type":"unassign"}"#),
            Ok(ActionBody::Unassign)
        );
        for bad in [
            &br#"{"type":"assign"}"#[..],
            br#"{"type":"assign","droplet_id":"8219222"}"#,
            br#"{"type":"assign","droplet_id":-1}"#,
            br#"{"type":"explode"}"#,
            br#"{"droplet_id":8219222}"#,
            br#"{"region_slug":"nyc3"}"#,
            b"",
        ] {
            assert!(
                parse_action_body(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let reserve: ReserveBody = serde_json::from_slice(br#"{"region_slug": "nyc3"}"#).unwrap();
        assert_eq!(reserve.region_slug, "nyc3");
    }

    #[test]
    fn reserved_addresses_route_to_their_droplet() {
        let hop: Ipv6Addr = "2001:db8:1::2".parse().unwrap();
        let ip: Ipv6Addr = "2001:db8:77::5".parse().unwrap();
        let state = SimDigitalOcean::default()
            .with_droplet(7, "d", Some(hop))
            .with_reserved(ip, Some(7))
            .with_reserved("2001:db8:77::6".parse().unwrap(), None);
        assert_eq!(
            state.routes(),
            vec![("2001:db8:77::5/128".parse().unwrap(), hop)]
        );
    }
}
